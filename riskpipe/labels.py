"""The exam outcomes store (contract section 3): current outcome per shipment plus an audit trail.

Outcomes come from imported files and from analysts in the workbench, and feed the next retrain.
One current row per shipment: the outcome recorded last replaces the earlier one, whatever its
exam date (a correction of the exam date itself must be possible). Every change (insert or
update) is appended to an audit table with who, when (UTC), and the values before and after, so
a disputed label can always be traced. A write either changes the stored outcome and is audited,
changes nothing (the same values again), or is refused with a reason (an exam date later than
today in the configured time zone plus one day). Writes run in one transaction that takes the
write lock first (SQLite ``BEGIN IMMEDIATE``; ``SELECT ... FOR UPDATE`` elsewhere), so two
analysts recording different outcomes for the same shipment at once are both kept, one after
the other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl
from sqlalchemy import (
    Column,
    Connection,
    Date,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)

from riskpipe import schema as S
from riskpipe.cutoff import day_cutoff
from riskpipe.db import UTCDateTime, is_sqlite, with_retry, write_transaction
from riskpipe.errors import RiskpipeError
from riskpipe.migrate import ensure_current

#: column of ``LabelStore.current()``: when the current value was recorded (UTC).
RECORDED_AT = "recorded_at"

_VALUE_COLS = [S.EXAM_DATE, S.OUTCOME, S.EXAM_REASON, S.EXAMINER, S.NOTES]
_CHUNK = 500  # ids per IN (...) query: well under every database's bound-parameter limit
#: how far past today (in the configured time zone) an exam date may be: a site a day ahead of
#: the server's zone, not a mistyped month or year
FUTURE_TOLERANCE = timedelta(days=1)

metadata = MetaData()

labels_table = Table(
    "labels",
    metadata,
    Column(S.SHIPMENT_ID, String(64), primary_key=True),
    Column(S.EXAM_DATE, Date, nullable=False, index=True),
    Column(S.OUTCOME, String(32), nullable=False),
    Column(S.EXAM_REASON, String(16), nullable=False),
    Column(S.EXAMINER, String(200)),
    Column(S.NOTES, Text),
    Column(RECORDED_AT, UTCDateTime, nullable=False),
    Column("recorded_by", String(100), nullable=False),
)

audit_table = Table(
    "label_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(S.SHIPMENT_ID, String(64), nullable=False, index=True),
    Column("changed_at", UTCDateTime, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("action", String(8), nullable=False),  # insert | update
    Column("before", Text),  # JSON of the previous values, null for an insert
    Column("after", Text, nullable=False),  # JSON of the new values
)


def cutoff(day: date) -> datetime:
    """D's cut-off for outcomes, the one of the whole feature path (:func:`riskpipe.cutoff.day_cutoff`,
    00:00 UTC of D): an outcome recorded (or corrected) at or after it was not known to D's run."""
    return day_cutoff(day)


def latest(labels: pl.DataFrame) -> pl.DataFrame:
    """One row per shipment: the version recorded last (by ``recorded_at`` when the frame has it,
    else the last row). :meth:`LabelStore.current` is already this; :meth:`LabelStore.versions`
    reduces to it. Training targets use this: the latest outcome known at retrain time."""
    if RECORDED_AT in labels.columns:
        labels = labels.sort(RECORDED_AT, maintain_order=True, nulls_last=False)
    return labels.unique(S.SHIPMENT_ID, keep="last", maintain_order=True)


def known_at(labels: pl.DataFrame, day: date) -> pl.DataFrame:
    """The outcomes the run of arrival day ``day`` knew: per shipment the latest version recorded
    before D's cut-off (:func:`cutoff`), kept when its exam date is before ``day``.

    Features of D (prior exams and positives of a party) use this. Given
    :meth:`LabelStore.versions`, a correction recorded after the cut-off leaves D with the value
    as recorded before it; given :meth:`LabelStore.current` (one row per shipment), a shipment
    whose outcome was last changed after the cut-off is left out. A frame without
    ``recorded_at`` (simulations, hand-made tests) is filtered on the exam date only."""
    if RECORDED_AT in labels.columns:
        labels = latest(labels.filter(pl.col(RECORDED_AT) < cutoff(day)))
    return labels.filter(pl.col(S.EXAM_DATE) < day)


def _now_utc() -> datetime:
    """Aware UTC, microsecond precision: what every database stores the same way."""
    return datetime.now(UTC)


