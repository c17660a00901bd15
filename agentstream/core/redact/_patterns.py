"""The patterns that find candidates, one or more per kind, in the order they run.

Every value group refuses to start at a redaction marker (``[REDACTED:``) and
quantifiers that end a value are possessive, so a second pass over redacted
text finds nothing new (redaction is idempotent).

Patterns are compiled on first use (:class:`Lazy`): compiling them all costs more
than the rest of ``import agentstream.core.redact``, and clean text needs two.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "AWS_SECRET",
    "CARD_RUN",
    "EMAIL",
    "IBAN",
    "KEY_VALUE",
    "LONG_NUMBER",
    "MARKER",
    "MAY_BE_IBAN",
    "PHONE_RUN",
    "PROTECTED",
    "SHAPES",
    "Lazy",
]


class Lazy:
    """A regex compiled on first use (``.regex``)."""

    __slots__ = ("_compiled", "_flags", "_pattern")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._pattern = pattern
        self._flags = flags
        self._compiled: re.Pattern[str] | None = None

    @property
    def regex(self) -> re.Pattern[str]:
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = re.compile(self._pattern, self._flags)
        return compiled


#: a redaction marker, as this package writes it
MARKER: Final = re.compile(r"\[REDACTED:[a-z0-9_]+\]")
_NOT_MARKER: Final = r"(?!\[REDACTED:)"
_NOT_LITERAL: Final = r"(?!(?:null|true|false|None|True|False)\b)"

#: (kind, pattern, group holding the value or 0 for the whole match, validator name or None)
SHAPES: Final[tuple[tuple[str, Lazy, int | str, str | None], ...]] = (
    # PEM private keys (RSA, EC, OPENSSH, ENCRYPTED, PGP ... BLOCK), also cut short
    (
        "private_key",
        Lazy(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"|[A-Za-z0-9+/=\s\\:,.-]*+)",
            re.DOTALL,
        ),
        0,
        None,
    ),
    # incoming-webhook URLs: the URL is the credential
    (
        "webhook",
        Lazy(
            r"https?://(?:hooks\.slack\.com/(?:services|workflows|triggers)"
            r"|(?:[a-z]+\.)?discord(?:app)?\.com/api/webhooks)/[A-Za-z0-9_/-]++"
        ),
        0,
        None,
    ),
    # the password of scheme://user:password@host and scheme://:password@host
    (
        "password",
        Lazy(
            r"(?<![\w+.-])[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#\[\]\"']*:"
            r"(?P<val>" + _NOT_MARKER + r"[^\s@/?#\"']++)(?=@)"
        ),
        "val",
        None,
    ),
    # Authorization / Proxy-Authorization headers of any scheme, and a bare Bearer token
    (
        "bearer",
        Lazy(
            r"(?<![\w-])(?i:(?:proxy-)?authorization)[\"']?\s*[:=]\s*[\"']?"
            r"(?:[A-Za-z][\w-]*\s+(?=[^\s\[\"']))?"
            r"(?P<val>" + _NOT_MARKER + r"[^\s\"',;]++)(?!\s*\[REDACTED:)"
        ),
        "val",
        None,
    ),
    (
        "bearer",
        Lazy(r"(?<![\w-])(?i:bearer)\s+(?P<val>" + _NOT_MARKER + r"[A-Za-z0-9._~+/=-]{8,}+)"),
        "val",
        None,
    ),
    # JWTs: header.payload.signature, the signature empty for alg none
    (
        "jwt",
        Lazy(r"(?<![\w-])eyJ[A-Za-z0-9_-]++\.[A-Za-z0-9_-]*+\.[A-Za-z0-9_-]*+"),
        0,
        "jwt",
    ),
    # vendor key shapes, each from the vendor's documentation
    (
        "api_key",
        Lazy(
            r"(?<![\w-])(?:"
            r"sk-(?:proj-|ant-(?:api|admin)\d\d-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}+"
            r"|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}+"
            r"|whsec_[A-Za-z0-9+/=]{24,}+"
            r"|gh[pousr]_[A-Za-z0-9]{36,}+"
            r"|github_pat_[A-Za-z0-9_]{22,}+"
            r"|glpat-[A-Za-z0-9_-]{20,}+"
            r"|npm_[A-Za-z0-9]{36}"
            r"|hf_[A-Za-z0-9]{30,}+"
            r"|xox[abposre]-[A-Za-z0-9-]{10,}+"
            r"|xapp-\d-[A-Za-z0-9-]{10,}+"
            r"|AIza[0-9A-Za-z_-]{35}"
            r")"
        ),
        0,
        "mixed",
    ),
    (
        "api_key",
        Lazy(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
        0,
        None,
    ),
)

#: an AWS secret access key: checked where the text mentions AWS or a secret
AWS_SECRET: Final = Lazy(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")

#: ``key=value`` / ``key: value`` / ``"key": "value"``; the key decides (see ``_keys``)
KEY_VALUE: Final = Lazy(
    r"(?<![\w.-])(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)[\"']?\s*[:=]\s*"
    r"(?P<val>"
    + _NOT_MARKER
    + _NOT_LITERAL
    + r"(?:\"(?!\[REDACTED:[a-z0-9_]+\]\")(?:[^\"\\]|\\.)+\""
    r"|'(?!\[REDACTED:[a-z0-9_]+\]')[^']+'"
    r"|\[[^\[\]]*\]|\{[^{}]*\}|[^\s&,;\"'}\]]++))"
    r"(?!\s*\[REDACTED:)"
)

EMAIL: Final = Lazy(
    r"(?<![\w.%+-])[\w.%+-]+[@\uff20\ufe6b][A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])"
)

MAY_BE_IBAN: Final = Lazy(r"[A-Z]{2}\d\d")
IBAN: Final = Lazy(r"(?<![A-Za-z0-9])[A-Z]{2}\d\d(?: ?[A-Z0-9]){10,30}+")

#: digits that might be a card: 12-19 digits, single spaces or dashes (or `` - ``) between
CARD_RUN: Final = Lazy(
    r"(?<![\d])(?<!\d[ -])(?<!\d - )(?<!\d[.,])\d(?:(?: - |[ -])?\d){11,18}(?![ -]?\d)(?! - \d)"
)
#: a phone-like run: separators or a leading ``+`` (a bare run of digits is an id)
PHONE_RUN: Final = Lazy(
    r"(?:(?<![\w+.])\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,6}){1,5}"
    r"|(?<![\w+.:/#=-])\(\d{2,4}\)[ .-]?\d{2,5}(?:[ .-]\d{2,5}){0,3}"
    r"|(?<![\w+.:/#=-])\d{2,5}(?:[ .-]\d{2,5}){1,4}"
    r")(?![\w.-]?\w|[.:/]\d)"
)
#: cheap pre-check for the two above (and long ids, which the validators reject)
LONG_NUMBER: Final = re.compile(r"\d[\d ().+-]{7,}\d")

#: spans no card, phone or IBAN is looked for in: UUIDs, long hex (digests, trace ids),
#: ISO dates and times, IPv4 addresses, versions
PROTECTED: Final = Lazy(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?<![0-9A-Za-z])(?=[0-9]*[a-fA-F])[0-9a-fA-F]{20,}(?![0-9A-Za-z])"
    r"|\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?(?:Z|[+-]\d\d:?\d\d)?)?"
    r"|(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])"
    r"|(?<![\w.])v?\d{1,3}\.\d{1,3}\.\d{1,3}(?!\d)(?:[-+][0-9A-Za-z.-]+)?"
)
