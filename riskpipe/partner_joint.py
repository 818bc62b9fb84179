"""The joint list of a Unified Cargo Processing port: the shipments of a published targeting list
that both customs services inspect together, with only the fields both may see (see
:mod:`riskpipe.partner` for the feeds whose findings it names)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from riskpipe import schema as S
from riskpipe.csvsafe import formula_safe
from riskpipe.errors import RiskpipeError
from riskpipe.features import partner as family
from riskpipe.store import (
    PRIVATE_FILE,
    Layout,
    private_dir,
    scan_raw_shipments,
    write_bytes_atomic,
    write_parquet_atomic,
)

#: the only columns of a joint list: what the partner already holds for a shipment exported to
#: the US (its export declaration: parties' names, goods, value, weight) or gave us (its findings,
#: its OEA list), and what both need to find the truck. No risk score, no reason codes, no model
#: or rule internals, no US-only reasons, no consignee personal data.
JOINT_COLUMNS = [
    "joint_rank",
    S.SHIPMENT_ID,
    S.ARRIVAL_DATE,
    S.PORT_OF_ENTRY,
    S.MODE,
    S.CARRIER_CODE,
    S.MASTER_BILL,
    S.SHIPPER_NAME,
    S.SHIPPER_COUNTRY,
    S.COUNTRY_OF_ORIGIN,
    S.EXPORT_COUNTRY,
    S.DESCRIPTION,
    S.HTS_CODE,
    S.DECLARED_VALUE_USD,
    S.GROSS_WEIGHT_KG,
    S.PIECE_COUNT,
    "oea_claim",
    "shared_reason",
]


def joint_list(layout: Layout, day: date, port: str, ucp_ports: list[str], key: bytes | None) -> pl.DataFrame:
    """The shipments of the published targeting list of ``day`` at UCP ``port``, in rank order,
    with :data:`JOINT_COLUMNS` only. ``shared_reason``: the partner findings and OEA verdicts
    that hit the shipment, in plain words (needs ``key`` when a feed or list is active)."""
    if port not in ucp_ports:
        raise RiskpipeError(
            f"--port {port}: not a Unified Cargo Processing port in settings "
            f"(ucp_ports: {', '.join(ucp_ports) or 'none'})"
        )
    targets_file = layout.day_dir(layout.targets, day) / "targets.parquet"
    if not targets_file.is_file():
        raise RiskpipeError(
            f"{targets_file}: no published targeting list for {day} (run `riskpipe nightly --date {day}`)"
        )
    targets = (
        pl.read_parquet(targets_file, columns=[S.RANK, S.SHIPMENT_ID, S.PORT_OF_ENTRY])
        .filter(pl.col(S.PORT_OF_ENTRY) == port)
        .sort(S.RANK)
        .select(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("joint_rank"), S.SHIPMENT_ID)
    )
    raw = scan_raw_shipments(layout, [day]).filter(pl.col(S.SHIPMENT_ID).is_in(targets[S.SHIPMENT_ID].implode()))
    inp = family.inputs(layout, day, raw, key)
    reasons = family.reason_texts(raw, inp).collect()
    fields = raw.select(
        *[c for c in JOINT_COLUMNS if c not in ("joint_rank", "oea_claim", "shared_reason")],
        pl.col(S.TRUSTED_TRADER).cast(pl.String).alias("oea_claim"),
    ).collect()
    out = (
        targets.join(fields, on=S.SHIPMENT_ID, how="left")
        .join(reasons.rename({"partner_reason": "shared_reason"}), on=S.SHIPMENT_ID, how="left")
        .with_columns(pl.when(pl.col("oea_claim") == "mx_oea").then(pl.col("oea_claim")).alias("oea_claim"))
    )
    return out.select(JOINT_COLUMNS).sort("joint_rank")


def write_joint_list(frame: pl.DataFrame, out_dir: Path, day: date, port: str) -> tuple[Path, Path]:
    """``joint-D-port-P.csv`` (formula-guarded) and ``.parquet``, 0600 in a 0700 folder."""
    private_dir(Path(out_dir))
    stem = f"joint-{day.isoformat()}-port-{port}"
    csv = write_bytes_atomic(
        formula_safe(frame).write_csv().encode("utf-8"), Path(out_dir) / f"{stem}.csv", PRIVATE_FILE
    )
    pq = write_parquet_atomic(frame, Path(out_dir) / f"{stem}.parquet", PRIVATE_FILE)
    return csv, pq
