"""PII and secret redaction for free text, JSON text and JSON-like values.

Applied by the Emitter before an event leaves the agent's process and again by the
sink before a row is stored, with the same rules. A finding is replaced by
``[REDACTED:<kind>]`` so analysts still see that something was there and what it
was; redacting redacted text changes nothing (idempotent).

Candidates are found by patterns and replaced only once validated:

=============  ===============================================================================
kind           what, and how a candidate is validated
=============  ===============================================================================
private_key    PEM private-key blocks (RSA, EC, OPENSSH, ENCRYPTED, PGP), also cut short
webhook        Slack (``hooks.slack.com``) and Discord incoming-webhook URLs
password       the password of ``scheme://user:pw@host`` / ``scheme://:pw@host`` URLs and
               connection strings; values under password-named keys
bearer         ``Authorization:`` / ``Proxy-Authorization:`` credentials of any scheme
               (Basic, Bearer, Digest, token ...), a bare ``Bearer <token>``
jwt            ``header.payload.signature`` (empty signature: alg none) whose header
               decodes to JSON naming ``alg`` or ``typ``
api_key        documented vendor shapes: OpenAI/Anthropic ``sk-``/``sk-ant-``, Stripe
               ``sk_live_``/``whsec_``, AWS access key ids, GitHub ``ghp_``/``github_pat_``,
               GitLab, npm, Hugging Face, Slack ``xox?-``/``xapp-``, Google ``AIza``
aws_secret     40 base64 characters of mixed case in text that mentions AWS or a secret
secret         the value under a secret-named key (``api_key``, ``token``, ``cvv``,
               ``session``, ``key``, ``encryption_key`` ...) whatever its type, in
               ``key=value`` text, JSON text and JSON-like values
email          addresses, with ``@``, full-width ``\\uff20`` or small ``\\ufe6b``
iban           the country's registered length and the ISO 7064 mod-97 checksum
card           12-19 digits (spaces, dashes, `` - `` allowed; numbers in JSON too) with a
               card network's prefix and length, and a valid Luhn digit
phone          digits with separators or a leading ``+``, valid for libphonenumber
               (``phonenumberslite``) in the configured region at the configured leniency
=============  ===============================================================================

Cards, phones and IBANs are never looked for inside UUIDs, long hex strings, ISO
dates and times, IPv4 addresses or version strings.
"""

from agentstream.core.redact._keys import secret_key
from agentstream.core.redact._redactor import REDACTION_KINDS, Counts, Redactor
from agentstream.core.redact._validate import (
    PHONE_LENIENCIES,
    PhoneLeniency,
    card_number,
    iban_valid,
    luhn_valid,
)

__all__ = [
    "PHONE_LENIENCIES",
    "REDACTION_KINDS",
    "Counts",
    "PhoneLeniency",
    "Redactor",
    "card_number",
    "iban_valid",
    "luhn_valid",
    "secret_key",
]
