"""The :class:`Redactor`: find candidates, validate them, replace them, count them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from agentstream.core.config import REDACT_KINDS
from agentstream.core.redact._keys import PASSWORD, secret_key
from agentstream.core.redact._patterns import (
    AWS_SECRET,
    CARD_RUN,
    EMAIL,
    IBAN,
    KEY_VALUE,
    LONG_NUMBER,
    MARKER,
    MAY_BE_IBAN,
    PHONE_RUN,
    PROTECTED,
    SHAPES,
)
from agentstream.core.redact._screen import candidates
from agentstream.core.redact._validate import (
    IBAN_LENGTHS,
    PhoneLeniency,
    PhoneValidator,
    aws_secret_shape,
    card_number,
    iban_valid,
    jwt_header_valid,
    token_mixes_letters_and_digits,
)

__all__ = ["REDACTION_KINDS", "Counts", "Redactor"]

#: every built-in kind, in the order the text passes run (written once, in the settings)
REDACTION_KINDS: Final = REDACT_KINDS

#: replacements by kind
Counts = dict[str, int]

_VALIDATORS: Final[dict[str, Callable[[str], bool]]] = {
    "jwt": jwt_header_valid,
    "mixed": token_mixes_letters_and_digits,
}
_NON_DIGITS: Final = re.compile(r"\D")


def _may_hold(text: str, low: str) -> bool:
    """False when ``text`` (``low``: lower-cased) certainly holds nothing to redact.

    Plain substring tests, unrolled (C speed, ~30 ns each): a loop over the needles or
    one regex alternation costs several times more, and this runs on every event. Words
    that matter only as keys (``pin``, ``cvv``, ``session`` ...) are looked for only when
    the text has a ``:`` or ``=``; IBANs, cards and phones all have a long run of digits.
    """
    if (
        "@" in low
        or "://" in low
        or "key" in low
        or "token" in low
        or "secret" in low
        or "pass" in low
        or "auth" in low
        or "bearer" in low
        or "eyj" in low
        or "aiza" in low
        or "akia" in low
        or "asia" in low
        or "aws" in low
        or (  # sk-, xoxb-, xapp-, glpat-, -----BEGIN
            "-" in low
            and ("sk-" in low or "-----" in low or "xox" in low or "xapp" in low or "glpat" in low)
        )
        or (not low.isascii() and ("\uff20" in low or "\ufe6b" in low))
    ):
        return True
    if "_" in low and (
        "_live_" in low or "_test_" in low or "whsec_" in low or "gh" in low or "npm_" in low
        or "hf_" in low
    ):  # fmt: skip
        return True
    if ("=" in low or ":" in low) and (
        "pw" in low
        or "cred" in low
        or "session" in low
        or "cookie" in low
        or "cv" in low
        or "pin" in low
        or "otp" in low
        or "sig" in low
    ):
        return True
    return LONG_NUMBER.search(text) is not None


def _count(counts: Counts | None, kind: str) -> None:
    if counts is not None:
        counts[kind] = counts.get(kind, 0) + 1


def _marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


class Redactor:
    """Replaces PII and secrets in text, JSON text and JSON-like values.

    Each finding becomes ``[REDACTED:<kind>]``; the methods add one to ``counts[kind]``
    per replacement when given a ``counts`` dict. Redacting redacted text changes
    nothing and counts nothing.
    """

    def __init__(
        self,
        kinds: Iterable[str] = REDACTION_KINDS,
        extra_patterns: Mapping[str, str] | None = None,
        *,
        phone_region: str = "US",
        phone_leniency: PhoneLeniency = "VALID",
    ) -> None:
        chosen = frozenset(kinds)
        unknown = sorted(chosen - set(REDACTION_KINDS))
        if unknown:
            raise ValueError(
                f"unknown redaction kinds: {', '.join(unknown)}; "
                f"known: {', '.join(REDACTION_KINDS)}"
            )
        extra: list[tuple[str, re.Pattern[str]]] = []
        for name, pattern in (extra_patterns or {}).items():
            try:
                extra.append((name, re.compile(pattern)))
            except re.error as exc:
                raise ValueError(f"redaction pattern {name!r} is not a regex: {exc}") from exc
        self._kinds = chosen
        self._shapes = [s for s in SHAPES if s[0] in chosen]
        self._extra = extra
        self._phone = PhoneValidator(phone_region, phone_leniency)

    @property
    def kinds(self) -> frozenset[str]:
        """The built-in kinds this redactor looks for."""
        return self._kinds

    # -- text ------------------------------------------------------------------------------

    def may_match(self, value: str, *, json_keys: bool = False) -> bool:
        """False when ``value`` certainly holds nothing to redact (a cheap scan).

        ``json_keys`` is accepted for compatibility: secret-named keys are always looked for.
        """
        if self._extra:
            return True
        return _may_hold(value, value.lower())

    def screen(self, values: Sequence[str | None]) -> list[int]:
        """Indices (ascending) of ``values`` that may hold something to redact: every
        value :meth:`may_match` passes, maybe more (one vectorised scan of the column;
        see :mod:`agentstream.core.redact._screen`). The rest need no redaction pass;
        ``None`` and empty values are never candidates.
        """
        if self._extra:
            return [i for i, value in enumerate(values) if value]
        return candidates(values, LONG_NUMBER.pattern, self.may_match)

    def text(self, value: str, counts: Counts | None = None) -> str:
        """``value`` with every finding replaced."""
        if not value:
            return value
        if _may_hold(value, value.lower()):
            value = self._builtin(value, counts)
        for name, regex in self._extra:
            value = self._sub(regex, value, name, 0, None, counts)
        return value

    def _builtin(self, value: str, counts: Counts | None) -> str:
        kinds = self._kinds
        low = value.lower()
        for kind, regex, group, check in self._shapes:
            value = self._sub(regex.regex, value, kind, group, check, counts)
        if "aws_secret" in kinds and ("aws" in low or "secret" in low or "asia" in low):
            value = self._sub(AWS_SECRET.regex, value, "aws_secret", 0, "aws", counts)
        if ("secret" in kinds or PASSWORD in kinds) and ("=" in value or ":" in value):
            value = KEY_VALUE.regex.sub(lambda m: self._key_value(m, counts), value)
        if "email" in kinds and ("@" in value or "\uff20" in value or "\ufe6b" in value):
            value = self._sub(EMAIL.regex, value, "email", 0, None, counts)
        if LONG_NUMBER.search(value) is not None:
            if "iban" in kinds and MAY_BE_IBAN.regex.search(value) is not None:
                value = IBAN.regex.sub(lambda m: self._iban(m, counts), value)
            if "card" in kinds or "phone" in kinds:
                value = self._numbers(value, counts)
        return value

    def _sub(
        self,
        regex: re.Pattern[str],
        value: str,
        kind: str,
        group: int | str,
        check: str | None,
        counts: Counts | None,
    ) -> str:
        validate = aws_secret_shape if check == "aws" else _VALIDATORS.get(check or "")

        def replace(match: re.Match[str]) -> str:
            found = match.group(group)
            if MARKER.fullmatch(found) or (validate is not None and not validate(found)):
                return match.group(0)
            _count(counts, kind)
            whole = match.group(0)
            if group == 0:
                return _marker(kind)
            start, end = match.span(group)
            offset = match.start()
            return whole[: start - offset] + _marker(kind) + whole[end - offset :]

        return regex.sub(replace, value)

    def _key_value(self, match: re.Match[str], counts: Counts | None) -> str:
        kind = secret_key(match.group("key"))
        if kind is None or kind not in self._kinds:
            return match.group(0)
        value = match.group("val")
        _count(counts, kind)
        quote = value[0] if value[0] in "\"'" and value[-1] == value[0] else ""
        start = match.start("val") - match.start()
        return f"{match.group(0)[:start]}{quote}{_marker(kind)}{quote}"

    def _iban(self, match: re.Match[str], counts: Counts | None) -> str:
        text = match.group(0)
        length = IBAN_LENGTHS.get(text[:2])
        if length is None:
            return text
        seen = 0
        for cut, char in enumerate(text):
            if char != " ":
                seen += 1
            if seen == length:
                rest = text[cut + 1 :]
                if rest and rest[0] != " ":
                    return text  # the run goes on: not this IBAN
                if not iban_valid(text[: cut + 1].replace(" ", "")):
                    return text
                _count(counts, "iban")
                return _marker("iban") + rest
        return text

    def _numbers(self, value: str, counts: Counts | None) -> str:
        """Cards (issuer, length, Luhn) and phone numbers (libphonenumber), outside ids."""
        protected: list[tuple[int, int]] | None = None
        found: list[tuple[int, int, str]] = []
        kinds = self._kinds
        for kind, lazy in (("card", CARD_RUN), ("phone", PHONE_RUN)):
            if kind not in kinds:
                continue
            for match in lazy.regex.finditer(value):
                start, end = match.span()
                if any(s < end and start < e for s, e, _ in found):
                    continue
                if protected is None:
                    protected = [m.span() for m in PROTECTED.regex.finditer(value)]
                if any(s < end and start < e for s, e in protected):
                    continue
                text = match.group(0)
                if kind == "card":
                    ok = card_number(_NON_DIGITS.sub("", text))
                else:
                    ok = 7 <= len(_NON_DIGITS.sub("", text)) <= 15 and self._phone(text)
                if ok:
                    found.append((start, end, kind))
        if not found:
            return value
        found.sort()
        parts: list[str] = []
        last = 0
        for start, end, kind in found:
            parts.append(value[last:start])
            parts.append(_marker(kind))
            _count(counts, kind)
            last = end
        parts.append(value[last:])
        return "".join(parts)

    # -- JSON ------------------------------------------------------------------------------

    def value(self, value: Any, counts: Counts | None = None) -> Any:
        """A JSON-like value with strings redacted, card numbers dropped and the value under
        a secret-named key replaced whatever its type (string, number, list, object)."""
        if isinstance(value, str):
            return self.text(value, counts)
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                kind = secret_key(key) if isinstance(key, str) else None
                if kind is not None and kind in self._kinds and _is_secret_value(item):
                    if not (isinstance(item, str) and MARKER.fullmatch(item)):
                        _count(counts, kind)
                    out[key] = _marker(kind)
                else:
                    out[key] = self.value(item, counts)
            return out
        if isinstance(value, list | tuple):
            return [self.value(item, counts) for item in value]
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and "card" in self._kinds
            and 10**11 <= value < 10**19
            and card_number(str(value))
        ):
            _count(counts, "card")
            return _marker("card")
        return value

    def json_text(self, text: str, counts: Counts | None = None) -> str:
        """JSON text with its values redacted (see :meth:`value`); other text as plain text."""
        if not text:
            return text
        if not self._extra and not _may_hold(text, text.lower()):
            return text
        try:
            parsed = json.loads(text)
        except ValueError:
            return self.text(text, counts)
        found: Counts = {}
        redacted = self.value(parsed, found)
        if not found:
            return text
        if counts is not None:
            for kind, n in found.items():
                counts[kind] = counts.get(kind, 0) + n
        return json.dumps(redacted, ensure_ascii=False, separators=(",", ":"))


def _is_secret_value(item: Any) -> bool:
    if isinstance(item, bool) or item is None:
        return False
    if isinstance(item, str | bytes | list | tuple | dict):
        return len(item) > 0
    return True
