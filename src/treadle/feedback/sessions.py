"""Signed session cookies for the review page: ``user|role|expiry|HMAC-SHA256``.

The secret is ``$TREADLE_SESSION_SECRET`` when set (sessions then survive restarts and are shared by
replicas of the page), else random per process. A cookie is valid until its expiry (``max_age_s``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time

from treadle.feedback.roles import ROLES, Principal

COOKIE = "treadle_review"


class SessionSigner:
    def __init__(self, secret: bytes | None = None, max_age_s: int = 12 * 3600) -> None:
        env = os.environ.get("TREADLE_SESSION_SECRET")
        self.secret = secret or (env.encode() if env else secrets.token_bytes(32))
        self.max_age_s = max_age_s

    def _sig(self, payload: str) -> str:
        return hmac.new(self.secret, payload.encode(), hashlib.sha256).hexdigest()

    def make(self, p: Principal) -> str:
        payload = f"{base64.urlsafe_b64encode(p.user.encode()).decode()}|{p.role}|{int(time.time()) + self.max_age_s}"
        return f"{payload}|{self._sig(payload)}"

    def verify(self, cookie: str | None) -> Principal | None:
        if not cookie or cookie.count("|") != 3:
            return None
        payload, sig = cookie.rsplit("|", 1)
        if not hmac.compare_digest(sig, self._sig(payload)):
            return None
        user_b64, role, exp = payload.split("|")
        try:
            if int(exp) < time.time() or role not in ROLES:
                return None
            return Principal(base64.urlsafe_b64decode(user_b64.encode()).decode(), role)
        except ValueError:
            return None
