"""Login limits and session lifetime (issue 12, high 3): failed attempts are counted before the
password is checked, per account and per source address, with a back-off that doubles and ends;
logout and a password change end the sessions they should."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import pytest

import riskpipe
from riskpipe import users as users_mod
from riskpipe.users import UserStore, hash_password

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from riskpipe.web import create_app
from riskpipe.web.routes.deps import USER_CACHE_S

from .conftest import PASSWORD, csrf_of, login

WRONG = "not-the-password"


class Clock:
    """A settable wall clock for the login back-off."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def app(home_settings, clock):
    """Limits spelled out here (the tests count with them) and a clock the tests move."""
    from riskpipe.users import BackOff, LoginLimits  # imported here: the other tests run on old code too

    limits = LoginLimits(
        account=BackOff(free=5, first_delay_s=60.0, max_delay_s=600.0, forget_after_s=3600.0),
        address=BackOff(free=20, first_delay_s=60.0, max_delay_s=600.0, forget_after_s=3600.0),
    )
    return create_app(home_settings, login_limits=limits, clock=clock)


@pytest.fixture()
def plain_app(home_settings):
    return create_app(home_settings)


def _count_checks(monkeypatch) -> list[int]:
    """Count password checks (scrypt runs) made by the user store."""
    calls: list[int] = []
    real = users_mod.verify_password

    def counting(password: str, stored: str) -> bool:
        calls.append(1)
        return real(password, stored)

    monkeypatch.setattr(users_mod, "verify_password", counting)
    return calls


async def _parallel_guesses(app, username: str, n: int, password: str = WRONG) -> list[int]:
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        token = csrf_of((await c.get("/login")).text)  # the login CSRF cookie is now in c
        form = {"username": username, "password": password, "csrf": token, "next": "/list"}
        rs = await asyncio.gather(*[c.post("/login", data=form) for _ in range(n)])
        return [r.status_code for r in rs]


def test_parallel_wrong_guesses_are_counted_before_the_password_is_checked(home_settings, monkeypatch) -> None:
    app = create_app(home_settings)  # the shipped limits
    checks = _count_checks(monkeypatch)
    codes = asyncio.run(_parallel_guesses(app, "ana", 60))
    assert set(codes) <= {401, 429} and codes.count(401) >= 1
    assert codes.count(429) >= 50  # refused without checking the password
    assert len(checks) <= 10  # was 60: every guess was checked
    # the right password is refused too while the back-off lasts
    assert login(TestClient(app), "ana").status_code == 429


def test_a_strangers_guesses_back_off_and_then_the_right_password_works(app, clock) -> None:
    stranger, owner = TestClient(app, client=("203.0.113.9", 1)), TestClient(app, client=("192.0.2.10", 1))
    codes = [login(stranger, "ana", WRONG).status_code for _ in range(10)]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
    r = login(owner, "ana")
    assert r.status_code == 429 and "try again in" in r.text.lower()
    assert int(r.headers["retry-after"]) > 0
    clock.now += 61  # the first back-off (60 s) is over
    assert login(owner, "ana").status_code == 303  # not locked for good
    # the success reset the account: five more wrong guesses are checked before the back-off
    assert [login(stranger, "ana", WRONG).status_code for _ in range(6)] == [401] * 5 + [429]


def test_back_off_doubles_and_is_capped(app, clock) -> None:
    c = TestClient(app, client=("203.0.113.9", 1))
    waits = []
    for _ in range(6):
        while login(c, "sue", WRONG).status_code == 401:
            pass
        r = login(c, "sue", WRONG)
        assert r.status_code == 429
        waits.append(int(r.headers["retry-after"]))
        clock.now += waits[-1] + 1
    assert waits == [60, 120, 240, 480, 600, 600]
    clock.now += 3601  # a quiet hour forgets the count
    assert [login(c, "sue", WRONG).status_code for _ in range(5)] == [401] * 5


def test_guesses_spread_over_accounts_are_limited_per_source_address(app, clock) -> None:
    sprayer = TestClient(app, client=("203.0.113.50", 1))
    codes = [login(sprayer, f"user{i}", WRONG).status_code for i in range(24)]
    assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}
    assert login(sprayer, "ana").status_code == 429  # that address waits, whoever it names
    assert login(TestClient(app, client=("192.0.2.10", 1)), "ana").status_code == 303  # others do not
    clock.now += 61
    assert login(sprayer, "ana").status_code == 303


