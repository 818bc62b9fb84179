"""What the night still has to ingest: the landing folder's files the watcher has not handled.

The watcher (``riskpipe watch``, the ``ingest-landed`` deployment) ingests files as they land and
records each one it handled in ``ingest/watch.json`` by name, size and modification time. A file
recorded there, unchanged, is not read again by the night: before this, the night's ingest
step hashed every landing file to find it in the ledger (about 470 MB for a 1 M-row day, on the
critical path), then skipped it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from riskpipe.store import Layout
from riskpipe.watch import landing_files, watch_state_path


def _handled(layout: Layout) -> dict[str, tuple[int, int]]:
    try:
        raw = json.loads(watch_state_path(layout).read_text(encoding="utf-8"))
        return {str(k): (int(v[0]), int(v[1])) for k, v in raw.items()}
    except (FileNotFoundError, ValueError, TypeError, IndexError, AttributeError):
        return {}  # no watcher (or an unreadable record): every file is for the night


def unhandled_landing(layout: Layout) -> list[str] | None:
    """The landing files the night must ingest, in name order: those the watcher has not
    recorded as handled with their current size and modification time. ``None`` means the whole
    folder, as ``riskpipe ingest`` takes it: when nothing was recorded, or when the folder holds
    a link or a special file (which that listing refuses and reports)."""
    handled = _handled(layout)
    if not handled or not layout.landing.is_dir():
        return None
    with os.scandir(layout.landing) as entries:
        for entry in entries:
            if entry.name.startswith((".", "_")) or entry.is_dir(follow_symlinks=False):
                continue
            if not stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                return None
    files = landing_files(layout)
    return [str(Path(layout.landing) / n) for n, sig in sorted(files.items()) if handled.get(n) != sig]
