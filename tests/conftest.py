"""Store tests run on SQLite and on a real PostgreSQL (issue 15): a throwaway cluster started once
per session on a Unix socket in a temporary folder (no TCP port), one fresh schema per test.

Where PostgreSQL is not installed (or psycopg is missing) the PostgreSQL variants are skipped,
with the reason printed in pytest's summary (``-rs``). ``RISKPIPE_TEST_POSTGRES=require`` (set by
``.ci/run`` once it has installed PostgreSQL) turns such a skip into a failure; ``=skip`` skips
them on purpose.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

PG_BINARIES = ("initdb", "pg_ctl")
_SCHEMA_NUMBERS = itertools.count(1)


@dataclass(frozen=True)
class PgServer:
    socket_dir: str
    user: str

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@/{database}?host={self.socket_dir}"


def _pg_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = [shutil.which(b) for b in PG_BINARIES]
    if all(found):
        return Path(found[0]).resolve().parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if all((Path(d) / b).exists() for b in PG_BINARIES):
            return Path(d)
    return None


def _unprivileged_user() -> pwd.struct_passwd | None:
    """initdb refuses to run as root: as root, run the server as ``postgres`` (Debian's package
    creates it) or ``nobody``."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists to run initdb")


def _run(cmd: list[str], as_user: pwd.struct_passwd | None, log: Path) -> None:
    kwargs = {} if as_user is None else {"user": as_user.pw_uid, "group": as_user.pw_gid, "extra_groups": []}
    with open(log, "ab") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=60, check=False, **kwargs)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({done.returncode}): {' | '.join(tail)}")


def _unavailable(reason: str) -> None:
    if os.environ.get("RISKPIPE_TEST_POSTGRES") == "require":
        pytest.fail(f"PostgreSQL required (RISKPIPE_TEST_POSTGRES=require) but {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    """A PostgreSQL cluster of its own: initdb into a temporary folder, started with
    ``listen_addresses=''`` and its socket in that folder; stopped and removed at the end."""
    if os.environ.get("RISKPIPE_TEST_POSTGRES") == "skip":
        pytest.skip("PostgreSQL tests skipped: RISKPIPE_TEST_POSTGRES=skip")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install -e '.[postgres]')")
    bin_dir = _pg_bin_dir()
    if bin_dir is None:
        _unavailable("initdb/pg_ctl not found on PATH or under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    as_user = _unprivileged_user()
    # a short path: a Unix socket path is limited to about 100 bytes
    base = Path(tempfile.mkdtemp(prefix="rp-pg-", dir="/tmp"))
    if as_user is not None:
        os.chown(base, as_user.pw_uid, as_user.pw_gid)
    log = base / "server.log"
    log.touch()
    if as_user is not None:
        os.chown(log, as_user.pw_uid, as_user.pw_gid)
    data = base / "data"
    started = False
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "riskpipe",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            as_user,
            log,
        )
        options = f"-c listen_addresses='' -k {base} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        _run(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o", options, "start"],
            as_user,
            log,
        )
        started = True
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(base, ignore_errors=True)
        _unavailable(f"could not start a PostgreSQL cluster with {bin_dir}: {exc}")
    try:
        yield PgServer(str(base), "riskpipe")
    finally:
        if started:
            try:
                _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], as_user, log)
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(base, ignore_errors=True)


def _admin(server: PgServer, sql: str) -> None:
    import psycopg

    with psycopg.connect(host=server.socket_dir, user=server.user, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture()
def pg_url(postgres_server: PgServer) -> Iterator[str]:
    """An empty PostgreSQL schema of its own for one test (a schema, not a database: creating a
    database takes about 0.4 s, a schema a few milliseconds), first on the connection's
    ``search_path`` so every table the test makes lands in it."""
    from riskpipe.db import dispose_engine

    name = f"t{os.getpid()}_{next(_SCHEMA_NUMBERS)}"
    _admin(postgres_server, f"CREATE SCHEMA {name}")
    url = f"{postgres_server.url('postgres')}&options=-csearch_path%3D{name}"
    try:
        yield url
    finally:
        dispose_engine(url)
        _admin(postgres_server, f"DROP SCHEMA {name} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """The URL of an empty store database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """OpenMP threads spin badly on a busy 2-core machine: tiny fits and predictions are far
    faster on one. Modules that fit models ask for it (module scope, so that their module-scoped
    fitted models are fitted under it too): ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    with threadpool_limits(limits=1):
        yield
