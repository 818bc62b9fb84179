"""The users store and the login throttle on SQLite and on PostgreSQL (``db_url`` in
tests/conftest.py): the web tests drive them through the workbench on SQLite only."""

from __future__ import annotations

import threading

import pytest

from riskpipe.errors import RiskpipeError
from riskpipe.users import BackOff, LoginLimits, LoginThrottle, UserStore


def test_users_add_authenticate_passwd_deactivate_remove(db_url: str) -> None:
    users = UserStore(db_url)
    users.add("ana", "password-one", "analyst")
    users.add("sue", "password-two", "supervisor")
    with pytest.raises(RiskpipeError, match="already exists"):
        users.add("ana", "password-three")
    ana = users.authenticate("ana", "password-one")
    assert ana is not None and ana.role == "analyst" and ana.generation
    assert users.authenticate("ana", "wrong-password") is None
    users.set_password("ana", "password-new")
    assert users.authenticate("ana", "password-one") is None
    assert users.get("ana").generation != ana.generation  # sessions ended
    users.set_active("ana", False)
    assert users.get("ana") is None and users.authenticate("ana", "password-new") is None
    assert [(u["username"], u["role"], u["active"]) for u in users.list()] == [
        ("ana", "analyst", False),
        ("sue", "supervisor", True),
    ]
    users.remove("ana")
    with pytest.raises(RiskpipeError, match="no user"):
        users.remove("ana")
    assert [u["username"] for u in UserStore(db_url).list()] == ["sue"]


def test_login_throttle_counts_blocks_and_forgets(db_url: str) -> None:
    now = [1_800_000_000.0]
    limits = LoginLimits(account=BackOff(2, 30.0, 60.0, 600.0), address=BackOff(10, 30.0, 60.0, 600.0))
    throttle = LoginThrottle(db_url, b"salt", limits, clock=lambda: now[0])
    first = throttle.attempt("ana", "192.0.2.1")
    assert not first.refused
    assert not throttle.attempt("ana", "192.0.2.1").refused  # second free failure, blocks for 30 s
    refused = throttle.attempt("ana", "192.0.2.1")
    assert refused.refused and refused.retry_after_s == pytest.approx(30.0)
    now[0] += 31
    ok = throttle.attempt("ana", "192.0.2.1")
    assert not ok.refused
    throttle.succeeded(ok)  # the right password: the account starts afresh
    assert not throttle.attempt("ana", "192.0.2.1").refused


def test_parallel_attempts_are_all_counted(db_url: str) -> None:
    """Row locks (PostgreSQL ``FOR UPDATE``, SQLite ``BEGIN IMMEDIATE``): 8 parallel failures of
    one account are 8 counted failures, not fewer."""
    limits = LoginLimits(account=BackOff(100, 30.0, 60.0, 600.0), address=BackOff(100, 30.0, 60.0, 600.0))
    throttle = LoginThrottle(db_url, b"salt", limits, clock=lambda: 1_800_000_000.0)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def guess() -> None:
        try:
            barrier.wait()
            throttle.attempt("ana", "192.0.2.1")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=guess) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    from sqlalchemy import select

    from riskpipe.users import login_throttle_table as t

    with throttle.engine.connect() as conn:
        assert sorted(conn.execute(select(t.c.failures)).scalars()) == [8, 8]