def test_a_successful_login_does_not_reset_the_address_count(app) -> None:
    c = TestClient(app, client=("203.0.113.60", 1))
    for i in range(19):
        assert login(c, f"user{i}", WRONG).status_code == 401
    assert login(c, "ana").status_code == 303  # refunded, not reset
    assert login(c, "user-x", WRONG).status_code == 401  # the 20th failure
    assert login(c, "user-y", WRONG).status_code == 429


def test_replayed_cookie_after_logout_is_refused(plain_app) -> None:
    c = TestClient(plain_app)
    assert login(c, "ana").status_code == 303
    cookie = c.cookies.get("riskpipe_session")
    token = csrf_of(c.get("/list").text)
    assert c.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    replay = TestClient(plain_app)
    replay.cookies.set("riskpipe_session", cookie)
    r = replay.get("/list", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert replay.get("/api/list").status_code == 401
    assert login(TestClient(plain_app), "ana").status_code == 303  # a new login works


def test_old_cookie_refused_after_password_change_in_the_workbench(plain_app) -> None:
    ana, sue = TestClient(plain_app), TestClient(plain_app)
    login(ana, "ana"), login(sue, "sue")
    assert ana.get("/list").status_code == 200  # ana's account is now in the user cache
    token = csrf_of(sue.get("/users").text)
    r = sue.post(
        "/users",
        data={"csrf": token, "action": "password", "username": "ana", "password": "brand-new-pass"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert ana.get("/api/list").status_code == 401
    assert login(TestClient(plain_app), "ana", "brand-new-pass").status_code == 303


def test_own_password_change_keeps_the_changer_signed_in(plain_app) -> None:
    sue = TestClient(plain_app)
    login(sue, "sue")
    old = sue.cookies.get("riskpipe_session")
    token = csrf_of(sue.get("/users").text)
    r = sue.post(
        "/users",
        data={"csrf": token, "action": "password", "username": "sue", "password": "brand-new-pass"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert sue.get("/users").status_code == 200  # a fresh cookie came with the answer
    replay = TestClient(plain_app)
    replay.cookies.set("riskpipe_session", old)
    assert replay.get("/api/list").status_code == 401


def test_old_cookie_refused_after_password_change_from_the_cli(plain_app, home_settings) -> None:
    ana = TestClient(plain_app)
    login(ana, "ana")
    assert ana.get("/api/list").status_code == 200  # ana's account is now in the server's cache
    # `riskpipe users passwd` in another process: the server learns of it within USER_CACHE_S
    code = "import sys; from riskpipe.cli import main; sys.argv[0] = 'riskpipe'; main()"
    args = ["--home", str(home_settings.home), "users", "passwd", "ana", "--password-stdin"]
    env = {**os.environ, "PYTHONPATH": str(Path(riskpipe.__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], input="brand-new-pass\n", text=True, capture_output=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "password of ana changed" in done.stdout
    time.sleep(USER_CACHE_S + 0.1)
    assert ana.get("/api/list").status_code == 401
    assert login(TestClient(plain_app), "ana", "brand-new-pass").status_code == 303


def test_deactivation_ends_sessions_for_good(plain_app) -> None:
    ana, sue = TestClient(plain_app), TestClient(plain_app)
    login(ana, "ana"), login(sue, "sue")
    cookie = ana.cookies.get("riskpipe_session")
    for action in ("deactivate", "activate"):
        token = csrf_of(sue.get("/users").text)
        sue.post("/users", data={"csrf": token, "action": action, "username": "ana"}, follow_redirects=False)
    replay = TestClient(plain_app)
    replay.cookies.set("riskpipe_session", cookie)
    assert replay.get("/api/list").status_code == 401  # reactivation does not revive old cookies


def test_a_users_table_of_the_old_schema_is_upgraded(tmp_path) -> None:
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE users (username VARCHAR(64) NOT NULL, password_hash VARCHAR(300) NOT NULL, "
        "role VARCHAR(16) NOT NULL, active BOOLEAN NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (username))"
    )
    con.execute(
        "INSERT INTO users VALUES ('old', ?, 'analyst', 1, '2026-01-01 00:00:00.000000')", (hash_password(PASSWORD),)
    )
    con.commit()
    con.close()
    url = f"sqlite:///{path}"
    store = UserStore(url)
    cols = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(users)")]
    assert "session_generation" in cols
    user = store.authenticate("old", PASSWORD)
    assert user is not None and user.generation  # every existing user got a generation
    before = user.generation
    store.set_password("old", "brand-new-pass")
    assert store.get("old").generation != before
    UserStore(url)  # opening again is a no-op
    assert [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(users)")] == cols
