"""The workbench's view of a data home: published days, their file paths, shared caches.

Every reader of the workbench (:mod:`riskpipe.web.lists`, :mod:`riskpipe.web.shipment`,
:mod:`riskpipe.web.health`) builds on :class:`DayFiles`: one place that finishes a half-swapped
publication before a read and keys caches by a published file's identity.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from datetime import date
from pathlib import Path
from typing import Any

from riskpipe import publish
from riskpipe.config import Settings
from riskpipe.rank import default_reason_texts, load_reason_texts
from riskpipe.store import Layout, write_text_atomic

DAY_CACHE_SIZE = 4  # day views held in memory (a 4 M-row day view is a few hundred MB)
SHIPMENT_CACHE_SIZE = 8192  # parts of shipment pages kept (manifest, score, history rows, network: 4 a page)
DAYS_SETTLE_NS = 2_000_000_000  # a published-days listing is reused once its directories are this old
OUTCOMES_STAMP = ".web_outcomes"  # renewed when the workbench records an outcome (no personal data in it)


def outcomes_changed(home: Path) -> None:
    """Say to every workbench process of ``home`` (``riskpipe serve --workers N``) that an outcome
    was recorded: their rendered lists key on :func:`outcomes_version`, a file renamed in anew."""
    write_text_atomic(str(time.time_ns()), Path(home) / OUTCOMES_STAMP)


ACCOUNTS_STAMP = ".web_accounts"  # renewed when the workbench ends sessions or changes an account


def accounts_changed(home: Path) -> None:
    """Say to every workbench process of ``home`` that an account changed here (a logout, a
    deactivation, a new password or role): their cached accounts key on :func:`accounts_version`,
    so a cookie ended in one worker is refused by the others at once, not a cache lifetime later."""
    write_text_atomic(str(time.time_ns()), Path(home) / ACCOUNTS_STAMP)


def accounts_version(home: Path) -> tuple[int, int, int]:
    """The identity of the accounts stamp (one stat)."""
    return _stamp(Path(home) / ACCOUNTS_STAMP)


def outcomes_version(home: Path) -> tuple[int, int, int]:
    """The identity of the outcomes stamp (one stat): changes whenever any process records one."""
    return _stamp(Path(home) / OUTCOMES_STAMP)


class SingleFlightLRU:
    """A small LRU cache where concurrent misses on one key wait for a single computation
    (instead of each scanning a 4-million-row frame). ``None`` results are not cached."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._flights: dict[Any, threading.Lock] = {}

    def peek(self, key: Any) -> Any:
        """The cached value or None, without computing (for a non-blocking fast path)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def get_or_compute(self, key: Any, compute: Any) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            flight = self._flights.setdefault(key, threading.Lock())
        with flight:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            value = compute()
            with self._lock:
                if value is not None:
                    self._items[key] = value
                    while len(self._items) > self.maxsize:
                        self._items.popitem(last=False)
                self._flights.pop(key, None)
            return value


def _stamp(path: Path) -> tuple[int, int, int]:
    """A published file's identity: mtime, inode and size. Publishing renames a new file in, so
    the inode changes even when two writes fall in one coarse filesystem clock tick."""
    try:
        st = path.stat()
    except OSError:
        return (0, 0, 0)
    return (st.st_mtime_ns, st.st_ino, st.st_size)


class DayFiles:
    """Read access to a data home's published days (thread-safe caches)."""

    def __init__(self, settings: Settings, reason_texts: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.layout = Layout(Path(settings.home))
        self.reason_texts = reason_texts if reason_texts is not None else _load_reason_texts(settings)
        self._days = SingleFlightLRU(DAY_CACHE_SIZE)
        self._published: tuple[tuple, list[date]] | None = None
        self._targets = SingleFlightLRU(DAY_CACHE_SIZE)  # published targets files, as read
        self._partners = SingleFlightLRU(DAY_CACHE_SIZE)  # a day's partner window, read once
        # the parts of a shipment page read from immutable published files, keyed by their identity
        self._shipment_parts = SingleFlightLRU(SHIPMENT_CACHE_SIZE)
        self._index_lock = threading.Lock()
        self._index_pending: set[date] = set()

    # -- days -----------------------------------------------------------------------------------
    # Every read of a published day goes through these paths; each first finishes a publication
    # of the day that a killed run left half-swapped (one stat when there is none), so a page
    # never mixes two nights' files.
    def targets_path(self, day: date) -> Path:
        publish.ensure_complete(self.layout, day)
        return self.layout.day_dir(self.layout.targets, day) / "targets.parquet"

    def scores_path(self, day: date) -> Path:
        publish.ensure_complete(self.layout, day)
        return self.layout.day_dir(self.layout.scores, day) / "scores.parquet"

    def report_path(self, day: date) -> Path:
        publish.ensure_complete(self.layout, day)
        return self.layout.day_dir(self.layout.reports, day) / "report.html"

    def days(self) -> list[date]:
        """Published days (a targets or scores file exists), newest first.

        Asked on every page, so the listing is reused while the two parent directories are
        unchanged (a new day adds a directory there). It is not reused while some day directory
        has no file yet (a publish in progress) or a parent changed in the last two seconds
        (coarse filesystem clocks: a change in the same tick would keep the same stamp)."""
        publish.ensure_all_complete(self.layout)
        key = (_stamp(self.layout.targets), _stamp(self.layout.scores))
        cached = self._published
        if cached is not None and cached[0] == key:
            return list(cached[1])
        out: set[date] = set()
        pending = False
        for base, name in ((self.layout.targets, "targets.parquet"), (self.layout.scores, "scores.parquet")):
            if base.exists():
                for p in base.iterdir():
                    try:
                        d = date.fromisoformat(p.name)
                    except ValueError:
                        continue
                    if (p / name).exists():
                        out.add(d)
                    else:
                        pending = True
        days = sorted(out, reverse=True)
        settled = time.time_ns() - max(key[0][0], key[1][0]) > DAYS_SETTLE_NS
        self._published = (key, days) if settled and not pending else None
        return list(days)

    def reason_words(self, code: str) -> str:
        text = self.reason_texts.get(code)
        if text:
            return text
        base = code.split(":", 1)[-1]
        return base.replace("_", " ")


def _load_reason_texts(settings: Settings) -> dict[str, str]:
    """Plain words per reason code from the ranking module (defensive: a broken rules file shows
    the built-in texts, or the codes, rather than failing the page)."""
    try:
        texts = default_reason_texts(settings)
        return dict(texts) if isinstance(texts, dict) else {}
    except Exception:  # noqa: BLE001 - show codes rather than fail the page
        try:
            return dict(load_reason_texts())
        except Exception:  # noqa: BLE001
            return {}
