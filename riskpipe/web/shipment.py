"""One shipment's page: its manifest, score, partner declaration, parties' history and network."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from riskpipe import schema as S
from riskpipe.lookup import (
    build_lookup,
    columns_of,
    day_fingerprint,
    link_candidates,
    raw_days,
    read_rows,
    ready_lookup,
    scan_matching,
)
from riskpipe.provisional import PROVISIONAL, provisional_score
from riskpipe.search import column_candidates
from riskpipe.store import ensure_raw_complete, scan_raw_partner, scan_raw_shipments
from riskpipe.web.days import DayFiles, _stamp

#: identifiers that tie shipments of a day into a network (shared party data).
LINK_COLUMNS = [
    S.CONSIGNEE_ADDRESS_KEY,
    S.CONSIGNEE_PHONE,
    S.CONSIGNEE_EMAIL,
    S.SHIPPER_PHONE,
    S.SHIPPER_EMAIL,
    S.ACCOUNT_IP,
    S.SELLER_ID,
]
#: identifiers whose past parcels make up a party's history.
HISTORY_COLUMNS = [S.CONSIGNEE_ADDRESS_KEY, S.CONSIGNEE_PHONE, S.SHIPPER_NAME]
LINK_WORDS = {
    S.CONSIGNEE_ADDRESS_KEY: "consignee address",
    S.CONSIGNEE_PHONE: "consignee phone",
    S.CONSIGNEE_EMAIL: "consignee email",
    S.SHIPPER_PHONE: "shipper phone",
    S.SHIPPER_EMAIL: "shipper email",
    S.ACCOUNT_IP: "account IP",
    S.SELLER_ID: "seller",
    S.SHIPPER_NAME: "shipper",
}
HISTORY_WINDOW_DAYS = 60
PARTNER_WINDOW_DAYS = 30
HISTORY_ROWS = 200  # past parcels shown
#: listed targets whose page parts a worker computes at start (4 cached parts each: well within
#: :data:`riskpipe.web.days.SHIPMENT_CACHE_SIZE`, so the day's other pages do not evict them)
WARM_TARGETS = 1000

_INDEX_BUILD = threading.Lock()
log = logging.getLogger("riskpipe.web")


class ShipmentData(DayFiles):
    """Look-ups of one shipment and the parties it shares identifiers with."""

    def _index_later(self, days: list[date]) -> None:
        """Build the look-up files of ``days`` (:mod:`riskpipe.lookup`) in a background thread (one
        day at a time), so the next pages read rows by id instead of scanning those days."""
        with self._index_lock:
            new = [d for d in days if d not in self._index_pending]
            self._index_pending.update(new)
        if new:
            threading.Thread(target=self._build_indexes, args=(new,), name="riskpipe-index", daemon=True).start()

    def _build_indexes(self, days: list[date]) -> None:
        for d in sorted(days, reverse=True):
            try:
                with _INDEX_BUILD:  # one build at a time: pages come first
                    build_lookup(self.layout, d)
            except Exception:  # noqa: BLE001 - the pages scan the day meanwhile
                log.warning("workbench: could not build the look-up files of %s", d.isoformat(), exc_info=True)
            finally:
                with self._index_lock:
                    self._index_pending.discard(d)

    def find_day(self, shipment_id: str) -> date | None:
        """The arrival day of a shipment: newest raw partition first."""
        for d in reversed(raw_days(self.layout)):
            hit = (
                scan_raw_shipments(self.layout, [d])
                .filter(pl.col(S.SHIPMENT_ID) == shipment_id)
                .select(pl.len())
                .collect()
            )
            if hit.item() > 0:
                return d
        return None

    def _lookup(self, day: date) -> dict[str, Path] | None:
        """The day's look-up files, or None (and built in the background) while there are none."""
        paths = ready_lookup(self.layout, day)
        if paths is None:
            self._index_later([day])
        return paths

    def _raw_key(self, day: date) -> str | None:
        """The identity of the day's raw partition and published scores (a re-ingest or a re-score
        changes it): the key of the shipment-page parts read from them."""
        ensure_raw_complete(self.layout)  # an interrupted ingest is rolled forward before the key is taken
        return day_fingerprint(self.layout, day)

    def manifest(self, day: date, shipment_id: str) -> dict[str, Any] | None:
        """The shipment's raw row, kept per raw partition (an analyst's team opens the same
        targets again and again: the row group is decoded once)."""
        fp = self._raw_key(day)
        if fp is None:
            return None
        row = self._shipment_parts.get_or_compute(
            ("manifest", day, fp, shipment_id), lambda: self._read_manifest(day, shipment_id)
        )
        return dict(row) if row is not None else None

    def _read_manifest(self, day: date, shipment_id: str) -> dict[str, Any] | None:
        paths = self._lookup(day)
        if paths is not None:  # one row group of the day's sorted copy
            f = read_rows(paths, [shipment_id])
        else:
            f = scan_raw_shipments(self.layout, [day]).filter(pl.col(S.SHIPMENT_ID) == shipment_id).collect()
        if f.height == 0:
            return None
        return f.row(0, named=True)

    def score(self, day: date, shipment_id: str) -> dict[str, Any] | None:
        """The shipment's published score and target row, kept while both files are unchanged (a
        provisional score, of a day not yet published, is read each time)."""
        scores = self.scores_path(day)
        if not scores.exists():
            return self._read_score(day, shipment_id)
        key = ("score", day, _stamp(scores), _stamp(self.targets_path(day)), shipment_id)
        out = self._shipment_parts.get_or_compute(key, lambda: self._read_score(day, shipment_id))
        return None if out is None else {**out, "reason_list": list(out["reason_list"])}

    def _read_score(self, day: date, shipment_id: str) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        if self.scores_path(day).exists():
            paths = self._lookup(day)
            if paths is not None and "scores" in paths:  # one row group of the sorted copy
                f = read_rows(paths, [shipment_id], kind="scores")
            else:
                f = pl.scan_parquet(self.scores_path(day)).filter(pl.col(S.SHIPMENT_ID) == shipment_id).collect()
            if f.height:
                out.update(f.row(0, named=True), **{PROVISIONAL: False})
        else:  # the night has not published this day: the watcher's provisional score, flagged
            out.update(provisional_score(self.layout, day, shipment_id) or {})
        targets = self.targets_frame(day)
        if targets is not None:
            t = targets.filter(pl.col(S.SHIPMENT_ID) == shipment_id)
            if t.height:
                out.update(
                    {
                        k: v
                        for k, v in t.row(0, named=True).items()
                        if k in (S.RANK, S.SELECTION, S.NETWORK_ID, S.REASON_TEXT) or k not in out
                    }
                )
        if not out:
            return None
        out["reason_list"] = [(c, self.reason_words(c)) for c in (out.get(S.REASONS) or [])]
        return out

    def targets_frame(self, day: date) -> pl.DataFrame | None:
        """The day's published targets file as read (a few thousand rows), kept while the file is
        unchanged: a shipment page looked its row and its network's members up in two scans."""
        path = self.targets_path(day)
        if not path.exists():
            return None
        return self._targets.get_or_compute((day, _stamp(path)), lambda: pl.read_parquet(path))

    def partner(self, day: date, shipment_id: str) -> dict[str, Any] | None:
        """The latest partner declaration of the shipment within the window before ``day``: the
        window's partitions are read once (a few hundred thousand rows) and kept sorted by id
        while their files are unchanged; a page looks its rows up by binary search."""
        window, last = self._partner_window(day)
        at = last.get(shipment_id)
        return None if at is None else window.row(at, named=True)

    def _partner_window(self, day: date) -> tuple[pl.DataFrame, dict[str, int]]:
        days = [day - timedelta(days=i) for i in range(PARTNER_WINDOW_DAYS, -2, -1)]
        wanted = {f"declared_date={d.isoformat()}" for d in days}
        ensure_raw_complete(self.layout)
        base = self.layout.raw_partner
        folders = [p for p in base.iterdir() if p.name in wanted and p.is_dir()] if base.exists() else []
        files = sorted(f for p in folders for f in p.glob("*.parquet"))
        key = (day, tuple((str(f), _stamp(f)) for f in files))
        # latest declaration last within an id (nulls first, as the page's sort on declared_at)
        out: tuple[pl.DataFrame, dict[str, int]] = self._partners.get_or_compute(
            key, lambda: _last_rows(scan_raw_partner(self.layout, days).sort(S.SHIPMENT_ID, S.DECLARED_AT).collect())
        )
        return out

    def party_history(
        self, day: date, manifest: dict[str, Any], labels: pl.DataFrame | Callable[[list[str]], pl.DataFrame] | None
    ) -> list[dict[str, Any]]:
        """Past parcels (before ``day``, within the window) of the same consignee address,
        consignee phone or shipper, with their recorded exam outcomes, newest first.

        ``labels``: the current outcomes, or a function giving those of a list of shipment ids
        (so a page reads the outcomes of its at most 200 parcels, not every outcome)."""
        f = self._history_frame(day, manifest)
        if f is None or f.height == 0:
            return []
        if callable(labels):
            labels = labels(f.get_column(S.SHIPMENT_ID).to_list())
        if labels is not None and labels.height:
            f = f.join(
                labels.select(
                    S.SHIPMENT_ID, S.EXAM_DATE, pl.col(S.OUTCOME).cast(pl.String), pl.col(S.EXAM_REASON).cast(pl.String)
                ),
                on=S.SHIPMENT_ID,
                how="left",
            )
        else:
            f = f.with_columns(
                pl.lit(None, pl.Date).alias(S.EXAM_DATE),
                pl.lit(None, pl.String).alias(S.OUTCOME),
                pl.lit(None, pl.String).alias(S.EXAM_REASON),
            )
        return f.sort(S.ARRIVAL_DATE, S.SHIPMENT_ID, descending=[True, False]).to_dicts()

    def _history_frame(self, day: date, manifest: dict[str, Any]) -> pl.DataFrame | None:
        """The past parcels of :meth:`party_history` without outcomes (do not modify): immutable
        while the window's raw partitions are, so kept per party (the outcomes, which change,
        are joined afresh by the caller). None: no identifier or no day to look at."""
        if not any(manifest.get(c) for c in HISTORY_COLUMNS):
            return None
        days = [d for d in raw_days(self.layout) if day - timedelta(days=HISTORY_WINDOW_DAYS) <= d < day]
        if not days:
            return None
        window = tuple((d, day_fingerprint(self.layout, d)) for d in days)
        party = tuple((c, manifest.get(c)) for c in HISTORY_COLUMNS)
        f: pl.DataFrame = self._shipment_parts.get_or_compute(
            ("history", day, window, party), lambda: self._history_rows(manifest, days)
        )
        return f

    def warm_targets(self, day: date, limit: int = WARM_TARGETS) -> int:
        """Compute the page parts read from immutable files (raw row, score and target row,
        parties' past parcels, network) of the day's listed targets, best ranks first, up to
        ``limit``; the number warmed. A worker does this before it accepts connections: analysts
        open listed targets, each mostly for the first time that day, and a first open cost 14-28
        ms of CPU against 3-5 ms for one opened before (20 analysts at once queued behind it).
        Nothing per user is kept: the outcomes, the user, the CSRF token and the access audit are
        each page's own."""
        targets = self.targets_frame(day)
        if targets is None or targets.height == 0:
            return 0
        ids = targets.sort(S.RANK, nulls_last=True).get_column(S.SHIPMENT_ID).head(limit).to_list()
        warmed = 0
        for sid in ids:
            manifest = self.manifest(day, sid)
            if manifest is None:
                continue
            score = self.score(day, sid)
            self._history_frame(day, manifest)
            self.network(day, manifest, (score or {}).get(S.NETWORK_ID))
            warmed += 1
        return warmed

    def _history_rows(self, manifest: dict[str, Any], days: list[date]) -> pl.DataFrame:
        """The past parcels of :meth:`party_history` (newest first, at most :data:`HISTORY_ROWS`)
        with the identifiers that link them, without outcomes."""
        exact = pl.any_horizontal([pl.col(c) == manifest[c] for c in HISTORY_COLUMNS if manifest.get(c)])
        cols = [
            S.SHIPMENT_ID,
            S.ARRIVAL_DATE,
            S.DESCRIPTION,
            S.DECLARED_VALUE_USD,
            S.COUNTRY_OF_ORIGIN,
            *HISTORY_COLUMNS,
        ]
        values = {c: manifest[c] for c in HISTORY_COLUMNS if manifest.get(c)}
        # days with look-up files: their link entries name the candidates, read by id (newest day
        # first, stopping once HISTORY_ROWS rows are found: only those are shown)
        parts: list[pl.LazyFrame] = []
        found_rows = 0
        rest = []
        for d in sorted(days, reverse=True):
            paths = ready_lookup(self.layout, d) if found_rows < HISTORY_ROWS else None
            if paths is None:
                if found_rows < HISTORY_ROWS:
                    rest.append(d)
                continue
            ids = sorted(set(link_candidates(paths, values).get_column(S.SHIPMENT_ID).to_list()))
            for i in range(0, len(ids), HISTORY_ROWS):
                rows = read_rows(paths, ids[i : i + HISTORY_ROWS], cols).filter(exact)
                parts.append(rows.lazy())
                found_rows += rows.height
                if found_rows >= HISTORY_ROWS:
                    break
        # the other days: only the raw row groups whose statistics can hold a value (footers parsed
        # once per file). Not their search indexes: those name candidate ids, but reading the rows of
        # ids from a day in ingest order decodes the day's id column (with 4 of 30 days indexed, the
        # history cost 18.5 ms of CPU a page instead of 4.6)
        if rest:
            matched = scan_matching(self.layout, rest, values, cols)
            if matched.height:  # no plan to run for nothing
                parts.append(matched.lazy())
        if not parts:
            return pl.DataFrame()
        f = (
            pl.concat(parts, how="vertical_relaxed")
            .sort(S.ARRIVAL_DATE, S.SHIPMENT_ID, descending=[True, False])
            .head(HISTORY_ROWS)
            .collect()
        )
        if f.height == 0:
            return f
        return f.with_columns(
            pl.concat_str(
                [
                    pl.when(pl.col(c) == manifest[c]).then(pl.lit(LINK_WORDS[c]))
                    for c in HISTORY_COLUMNS
                    if manifest.get(c)
                ],
                separator=", ",
                ignore_nulls=True,
            ).alias("linked_by")
        )

    def network(self, day: date, manifest: dict[str, Any], network_id: str | None, limit: int = 40) -> dict[str, Any]:
        """Shipments of ``day`` sharing an identifier with this one (and its published network),
        as nodes and edges for the SVG graph (do not modify: kept while the day's raw partition
        and targets file are unchanged)."""
        fp = self._raw_key(day)
        if fp is None:
            return self._read_network(day, manifest, network_id, limit)
        members_key = _stamp(self.targets_path(day)) if network_id else None
        party = tuple((c, manifest.get(c)) for c in (S.SHIPMENT_ID, *LINK_COLUMNS))
        key = ("network", day, fp, members_key, network_id, party, limit)
        out: dict[str, Any] = self._shipment_parts.get_or_compute(
            key, lambda: self._read_network(day, manifest, network_id, limit)
        )
        return out

    def _read_network(self, day: date, manifest: dict[str, Any], network_id: str | None, limit: int) -> dict[str, Any]:
        keys = {c: manifest[c] for c in LINK_COLUMNS if manifest.get(c) not in (None, "")}
        sid = manifest[S.SHIPMENT_ID]
        paths = self._lookup(day)
        lf = scan_raw_shipments(self.layout, [day]) if paths is None else pl.LazyFrame()
        present = set(columns_of(paths) if paths is not None else lf.collect_schema().names())
        keys = {c: v for c, v in keys.items() if c in present}
        conds = [pl.col(c) == v for c, v in keys.items()]
        members: set[str] = set()
        targets = self.targets_frame(day) if network_id else None
        if targets is not None:
            members = set(
                targets.filter(pl.col(S.NETWORK_ID) == network_id)
                .select(S.SHIPMENT_ID)
                .get_column(S.SHIPMENT_ID)
                .to_list()
            )
        if paths is not None:
            return _network_from_links(paths, sid, keys, members, limit)
        if keys:
            # the day's identifier index names the candidate rows (exact match checked below)
            pairs, full = column_candidates(self.layout, [day], keys)
            if pairs is not None:
                found = set(pairs.collect().get_column(S.SHIPMENT_ID).to_list()) | members
                lf = lf.filter(pl.col(S.SHIPMENT_ID).is_in(sorted(found)))
            elif full:
                self._index_later(full)
        if members:
            conds.append(pl.col(S.SHIPMENT_ID).is_in(sorted(members)))
        if not conds:
            return {"shipments": [], "identifiers": [], "edges": [], "truncated": False}
        cols = [S.SHIPMENT_ID, *keys]
        f = (
            lf.select([c for c in cols if c in present])
            .filter(pl.any_horizontal(conds) & (pl.col(S.SHIPMENT_ID) != sid))
            .sort(S.SHIPMENT_ID)
            .head(limit + 1)
            .collect()
        )
        truncated = f.height > limit
        f = f.head(limit)
        identifiers = [{"id": f"{c}", "kind": LINK_WORDS[c], "value": str(v)} for c, v in keys.items()]
        edges: list[tuple[str, str]] = [(sid, c) for c in keys]
        others = []
        for row in f.to_dicts():  # at most `limit` rows: the graph shown
            linked = [c for c in keys if row.get(c) == keys[c]]
            others.append({"id": row[S.SHIPMENT_ID], "in_network": row[S.SHIPMENT_ID] in members, "links": linked})
            edges.extend((row[S.SHIPMENT_ID], c) for c in linked)
        return {"shipments": others, "identifiers": identifiers, "edges": edges, "truncated": truncated}


