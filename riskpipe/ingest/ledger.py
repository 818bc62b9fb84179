"""The content-hash ledgers (a file already seen is skipped) and the run log."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from riskpipe.store import (
    PRIVATE_FILE,
    Layout,
    append_lines,
    private_dir,
)


def _ingest_dir(layout: Layout) -> Path:
    return layout.ingest_dir


def ledger_path(layout: Layout, kind: str = "manifest") -> Path:
    """The content-hash ledger (manifest/partner files, or label files)."""
    return _ingest_dir(layout) / ("labels_ledger.jsonl" if kind == "labels" else "ledger.jsonl")


def runs_path(layout: Layout) -> Path:
    return _ingest_dir(layout) / "runs.jsonl"


def _read_ledger(path: Path) -> set[str]:
    if not path.exists():
        return set()
    seen = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                seen.add(json.loads(line)["sha256"])
            except (json.JSONDecodeError, KeyError):
                continue  # a torn last line from a crash: that file is simply re-ingested
    return seen


def _jsonl(records: Iterable[dict]) -> list[str]:
    return [json.dumps(rec, default=str) for rec in records]


def _append_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Append records to a ledger or run log (0600, in a 0700 folder: it names files and hashes)."""
    private_dir(path.parent)
    append_lines(path, _jsonl(records), mode=PRIVATE_FILE)


def read_runs(layout: Layout) -> list[dict]:
    """Summaries of past ingest runs, oldest first."""
    path = runs_path(layout)
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
