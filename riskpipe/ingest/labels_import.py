"""Labels import: exam outcomes validated like manifests and recorded in the label store."""

from __future__ import annotations

import os
import shutil
import uuid
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.ingest.columns import _BAD, Q_REASONS
from riskpipe.ingest.landing import _list_inputs, _Refused, _sha256_regular
from riskpipe.ingest.ledger import _append_jsonl, _ingest_dir, _read_ledger, ledger_path, runs_path
from riskpipe.ingest.quarantine import _bad_rows_plan, _quarantine_file
from riskpipe.ingest.readers import _FileRejected, _first_line, _scan_text
from riskpipe.ingest.summary import FileResult, LabelImportSummary
from riskpipe.ingest.validation import _label_plan, _p, _reason, _text
from riskpipe.store import (
    PRIVATE_FILE,
    Layout,
    private_dir,
    scan_raw_shipments,
    write_parquet_atomic,
)

if TYPE_CHECKING:  # pragma: no cover
    from riskpipe.labels import LabelStore


def import_labels(layout: Layout, path: Path, store: LabelStore) -> LabelImportSummary:
    """Import exam outcomes from a file or the top-level files of a folder.

    Rows breaking a rule, naming a shipment not in the raw store (``unknown_shipment``) or with
    an exam date the store would refuse as future (``future:exam_date``), are quarantined; the
    rest are recorded with ``actor="import:<file name>"``. A file already
    imported (same content) is skipped.
    """
    path = Path(path)
    if not os.path.lexists(path):
        raise RiskpipeError(f"{path}: no such file or folder")
    refused: list[tuple[Path, str]] = []
    files = _list_inputs(layout, [path], refused)
    now = datetime.now(UTC).replace(microsecond=0)
    run_id = f"labels-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    summary = LabelImportSummary(run_id=run_id, files_seen=len(files) + len(refused), files_refused=len(refused))
    summary.files.extend(FileResult(file=p.name, kind="labels", status="refused", reason=why) for p, why in refused)
    ledger = ledger_path(layout, "labels")
    seen = _read_ledger(ledger)
    reasons: Counter[str] = Counter()
    workdir = private_dir(_ingest_dir(layout) / f".run-{run_id}", under=layout.home)
    private_dir(layout.quarantine_rows, under=layout.home)
    known_ids = scan_raw_shipments(layout).select(S.SHIPMENT_ID)
    try:
        for path_i in files:
            try:
                digest = _sha256_regular(path_i)
            except _Refused as ref:  # swapped for a link or a special file since it was listed
                summary.files.append(FileResult(file=path_i.name, kind="labels", status="refused", reason=ref.reason))
                summary.files_refused += 1
                continue
            result = FileResult(file=path_i.name, kind="labels", status="ingested", sha256=digest)
            summary.files.append(result)
            if digest in seen:
                result.status = "skipped"
                summary.files_skipped += 1
                continue
            seen.add(digest)
            try:
                stored = store.current().select(S.SHIPMENT_ID, pl.col(S.EXAM_DATE).alias(_STORED_EXAM))
                valid, bad = _read_labels(path_i, workdir, known_ids, run_id, store.latest_exam_date(), stored)
            except _FileRejected as rej:
                result.status, result.reason = "quarantined", rej.reason
                summary.files_quarantined += 1
                reasons[f"file:{rej.reason}"] += 1
                _quarantine_file(layout, path_i, digest, "labels", rej.reason, rej.detail, run_id)
            else:
                if bad.height:
                    write_parquet_atomic(bad, layout.quarantine_rows / f"{run_id}-{digest[:12]}.parquet", PRIVATE_FILE)
                    reasons.update(Counter(bad[Q_REASONS].explode().to_list()))
                recorded = store.record(valid, actor=f"import:{path_i.name}") if valid.height else 0
                result.rows_in, result.rows_valid, result.rows_quarantined = (
                    valid.height + bad.height,
                    valid.height,
                    bad.height,
                )
                summary.files_imported += 1
                summary.rows_in += valid.height + bad.height
                summary.rows_valid += valid.height
                summary.rows_recorded += int(recorded or 0)
                summary.rows_quarantined += bad.height
            _append_jsonl(
                ledger,
                [
                    {
                        "sha256": digest,
                        "file": path_i.name,
                        "kind": "labels",
                        "status": result.status,
                        "run_id": run_id,
                        "at": now.isoformat(),
                    }
                ],
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary.quarantine_reasons = dict(sorted(reasons.items()))
    summary.check()
    record = summary.as_dict()
    _append_jsonl(runs_path(layout), [{"kind": "labels", **record}])
    return summary


_STORED_EXAM = "_stored_exam_date"
_KEY_SID = "_label_shipment_key"


def _read_labels(
    path: Path,
    workdir: Path,
    known_ids: pl.LazyFrame,
    run_id: str,
    latest_exam: date,
    stored: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid rows with S.LABEL_SCHEMA and ``recorded_at``, quarantined rows) of one outcomes file
    (small: eager).

    ``stored``: the store's current exam date per shipment (``_STORED_EXAM``). A row whose exam
    date is earlier than the stored one is quarantined (``older_than_stored``): a bulk file
    carrying a preliminary result must not silently undo a later correction; a deliberate
    correction with an earlier exam date is made one record at a time in the workbench."""
    lf, _fmt = _scan_text(path, workdir)
    schema = lf.collect_schema()
    missing = [c for c in S.LABEL_REQUIRED if c not in schema]
    if missing:
        raise _FileRejected("missing_columns", ", ".join(missing))
    plan = _label_plan(schema)
    try:
        frame = lf.collect()
    except Exception as exc:  # any parse failure rejects the file with its reason
        raise _FileRejected("unreadable", f"{type(exc).__name__}: {_first_line(exc)}") from None
    if frame.height == 0:
        raise _FileRejected("empty", "no data rows")
    sid = _text(S.SHIPMENT_ID, schema[S.SHIPMENT_ID])
    wanted = frame.select(sid.alias(S.SHIPMENT_ID)).drop_nulls().unique()
    ids = known_ids.join(wanted.lazy(), on=S.SHIPMENT_ID, how="semi").unique().collect(engine="streaming")
    plan.reasons.append(
        _reason(sid.is_not_null() & ~sid.is_in(ids.get_column(S.SHIPMENT_ID).implode()), "unknown_shipment")
    )
    plan.reasons.append(_reason(_p(S.EXAM_DATE) > latest_exam, "future:exam_date"))
    if "recorded_at" in schema:  # a recording time in the future would hide the outcome until then
        plan.reasons.append(_reason(_p("recorded_at") > datetime.now(UTC), "future:recorded_at"))
    lf_rows = frame.lazy()
    if stored is not None and stored.height:
        lf_rows = (
            lf_rows.with_columns(sid.alias(_KEY_SID))
            .join(stored.lazy().rename({S.SHIPMENT_ID: _KEY_SID}), on=_KEY_SID, how="left", maintain_order="left")
            .drop(_KEY_SID)
        )
        plan.reasons.append(
            _reason(pl.col(_STORED_EXAM).is_not_null() & (_p(S.EXAM_DATE) < pl.col(_STORED_EXAM)), "older_than_stored")
        )
    checked = plan.apply(lf_rows)
    valid = checked.filter(~pl.col(_BAD)).select(*[e.alias(c) for c, e in plan.values.items()]).collect()
    bad = _bad_rows_plan(checked, schema, plan, path.name, "labels", run_id).collect()
    return valid, bad