class LabelStore:
    """Exam outcomes in a SQL database (``settings.db_url``). ``timezone`` (``settings.timezone``)
    says what "today" is for refusing future exam dates; ``clock`` (aware now) is for tests."""

    def __init__(self, db_url: str, timezone: str = "UTC", clock: Callable[[], datetime] | None = None) -> None:
        self.db_url = db_url
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise RiskpipeError(f"timezone: {timezone!r} is not a time zone name (e.g. America/New_York)") from None
        self.engine = ensure_current(db_url)  # first use: the schema is migrated to head
        self.clock = clock or (lambda: datetime.now(UTC))

    def today(self) -> date:
        """Today in the configured time zone."""
        return self.clock().astimezone(self.zone).date()

    def latest_exam_date(self) -> date:
        """The latest exam date accepted now (today plus :data:`FUTURE_TOLERANCE`)."""
        return self.today() + FUTURE_TOLERANCE

    # -- writing --------------------------------------------------------------------------------
    def record(self, frame: pl.DataFrame, actor: str) -> int:
        """Record outcomes (``S.LABEL_SCHEMA`` columns; examiner and notes optional).

        Per shipment the row with the latest ``exam_date`` (then the last row) counts; it
        replaces the stored outcome, whatever the stored exam date (recorded later wins, and the
        audit keeps what it replaced). Identical values change nothing. A future exam date
        refuses the whole frame (nothing written). Returns the number of shipments inserted or
        updated.

        An optional ``recorded_at`` column (contract section 3: when the outcome entered the
        system, e.g. an archive's own recording time; aware, or naive UTC) is kept as the
        version's time; null or absent is now. One in the future, or before the stored
        outcome's of the same shipment, refuses the frame: point-in-time readers
        (:func:`known_at`) trust it.
        """
        if not actor or not str(actor).strip():
            raise RiskpipeError("labels: an actor (who records the outcomes) is required")
        incoming = _validate(frame, self.latest_exam_date(), _now_utc())
        if incoming.height == 0:
            return 0
        return with_retry(lambda: self._write(incoming, str(actor)))

    def record_one(
        self,
        shipment_id: str,
        exam_date: date,
        outcome: str,
        exam_reason: str,
        actor: str,
        examiner: str | None = None,
        notes: str | None = None,
    ) -> bool:
        """Record one outcome (the workbench form). Same rules as :meth:`record`; True when the
        stored outcome changed (and was audited), False when it was already this one."""
        if isinstance(exam_date, datetime):
            exam_date = exam_date.date()
        frame = pl.DataFrame(
            {
                S.SHIPMENT_ID: [shipment_id],
                S.EXAM_DATE: [exam_date],
                S.OUTCOME: [outcome],
                S.EXAM_REASON: [exam_reason],
                S.EXAMINER: [examiner],
                S.NOTES: [notes],
            },
            schema={c: (pl.String() if c != S.EXAM_DATE else pl.Date()) for c in S.LABEL_SCHEMA},
        )
        return self.record(frame, actor) > 0

    def _write(self, incoming: pl.DataFrame, actor: str) -> int:
        """One write transaction: read the stored rows of these shipments, diff in Polars, then
        bulk-insert new rows, bulk-update changed ones and append their audit rows."""
        ids = incoming[S.SHIPMENT_ID].to_list()
        sqlite = is_sqlite(self.engine)
        with write_transaction(self.engine) as conn:
            found: list[tuple[object, ...]] = []
            for i in range(0, len(ids), _CHUNK):
                q = select(*[labels_table.c[c] for c in [S.SHIPMENT_ID, *_VALUE_COLS, RECORDED_AT]]).where(
                    labels_table.c[S.SHIPMENT_ID].in_(ids[i : i + _CHUNK])
                )
                if not sqlite:
                    q = q.with_for_update()
                found.extend(tuple(r) for r in conn.execute(q))
            # the clock is read once the write lock (SQLite) or the rows' locks (FOR UPDATE) are held:
            # read before, a writer that waited behind another would stamp an earlier time than the
            # outcome committed meanwhile and be refused as "recorded before the stored outcome"
            now = _now_utc()
            old = pl.DataFrame(found, schema={**_STR_SCHEMA, RECORDED_AT: _UTC}, orient="row").rename(
                {c: f"{c}_old" for c in [*_VALUE_COLS, RECORDED_AT]}
            )
            diff = incoming.join(old, on=S.SHIPMENT_ID, how="left", maintain_order="left").with_columns(
                pl.col(RECORDED_AT).fill_null(pl.lit(now, _UTC))
            )
            is_new = pl.col(f"{S.EXAM_DATE}_old").is_null()
            same = pl.all_horizontal([pl.col(c).eq_missing(pl.col(f"{c}_old")) for c in _VALUE_COLS])
            changes = diff.filter(is_new | ~same).with_columns(
                pl.struct(_VALUE_COLS).struct.json_encode().alias("after"),
                pl.when(is_new)
                .then(pl.lit(None, pl.String))
                .otherwise(pl.struct([pl.col(f"{c}_old").alias(c) for c in _VALUE_COLS]).struct.json_encode())
                .alias("before"),
                pl.when(is_new).then(pl.lit("insert")).otherwise(pl.lit("update")).alias("action"),
            )
            if changes.height == 0:
                return 0
            # a version is appended after the stored one, never slipped in before it: the current
            # row stays the version recorded last (what LabelStore.versions' latest() gives)
            early = changes.filter(pl.col(RECORDED_AT) < pl.col(f"{RECORDED_AT}_old"))
            if early.height:
                r = early.row(0, named=True)
                raise RiskpipeError(
                    f"labels: shipment {r[S.SHIPMENT_ID]}: recorded_at {r[RECORDED_AT].isoformat()} is before the "
                    f"stored outcome's ({r[f'{RECORDED_AT}_old'].isoformat()}; {early.height} such row(s))"
                )
            # SQLite: UTCDateTime's text (db.SQLITE_UTC_FORMAT)
            stamp = pl.col(RECORDED_AT).dt.strftime("%Y-%m-%d %H:%M:%S%.6f+00:00") if sqlite else pl.col(RECORDED_AT)
            day: pl.Expr = pl.col(S.EXAM_DATE).dt.to_string("%Y-%m-%d") if sqlite else pl.col(S.EXAM_DATE)
            rows = changes.with_columns(
                day.alias(S.EXAM_DATE), stamp.alias(RECORDED_AT), pl.lit(actor).alias("recorded_by")
            )
            new_rows = rows.filter(pl.col("action") == "insert")
            upd_rows = rows.filter(pl.col("action") == "update")
            label_cols = [S.SHIPMENT_ID, *_VALUE_COLS, RECORDED_AT, "recorded_by"]
            if new_rows.height:
                self._executemany(
                    conn, _insert_sql(self.engine, "labels", label_cols), new_rows.select(label_cols).rows()
                )
            if upd_rows.height:
                set_cols = [*_VALUE_COLS, RECORDED_AT, "recorded_by"]
                sql = _update_sql(self.engine, "labels", set_cols, S.SHIPMENT_ID)
                self._executemany(conn, sql, upd_rows.select(*set_cols, S.SHIPMENT_ID).rows())
            audit_cols = [S.SHIPMENT_ID, "changed_at", "actor", "action", "before", "after"]
            audit = rows.select(
                S.SHIPMENT_ID,
                pl.col(RECORDED_AT).alias("changed_at"),
                pl.col("recorded_by").alias("actor"),
                "action",
                "before",
                "after",
            )
            self._executemany(conn, _insert_sql(self.engine, "label_audit", audit_cols), audit.rows())
            return changes.height

    @staticmethod
    def _executemany(conn: Connection, sql: str, rows: list[tuple[object, ...]]) -> None:
        """Plain DB-API executemany: one prepared statement, no per-row SQLAlchemy processing."""
        for i in range(0, len(rows), 10_000):
            conn.exec_driver_sql(sql, rows[i : i + 10_000])

    # -- reading --------------------------------------------------------------------------------
    def current(self, until: date | None = None, shipment_ids: list[str] | None = None) -> pl.DataFrame:
        """Current outcome per shipment (``S.LABEL_SCHEMA`` + ``recorded_at``), ``exam_date <=
        until`` when given, of ``shipment_ids`` only when given (a page's few rows: reading every
        outcome cost the shipment page 40 ms of Python), sorted by exam date then shipment id."""
        cols = [labels_table.c[c] for c in [*S.LABEL_SCHEMA, RECORDED_AT]]
        q = select(*cols).order_by(labels_table.c[S.EXAM_DATE], labels_table.c[S.SHIPMENT_ID])
        if until is not None:
            q = q.where(labels_table.c[S.EXAM_DATE] <= until)
        if shipment_ids is not None:
            q = q.where(labels_table.c[S.SHIPMENT_ID].in_(list(shipment_ids)))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        schema = {**S.LABEL_SCHEMA, RECORDED_AT: pl.Datetime("us", "UTC")}
        tmp_schema = {**schema, S.OUTCOME: pl.String(), S.EXAM_REASON: pl.String()}  # aware UTC values
        frame = pl.DataFrame([tuple(r) for r in rows], schema=tmp_schema, orient="row")
        return frame.with_columns(
            pl.col(S.OUTCOME).cast(S.Outcome),
            pl.col(S.EXAM_REASON).cast(S.ExamReason),
        ).select(list(schema))

    def versions(self, until: date | None = None) -> pl.DataFrame:
        """Every recorded version of every outcome (``S.LABEL_SCHEMA`` + ``recorded_at``), from the
        audit trail (each insert or update is one version, ``recorded_at`` its ``changed_at``),
        ``exam_date <= until`` when given; sorted by ``recorded_at`` then shipment id.

        What point-in-time readers take (:func:`known_at`: the value as it stood at a day's
        cut-off); :func:`latest` of it is :meth:`current`. A current row without an audit row (a
        database written outside this store) counts as one version recorded at its
        ``recorded_at``."""
        q = select(audit_table.c[S.SHIPMENT_ID], audit_table.c["changed_at"], audit_table.c["after"]).order_by(
            audit_table.c["id"]
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        values = pl.Struct({c: pl.String() for c in _VALUE_COLS})
        audit = (
            pl.DataFrame(
                [tuple(r) for r in rows],
                schema={S.SHIPMENT_ID: pl.String(), RECORDED_AT: pl.Datetime("us", "UTC"), "after": pl.String()},
                orient="row",
            )
            .with_columns(pl.col("after").str.json_decode(values))
            .unnest("after")
        )
        audit = audit.with_columns(pl.col(S.EXAM_DATE).str.to_date("%Y-%m-%d"))
        schema = {**S.LABEL_SCHEMA, RECORDED_AT: pl.Datetime("us", "UTC")}
        cur = self.current()
        cur = cur.join(audit.select(S.SHIPMENT_ID, RECORDED_AT), on=[S.SHIPMENT_ID, RECORDED_AT], how="anti")
        out = pl.concat(
            [
                audit.with_columns(pl.col(S.OUTCOME).cast(S.Outcome), pl.col(S.EXAM_REASON).cast(S.ExamReason)).select(
                    list(schema)
                ),
                cur.select(list(schema)),
            ]
        )
        if until is not None:
            out = out.filter(pl.col(S.EXAM_DATE) <= until)
        return out.sort(RECORDED_AT, S.SHIPMENT_ID, maintain_order=True)

    def get(self, shipment_id: str) -> dict[str, object] | None:
        """The current outcome of one shipment, or None."""
        q = select(labels_table).where(labels_table.c[S.SHIPMENT_ID] == shipment_id)
        with self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        if row is None:
            return None
        return dict(row)  # recorded_at: aware UTC (UTCDateTime)

    def history(self, shipment_id: str) -> list[dict[str, object]]:
        """Audit rows of one shipment, oldest first: ``changed_at`` (UTC), ``actor``,
        ``action`` (insert/update), ``before`` (dict or None) and ``after`` (dict)."""
        q = select(audit_table).where(audit_table.c[S.SHIPMENT_ID] == shipment_id).order_by(audit_table.c["id"])
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            {
                "id": r["id"],
                S.SHIPMENT_ID: r[S.SHIPMENT_ID],
                "changed_at": r["changed_at"],
                "actor": r["actor"],
                "action": r["action"],
                "before": json.loads(r["before"]) if r["before"] else None,
                "after": json.loads(r["after"]),
            }
            for r in rows
        ]

    def counts_by_day(self) -> pl.DataFrame:
        """Exams and fentanyl-related findings per exam date and exam reason (model health)."""
        cur = self.current()
        return (
            cur.group_by(S.EXAM_DATE, S.EXAM_REASON)
            .agg(pl.len().alias("exams"), S.is_positive_expr().sum().cast(pl.Int64).alias("positives"))
            .sort(S.EXAM_DATE, S.EXAM_REASON)
        )


