"""PII redaction for free text and JSON-like values.

Applied by the Emitter before an event leaves the agent's process and again by
the processors. Each finding is replaced by ``[REDACTED:<kind>]`` so analysts
still see that something was there and what it was.

Kinds: ``email``, ``phone`` (9-15 digits with a leading ``+`` or separators; not a date or an
IPv4 address), ``card`` (15-19
digits that pass the Luhn check; shorter runs are too often ids or epoch milliseconds),
``bearer`` (``Authorization: Bearer ...``), ``api_key`` (well-known key shapes
and ``api_key=...``-style pairs), ``password`` (``password=...`` pairs; the key
is kept, the value goes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

__all__ = ["REDACTION_KINDS", "Redactor", "luhn_valid"]

REDACTION_KINDS: Final = ("password", "bearer", "api_key", "email", "card", "phone")

_SECRET_KEYS = re.compile(
    r"(?i)^(pass(word)?|passwd|pwd|secret|client_secret|token|access_token|refresh_token|"
    r"api[_-]?key|apikey|authorization|auth|private_key)$"
)

_NUMBER_RUN: Final = r"(?<![\w+./-])\+?(?:\(\d{1,4}\)[ .-]?)?\d(?:[ .-]?\(?\d\)?){7,22}(?![\w:/])"

_PATTERNS: Final[dict[str, str]] = {
    # key=value / key: value pairs; group "keep" survives
    "password": r"(?P<keep>(?i:\b(?:password|passwd|pwd|pass)\b)\s*[=:]\s*)"
    r"(?:\"[^\"]*\"|'[^']*'|[^\s&,;\"']+)",
    "bearer": r"(?P<keep>(?i:\bbearer)\s+)[A-Za-z0-9._~+/=-]{8,}",
    "api_key": r"(?P<keep>(?i:\b(?:api[_-]?key|apikey|access[_-]?token|secret|token)\b)"
    r"\s*[=:]\s*)[\"']?[A-Za-z0-9._~+/=-]{8,}[\"']?"
    r"|\b(?:sk|pk|rk)-(?:[A-Za-z0-9_-]{2,12}-)?[A-Za-z0-9]{16,}\b"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}\b"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}\b"
    r"|\bAIza[0-9A-Za-z_-]{35}\b",
    "email": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
    # cards and phones share one pass over runs of digits; _classify_number decides
    "card": _NUMBER_RUN,
    "phone": _NUMBER_RUN,
}

_PHONE_MIN_DIGITS: Final = 9
_PHONE_MAX_DIGITS: Final = 15  # E.164
#: dates and IPv4 addresses look like phone numbers but are not
_NOT_A_PHONE: Final = re.compile(
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}.*|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}.*|\d{1,3}(?:\.\d{1,3}){3}"
)
_LONG_NUMBER: Final = re.compile(r"\d[\d ().+-]{7,}\d")


def _classify_number(text: str) -> str | None:
    """``card`` for a Luhn-valid 13-19 digit run, ``phone`` for a plausible phone number."""
    digits = re.sub(r"\D", "", text)
    if 15 <= len(digits) <= 19 and luhn_valid(digits) and not text.startswith("+"):
        return "card"
    bare = digits == text  # a bare run of digits is more often an id or a timestamp
    if (
        _PHONE_MIN_DIGITS <= len(digits) <= _PHONE_MAX_DIGITS
        and not bare
        and not _NOT_A_PHONE.fullmatch(text)
    ):
        return "phone"
    return None


def _contains(*needles: str) -> Callable[[str, str], bool]:
    return lambda text, low: any(n in low for n in needles)


#: a kind's pattern runs only where its gate (text, lowercased text) says it may match
_GATES: Final[dict[str, Callable[[str, str], bool]]] = {
    "password": _contains("pass", "pwd"),
    "bearer": _contains("bearer"),
    "api_key": _contains(
        "key", "token", "secret", "sk-", "pk-", "rk-", "akia", "gh", "xox", "aiza"
    ),
    "email": _contains("@"),
    "card": lambda text, low: _LONG_NUMBER.search(text) is not None,
    "phone": lambda text, low: _LONG_NUMBER.search(text) is not None,
}


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` (only 0-9) passes the Luhn checksum."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


class Redactor:
    """Replaces PII in text. Each kind has a cheap gate, so clean text costs little."""

    def __init__(
        self,
        kinds: Iterable[str] = REDACTION_KINDS,
        extra_patterns: Mapping[str, str] | None = None,
    ) -> None:
        chosen = list(kinds)
        unknown = sorted(set(chosen) - set(_PATTERNS))
        if unknown:
            raise ValueError(f"unknown redaction kinds: {', '.join(unknown)}")
        passes: list[tuple[str, Callable[[str, str], bool] | None, re.Pattern[str]]] = [
            (kind, _GATES[kind], re.compile(_PATTERNS[kind])) for kind in chosen
        ]
        for name, pattern in (extra_patterns or {}).items():
            passes.append((name, None, re.compile(pattern)))
        # cards and phones share one pattern: run it once
        if "card" in chosen and "phone" in chosen:
            passes = [p for p in passes if p[0] != "phone"]
        self._passes = passes
        self._kinds = frozenset(chosen)

    def _replacer(self, kind: str) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            text = match.group(0)
            if kind in ("card", "phone"):
                found = _classify_number(text)
                if found is None or found not in self._kinds:
                    return text
                return f"[REDACTED:{found}]"
            keep = match.groupdict().get("keep")
            return f"{keep or ''}[REDACTED:{kind}]"

        return replace

    def text(self, value: str) -> str:
        """``value`` with every finding replaced."""
        if not value:
            return value
        low = value.lower()
        for kind, gate, regex in self._passes:
            if gate is not None and not gate(value, low):
                continue
            value = regex.sub(self._replacer(kind), value)
        return value

    def value(self, value: Any) -> Any:
        """A JSON-like value with strings redacted; values under secret-looking keys dropped."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if isinstance(key, str) and _SECRET_KEYS.match(key) and item not in (None, ""):
                    out[key] = "[REDACTED:secret]"
                else:
                    out[key] = self.value(item)
            return out
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value
