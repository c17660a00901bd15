"""The labelled redaction corpus: positives that must not leak, negatives that must survive.

A *positive* is a text, the kind it holds and the secret substrings that must be gone
after redaction (and a ``[REDACTED:<kind>]`` marker must be there). A *negative* is a
text that redaction must leave byte for byte. Part of each list is written by hand
(every example of issue #14 among them), part generated with a seeded RNG, so the
corpus is the same on every run. The corpus test and ``make bench`` read it.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from dataclasses import dataclass

__all__ = ["NEGATIVES", "POSITIVES", "Positive", "score"]


@dataclass(frozen=True)
class Positive:
    text: str
    kind: str
    #: substrings that must not survive (the secret itself, or its parts)
    secrets: tuple[str, ...]
    #: read as JSON text (``params``) rather than free text
    json: bool = False


def _p(text: str, kind: str, *secrets: str, as_json: bool = False) -> Positive:
    return Positive(text, kind, secrets or (text,), as_json)


# -- helpers ---------------------------------------------------------------------------------


def _luhn_complete(body: str) -> str:
    for check in "0123456789":
        digits = body + check
        total = 0
        for i, c in enumerate(reversed(digits)):
            v = int(c)
            if i % 2:
                v = v * 2 - 9 if v > 4 else v * 2
            total += v
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


def _iban(country: str, length: int, rng: random.Random) -> str:
    bban = "".join(rng.choice(string.digits) for _ in range(length - 4))
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - number % 97:02d}{bban}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _group(text: str, size: int, sep: str) -> str:
    return sep.join(text[i : i + size] for i in range(0, len(text), size))


# -- positives written by hand ---------------------------------------------------------------

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PEM_RSA = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "-----END RSA PRIVATE KEY-----"
)

_HAND_POSITIVES: list[Positive] = [
    # issue #14, "Why"
    _p(
        f"aws AKIAIOSFODNN7EXAMPLE secret {AWS_SECRET}",
        "aws_secret",
        AWS_SECRET,
        "AKIAIOSFODNN7EXAMPLE",
    ),
    _p(f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}", "secret", AWS_SECRET),
    _p(f"export AWS_SECRET_ACCESS_KEY='{AWS_SECRET}'", "aws_secret", AWS_SECRET),
    _p("Authorization: Basic dXNlcjpjb3JyZWN0aG9yc2U=", "bearer", "dXNlcjpjb3JyZWN0aG9yc2U="),
    _p('{"card": 4111111111111111}', "card", "4111111111111111", as_json=True),
    _p('{"api_key": 8812734512, "user": "u-17"}', "secret", "8812734512", as_json=True),
    _p('{"secret": 424242}', "secret", "424242", as_json=True),
    _p('{"api_key": ["k-1a2b3c", "k-4d5e6f"]}', "secret", "k-1a2b3c", "k-4d5e6f", as_json=True),
    _p('{"secret": {"v": "hunter2"}}', "secret", "hunter2", as_json=True),
    _p("card 4111 - 1111 - 1111 - 1111 charged", "card", "1111 - 1111"),
    _p("paid with card4111111111111111today", "card", "4111111111111111"),
    _p("visa 4222222222222 declined", "card", "4222222222222"),
    _p(
        "token eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1LTE3IiwiYWRtaW4iOnRydWV9.",
        "jwt",
        "eyJzdWIiOiJ1LTE3IiwiYWRtaW4iOnRydWV9",
    ),
    _p(
        "slack app token xapp-1-A0123ABCD45-1234567890123-0a1b2c3d4e5f6a7b8c9d",
        "api_key",
        "xapp-1-A0123ABCD45-1234567890123-0a1b2c3d4e5f6a7b8c9d",
    ),
    _p(
        "posting to https://hooks.slack.com/services/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",
        "webhook",
        "a1B2c3D4e5F6g7H8i9J0k1L2",
    ),
    _p("cache at redis://:Sup3rS3cret@cache.internal:6379/0", "password", "Sup3rS3cret"),
    _p(
        "db postgres://app:pg-Pa55word@db.internal:5432/agents?sslmode=require",
        "password",
        "pg-Pa55word",
    ),
    _p("mongodb+srv://svc:m0ng0-pw-77@cluster0.example.net/test", "password", "m0ng0-pw-77"),
    _p("amqp://guest:rabbit-pw-1@mq:5672/", "password", "rabbit-pw-1"),
    _p("Server=db1;Database=agents;User Id=sa;Password=Tr0ub4dor&3;", "password", "Tr0ub4dor"),
    _p("jdbc:mysql://db:3306/app?user=svc&password=my-sql-pw-9", "password", "my-sql-pw-9"),
    _p(
        "DefaultEndpointsProtocol=https;AccountName=st1;AccountKey=q1w2e3r4t5y6u7i8o9p0==;",
        "secret",
        "q1w2e3r4t5y6u7i8o9p0",
    ),
    _p(f"key file:\n{PEM_RSA}", "private_key", "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0t"),
    _p(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
        "-----END OPENSSH PRIVATE KEY-----",
        "private_key",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
    ),
    _p(
        "-----BEGIN EC PRIVATE KEY-----\n"
        "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oiWlr8e (truncated)",
        "private_key",
        "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oiWlr8e",
    ),
    _p(
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBGN0ZXN0AQgAx8k\n"
        "-----END PGP PRIVATE KEY BLOCK-----",
        "private_key",
        "lQOYBGN0ZXN0AQgAx8k",
    ),
    _p("refund to IBAN GB82 WEST 1234 5698 7654 32 please", "iban", "GB82 WEST 1234 5698 7654 32"),
    _p("DE89370400440532013000", "iban", "DE89370400440532013000"),
    _p("iban: FR1420041010050500013M02606", "iban", "FR1420041010050500013M02606"),
    _p("contact alice\uff20example.com", "email", "alice"),
    _p("contact bob﹫example.org today", "email", "bob"),
    _p('{"cvv": 123, "number": "x"}', "secret", "123", as_json=True),
    _p('{"cvc": "987"}', "secret", "987", as_json=True),
    _p('{"auth": "opaque-abc-123"}', "secret", "opaque-abc-123", as_json=True),
    _p('{"session": "s%3Aabc.def"}', "secret", "s%3Aabc.def", as_json=True),
    _p('{"key": "k_9f8e7d6c"}', "secret", "k_9f8e7d6c", as_json=True),
    _p(
        '{"encryption_key": "ZW5jcnlwdGlvbi1rZXk="}', "secret", "ZW5jcnlwdGlvbi1rZXk=", as_json=True
    ),
    _p("cvv=321 exp=12/29", "secret", "321"),
    _p("session: 7f3c9a2b-but-secret", "secret", "7f3c9a2b-but-secret"),
    _p("Bearer abcdef0123456789abcdef", "bearer", "abcdef0123456789abcdef"),
    _p("Authorization: Bearer ya29.a0AfH6SMBx-longtoken", "bearer", "ya29.a0AfH6SMBx-longtoken"),
    _p("Authorization: Digest-ish c2VjcmV0LWNyZWQ", "bearer", "c2VjcmV0LWNyZWQ"),
    _p("Proxy-Authorization: Basic cHJveHk6cHc=", "bearer", "cHJveHk6cHc="),
    _p(
        '{"headers": {"Authorization": "token ghs_notreal"}}', "secret", "ghs_notreal", as_json=True
    ),
    _p("password=hunter2 user=bob", "password", "hunter2"),
    _p('pwd: "correct horse"', "password", "correct horse"),
    _p('{"password": 123456}', "password", "123456", as_json=True),
    _p('{"db": {"password": "pg", "host": "db"}}', "password", '"pg"', as_json=True),
    _p("api_key=zz-0011223344556677", "secret", "zz-0011223344556677"),
    _p("X-Api-Key: 0c7e4f1a9b8d", "secret", "0c7e4f1a9b8d"),
    _p("client_secret='cs-live-998877'", "secret", "cs-live-998877"),
    _p("call +44 20 7946 0958 now", "phone", "7946 0958"),
    _p("call +1 (415) 555-0132.", "phone", "555-0132"),
    _p("office (212) 736-5000 ext 12", "phone", "736-5000"),
    _p("tel 415-555-0132", "phone", "415-555-0132"),
    _p("ring +33 1 42 68 53 00", "phone", "42 68 53 00"),
    _p("mobile +91 98765 43210", "phone", "98765 43210"),
    _p("fax 312.555.0147", "phone", "312.555.0147"),
    _p("berlin office +49 30 901820", "phone", "901820"),
    _p("mail alice.smith+news@example.co.uk today", "email", "alice.smith"),
    _p("sk-ant-api03-AbCdEf0123456789AbCdEf0123456789-xyz", "api_key", "AbCdEf0123456789AbCdEf"),
    _p("OPENAI key sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12", "api_key", "Ab12Cd34Ef56Gh78Ij90Kl12"),
    _p("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "api_key", "4eC39HqLyjWDarjtT1zdp7dc"),
    _p("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "api_key", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    _p("google AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI", "api_key", "SyDdI0hCZtE6vySjMm"),
    _p(
        "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "api_key",
        "AbCdEfGhIjKlMnOpQrStUvWx",
    ),
    _p("https://discord.com/api/webhooks/123456789012345678/AbC-dEf_123", "webhook", "AbC-dEf_123"),
]

# -- positives generated with a seeded RNG ---------------------------------------------------

_CARD_PREFIXES = [
    ("4", 16), ("4", 13), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16),
    ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("3530", 16), ("36", 14), ("62", 16),
]  # fmt: skip
_IBAN_COUNTRIES = [("DE", 22), ("GB", 22), ("FR", 27), ("NL", 18), ("ES", 24), ("IT", 27),
                   ("CH", 21), ("BE", 16), ("PL", 28), ("NO", 15)]  # fmt: skip
_SECRET_KEYS = ["api_key", "apiKey", "secret", "client_secret", "access_token", "password",
                "db_password", "token", "private_key", "auth", "session", "cvv", "cvc", "key",
                "encryption_key", "X-Api-Key", "refresh_token", "pin", "otp", "cookie"]  # fmt: skip
_AREA_CODES = ["212", "415", "312", "617", "206", "303", "404", "512", "646", "718"]


def _generated_positives(rng: random.Random) -> list[Positive]:
    out: list[Positive] = []
    for i in range(42):
        prefix, length = _CARD_PREFIXES[i % len(_CARD_PREFIXES)]
        body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
        card = _luhn_complete(body)
        form = i % 6
        if form == 0:
            out.append(_p(f"charge {card} for $12.50.", "card", card))
        elif form == 1:
            spaced = _group(card, 4, " ")
            out.append(_p(f"card: {spaced}", "card", spaced, card[-8:-4]))
        elif form == 2:
            out.append(_p(f"pay {_group(card, 4, '-')} now", "card", card[4:8] + "-" + card[8:12]))
        elif form == 3:
            out.append(_p(f'{{"pan": {card}, "amount": 12}}', "card", card, as_json=True))
        elif form == 4:
            out.append(_p(f"cc{card}x", "card", card))
        else:
            out.append(_p(f"ref card {_group(card, 4, ' - ')}.", "card", card[4:8]))
    for i in range(20):
        country, length = _IBAN_COUNTRIES[i % len(_IBAN_COUNTRIES)]
        iban = _iban(country, length, rng)
        text = _group(iban, 4, " ") if i % 2 else iban
        out.append(_p(f"wire to {text} by friday", "iban", text))
    for i in range(15):
        alg = ["HS256", "RS256", "none", "ES256", "PS512"][i % 5]
        header = _b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        payload = _b64url(
            json.dumps({"sub": f"u-{rng.randrange(10**6)}", "iat": 1764500000}).encode()
        )
        sig = "" if alg == "none" else _b64url(rng.randbytes(32))
        token = f"{header}.{payload}.{sig}"
        out.append(_p(f"jwt={token}" if i % 3 == 0 else f"got {token} back", "jwt", payload))
    alnum = string.ascii_letters + string.digits
    for i in range(20):
        pick = "".join(rng.choice(alnum) for _ in range(40))
        token = [
            f"ghp_{pick[:36]}",
            f"github_pat_11{pick[:20]}_{pick[20:40]}",
            f"sk-{pick[:48]}",
            f"sk-ant-api03-{pick}",
            f"xoxp-{rng.randrange(10**10)}-{rng.randrange(10**12)}-{pick[:32]}",
            f"sk_test_{pick[:24]}",
            f"AKIA{''.join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))}",
            f"glpat-{pick[:20]}",
            f"hf_{pick[:34]}",
            f"xapp-1-A{pick[:10]}-{rng.randrange(10**12)}-{pick[10:30]}",
        ][i % 10]
        out.append(_p(f"using key {token} for the call", "api_key", token))
    for i in range(20):
        key = _SECRET_KEYS[i]
        sample: object = [
            f"v-{rng.randrange(10**8)}",
            rng.randrange(10**3, 10**9),
            [f"a{rng.randrange(10**6)}", f"b{rng.randrange(10**6)}"],
            {"inner": f"n{rng.randrange(10**6)}"},
        ][i % 4]
        text = json.dumps({"tool": "search", key: sample})
        if isinstance(sample, dict):
            secrets: tuple[str, ...] = (str(sample["inner"]),)
        elif isinstance(sample, list):
            secrets = tuple(str(v) for v in sample)
        else:
            secrets = (str(sample),)
        out.append(_p(text, "password" if "pass" in key else "secret", *secrets, as_json=True))
    for i in range(15):
        area = _AREA_CODES[i % len(_AREA_CODES)]
        number = f"{rng.randrange(200, 999)}-{rng.randrange(1000, 9999)}"
        written = [
            f"({area}) {number}",
            f"+1 {area} {number.replace('-', ' ')}",
            f"{area}-{number}",
        ][i % 3]
        out.append(_p(f"call me at {written} after 5", "phone", number[-4:]))
    for i in range(15):
        user = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randrange(4, 10)))
        domain = rng.choice(["example.com", "mail.example.org", "corp.example.net"])
        at = "\uff20" if i % 5 == 0 else "@"
        out.append(_p(f"reply to {user}.{i}{at}{domain}", "email", f"{user}.{i}"))
    for i in range(10):
        pw = "".join(rng.choice(alnum) for _ in range(12))
        scheme = ["redis", "postgres", "mysql", "amqp", "mongodb"][i % 5]
        user = "" if i % 2 else "svc"
        out.append(_p(f"dsn {scheme}://{user}:{pw}@host-{i}:5432/db", "password", pw))
    return out


# -- negatives written by hand ---------------------------------------------------------------

_HAND_NEGATIVES: list[str] = [
    # issue #14, "Why"
    "see run 12345678-9012-ac51-2470-90f28a8e62b5",
    "order 20261130-0042 confirmed",
    "invoice 4000-1234-5678 due",
    "build 1.24.3-20261130 ok",
    "run 12345678-9012-3456-7890-123456789012 finished",
    "41111111-1111-1111-a111-111111111111",
    "semver 2.0.0-rc.1+build.20261130.1234",
    "v10.4.12 released 2026-11-30",
    "python 3.11.9 on linux",
    "2026-11-30T04:05:58.123456Z",
    "2026-11-30 04:05:58+01:00",
    "Mon Nov 30 04:04:58 UTC 2026",
    "at 30/11/2026 04:05",
    "epoch ms 1764475498123 and us 1764475498123456",
    "client 192.168.10.254 via 10.0.0.1",
    "ipv6 2001:db8:85a3::8a2e:370:7334",
    "link-local fe80::1ff:fe23:4567:890a%eth0",
    "total $1,299.99 incl. VAT",
    "price 4 000,00 EUR",
    "cost 0.0042 USD for 1234 tokens",
    "score 0.4111111111111111",
    "latency_ms=812.5 attempt=2",
    "/var/lib/agentstream/spool/segment-000123.log",
    "C:\\Users\\agent\\AppData\\Local\\Temp\\run-42.json",
    "SELECT tenant_id, count() FROM tool_calls WHERE event_time > now() - INTERVAL 1 HOUR "
    "GROUP BY tenant_id",
    "INSERT INTO orders (id, total) VALUES (20261130, 129.99)",
    'Traceback (most recent call last):\n  File "/app/agent/tools.py", line 42, in search\n'
    '    raise TimeoutError("upstream 504")\nTimeoutError: upstream 504',
    "  at com.example.Agent.run(Agent.java:128)\n"
    "  at java.base/java.lang.Thread.run(Thread.java:1583)",
    "pod planner-7d9f8b6c5d-x2x9z restarted",
    "pod sink-worker-0 ready on node ip-10-0-12-34.ec2.internal",
    "image ghcr.io/acme/agent@sha256:"
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "max_tokens=4096",
    '{"max_tokens": 4096, "temperature": 0.2}',
    '{"token_count": 512, "tokens": 77}',
    '{"sort_key": "event_time", "partition_key": "run_id"}',
    '{"auth_method": "oauth2", "session_ttl": 3600}',
    '{"password_policy": "min 12 chars"}',
    "tokens used: 1234",
    "the key insight is caching",
    "password reset email sent to user u-17",
    "ticket 555-0100-1234 closed",
    "ref 07-2026-11-30-0042",
    "order #202611300042",
    "shipment 1Z999AA10123456784",
    "isbn 978-3-16-148410-0",
    "phone-like id 123-456-7890-12",
    "queue depth 1024 2048 4096",
    "matrix 1 2 3 4 5 6 7 8 9",
    "ULID 01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
    "traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "version 20261130.4111111111111111",
    "wait 1500 ms then retry 3 times",
    "GB weather 12 degrees, DE 14 degrees",
    "user u-17 asked about weather in paris",
    "email me later",
    "send it @channel-ops",
    "decorator @app.route('/health')",
    "git remote set-url origin https://github.com/acme/agent.git",
    "see https://example.com/path?q=1&page=2#frag",
    "tool_call status=ERROR error_code=429",
    "count 4111111111111112 not a card (bad Luhn)",
    "id 1234567890123456 is an epoch-ish id",
]


def _generated_negatives(rng: random.Random) -> list[str]:
    out: list[str] = []
    for _ in range(100):
        out.append(f"run {uuid.UUID(int=rng.getrandbits(128), version=4)}")
    crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    for _ in range(15):
        out.append("ulid " + "".join(rng.choice(crockford) for _ in range(26)))
    for _ in range(15):
        out.append(f"trace_id={rng.getrandbits(128):032x} span_id={rng.getrandbits(64):016x}")
    for _ in range(10):
        out.append(f"git sha {rng.getrandbits(160):040x}")
    for _ in range(10):
        out.append(f"sha256:{rng.getrandbits(256):064x}")
    for _ in range(15):
        day = f"2026{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        out.append(f"order {day}-{rng.randrange(10000):04d} confirmed")
    for _ in range(15):
        out.append(
            f"invoice {rng.randrange(1000, 5000)}-{rng.randrange(10000):04d}-"
            f"{rng.randrange(10000):04d} due"
        )
    for _ in range(10):
        out.append(
            f"build {rng.randrange(10)}.{rng.randrange(40)}.{rng.randrange(20)}-"
            f"2026{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
            f"+sha.{rng.getrandbits(28):07x} ok"
        )
    for _ in range(10):
        out.append(
            f"at 2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T"
            f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}."
            f"{rng.randrange(10**6):06d}Z"
        )
    for _ in range(10):
        octets = ".".join(str(rng.randrange(256)) for _ in range(4))
        out.append(f"peer {octets}:{rng.randrange(1024, 65536)}")
    for _ in range(5):
        png = b"\x89PNG\r\n\x1a\n" + rng.randbytes(90)
        out.append(f"data:image/png;base64,{base64.b64encode(png).decode()}")
    for _ in range(5):
        out.append(f"price ${rng.randrange(1, 10000)}.{rng.randrange(100):02d}")
    return out


def _build() -> tuple[list[Positive], list[str]]:
    rng = random.Random(14)
    return _HAND_POSITIVES + _generated_positives(rng), _HAND_NEGATIVES + _generated_negatives(rng)


POSITIVES, NEGATIVES = _build()


@dataclass(frozen=True)
class Score:
    """What a redactor did to the corpus."""

    leaked: list[tuple[Positive, str]]
    damaged: list[tuple[str, str]]
    positives: int
    negatives: int

    @property
    def recall(self) -> float:
        return (self.positives - len(self.leaked)) / self.positives

    @property
    def precision(self) -> float:
        found = self.positives - len(self.leaked)
        return found / (found + len(self.damaged)) if found else 0.0


def score(redact_text: object, redact_json: object) -> Score:
    """Run the corpus through the two functions (``Redactor.text`` / ``Redactor.json_text``)."""
    assert callable(redact_text)
    assert callable(redact_json)
    leaked: list[tuple[Positive, str]] = []
    for positive in POSITIVES:
        out = (redact_json if positive.json else redact_text)(positive.text)
        if any(secret in out for secret in positive.secrets) or "[REDACTED:" not in out:
            leaked.append((positive, out))
    damaged = [(text, out) for text in NEGATIVES if (out := redact_text(text)) != text]
    return Score(leaked, damaged, len(POSITIVES), len(NEGATIVES))