_UTC = pl.Datetime("us", "UTC")


def _recorded_at(frame: pl.DataFrame) -> pl.Expr:
    """The optional ``recorded_at`` column as aware UTC (naive values are UTC), null when absent."""
    if RECORDED_AT not in frame.columns:
        return pl.lit(None, _UTC).alias(RECORDED_AT)
    dtype = frame.schema[RECORDED_AT]
    col = pl.col(RECORDED_AT)
    if isinstance(dtype, pl.Datetime):
        col = col.dt.replace_time_zone("UTC") if dtype.time_zone is None else col.dt.convert_time_zone("UTC")
        return col.dt.cast_time_unit("us").alias(RECORDED_AT)
    if dtype == pl.Null:
        return pl.lit(None, _UTC).alias(RECORDED_AT)
    raise RiskpipeError(f"labels: recorded_at must be a timestamp (got a column of {dtype})")


_STR_SCHEMA: dict[str, pl.DataType] = {
    S.SHIPMENT_ID: pl.String(),
    S.EXAM_DATE: pl.Date(),
    S.OUTCOME: pl.String(),
    S.EXAM_REASON: pl.String(),
    S.EXAMINER: pl.String(),
    S.NOTES: pl.String(),
}


def _placeholders(engine: Engine, cols: list[str]) -> list[str]:
    style = engine.dialect.paramstyle
    if style == "qmark":
        return ["?"] * len(cols)
    if style in ("format", "pyformat"):
        return ["%s"] * len(cols)
    if style == "numeric":
        return [f":{i + 1}" for i in range(len(cols))]
    if style == "numeric_dollar":
        return [f"${i + 1}" for i in range(len(cols))]
    raise RiskpipeError(f"labels: database driver paramstyle {style!r} is not supported")


