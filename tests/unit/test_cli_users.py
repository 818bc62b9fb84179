"""``riskpipe users list | remove``: who can use the workbench, without ever showing a password
hash, and never removing the last active supervisor (nobody could manage users any more)."""

from __future__ import annotations

import sys

import pytest

from riskpipe import cli
from riskpipe.config import load_settings
from riskpipe.errors import RiskpipeError
from riskpipe.users import UserStore


def run(monkeypatch, capsys, *args: str, stdin: str = "") -> tuple[int, str, str]:
    import io

    import riskpipe.prefect_env

    monkeypatch.setattr(riskpipe.prefect_env, "configure_prefect", lambda home, environ=None: None)
    monkeypatch.setattr(sys, "argv", ["riskpipe", *args])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as done:
        cli.main()
    out, err = capsys.readouterr()
    return done.value.code or 0, out, err


def test_list_shows_name_role_active_created_and_never_a_hash(monkeypatch, capsys, tmp_path):
    code, out, _ = run(monkeypatch, capsys, "--home", str(tmp_path), "users", "list")
    assert code == 0 and out.startswith("no users yet")
    for name, role in (("ann", "analyst"), ("sue", "supervisor")):
        code, _, err = run(
            monkeypatch,
            capsys,
            "--home",
            str(tmp_path),
            "users",
            "add",
            name,
            "--role",
            role,
            "--password-stdin",
            stdin="a long password\n",
        )
        assert code == 0, err
    UserStore(load_settings(tmp_path).db_url).set_active("ann", False)
    code, out, _ = run(monkeypatch, capsys, "--home", str(tmp_path), "users", "list")
    cells = [
        [c.strip() for c in line.replace("┃", "│").strip("│ ").split("│")]
        for line in out.splitlines()
        if line.startswith(("│", "┃"))
    ]
    assert cells[0] == ["name", "role", "active", "created (UTC)"]
    assert [c[:3] for c in cells[1:]] == [["ann", "analyst", "no"], ["sue", "supervisor", "yes"]]
    assert cells[2][3].startswith("20") and len(cells[2][3]) == 19  # YYYY-MM-DD HH:MM:SS
    assert "scrypt" not in out and "$" not in out


def test_remove_refuses_the_last_active_supervisor(monkeypatch, capsys, tmp_path):
    store = UserStore(load_settings(tmp_path).db_url)
    store.add("sue", "a long password", "supervisor")
    store.add("sam", "a long password", "supervisor")
    store.add("ann", "a long password", "analyst")
    code, out, _ = run(monkeypatch, capsys, "--home", str(tmp_path), "users", "remove", "ann")
    assert code == 0 and "removed ann" in out and store.get("ann") is None
    store.set_active("sam", False)  # an inactive supervisor manages nobody
    code, _, err = run(monkeypatch, capsys, "--home", str(tmp_path), "users", "remove", "sue")
    assert code == 1
    assert err == "error: users: 'sue' is the last active supervisor: add or activate another supervisor first\n"
    assert store.get("sue") is not None
    code, _, err = run(monkeypatch, capsys, "--home", str(tmp_path), "users", "remove", "sam")  # inactive: fine
    assert code == 0 and store.list() and [u["username"] for u in store.list()] == ["sue"]
    code, _, err = run(monkeypatch, capsys, "--home", str(tmp_path), "users", "remove", "nobody")
    assert code == 1 and err == "error: users: no user 'nobody'\n"
    with pytest.raises(RiskpipeError, match="last active supervisor"):
        store.remove("sue")
