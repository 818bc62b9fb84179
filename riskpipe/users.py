"""Workbench users: salted scrypt password hashes and two roles.

``analyst`` reads lists and records exam outcomes; ``supervisor`` also manages users and reads
the rules. Passwords are never stored or logged: only ``scrypt$n$r$p$salt$hash`` strings, checked
with a constant-time comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Boolean, Column, DateTime, MetaData, String, Table, delete, insert, select, update

from riskpipe.db import get_engine
from riskpipe.errors import RiskpipeError

ROLES = ("analyst", "supervisor")
MIN_PASSWORD_LEN = 8
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}

metadata = MetaData()

users_table = Table(
    "users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(300), nullable=False),
    Column("role", String(16), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", DateTime, nullable=False),
)


@dataclass(frozen=True)
class User:
    username: str
    role: str

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(digest) // 2
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


# a hash to check against when the user does not exist, so timing does not reveal usernames
_DUMMY_HASH = hash_password(secrets.token_hex(8))


class UserStore:
    """Users in the same database as the labels (``settings.db_url``)."""

    def __init__(self, db_url: str) -> None:
        self.engine = get_engine(db_url)
        metadata.create_all(self.engine)

    def add(self, username: str, password: str, role: str = "analyst") -> User:
        _check_username(username)
        _check_role(role)
        _check_password(password)
        with self.engine.begin() as conn:
            if conn.execute(select(users_table.c.username).where(users_table.c.username == username)).first():
                raise RiskpipeError(f"users: {username!r} already exists")
            conn.execute(
                insert(users_table).values(
                    username=username,
                    password_hash=hash_password(password),
                    role=role,
                    active=True,
                    created_at=datetime.now(UTC).replace(tzinfo=None),
                )
            )
        return User(username, role)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password matches and the account is active, else None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(users_table).where(users_table.c.username == username)).mappings().first()
        if row is None:
            verify_password(password, _DUMMY_HASH)
            return None
        if not verify_password(password, row["password_hash"]) or not row["active"]:
            return None
        return User(row["username"], row["role"])

    def get(self, username: str) -> User | None:
        """An active user by name (session look-up: a removed user is logged out at once)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(users_table.c.username, users_table.c.role).where(
                    users_table.c.username == username, users_table.c.active.is_(True)
                )
            ).first()
        return User(row[0], row[1]) if row else None

    def list(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(users_table.c.username, users_table.c.role, users_table.c.active, users_table.c.created_at).order_by(
                    users_table.c.username
                )
            ).mappings()
            return [dict(r) for r in rows]

    def set_role(self, username: str, role: str) -> None:
        _check_role(role)
        self._update(username, role=role)

    def set_password(self, username: str, password: str) -> None:
        _check_password(password)
        self._update(username, password_hash=hash_password(password))

    def set_active(self, username: str, active: bool) -> None:
        self._update(username, active=active)

    def remove(self, username: str) -> None:
        with self.engine.begin() as conn:
            if conn.execute(delete(users_table).where(users_table.c.username == username)).rowcount == 0:
                raise RiskpipeError(f"users: no user {username!r}")

    def _update(self, username: str, **values) -> None:
        with self.engine.begin() as conn:
            if conn.execute(update(users_table).where(users_table.c.username == username).values(**values)).rowcount == 0:
                raise RiskpipeError(f"users: no user {username!r}")


def _check_username(username: str) -> None:
    if not _USERNAME.match(username or ""):
        raise RiskpipeError("users: a username is 1 to 64 letters, digits or . _ @ -")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise RiskpipeError(f"users: role must be one of {', '.join(ROLES)} (got {role!r})")


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LEN:
        raise RiskpipeError(f"users: a password needs at least {MIN_PASSWORD_LEN} characters")
