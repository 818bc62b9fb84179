"""Ingest landing files as they arrive (``riskpipe watch``, the ``ingest-landed`` deployment), and
score their days provisionally (:mod:`riskpipe.provisional`).

Each poll lists the landing folder's top-level files, ingests those that are ready with
:func:`riskpipe.ingest.ingest_paths` (the same validation, quarantine, amendments, ledger and
counts as ``riskpipe ingest``; a file already in the ledger is skipped, so a poll is idempotent)
and scores the arrival dates they wrote. The nightly still ingests whatever arrived since.

When a file is ready (never half-read):

- a name starting with ``.`` or ``_`` is an upload in progress (the landing folder's convention,
  which ``riskpipe ingest`` also follows): upload under such a name, then rename; the rename is
  atomic, so the file is complete when its real name appears;
- any other file is read once its size and modification time have not changed for ``settle_s``
  seconds (default ``SETTLE_S``) and, when an earlier poll saw it, are the ones that poll saw.
  A writer that may pause longer than that mid-file must use the rename convention.

Links and special files are not read here: ``riskpipe ingest`` (and the night) refuse and report
them. One ingest at a time: ``ingest_paths`` holds ``ingest/ingest.lock`` (a blocking ``flock``:
a second run waits, it is not refused); a poll that finds the lock held (a night, or
``riskpipe ingest``, is ingesting) skips its turn instead of queueing behind it.

What a poll has handled is kept in ``ingest/watch.json`` (name, size, modification time; 0600):
the next poll (or the next deployment run) does not hash those files again.

Measured (2 cores at load average 6 to 8; a home of 8 days x 5,000 shipments with a champion):
landing to provisional score with ``riskpipe watch`` running (defaults: 15 s interval, 5 s
settle) 13.7 s for a small day (4 files, 5,257 rows; scoring 3.4 s) and 13.3 s for a 200k-row
Parquet file (197,925 rows after amendments; scoring 4.7 s); ``riskpipe watch --once --settle 0``
right after landing: 5.9 s (6.9 s wall, 0.48 GB) and 15.1 s (16.0 s wall, 1.0 GB, scoring 10.6 s).
The whole day is re-scored on each file, so the cost grows with the day's rows so far.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TypedDict

from riskpipe.config import Settings
from riskpipe.errors import RiskpipeError
from riskpipe.ingest import ingest_paths
from riskpipe.provisional import ProvisionalResult, score_provisional, sweep_replaced
from riskpipe.runsteps import one_line
from riskpipe.store import PRIVATE_FILE, Layout, file_lock, private_dir, write_text_atomic

#: seconds a file's size and modification time must stay unchanged before it is read
SETTLE_S = 5.0
#: seconds between polls of ``riskpipe watch``: short, because a landed file is to be scored
#: within a minute (listing the folder costs a few stat calls; a file is hashed once)
INTERVAL_S = 15.0

Signature = tuple[int, int]  # (size in bytes, modification time in ns)


class ProvisionalRecord(TypedDict):
    """One provisionally scored day in :meth:`PollResult.as_dict`."""

    day: str
    rows: int
    model_version: str
    seconds: float


class PollRecord(TypedDict):
    """:meth:`PollResult.as_dict`: the JSON the ingest-landed flow returns (dates as ISO text)."""

    waiting: list[str]
    busy: bool
    ingest: dict[str, object] | None
    provisional: list[ProvisionalRecord]
    latency_s: dict[str, float]
    replaced: list[str]
    errors: list[str]


@dataclass
class PollResult:
    """What one poll did: files ``waiting`` to settle, ``busy`` when another ingest held the lock,
    the ingest counts, the days scored provisionally and, per ingested file, the seconds from its
    landing (last modification) to its provisional scores."""

    waiting: list[str] = field(default_factory=list)
    busy: bool = False
    ingest: dict[str, object] | None = None
    provisional: list[ProvisionalResult] = field(default_factory=list)
    latency_s: dict[str, float] = field(default_factory=dict)
    replaced: list[date] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> PollRecord:
        return {
            "waiting": self.waiting,
            "busy": self.busy,
            "ingest": self.ingest,
            "provisional": [
                {"day": r.day.isoformat(), "rows": r.rows, "model_version": r.model_version, "seconds": r.seconds}
                for r in self.provisional
            ],
            "latency_s": self.latency_s,
            "replaced": [d.isoformat() for d in self.replaced],
            "errors": self.errors,
        }


def landing_files(layout: Layout) -> dict[str, Signature]:
    """Top-level regular files of the landing folder that are not uploads in progress (hidden
    names), by name, with their (size, mtime_ns)."""
    out: dict[str, Signature] = {}
    if not layout.landing.is_dir():
        return out
    with os.scandir(layout.landing) as entries:
        for entry in entries:
            if entry.name.startswith((".", "_")):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # renamed or removed since listed
                continue
            if stat.S_ISREG(st.st_mode):
                out[entry.name] = (st.st_size, st.st_mtime_ns)
    return out


def watch_state_path(layout: Layout) -> Path:
    return layout.ingest_dir / "watch.json"


class Watcher:
    """Polls the landing folder of ``layout``; remembers what it saw and handled."""

    def __init__(
        self,
        layout: Layout,
        settings: Settings,
        settle_s: float = SETTLE_S,
        provisional: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.layout, self.settings, self.settle_s = layout, settings, settle_s
        self.provisional, self.clock = provisional, clock
        self._seen: dict[str, Signature] = {}  # what the previous poll saw
        self._done = self._load_state()  # ingested (or skipped / quarantined) as of this signature

    def _load_state(self) -> dict[str, Signature]:
        try:
            raw = json.loads(watch_state_path(self.layout).read_text(encoding="utf-8"))
            return {str(k): (int(v[0]), int(v[1])) for k, v in raw.items()}
        except (FileNotFoundError, ValueError, TypeError, IndexError, AttributeError):
            return {}  # missing or unreadable: only costs hashing the files again

    def _save_state(self, present: dict[str, Signature]) -> None:
        keep = {k: v for k, v in self._done.items() if present.get(k) == v}
        private_dir(self.layout.ingest_dir, under=self.layout.home)
        write_text_atomic(json.dumps(keep, sort_keys=True), watch_state_path(self.layout), mode=PRIVATE_FILE)

    def ready(self, files: dict[str, Signature], now: float) -> tuple[list[str], list[str]]:
        """(ready, waiting) names among ``files`` not handled yet (see the module's rule)."""
        ready: list[str] = []
        waiting: list[str] = []
        for name, sig in sorted(files.items()):
            if self._done.get(name) == sig:
                continue
            prev = self._seen.get(name)
            settled = now - sig[1] / 1e9 >= self.settle_s and (prev is None or prev == sig)
            (ready if settled else waiting).append(name)
        return ready, waiting

    def poll(self) -> PollResult:
        """One look at the landing folder: ingest what is ready, score its days provisionally."""
        result = PollResult()
        if self.provisional:
            result.replaced = sweep_replaced(self.layout)
        files = landing_files(self.layout)
        ready, result.waiting = self.ready(files, self.clock())
        self._seen = files
        if not ready:
            return result
        private_dir(self.layout.ingest_dir, under=self.layout.home)
        with file_lock(self.layout.ingest_lock, blocking=False) as free:
            pass  # probe only: ingest_paths takes the lock itself (it waits if taken meanwhile)
        if not free:
            result.busy = True
            return result
        try:
            summary = ingest_paths(
                self.layout, [self.layout.landing / n for n in ready], fx_rates_path=self.settings.fx_rates_path
            )
        except (RiskpipeError, OSError) as exc:  # a file renamed or swapped meanwhile: next poll
            result.errors.append(f"ingest: {one_line(exc)}")
            return result
        result.ingest = summary.as_dict()
        for name in ready:
            self._done[name] = files[name]
        self._save_state(files)
        if self.provisional:
            self._score(sorted(date.fromisoformat(d) for d in summary.days_written), result)
            ended = self.clock()
            ingested = {f.file for f in summary.files if f.status == "ingested"}
            if result.provisional:
                result.latency_s = {n: round(ended - files[n][1] / 1e9, 3) for n in ready if n in ingested}
        return result

    def _score(self, days: list[date], result: PollResult) -> None:
        for day in days:
            try:
                done = score_provisional(self.layout, self.settings, day)
            except Exception as exc:  # the ingest is committed; the night will score
                result.errors.append(f"provisional {day}: {one_line(exc)}")
                continue
            if done is not None:
                result.provisional.append(done)


def watch(
    layout: Layout,
    settings: Settings,
    *,
    interval_s: float = INTERVAL_S,
    settle_s: float = SETTLE_S,
    once: bool = False,
    provisional: bool = True,
    stop: threading.Event | None = None,
    report: Callable[[PollResult], None] | None = None,
) -> list[PollResult]:
    """Poll every ``interval_s`` seconds until ``stop`` is set (``once``: one poll); ``report``
    gets each poll's result. Returns the results of polls that did something (``once``: the one)."""
    if interval_s <= 0:
        raise RiskpipeError(f"watch: --interval must be positive, got {interval_s}")
    stop = stop or threading.Event()
    watcher = Watcher(layout, settings, settle_s=settle_s, provisional=provisional)
    results = []
    while True:
        result = watcher.poll()
        if report is not None:
            report(result)
        if once or result.ingest is not None or result.errors:
            results.append(result)
        if once or stop.wait(interval_s):
            return results


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C or SIGTERM sets ``stop``: the poll under way finishes (an ingest is never cut in
    the middle of its journal), then the loop ends. A second Ctrl-C interrupts at once (ingest
    is crash-safe: a killed run is invisible or completed by the next)."""

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
