"""API keys and roles: ``user`` < ``reviewer`` < ``admin`` (a higher role may do what a lower one may).

Keys come from a small file (``--keys-file``: JSON or YAML, ``{"keys": [{"key" or "key_sha256", "user",
"role"}]}``), from the store's ``api_keys`` table (``treadle keys add``; kept as SHA-256), from the
server's ``--api-key`` (role ``user``, owner ``api-key``) and ``--admin-api-key`` (role ``admin``, owner
``admin``). With no key configured (the admin key aside) the server is open, as ``make run``: every caller is
``anonymous`` with the admin role (admin-only routes still ask for an admin key). Other code checks roles with :meth:`KeyRing.authorize` (e.g. the
adapter admin API: a key with the admin role is accepted wherever the admin key is).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from treadle.store import Store

log = logging.getLogger("treadle.feedback")
ROLES = ("user", "reviewer", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}


@dataclass(frozen=True)
class Principal:
    user: str
    role: str

    def can(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]


ANONYMOUS = Principal("anonymous", "admin")


def check_role(role: str) -> str:
    if role not in _RANK:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "tdl-" + secrets.token_urlsafe(24)


def bearer_token(headers: dict[str, str] | object) -> str:
    """The key of ``Authorization: Bearer KEY`` (else ``X-Api-Key``), or ''."""
    auth = headers.get("authorization", "")  # type: ignore[union-attr]
    return auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("x-api-key", "")  # type: ignore[union-attr]


def load_keys_file(path: str | Path) -> dict[str, Principal]:
    """key hash -> principal from a JSON or YAML keys file; raises ValueError naming the bad entry."""
    text = Path(path).read_text()
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    out: dict[str, Principal] = {}
    for i, entry in enumerate((data or {}).get("keys", [])):
        where = f"{path}: keys[{i}]"
        if not isinstance(entry, dict) or not entry.get("user") or not (entry.get("key") or entry.get("key_sha256")):
            raise ValueError(f"{where} needs 'user' and 'key' (or 'key_sha256')")
        role = entry.get("role", "user")
        if role not in _RANK:
            raise ValueError(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}")
        h = entry.get("key_sha256") or hash_key(str(entry["key"]))
        out[h] = Principal(str(entry["user"]), role)
    return out


class KeyRing:
    """Resolves a presented key to a :class:`Principal`. Database keys are re-read at most every
    ``refresh_s`` seconds when an unknown key is presented (so ``treadle keys add`` needs no restart)."""

    def __init__(self, store: Store | None = None, keys_file: str | Path | None = None,
                 api_key: str | None = None, admin_key: str | None = None, refresh_s: float = 5.0) -> None:
        self.store, self.refresh_s = store, refresh_s
        self.static: dict[str, Principal] = load_keys_file(keys_file) if keys_file else {}
        if api_key:
            self.static[hash_key(api_key)] = Principal("api-key", "user")
        # the server's --admin-api-key: accepted as an admin key, but it alone does not close an open server
        self._admin = {hash_key(admin_key): Principal("admin", "admin")} if admin_key else {}
        self._db: dict[str, Principal] = {}
        self._loaded_at = -1e9
        self._lock = threading.Lock()
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        if self.store is None or (not force and time.monotonic() - self._loaded_at < self.refresh_s):
            return
        from sqlalchemy import select

        from treadle.store.models import ApiKey

        with self._lock:
            try:
                with self.store.session() as s:
                    rows = s.execute(select(ApiKey.key_hash, ApiKey.user, ApiKey.role)
                                     .where(ApiKey.revoked_at.is_(None)))
                    self._db = {h: Principal(u, r) for h, u, r in rows}
            except Exception as e:  # noqa: BLE001 - the store is down: keep the keys known so far
                if force:
                    raise
                log.warning("API keys not refreshed from the store: %r", e)
            self._loaded_at = time.monotonic()

    @property
    def open(self) -> bool:
        """No key configured anywhere: every caller is ``anonymous`` (admin)."""
        self._refresh()
        return not self.static and not self._db

    def lookup(self, key: str) -> Principal | None:
        """The key's principal; ANONYMOUS when the ring is open; None for a wrong or missing key."""
        if self.open:
            return ANONYMOUS
        if not key:
            return None
        h = hash_key(key)  # comparing hashes: the lookup time says nothing about the key
        p = self.static.get(h) or self._admin.get(h) or self._db.get(h)
        if p is None:
            self._refresh()
            p = self._db.get(h)
        return p

    def authorize(self, key: str, role: str) -> Principal | None:
        """The principal when ``key`` carries ``role`` or a higher one, else None."""
        p = self.lookup(key)
        return p if p is not None and p.can(role) else None
