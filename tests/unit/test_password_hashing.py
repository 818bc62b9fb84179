"""Passwords to current standards: argon2id at or above OWASP's minimum, and old scrypt hashes
rehashed transparently at the next successful login."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import extract_parameters
from argon2.low_level import Type
from sqlalchemy import select, update

from riskpipe.users import UserStore, users_table

PASSWORD = "correct-horse-1"


def _stored(store: UserStore, name: str) -> str:
    with store.engine.connect() as conn:
        return conn.execute(select(users_table.c.password_hash).where(users_table.c.username == name)).scalar_one()


def _old_scrypt_hash(password: str) -> str:
    """The format the store wrote before argon2id (scrypt, N=2^14)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt${2**14}$8$1${salt.hex()}${digest.hex()}"


def test_new_user_gets_argon2id_at_or_above_owasp_minimum(tmp_path) -> None:
    store = UserStore(f"sqlite:///{tmp_path / 'u.db'}")
    store.add("ana", PASSWORD)
    stored = _stored(store, "ana")
    assert stored.startswith("$argon2id$")
    params = extract_parameters(stored)
    assert params.type is Type.ID
    assert params.memory_cost >= 19 * 1024  # KiB: OWASP's minimum is 19 MiB with t=2, p=1
    assert params.time_cost >= 2
    assert params.parallelism >= 1
    assert store.authenticate("ana", PASSWORD) is not None
    assert store.authenticate("ana", PASSWORD + "x") is None


def test_scrypt_user_logs_in_and_is_rehashed(tmp_path) -> None:
    store = UserStore(f"sqlite:///{tmp_path / 'u.db'}")
    store.add("old", "placeholder-password")
    with store.engine.begin() as conn:
        conn.execute(
            update(users_table).where(users_table.c.username == "old").values(password_hash=_old_scrypt_hash(PASSWORD))
        )
    generation = store.get("old").generation

    assert store.authenticate("old", "wrong-password-1") is None  # a wrong password is refused...
    assert _stored(store, "old").startswith("scrypt$")  # ...and changes nothing

    user = store.authenticate("old", PASSWORD)
    assert user is not None and user.username == "old"
    assert user.generation == generation  # the rehash does not end the user's sessions
    assert _stored(store, "old").startswith("$argon2id$")
    assert store.authenticate("old", PASSWORD) is not None  # the new hash works
    assert store.authenticate("old", "wrong-password-1") is None


def test_weak_argon2_hash_is_upgraded_at_login(tmp_path) -> None:
    from argon2 import PasswordHasher

    store = UserStore(f"sqlite:///{tmp_path / 'u.db'}")
    store.add("ana", "placeholder-password")
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    with store.engine.begin() as conn:
        conn.execute(update(users_table).where(users_table.c.username == "ana").values(password_hash=weak))
    assert store.authenticate("ana", PASSWORD) is not None
    assert extract_parameters(_stored(store, "ana")).memory_cost >= 19 * 1024
