"""The registry's audit trail, ``models/decisions.jsonl``: retrain decisions and champion changes.

One JSON object a line: who, when, from, to, why. ``riskpipe.registry`` appends champion changes
(promote, rollback, trust); ``riskpipe.retrain`` appends its decisions; ``champion_history``
reads the trail back for rollback.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import polars as pl

from riskpipe.errors import RiskpipeError

DECISIONS_FILE = "decisions.jsonl"


@runtime_checkable
class _SupportsItem(Protocol):
    """A numpy scalar (or one-element array): ``item()`` gives the Python value."""

    def item(self) -> object: ...


def _json_default(value: object) -> object:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, _SupportsItem):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@dataclass
class RetrainDecision:
    """What ``retrain`` decided and why (also one line of ``decisions.jsonl``)."""

    promoted: bool
    challenger_version: str | None
    champion_version: str | None
    reason: str
    metric: str = "precision_at_capacity"
    challenger_score: float | None = None
    champion_score: float | None = None
    margin: float = 0.0
    eval_days: list[str] = field(default_factory=list)
    table: pl.DataFrame | None = None  # evaluation table (not written to the decisions file)
    report: dict[str, Any] = field(default_factory=dict)
    action: str = "retrain"  # or "trust" (a re-signed model), "forced-promote" (retrain --force);
    # promote/rollback: record_champion_change
    #: riskpipe.promotion.PromotionEvidence.as_dict() of the comparison (None: nothing compared)
    evidence: dict[str, Any] | None = None
    min_positives: int | None = None
    forced: bool = False

    def as_record(self) -> dict[str, object]:
        return {
            "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "action": self.action,
            "by": operator_name(),
            "from_version": self.champion_version,
            "to_version": self.challenger_version if self.promoted else self.champion_version,
            "promoted": self.promoted,
            "challenger_version": self.challenger_version,
            "champion_version": self.champion_version,
            "reason": self.reason,
            "metric": self.metric,
            "challenger_score": self.challenger_score,
            "champion_score": self.champion_score,
            "margin": self.margin,
            "eval_days": self.eval_days,
            "decided_on": "hits_at_capacity_doubly_robust" if self.evidence else None,
            "min_positives": self.min_positives,
            "evidence": self.evidence,
            "forced": self.forced,
        }


def operator_name() -> str:
    """Who runs this process, for the audit trail: the OS account of the effective user (not an
    environment variable, which anyone can set)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def record_decision(models_dir: Path, decision: RetrainDecision) -> None:
    _append_decision(models_dir, decision.as_record())


def _append_decision(models_dir: Path, record: Mapping[str, object]) -> None:
    path = Path(models_dir) / DECISIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=_json_default) + "\n")


def read_decisions(models_dir: Path) -> list[dict[str, Any]]:
    path = Path(models_dir) / DECISIONS_FILE
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise RiskpipeError(f"{path}: line {number} is not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise RiskpipeError(f"{path}: line {number} is not a JSON object")
        records.append(record)
    return records


# -- champion changes by the operator, audited ---------------------------------------------------
def record_champion_change(
    models_dir: Path, action: str, from_version: str | None, to_version: str, reason: str
) -> dict[str, object]:
    """Append a champion change (``promote``, ``rollback``) to the audit trail: who, when, from,
    to, why. Also written with the keys of a retrain decision (``promoted``,
    ``challenger_version``, ``champion_version``), so every reader of the file sees the change."""
    record: dict[str, object] = {
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "action": action,
        "by": operator_name(),
        "from_version": from_version,
        "to_version": to_version,
        "promoted": True,
        "challenger_version": to_version,
        "champion_version": from_version,
        "reason": reason,
        "metric": "none",
    }
    _append_decision(models_dir, record)
    return record


def champion_history(models_dir: Path) -> list[str]:
    """The champions in the order the audit trail made them, each rollback undoing the change it
    rolled back: the last is the current champion, the one before it what a rollback restores.
    A promotion of the current champion again adds nothing; a re-signed champion (``trust``)
    replaces its unsigned self; a champion a record replaced that the trail had not seen (set by
    hand) is taken as the record says."""
    stack: list[str] = []
    for record in read_decisions(models_dir):
        to = record.get("to_version", record.get("challenger_version"))
        if not record.get("promoted") or not isinstance(to, str):
            continue
        before = record.get("from_version", record.get("champion_version"))
        action = record.get("action") or (
            "trust" if str(record.get("reason", "")).startswith("operator re-signed") else "retrain"
        )
        if isinstance(before, str) and (not stack or stack[-1] != before):
            stack.append(before)  # a champion set outside riskpipe, as the record saw it
        if action in ("rollback", "trust") and stack and stack[-1] == before:
            stack.pop()
        if not stack or stack[-1] != to:
            stack.append(to)
    return stack
