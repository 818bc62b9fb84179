"""Workbench users: argon2id password hashes, two roles, session generations, login limits.

``analyst`` reads lists and records exam outcomes; ``supervisor`` also manages users and reads
the rules. Passwords are never stored or logged: only argon2id hashes (PHC strings, at or above
OWASP's minimum of m=19 MiB, t=2, p=1). Hashes from before (``scrypt$n$r$p$salt$hash``, N=2^14,
below OWASP's 2^17) still verify, with a constant-time comparison, and are replaced by argon2id
at the user's next successful login (as are argon2 hashes with weaker parameters).

Each user has a ``session_generation`` (random) that the signed session cookie carries: logging
out, a password change and a deactivation draw a new one, so every cookie issued before stops
working (the workbench compares the two on each request).

Failed logins are limited by :class:`LoginThrottle`: an attempt is counted in the database
*before* its password is checked (one write transaction), per account name and per source
address, and after a few free failures each further one sets a delay that doubles up to a cap.
Nothing locks for good: once the delay is over the right password works and resets the account.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypedDict

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import Type
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)

from riskpipe.db import UTCDateTime, is_sqlite, with_retry, write_transaction
from riskpipe.errors import RiskpipeError
from riskpipe.migrate import ensure_current

ROLES = ("analyst", "supervisor")
MIN_PASSWORD_LEN = 8
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
#: argon2id at OWASP's first recommended setting (19 MiB, 2 passes, 1 lane: ~30 ms here); raise
#: the numbers and existing hashes are upgraded at each user's next login
_ARGON2 = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16, type=Type.ID)

metadata = MetaData()

users_table = Table(
    "users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(300), nullable=False),
    Column("role", String(16), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", UTCDateTime, nullable=False),
    # added after the first release (migration 0002)
    Column("session_generation", String(32), nullable=False, default="", server_default=""),
)

login_throttle_table = Table(
    "login_throttle",
    metadata,
    Column("key", String(64), primary_key=True),  # keyed hash of "user:<name>" or "addr:<address>"
    Column("failures", Integer, nullable=False),
    Column("blocked_until", Float, nullable=False),  # seconds since the epoch; 0 = not blocked
    Column("last_at", Float, nullable=False, index=True),  # last counted attempt
)


def _new_generation() -> str:
    return secrets.token_hex(8)


class UserRow(TypedDict):
    """One user as :meth:`UserStore.list` shows it (no password hash, no session generation)."""

    username: str
    role: str
    active: bool
    created_at: datetime  # aware UTC


@dataclass(frozen=True)
class User:
    username: str
    role: str
    generation: str = ""  # the session generation a cookie must carry to be valid

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (PHC string, salt and parameters included)."""
    return _ARGON2.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (argon2id, or a legacy scrypt hash)."""
    if stored.startswith("scrypt$"):
        return _verify_scrypt(password, stored)
    try:
        return _ARGON2.verify(stored, password)
    except (VerificationError, InvalidHashError, ValueError, TypeError):
        return False


def needs_rehash(stored: str) -> bool:
    """True for a hash that is not argon2id with the current parameters (scrypt, weaker argon2)."""
    if stored.startswith("scrypt$"):
        return True
    try:
        return _ARGON2.check_needs_rehash(stored)
    except (InvalidHashError, ValueError):
        return True


def _verify_scrypt(password: str, stored: str) -> bool:
    """Hashes written before argon2id: ``scrypt$n$r$p$salt$hash`` (verified, never written)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(digest) // 2,
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


# a hash to check against when the user does not exist, so timing does not reveal usernames
_DUMMY_HASH = hash_password(secrets.token_hex(8))