def _last_rows(frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """The window sorted by id, and each id's last row in it (its latest declaration): a dict
    look-up per page (a binary search of a String column cost 0.6 ms a call)."""
    ids = frame.get_column(S.SHIPMENT_ID)
    return frame, dict(zip(ids.to_list(), range(frame.height), strict=True))


def _network_from_links(
    paths: dict[str, Path], sid: str, keys: dict[str, Any], members: set[str], limit: int
) -> dict[str, Any]:
    """:meth:`ShipmentData.network` from the day's link entries alone (no row read): a shipment
    is linked by a column when its value hashes as this shipment's (64-bit hashes of the values
    as typed, per column: a collision, about 2^-64 per entry, would add one edge)."""
    cand = link_candidates(paths, {c: str(v) for c, v in keys.items()}) if keys else None
    by_id: dict[str, set[str]] = {m: set() for m in members}
    if cand is not None:
        for col, other in cand.iter_rows():  # bounded below: the first limit + 1 ids are shown
            by_id.setdefault(other, set()).add(col)
    by_id.pop(sid, None)
    if not keys and not members:
        return {"shipments": [], "identifiers": [], "edges": [], "truncated": False}
    shown = sorted(by_id)[: limit + 1]
    truncated = len(shown) > limit
    identifiers = [{"id": f"{c}", "kind": LINK_WORDS[c], "value": str(v)} for c, v in keys.items()]
    edges: list[tuple[str, str]] = [(sid, c) for c in keys]
    others = []
    for other in shown[:limit]:
        linked = [c for c in keys if c in by_id[other]]
        others.append({"id": other, "in_network": other in members, "links": linked})
        edges.extend((other, c) for c in linked)
    return {"shipments": others, "identifiers": identifiers, "edges": edges, "truncated": truncated}
