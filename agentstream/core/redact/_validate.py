"""Validators: a candidate found by a pattern is replaced only when one of these accepts it.

* cards: Luhn checksum plus the issuer's prefix and length (:func:`card_number`). The
  Luhn check is five lines, written here; ``python-stdnum`` has it too, but it installs
  6 MB (mostly data files this needs none of), which the thin install cannot afford;
* IBANs: the country's registered length and the ISO 7064 mod-97 checksum
  (:func:`iban_valid`), for the same reason;
* phone numbers: Google's libphonenumber (``phonenumberslite``), imported only when a
  phone-like candidate is first seen, with a default region and a leniency
  (:class:`PhoneValidator`);
* JWTs: the header decodes to a JSON object naming its ``alg`` or ``typ``;
* AWS secret access keys: 40 base64 characters mixing cases and digits.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Final, Literal

__all__ = [
    "PHONE_LENIENCIES",
    "PhoneLeniency",
    "PhoneValidator",
    "aws_secret_shape",
    "card_number",
    "iban_valid",
    "jwt_header_valid",
    "luhn_valid",
    "token_mixes_letters_and_digits",
]

PhoneLeniency = Literal["POSSIBLE", "VALID", "STRICT_GROUPING", "EXACT_GROUPING"]
PHONE_LENIENCIES: Final = ("POSSIBLE", "VALID", "STRICT_GROUPING", "EXACT_GROUPING")


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


#: (lowest prefix, highest prefix, lengths): the issuer identification ranges of the card
#: networks (ISO/IEC 7812), the prefix compared as an integer of the same number of digits
_ISSUERS: Final[tuple[tuple[int, int, frozenset[int]], ...]] = (
    (4, 4, frozenset({13, 16, 19})),  # Visa (13: old cards)
    (51, 55, frozenset({16})),  # Mastercard
    (2221, 2720, frozenset({16})),  # Mastercard 2-series
    (34, 34, frozenset({15})),  # American Express
    (37, 37, frozenset({15})),
    (6011, 6011, frozenset(range(16, 20))),  # Discover
    (644, 649, frozenset(range(16, 20))),
    (65, 65, frozenset(range(16, 20))),
    (62, 62, frozenset(range(16, 20))),  # UnionPay
    (3528, 3589, frozenset(range(16, 20))),  # JCB
    (300, 305, frozenset(range(14, 20))),  # Diners Club
    (36, 36, frozenset(range(14, 20))),
    (38, 39, frozenset(range(16, 20))),
    (2200, 2204, frozenset(range(16, 20))),  # Mir
    (5018, 5018, frozenset(range(12, 20))),  # Maestro
    (5020, 5020, frozenset(range(12, 20))),
    (5038, 5038, frozenset(range(12, 20))),
    (5893, 5893, frozenset(range(12, 20))),
    (6304, 6304, frozenset(range(12, 20))),
    (6759, 6759, frozenset(range(12, 20))),
    (6761, 6763, frozenset(range(12, 20))),
)


def card_number(digits: str) -> bool:
    """True for a payment card number: a known issuer prefix and length, and Luhn-valid."""
    n = len(digits)
    if not 12 <= n <= 19:
        return False
    for low, high, lengths in _ISSUERS:
        if n in lengths and low <= int(digits[: len(str(low))]) <= high:
            return luhn_valid(digits)
    return False


#: IBAN length per country (the SWIFT IBAN registry)
IBAN_LENGTHS: Final[dict[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
    "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_valid(compact: str) -> bool:
    """True for an IBAN without spaces: its country's length and mod 97 == 1 (ISO 7064)."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def jwt_header_valid(token: str) -> bool:
    """True when the first segment of ``token`` is base64url JSON naming ``alg`` or ``typ``."""
    head = token.split(".", 1)[0]
    try:
        decoded: Any = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        return False
    return isinstance(decoded, dict) and ("alg" in decoded or "typ" in decoded)


def aws_secret_shape(token: str) -> bool:
    """40 base64 characters with upper case, lower case and a digit or ``/``/``+``.

    Git SHAs (lower-case hex) and words do not pass.
    """
    return (
        len(token) == 40
        and any(c.isupper() for c in token)
        and any(c.islower() for c in token)
        and any(c.isdigit() or c in "/+" for c in token)
    )


def token_mixes_letters_and_digits(token: str) -> bool:
    """True when ``token`` has both a letter and a digit (random keys do; slugs rarely)."""
    return any(c.isdigit() for c in token) and any(c.isalpha() for c in token)


class PhoneValidator:
    """libphonenumber on a candidate: accepted when a match at ``leniency`` spans it all.

    ``phonenumbers`` is imported on the first candidate, so ``import agentstream`` and
    text without phone-like numbers never load it.
    """

    def __init__(self, region: str = "US", leniency: PhoneLeniency = "VALID") -> None:
        if leniency not in PHONE_LENIENCIES:
            raise ValueError(f"unknown phone leniency {leniency!r}; known: {PHONE_LENIENCIES}")
        self.region = region.upper()
        self.leniency = leniency
        self._matcher: Any = None
        self._level: Any = None

    def _load(self) -> None:
        from phonenumbers import Leniency, PhoneNumberMatcher

        self._level = getattr(Leniency, self.leniency)
        self._matcher = PhoneNumberMatcher

    def __call__(self, candidate: str) -> bool:
        if self._matcher is None:
            self._load()
        wanted = candidate.strip()
        return any(
            match.raw_string == wanted
            for match in self._matcher(wanted, self.region, leniency=self._level)
        )
