"""Secret-named keys: the value under such a key is dropped whatever its type.

A key is split into words (``db_password``, ``apiKey``, ``X-Api-Key``,
``AWS_SECRET_ACCESS_KEY``). It names a secret when

* a word is a secret word (``password``, ``token``, ``secret``, ``auth``, ``session``,
  ``cvv``, ``pin`` ...), or the whole key is ``key``, or
* two adjacent words make one (``api key``, ``private key``, ``encryption key``,
  ``session id``),

unless a word says the value is *about* the secret, not the secret itself
(``token_count``, ``max_tokens``, ``password_policy``, ``auth_method``,
``session_ttl``): then only a string value is dropped for the password words.
"""

from __future__ import annotations

import itertools
import re
from functools import lru_cache
from typing import Final

__all__ = ["PASSWORD", "SECRET", "secret_key"]

PASSWORD: Final = "password"  # noqa: S105 (a kind, not a password)
SECRET: Final = "secret"  # noqa: S105

_PASSWORD_WORDS: Final = frozenset(
    {"password", "passwd", "passphrase", "pwd", "pass", "passcode", "pw"}
)
_SECRET_WORDS: Final = frozenset(
    {
        "secret",
        "secrets",
        "token",
        "apikey",
        "authorization",
        "auth",
        "credential",
        "credentials",
        "cookie",
        "cookies",
        "session",
        "sessionid",
        "pin",
        "otp",
        "totp",
        "cvv",
        "cvv2",
        "cvc",
        "cvc2",
        "sig",
        "signature",
        "privatekey",
        "accesskey",
        "secretkey",
    }
)
#: the word before ``key`` (``api_key``, ``encryption_key``) that makes it a secret
_KEY_PREFIXES: Final = frozenset(
    {
        "api",
        "private",
        "secret",
        "access",
        "encryption",
        "decryption",
        "signing",
        "master",
        "client",
        "auth",
        "session",
        "ssh",
        "license",
        "account",
        "app",
        "consumer",
        "service",
        "gpg",
        "pgp",
        "hmac",
        "jwt",
        "aes",
        "rsa",
        "crypto",
        "storage",
        "sas",
        "shared",
        "webhook",
        "subscription",
        "admin",
        "root",
        "user",
        "deploy",
    }
)
_ID_PREFIXES: Final = frozenset({"session", "sess"})
#: words that make the key describe a secret rather than hold one
_ABOUT_WORDS: Final = frozenset(
    {
        "count",
        "counts",
        "tokens",
        "limit",
        "max",
        "min",
        "type",
        "types",
        "usage",
        "used",
        "budget",
        "length",
        "len",
        "size",
        "expiry",
        "expires",
        "expiration",
        "expired",
        "ttl",
        "total",
        "policy",
        "method",
        "mode",
        "scheme",
        "provider",
        "kind",
        "enabled",
        "required",
        "status",
        "format",
        "url",
        "uri",
        "endpoint",
        "path",
        "file",
        "name",
        "rotation",
        "rotated",
        "version",
        "algorithm",
        "alg",
        "duration",
        "timeout",
        "level",
        "strength",
        "valid",
        "age",
        "at",
        "reset",
        "changed",
    }
)
_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS: Final = re.compile(r"[^A-Za-z0-9]+")


@lru_cache(maxsize=4096)
def secret_key(key: str) -> str | None:
    """``password`` or ``secret`` when ``key`` names one (the value goes), else None."""
    words = [w.lower() for w in _SEPARATORS.split(_CAMEL.sub("_", key)) if w]
    if not words:
        return None
    if any(w in _ABOUT_WORDS for w in words):
        return None
    if any(w in _PASSWORD_WORDS for w in words):
        return PASSWORD
    if words == ["key"] or any(w in _SECRET_WORDS for w in words):
        return SECRET
    for first, second in itertools.pairwise(words):
        if second == "key" and first in _KEY_PREFIXES:
            return SECRET
        if second == "id" and first in _ID_PREFIXES:
            return SECRET
    return None