class UserStore:
    """Users in the same database as the labels (``settings.db_url``)."""

    def __init__(self, db_url: str) -> None:
        # first use: the schema is migrated to head (an older users table gets its session
        # generations there, riskpipe/migrations/versions/0002_*)
        self.engine = ensure_current(db_url)

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
                    created_at=datetime.now(UTC),
                    session_generation=_new_generation(),
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
        if needs_rehash(row["password_hash"]):
            self._rehash(username, row["password_hash"], password)
        return User(row["username"], row["role"], row["session_generation"])

    def _rehash(self, username: str, old_hash: str, password: str) -> None:
        """Store an argon2id hash in place of an old one, after a successful login (the only time
        the password is known). Only if the hash is still the one checked: a password changed
        meanwhile wins. Sessions are not ended (same password)."""
        t = users_table
        with self.engine.begin() as conn:
            conn.execute(
                update(t)
                .where(t.c.username == username, t.c.password_hash == old_hash)
                .values(password_hash=hash_password(password))
            )

    def get(self, username: str) -> User | None:
        """An active user by name (session look-up: a removed user is logged out at once)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(users_table.c.username, users_table.c.role, users_table.c.session_generation).where(
                    users_table.c.username == username, users_table.c.active.is_(True)
                )
            ).first()
        return User(row[0], row[1], row[2]) if row else None

    def list(self) -> list[UserRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    users_table.c.username, users_table.c.role, users_table.c.active, users_table.c.created_at
                ).order_by(users_table.c.username)
            ).mappings()
            return [
                UserRow(username=r["username"], role=r["role"], active=r["active"], created_at=r["created_at"])
                for r in rows
            ]

    def set_role(self, username: str, role: str) -> None:
        _check_role(role)
        self._update(username, role=role)

    def set_password(self, username: str, password: str) -> None:
        """New password; every session of the user ends (a new session generation)."""
        _check_password(password)
        self._update(username, password_hash=hash_password(password), session_generation=_new_generation())

    def set_active(self, username: str, active: bool) -> None:
        """(De)activate; a deactivation ends the user's sessions for good (a reactivation does
        not bring old cookies back)."""
        values: dict[str, object] = {"active": active}
        if not active:
            values["session_generation"] = _new_generation()
        self._update(username, **values)

    def end_sessions(self, username: str) -> None:
        """Log the user out everywhere: cookies issued before stop working (logout)."""
        self._update(username, session_generation=_new_generation())

    def remove(self, username: str) -> None:
        """Delete a user; the last active supervisor is refused (nobody could manage users)."""
        with_retry(lambda: self._remove(username))

    def _remove(self, username: str) -> None:
        t = users_table
        with write_transaction(self.engine) as conn:
            row = conn.execute(select(t.c.role, t.c.active).where(t.c.username == username)).first()
            if row is None:
                raise RiskpipeError(f"users: no user {username!r}")
            if row[0] == "supervisor" and row[1]:
                others = select(t.c.username).where(
                    t.c.role == "supervisor", t.c.active.is_(True), t.c.username != username
                )
                if not is_sqlite(self.engine):
                    others = others.with_for_update()
                if conn.execute(others.limit(1)).first() is None:
                    raise RiskpipeError(
                        f"users: {username!r} is the last active supervisor: add or activate another supervisor first"
                    )
            conn.execute(delete(t).where(t.c.username == username))

    def _update(self, username: str, **values: object) -> None:
        with self.engine.begin() as conn:
            if (
                conn.execute(update(users_table).where(users_table.c.username == username).values(**values)).rowcount
                == 0
            ):
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


# ---------------------------------------------------------------------------------------------
# login limits
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackOff:
    """How failed logins of one key (an account name or a source address) are slowed down:
    ``free`` failures without delay, then each further failure blocks the key for
    ``first_delay_s`` doubling per failure up to ``max_delay_s``; the count is forgotten
    ``forget_after_s`` after the last failure."""

    free: int
    first_delay_s: float
    max_delay_s: float
    forget_after_s: float

    def delay(self, failures: int) -> float:
        """Seconds the key is blocked after its ``failures``-th failure in a row."""
        if failures < self.free:
            return 0.0
        return min(self.first_delay_s * 2.0 ** min(failures - self.free, 40), self.max_delay_s)


@dataclass(frozen=True)
class LoginLimits:
    """Per account: 5 free failures, then 30 s doubling to 15 min. Per source address (many
    accounts tried from one place): 20 free failures, same delays. A quiet hour forgets."""

    account: BackOff = field(default_factory=lambda: BackOff(5, 30.0, 900.0, 3600.0))
    address: BackOff = field(default_factory=lambda: BackOff(20, 30.0, 900.0, 3600.0))


@dataclass(frozen=True)
class Attempt:
    """A counted login attempt (or a refusal): what :meth:`LoginThrottle.succeeded` undoes."""

    retry_after_s: float  # > 0: refused, try again after this many seconds; nothing was counted
    account_key: str = ""
    address_key: str = ""
    address_block_before: float = 0.0  # the address's block before this attempt set a new one
    address_block_set: float = 0.0  # the block this attempt set on the address (0: none)

    @property
    def refused(self) -> bool:
        return self.retry_after_s > 0


class LoginThrottle:
    """Failed-login counters in the users database, reserved before the password is checked.

    :meth:`attempt` runs one write transaction that either refuses (the account or the address is
    blocked) or counts the attempt as a failure for both keys and sets the next block when the
    free failures are used up, so parallel attempts cannot all be checked against one stale
    count. :meth:`succeeded` then resets the account and gives the address its attempt back.
    Keys are keyed hashes (``salt``): the table holds no names or addresses.
    """

    def __init__(
        self, db_url: str, salt: bytes, limits: LoginLimits | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = ensure_current(db_url)
        self.salt = salt
        self.limits = limits or LoginLimits()
        self.clock = clock

    def _key(self, kind: str, value: str) -> str:
        return hmac.new(self.salt, f"{kind}:{value}".encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:64]

    def attempt(self, username: str, address: str) -> Attempt:
        """Refuse, or count this attempt as failed until :meth:`succeeded` says otherwise."""
        keys = {"account": self._key("user", username), "address": self._key("addr", address)}
        return with_retry(lambda: self._attempt(keys))

    def _attempt(self, keys: dict[str, str]) -> Attempt:
        t = login_throttle_table
        now = float(self.clock())
        policies = {"account": self.limits.account, "address": self.limits.address}
        with write_transaction(self.engine) as conn:
            forget = max(p.forget_after_s for p in policies.values())
            conn.execute(delete(t).where(t.c.last_at < now - forget, t.c.blocked_until < now))
            q = select(t.c.key, t.c.failures, t.c.blocked_until, t.c.last_at).where(t.c.key.in_(list(keys.values())))
            if not is_sqlite(self.engine):
                q = q.with_for_update()
            rows = {r[0]: r for r in conn.execute(q)}
            blocked = max((rows[k][2] for k in keys.values() if k in rows), default=0.0)
            if blocked > now:
                return Attempt(retry_after_s=blocked - now)
            before, set_on_address = 0.0, 0.0
            for kind, key in keys.items():
                policy, row = policies[kind], rows.get(key)
                failures = row[1] if row is not None and now - row[3] <= policy.forget_after_s else 0
                failures += 1
                delay = policy.delay(failures)
                block = now + delay if delay > 0 else 0.0
                if kind == "address":
                    before, set_on_address = (row[2] if row is not None else 0.0), block
                values = {"failures": failures, "blocked_until": block, "last_at": now}
                if row is None:
                    conn.execute(insert(t).values(key=key, **values))
                else:
                    conn.execute(update(t).where(t.c.key == key).values(**values))
        return Attempt(0.0, keys["account"], keys["address"], before, set_on_address)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the account starts afresh; the address gets its attempt back
        (a success does not wipe what that address failed before)."""
        with_retry(lambda: self._succeeded(attempt))

    def _succeeded(self, attempt: Attempt) -> None:
        t = login_throttle_table
        with write_transaction(self.engine) as conn:
            conn.execute(delete(t).where(t.c.key == attempt.account_key))
            row = conn.execute(select(t.c.failures, t.c.blocked_until).where(t.c.key == attempt.address_key)).first()
            if row is None:
                return
            values: dict[str, object] = {"failures": max(row[0] - 1, 0)}
            if attempt.address_block_set and math.isclose(row[1], attempt.address_block_set):
                values["blocked_until"] = attempt.address_block_before  # the block was this attempt's
            conn.execute(update(t).where(t.c.key == attempt.address_key).values(**values))
