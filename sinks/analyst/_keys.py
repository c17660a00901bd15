"""API keys: who an analyst request comes from, and what it may do.

A key has a name (the ClickHouse user name clients send), a role (``admin``,
``oncall``, ``tenant``), a tenant for tenant keys, and a secret shown once
when the key is created. The file (``analyst.keys_file``, JSON, mode 0600)
keeps only a per-key random salt and ``HMAC-SHA256(salt, secret)``: the
secrets are 256-bit random tokens, so a slow KDF would add latency to every
request without adding strength. Secrets are compared with
:func:`hmac.compare_digest`.

The role and tenant of a request always come from its key, never from the
request. :class:`KeyStore` re-reads the file when it changes (size, mtime or
inode), so ``agentstream keys create`` / ``revoke`` take effect in a running
worker without a restart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from agentstream.core.errors import AuthenticationFailed, KeyStoreError

__all__ = ["ROLES", "ApiKey", "KeyStore", "Principal", "Role"]

Role = Literal["admin", "oncall", "tenant"]
ROLES: tuple[str, ...] = get_args(Role)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_SECRET_PREFIX = "ask_"  # noqa: S105 - a prefix, not a secret
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Principal:
    """Who a request runs as: a key's name, role and tenant (``key`` empty: the operator)."""

    key: str
    role: Role
    tenant: str | None = None

    @property
    def who(self) -> str:
        return self.key or "operator"


@dataclass(frozen=True)
class ApiKey:
    """One stored key (no secret: only its salted HMAC)."""

    name: str
    role: Role
    tenant: str | None
    salt: str
    digest: str
    created_at: str

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(_digest(self.salt, secret), self.digest)

    @property
    def principal(self) -> Principal:
        return Principal(self.name, self.role, self.tenant)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "tenant": self.tenant,
            "salt": self.salt,
            "hmac_sha256": self.digest,
            "created_at": self.created_at,
        }


def _digest(salt: str, secret: str) -> str:
    return hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()


def check_key_fields(name: str, role: str, tenant: str | None) -> None:
    """Raise :class:`KeyStoreError` for an invalid name, role or tenant."""
    if not _NAME.match(name):
        raise KeyStoreError(
            f"key name {name!r}: 1-64 characters, a letter first, then letters, digits, _ . -"
        )
    if role not in ROLES:
        raise KeyStoreError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if role == "tenant":
        if not tenant:
            raise KeyStoreError("a tenant key needs --tenant")
        if not _TENANT.match(tenant):
            raise KeyStoreError(f"tenant {tenant!r}: letters, digits and _ . : - only")
    elif tenant is not None:
        raise KeyStoreError(f"only tenant keys name a tenant (role {role!r} sees all tenants)")


class KeyStore:
    """The API key file: create, list, revoke, and authenticate requests."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._keys: dict[str, ApiKey] = {}

    # -- reading ---------------------------------------------------------------------------

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyStoreError(f"cannot read the API key file {self.path}: {exc}") from exc
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _load(self) -> dict[str, ApiKey]:
        """The keys, re-read when the file changed since the last read."""
        with self._lock:
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return self._keys
            keys: dict[str, ApiKey] = {}
            if stamp is not None:
                try:
                    payload = json.loads(self.path.read_text("utf-8"))
                    for entry in payload["keys"]:
                        key = ApiKey(
                            name=str(entry["name"]),
                            role=entry["role"],
                            tenant=entry.get("tenant"),
                            salt=str(entry["salt"]),
                            digest=str(entry["hmac_sha256"]),
                            created_at=str(entry.get("created_at", "")),
                        )
                        check_key_fields(key.name, key.role, key.tenant)
                        keys[key.name] = key
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    raise KeyStoreError(
                        f"the API key file {self.path} is unreadable: {exc}"
                    ) from exc
            self._keys, self._stamp = keys, stamp
            return keys

    def keys(self) -> list[ApiKey]:
        """Every key, by name."""
        return sorted(self._load().values(), key=lambda k: k.name)

    def authenticate(self, name: str, secret: str) -> Principal:
        """The principal of key ``name`` if ``secret`` is its secret; else AuthenticationFailed."""
        key = self._load().get(name)
        if key is None:
            # same work as a real check, so a wrong name and a wrong secret look alike
            _digest("00" * 16, secret)
            raise AuthenticationFailed(
                f"{name or 'default'}: Authentication failed: password is incorrect, "
                "or there is no user with such name"
            )
        if not key.matches(secret):
            raise AuthenticationFailed(
                f"{name}: Authentication failed: password is incorrect, "
                "or there is no user with such name"
            )
        return key.principal

    # -- writing ---------------------------------------------------------------------------

    def _write(self, keys: dict[str, ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": _FORMAT_VERSION,
            "keys": [k.to_json() for k in sorted(keys.values(), key=lambda k: k.name)],
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, self.path)

    def create(self, name: str, role: str, tenant: str | None = None) -> tuple[ApiKey, str]:
        """A new key and its secret (the only time the secret exists outside the client)."""
        check_key_fields(name, role, tenant)
        keys = dict(self._load())
        if name in keys:
            raise KeyStoreError(f"a key named {name!r} exists; revoke it first")
        secret = _SECRET_PREFIX + secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        key = ApiKey(
            name=name,
            role=role,  # type: ignore[arg-type]  # checked above
            tenant=tenant,
            salt=salt,
            digest=_digest(salt, secret),
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        keys[name] = key
        self._write(keys)
        return key, secret

    def revoke(self, name: str) -> ApiKey:
        """Remove key ``name``; requests with it are refused from then on."""
        keys = dict(self._load())
        key = keys.pop(name, None)
        if key is None:
            raise KeyStoreError(f"no key named {name!r}")
        self._write(keys)
        return key
