"""Store helpers: private scratch folders for spilled work files."""

from __future__ import annotations

import os

import pytest


def test_a_scratch_folder_is_private_removed_after_use_and_a_killed_one_is_swept(tmp_path):
    """Spill folders (history tables, look-up files) can be the size of the day: one left by a
    process killed outright is removed by the next use, a live process's never."""
    import subprocess
    import sys
    import time

    from riskpipe.store import STALE_SCRATCH_S, _host, scratch_dir

    parent = tmp_path / "history"
    parent.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = _host()
    killed = parent / f".scratch-history-{host}-{int(dead.stdout)}-0badc0de"
    alive = parent / f".scratch-history-{host}-{os.getpid()}-0000aaaa"
    other_old = parent / ".scratch-history-elsewhere-1-0000bbbb"
    other_new = parent / ".scratch-history-elsewhere-2-0000cccc"
    lookup = parent / f".scratch-lookup-{host}-{int(dead.stdout)}-0000dddd"  # another name: not ours
    for d in (killed, alive, other_old, other_new, lookup):
        d.mkdir()
        (d / "part-0.arrow").write_bytes(b"x" * 100)
    old = time.time() - STALE_SCRATCH_S - 60
    os.utime(other_old, (old, old))
    with scratch_dir(parent, "history") as folder:
        assert folder.is_dir() and folder.stat().st_mode & 0o777 == 0o700
        (folder / "spill").write_bytes(b"y")
        assert not killed.exists() and not other_old.exists()
        assert alive.exists() and other_new.exists() and lookup.exists()
    assert not folder.exists()
    with pytest.raises(RuntimeError):
        with scratch_dir(parent, "history") as failing:
            raise RuntimeError("a build failed")
    assert not failing.exists()
