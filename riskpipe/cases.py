"""Case work in the labels and users store: assignments, case status, notes, watchlists, saved
views, the audit of who viewed or exported personal data, and the rule edit history.

Every change to a case (assignment, status, note) writes a ``case_audit`` row with who, when,
the values before and after, in the same transaction. Reads of personal data (a shipment page,
a CSV export, a search) write an ``access_audit`` row. A search is recorded with its normalised
query text, not a hash: supervisors must be able to see who looked up what, and a hash of a
phone number or an IP address is reversed by trying the few billion candidates, so it would
hide nothing from an attacker while hiding everything from the reviewer. The table lives in the
store that already holds outcomes and notes, and only supervisors can read it (``/audit``); it
is never logged.

Watchlist entries are point in time: an entry counts for arrival day D when it was added before
D's cut-off (the end of D in the configured time zone) and not removed by then, so a re-run of
D gives the same flags whatever was added or removed later.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from riskpipe import schema as S
from riskpipe.cutoff import day_cutoff
from riskpipe.db import UTCDateTime, with_retry, write_transaction
from riskpipe.errors import RiskpipeError
from riskpipe.migrate import ensure_current

CASE_STATUSES = ("open", "examined", "closed")
#: identifier kinds a search or a watchlist entry names (riskpipe.web.search normalises them)
ID_KINDS = ("phone", "email", "ip", "address", "name", "seller")
ACCESS_ACTIONS = ("view_shipment", "export_csv", "export_api", "search", "view_case")
MAX_NOTE = 2000
MAX_VIEWS_PER_USER = 50

metadata = MetaData()

case_table = Table(
    "cases",
    metadata,
    Column(S.SHIPMENT_ID, String(64), primary_key=True),
    Column("assignee", String(64)),
    Column("status", String(16), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("updated_by", String(100), nullable=False),
    Index("ix_cases_assignee", "assignee"),
)

case_notes_table = Table(
    "case_notes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(S.SHIPMENT_ID, String(64), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("author", String(100), nullable=False),
    Column("text", Text, nullable=False),
)

case_audit_table = Table(
    "case_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(S.SHIPMENT_ID, String(64), nullable=False, index=True),
    Column("changed_at", UTCDateTime, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("action", String(16), nullable=False),  # assign | status | note
    Column("before", Text),
    Column("after", Text, nullable=False),
)

watchlist_table = Table(
    "watchlist",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("value", String(300), nullable=False),  # normalised as the search normalises it
    Column("note", String(500)),
    Column("added_by", String(100), nullable=False),
    Column("added_at", UTCDateTime, nullable=False),
    Column("removed_by", String(100)),
    Column("removed_at", UTCDateTime),
    Index("ix_watchlist_kind_value", "kind", "value"),
)

saved_views_table = Table(
    "saved_views",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False),
    Column("name", String(100), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("username", "name", name="uq_saved_views_user_name"),
)

access_audit_table = Table(
    "access_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("actor", String(100), nullable=False),
    Column("action", String(16), nullable=False),
    Column("target", String(300), nullable=False),  # a shipment id, a list query, a search query
    Column("detail", String(300)),
)

rule_edits_table = Table(
    "rule_edits",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("path", String(1000), nullable=False),
    Column("before_sha", String(64)),
    Column("after_sha", String(64), nullable=False),
    Column("diff", Text, nullable=False),
)


def _now() -> datetime:
    return datetime.now(UTC)


def cutoff(day: date) -> datetime:
    """The cut-off of arrival day ``day`` (:func:`riskpipe.cutoff.day_cutoff`, 00:00 UTC of D):
    watchlist entries added before it flag D's shipments, as partner feeds imported and outcomes
    recorded before it are known to D."""
    return day_cutoff(day)


@dataclass(frozen=True)
class Case:
    shipment_id: str
    assignee: str | None
    status: str
    updated_at: datetime | None
    updated_by: str | None


class CaseStore:
    """Cases, notes, watchlists, saved views and the audits, in ``settings.db_url``."""

    def __init__(self, db_url: str, clock: Callable[[], datetime] = _now) -> None:
        self.engine = ensure_current(db_url)
        self.clock = clock

    # -- cases ----------------------------------------------------------------------------------
    def case(self, shipment_id: str) -> Case:
        """The case of a shipment (an untouched one is open and unassigned)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(case_table).where(case_table.c.shipment_id == shipment_id)).mappings().first()
        if row is None:
            return Case(shipment_id, None, "open", None, None)
        return Case(row[S.SHIPMENT_ID], row["assignee"], row["status"], row["updated_at"], row["updated_by"])

    def cases(
        self, assignee: str | None = None, status: str | None = None, limit: int = 500
    ) -> list[dict[str, object]]:
        q = select(case_table).order_by(case_table.c.updated_at.desc()).limit(limit)
        if assignee:
            q = q.where(case_table.c.assignee == assignee)
        if status:
            q = q.where(case_table.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def assign(self, shipment_id: str, assignee: str | None, actor: str) -> bool:
        """Assign the case to ``assignee`` (None: nobody); True when it changed."""
        return self._change(shipment_id, actor, "assign", assignee=assignee or None)

    def set_status(self, shipment_id: str, status: str, actor: str) -> bool:
        if status not in CASE_STATUSES:
            raise RiskpipeError(f"case status must be one of {', '.join(CASE_STATUSES)} (got {status!r})")
        return self._change(shipment_id, actor, "status", status=status)

    def _change(self, shipment_id: str, actor: str, action: str, **values: str | None) -> bool:
        return with_retry(lambda: self._change_once(shipment_id, actor, action, values))

    def _change_once(self, shipment_id: str, actor: str, action: str, values: dict[str, str | None]) -> bool:
        t = case_table
        now = self.clock()
        with write_transaction(self.engine) as conn:
            row = (
                conn.execute(select(t.c.assignee, t.c.status).where(t.c.shipment_id == shipment_id)).mappings().first()
            )
            before = dict(row) if row is not None else {"assignee": None, "status": "open"}
            after = {**before, **values}
            if after == before and row is not None:
                return False
            stamp = {"updated_at": now, "updated_by": actor}
            if row is None:
                conn.execute(insert(t).values(shipment_id=shipment_id, **after, **stamp))
            else:
                conn.execute(update(t).where(t.c.shipment_id == shipment_id).values(**after, **stamp))
            key = next(iter(values))
            conn.execute(
                insert(case_audit_table).values(
                    shipment_id=shipment_id,
                    changed_at=now,
                    actor=actor,
                    action=action,
                    before=json.dumps({key: before[key]}),
                    after=json.dumps({key: after[key]}),
                )
            )
        return True

    def add_note(self, shipment_id: str, text: str, actor: str) -> None:
        text = (text or "").strip()
        if not text:
            raise RiskpipeError("a note needs some text")
        if len(text) > MAX_NOTE:
            raise RiskpipeError(f"a note is at most {MAX_NOTE} characters (this one has {len(text)})")
        now = self.clock()
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert(case_notes_table).values(shipment_id=shipment_id, created_at=now, author=actor, text=text)
            )
            conn.execute(
                insert(case_audit_table).values(
                    shipment_id=shipment_id,
                    changed_at=now,
                    actor=actor,
                    action="note",
                    before=None,
                    after=json.dumps({"note": text}),
                )
            )

    def notes(self, shipment_id: str) -> list[dict[str, object]]:
        t = case_notes_table
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(select(t).where(t.c.shipment_id == shipment_id).order_by(t.c.id)).mappings()
            ]

    def case_audit(self, shipment_id: str) -> list[dict[str, object]]:
        t = case_audit_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.shipment_id == shipment_id).order_by(t.c.id)).mappings()
            return [dict(r) for r in rows]

    # -- watchlist ------------------------------------------------------------------------------
    def watch(self, kind: str, value: str, actor: str, note: str | None = None) -> int:
        """Add a normalised identifier to the watchlist; the id of its (new or existing) entry."""
        if kind not in ID_KINDS:
            raise RiskpipeError(f"watchlist kind must be one of {', '.join(ID_KINDS)} (got {kind!r})")
        if not value or len(value) > 300:
            raise RiskpipeError("watchlist: the identifier is empty or longer than 300 characters")
        t = watchlist_table
        with write_transaction(self.engine) as conn:
            live = conn.execute(
                select(t.c.id).where(t.c.kind == kind, t.c.value == value, t.c.removed_at.is_(None))
            ).first()
            if live is not None:
                return int(live[0])
            res = conn.execute(
                insert(t).values(
                    kind=kind,
                    value=value,
                    note=(note or "").strip()[:500] or None,
                    added_by=actor,
                    added_at=self.clock(),
                )
            )
            inserted = res.inserted_primary_key
            if inserted is None:
                raise RiskpipeError("watchlist: the database gave no id for the new entry")
            return int(inserted[0])

    def unwatch(self, entry_id: int, actor: str) -> bool:
        t = watchlist_table
        with write_transaction(self.engine) as conn:
            n = conn.execute(
                update(t)
                .where(t.c.id == entry_id, t.c.removed_at.is_(None))
                .values(removed_at=self.clock(), removed_by=actor)
            ).rowcount
        return n > 0

    def watchlist(self, include_removed: bool = False) -> list[dict[str, object]]:
        t = watchlist_table
        q = select(t).order_by(t.c.id.desc())
        if not include_removed:
            q = q.where(t.c.removed_at.is_(None))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def watchlist_at(self, at: datetime) -> list[tuple[str, str]]:
        """(kind, value) of the entries in force at ``at`` (added by then, not removed by then)."""
        t = watchlist_table
        q = (
            select(t.c.kind, t.c.value)
            .where(t.c.added_at <= at, or_(t.c.removed_at.is_(None), t.c.removed_at > at))
            .distinct()
        )
        with self.engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(q)]

    # -- saved views ----------------------------------------------------------------------------
    def save_view(self, username: str, name: str, url: str) -> None:
        name = (name or "").strip()
        if not name or len(name) > 100:
            raise RiskpipeError("a saved view needs a name of 1 to 100 characters")
        if not url.startswith("/") or url.startswith("//") or len(url) > 2000:
            raise RiskpipeError("a saved view is a workbench address starting with /")
        t = saved_views_table
        with write_transaction(self.engine) as conn:
            conn.execute(delete(t).where(t.c.username == username, t.c.name == name))
            n = conn.execute(select(func.count()).select_from(t).where(t.c.username == username)).scalar_one()
            if n >= MAX_VIEWS_PER_USER:
                raise RiskpipeError(f"at most {MAX_VIEWS_PER_USER} saved views per user: delete one first")
            conn.execute(insert(t).values(username=username, name=name, url=url, created_at=self.clock()))

    def delete_view(self, username: str, view_id: int) -> None:
        t = saved_views_table
        with write_transaction(self.engine) as conn:
            conn.execute(delete(t).where(and_(t.c.username == username, t.c.id == view_id)))

    def views(self, username: str) -> list[dict[str, object]]:
        t = saved_views_table
        with self.engine.connect() as conn:
            return [
                dict(r) for r in conn.execute(select(t).where(t.c.username == username).order_by(t.c.name)).mappings()
            ]

    # -- access audit ---------------------------------------------------------------------------
    def record_access(self, actor: str, action: str, target: str, detail: str | None = None) -> None:
        if action not in ACCESS_ACTIONS:
            raise ValueError(f"unknown access action {action!r}")
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert(access_audit_table).values(
                    at=self.clock(),
                    actor=actor,
                    action=action,
                    target=target[:300],
                    detail=(detail or None) and detail[:300],
                )
            )

    def access_log(
        self, actor: str | None = None, action: str | None = None, limit: int = 500
    ) -> list[dict[str, object]]:
        t = access_audit_table
        q = select(t).order_by(t.c.id.desc()).limit(limit)
        if actor:
            q = q.where(t.c.actor == actor)
        if action:
            q = q.where(t.c.action == action)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def recent_case_changes(self, limit: int = 200) -> list[dict[str, object]]:
        t = case_audit_table
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(t).order_by(t.c.id.desc()).limit(limit)).mappings()]

    # -- rule edits -----------------------------------------------------------------------------
    def record_rule_edit(self, actor: str, path: str, before_sha: str | None, after_sha: str, diff: str) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert(rule_edits_table).values(
                    at=self.clock(), actor=actor, path=path, before_sha=before_sha, after_sha=after_sha, diff=diff
                )
            )

    def rule_edits(self, limit: int = 50) -> list[dict[str, object]]:
        t = rule_edits_table
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(t).order_by(t.c.id.desc()).limit(limit)).mappings()]