def _quote(engine: Engine, name: str) -> str:
    return engine.dialect.identifier_preparer.quote(name)


def _insert_sql(engine: Engine, table: str, cols: list[str]) -> str:
    names = ", ".join(_quote(engine, c) for c in cols)
    return f"INSERT INTO {_quote(engine, table)} ({names}) VALUES ({', '.join(_placeholders(engine, cols))})"


def _update_sql(engine: Engine, table: str, set_cols: list[str], key: str) -> str:
    marks = _placeholders(engine, [*set_cols, key])
    sets = ", ".join(f"{_quote(engine, c)} = {m}" for c, m in zip(set_cols, marks[:-1], strict=False))
    return f"UPDATE {_quote(engine, table)} SET {sets} WHERE {_quote(engine, key)} = {marks[-1]}"


def _validate(frame: pl.DataFrame, latest: date, now: datetime | None = None) -> pl.DataFrame:
    """Check columns, enums, that no exam date is after ``latest`` and no ``recorded_at`` after
    ``now``; one row per shipment (the latest exam, then the last row)."""
    missing = [c for c in S.LABEL_REQUIRED if c not in frame.columns]
    if missing:
        raise RiskpipeError(f"labels: missing column(s) {', '.join(missing)}")
    f = frame.select(
        pl.col(S.SHIPMENT_ID).cast(pl.String).str.strip_chars(),
        pl.col(S.EXAM_DATE),
        pl.col(S.OUTCOME).cast(pl.String),
        pl.col(S.EXAM_REASON).cast(pl.String),
        *[
            (pl.col(c).cast(pl.String) if c in frame.columns else pl.lit(None, pl.String)).alias(c)
            for c in (S.EXAMINER, S.NOTES)
        ],
        _recorded_at(frame),
    )
    if f.schema[S.EXAM_DATE] != pl.Date():
        try:
            f = f.with_columns(pl.col(S.EXAM_DATE).cast(pl.String).str.to_date("%Y-%m-%d"))
        except Exception:  # polars raises its own compute errors
            raise RiskpipeError("labels: exam_date must be a date YYYY-MM-DD") from None
    checks = [
        (pl.col(S.SHIPMENT_ID).is_null() | (pl.col(S.SHIPMENT_ID) == ""), S.SHIPMENT_ID, "is empty"),
        (pl.col(S.EXAM_DATE).is_null(), S.EXAM_DATE, "is empty"),
        (pl.col(S.EXAM_DATE) > latest, S.EXAM_DATE, f"is in the future (latest accepted today: {latest.isoformat()})"),
        (pl.col(RECORDED_AT) > (now or _now_utc()), RECORDED_AT, "is in the future"),
        (~pl.col(S.OUTCOME).is_in(S.OUTCOMES).fill_null(False), S.OUTCOME, f"must be one of {', '.join(S.OUTCOMES)}"),
        (
            ~pl.col(S.EXAM_REASON).is_in(S.EXAM_REASONS).fill_null(False),
            S.EXAM_REASON,
            f"must be one of {', '.join(S.EXAM_REASONS)}",
        ),
    ]
    for bad, col, rule in checks:
        idx = f.with_row_index("_row").filter(bad)
        if idx.height:
            first = idx.row(0, named=True)
            got = first[col].isoformat() if isinstance(first[col], date) else repr(first[col])
            raise RiskpipeError(f"labels: row {first['_row'] + 1}: {col} {rule} (got {got}; {idx.height} bad row(s))")
    return (
        f.select(*_STR_SCHEMA, RECORDED_AT)
        .with_row_index("_order")
        .sort(S.EXAM_DATE, "_order")
        .unique(S.SHIPMENT_ID, keep="last", maintain_order=True)
        .drop("_order")
    )
