"""Signed session cookies and CSRF tokens, stdlib only (hmac + sha256).

A session cookie holds ``username``, the user's session generation, issue time and a
per-session CSRF token, signed with a secret kept under the data home (created on first start,
mode 0600). Nothing in the cookie is secret; the signature makes it unforgeable. The workbench
accepts a cookie only while its generation is the user's current one (logout, a password change
and a deactivation draw a new one), so an old cookie replayed later is refused. Every form
carries the session's CSRF token and every POST is rejected unless the submitted token matches
the signed one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

SESSION_COOKIE = "riskpipe_session"
LOGIN_CSRF_COOKIE = "riskpipe_login_csrf"
SESSION_MAX_AGE_S = 12 * 3600
SECRET_FILE = ".web_secret"


def load_or_create_secret(home: Path) -> bytes:
    """The signing secret under the data home; created once with owner-only permissions."""
    path = home / SECRET_FILE
    if path.exists():
        data = path.read_bytes().strip()
        if len(data) >= 32:
            return data
    home.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode()
    tmp = path.with_name(f"{path.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(value)
    try:
        os.link(tmp, path)  # first writer wins when two servers start at once
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes().strip()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


def make_session(secret: bytes, username: str, generation: str = "", now: float | None = None) -> tuple[str, str]:
    """(cookie value, csrf token) for a fresh login of a user at session ``generation``."""
    csrf = secrets.token_urlsafe(24)
    payload = _b64(json.dumps({"u": username, "g": generation, "t": int(now or time.time()), "c": csrf}).encode())
    return f"{payload}.{_sign(secret, payload)}", csrf


def read_session(secret: bytes, cookie: str | None, now: float | None = None) -> dict | None:
    """The session payload when the cookie is authentic and not expired, else None."""
    if not cookie or "." not in cookie or len(cookie) > 4096:
        return None
    payload, sig = cookie.rsplit(".", 1)
    if not hmac.compare_digest(sig, _sign(secret, payload)):
        return None
    try:
        data = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not {"u", "g", "t", "c"} <= set(data):  # no "g": issued before generations
        return None
    if (now or time.time()) - float(data["t"]) > SESSION_MAX_AGE_S:
        return None
    return data


def tokens_match(expected: str | None, submitted: str | None) -> bool:
    if not expected or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())
