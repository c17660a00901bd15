"""PII redaction with real-looking samples, and text that must survive untouched."""

from __future__ import annotations

import json

import pytest

from agentstream.core.config import EmitterSettings
from agentstream.core.redact import REDACTION_KINDS, Redactor, luhn_valid, secret_key

# -- an independent Luhn (table of doubled digits), used to build the samples ------------------

_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _luhn_sum(digits: str) -> int:
    """Sum with every second digit from the right doubled (digit sums via a table)."""
    total = 0
    for position, char in enumerate(digits[::-1]):
        total += _DOUBLED[int(char)] if position % 2 else int(char)
    return total


def _with_check_digit(body: str) -> str:
    """``body`` + the digit that makes the Luhn sum a multiple of ten."""
    for check in "0123456789":
        if _luhn_sum(body + check) % 10 == 0:
            return body + check
    raise AssertionError("unreachable")


def _breaking_check_digit(body: str) -> str:
    valid = _with_check_digit(body)
    wrong = str((int(valid[-1]) + 1) % 10)
    return body + wrong


VISA = _with_check_digit("411111111111111")  # 16 digits
MASTERCARD = _with_check_digit("555555555555444")
AMEX = _with_check_digit("37828224631000")  # 15 digits
DISCOVER_19 = _with_check_digit("601100099013942" + "123")  # 19 digits
INVALID_VISA = _breaking_check_digit("411111111111111")


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


def test_sample_cards_are_what_the_test_claims() -> None:
    assert VISA == "4111111111111111"  # the well-known test card: the helper is right
    assert all(_luhn_sum(n) % 10 == 0 for n in (VISA, MASTERCARD, AMEX, DISCOVER_19))
    assert _luhn_sum(INVALID_VISA) % 10 != 0
    assert luhn_valid(VISA)
    assert not luhn_valid(INVALID_VISA)


@pytest.mark.parametrize("number", [VISA, MASTERCARD, AMEX, DISCOVER_19])
def test_luhn_valid_card_numbers_are_redacted(redactor: Redactor, number: str) -> None:
    spaced = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    dashed = "-".join(number[i : i + 4] for i in range(0, len(number), 4))
    for form in (number, spaced, dashed):
        text = f"charge card {form} for $12.50."
        assert redactor.text(text) == "charge card [REDACTED:card] for $12.50."


def test_luhn_invalid_numbers_are_kept(redactor: Redactor) -> None:
    text = f"order reference {INVALID_VISA} shipped"
    assert redactor.text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail alice.smith+news@example.co.uk today", "mail [REDACTED:email] today"),
        ("From: Bob <bob_o'neil@mail.example.com>", "From: Bob <bob_o'[REDACTED:email]>"),
        ("call +44 20 7946 0958 now", "call [REDACTED:phone] now"),
        ("call +1 (415) 555-0132.", "call [REDACTED:phone]."),
        ("office (415) 555-0132 ext", "office [REDACTED:phone] ext"),
        ("tel 415-555-0132", "tel [REDACTED:phone]"),
        ("Tokyo +81-3-1234-5678", "Tokyo [REDACTED:phone]"),
        ("Paris +33 1 23 45 67 89", "Paris [REDACTED:phone]"),
        ("Mumbai +91 98765 43210", "Mumbai [REDACTED:phone]"),
        ("Berlin +49 30 901820", "Berlin [REDACTED:phone]"),
        ("tel:+14155550132", "tel:[REDACTED:phone]"),
    ],
)
def test_emails_and_international_phone_numbers(
    redactor: Redactor, text: str, expected: str
) -> None:
    assert redactor.text(text) == expected


JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Authorization: Bearer {JWT}", "Authorization: Bearer [REDACTED:bearer]"),
        ("curl -H 'authorization: bearer abc123DEF456ghi789'", None),
        (f"token in body {JWT}", "token in body [REDACTED:jwt]"),
        ("key=AKIAIOSFODNN7EXAMPLE region", "key=[REDACTED:api_key] region"),
        ("aws AKIAIOSFODNN7EXAMPLE", "aws [REDACTED:api_key]"),
        (
            "OPENAI sk-proj-4fQx9LmZ2pR7tY1uV3wX5yZ8aB0cD_eF-gHiJkLm done",
            "OPENAI [REDACTED:api_key] done",
        ),
        ("old sk-abcdefghijklmnopqrstuvwxyz012345", "old [REDACTED:api_key]"),
        ("stripe sk_live_51H8xYzAbCdEfGhIjKlMnOp", "stripe [REDACTED:api_key]"),
        ("gh ghp_16C7e42F292c6912E7710c838347Ae178B4a", "gh [REDACTED:api_key]"),
        ("pat github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "pat [REDACTED:api_key]"),
        ("slack xoxb-123456789012-abcdefghijkl", "slack [REDACTED:api_key]"),
        ("g AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW", "g [REDACTED:api_key]"),
        ("api_key=Zx81Kq02Lm93Nw", "api_key=[REDACTED:secret]"),
        ("X-Api-Key: 9f8e7d6c5b4a3210", "X-Api-Key: [REDACTED:secret]"),
    ],
)
def test_bearer_tokens_and_api_keys(redactor: Redactor, text: str, expected: str | None) -> None:
    out = redactor.text(text)
    if expected is None:
        assert "abc123DEF456ghi789" not in out
        assert "[REDACTED:bearer]" in out
    else:
        assert out == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("user=bob&password=hunter2&x=1", "user=bob&password=[REDACTED:password]&x=1"),
        ("PASSWORD: 'correct horse'", "PASSWORD: '[REDACTED:password]'"),
        ("pwd=s3cr3t!", "pwd=[REDACTED:password]"),
        ("db_password = Tr0ub4dor&3", "db_password = [REDACTED:password]&3"),
        (
            '{"password": "hunter2", "user": "bob"}',
            '{"password": "[REDACTED:password]", "user": "bob"}',
        ),
        ('{"password": null}', '{"password": null}'),
        (
            "postgres://app:s3cr3t@db.internal:5432/orders",
            "postgres://app:[REDACTED:password]@db.internal:5432/orders",
        ),
    ],
)
def test_password_pairs_keep_the_key(redactor: Redactor, text: str, expected: str) -> None:
    assert redactor.text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01",
        "2024-05-01 12:30:45",
        "2024-05-01T12:30:45.123456Z",
        "01/05/2024 and 12.31.2023",
        "from 192.168.100.200 to 10.0.0.1",
        "listen 192.168.100.200:8080",
        "::ffff:192.168.1.10 and 2001:db8::8a2e:370:7334",
        "run 550e8400-e29b-41d4-a716-446655440000",
        "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
        "epoch ms 1715000000000, us 1715000000000000, ns 1715000000000000000",
        "order 123456789 and invoice 20240501123045",
        "latency 812.5 ms, 1,234,567 tokens, $1,234.56",
        "version 1.4.0-rc.2 build 20240501",
        "max_tokens=4096 token_count=12345678 input_tokens: 1200",
        "the passport number field and bypass mode",
        "monkey business with a keyboard",
    ],
)
def test_things_that_are_not_pii_are_kept(redactor: Redactor, text: str) -> None:
    assert redactor.text(text) == text


def test_json_text_stays_json_and_drops_secret_keys(redactor: Redactor) -> None:
    params = {
        "query": "contact jane@example.org",
        "apiKey": "plain-looking-value",
        "client_secret": "abc",
        "db_password": "x",
        "pin": 1234,
        "max_tokens": 512,
        "token_count": 7,
        "nested": [{"Authorization": "Basic dXNlcjpwYXNz"}, {"phone": "+44 20 7946 0958"}],
        "when": "2024-05-01",
    }
    out = json.loads(redactor.json_text(json.dumps(params)))
    assert out == {
        "query": "contact [REDACTED:email]",
        "apiKey": "[REDACTED:secret]",
        "client_secret": "[REDACTED:secret]",
        "db_password": "[REDACTED:password]",
        "pin": "[REDACTED:secret]",
        "max_tokens": 512,
        "token_count": 7,
        "nested": [{"Authorization": "[REDACTED:secret]"}, {"phone": "[REDACTED:phone]"}],
        "when": "2024-05-01",
    }


def test_clean_json_text_is_returned_unchanged(redactor: Redactor) -> None:
    text = '{"q": "weather in paris", "limit": 10}'
    assert redactor.json_text(text) is text
    assert redactor.json_text("not json, mail a@b.io") == "not json, mail [REDACTED:email]"


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("password", "password"),
        ("userPassword", "password"),
        ("PIN", "secret"),
        ("api_key", "secret"),
        ("X-Api-Key", "secret"),
        ("accessToken", "secret"),
        ("client_secret", "secret"),
        ("private_key", "secret"),
        ("Authorization", "secret"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("cvv", "secret"),
        ("cvc", "secret"),
        ("auth", "secret"),
        ("session", "secret"),
        ("key", "secret"),
        ("encryption_key", "secret"),
        ("max_tokens", None),
        ("input_tokens", None),
        ("token_count", None),
        ("partition_key", None),
        ("auth_method", None),
        ("keyboard", None),
        ("query", None),
    ],
)
def test_secret_keys(key: str, kind: str | None) -> None:
    assert secret_key(key) == kind


def test_kinds_are_configurable() -> None:
    only_email = Redactor(kinds=["email"])
    text = f"a@b.io card {VISA} password=x"
    assert only_email.text(text) == f"[REDACTED:email] card {VISA} password=x"
    assert only_email.kinds == frozenset({"email"})
    phones_not_cards = Redactor(kinds=["phone"])
    assert phones_not_cards.text(f"{VISA} +44 20 7946 0958") == f"{VISA} [REDACTED:phone]"


def test_extra_patterns_and_unknown_kinds() -> None:
    custom = Redactor(extra_patterns={"employee_id": r"\bEMP-\d{6}\b"})
    assert custom.text("owner EMP-123456") == "owner [REDACTED:employee_id]"
    with pytest.raises(ValueError, match="unknown redaction kinds: ssn_us"):
        Redactor(kinds=["email", "ssn_us"])
    with pytest.raises(ValueError, match="not a regex"):
        Redactor(extra_patterns={"bad": "("})
    assert set(REDACTION_KINDS) == set(EmitterSettings().redact_kinds)
    assert set(REDACTION_KINDS) >= {"password", "bearer", "api_key", "email", "card", "phone"}
