"""The targeting list (targets view and all-scored view): filters, orders, pages, CSV export.

The list page must stay fast on a 4-million-row scored day with 20 analysts at once, so a day is
loaded once into a compact columnar frame (categoricals, no manifest text), pre-sorted in the
default order; a request then costs a filter mask (cached per filter set), a partial sort
(``top_k``) only when another order is asked for, and a 50-row gather. Nothing is turned into
Python objects except the page shown (and the app caches the rendered page on top). Published
files are keyed by modification time and inode, so a rerun of the nightly flow is picked up on
the next request; the first request for a day builds its frame (a few seconds at 4 M rows).

What an officer needs beside the score is computed in that build too, once per day and view:
the risk as a percentile of the day (``PCT_BELOW``) and why each target is on the list
(``WHY_KIND``, ``WHY_TEXT``: a risk pick, a risk pick below the day-wide cut because higher
scores sat at ports whose ceiling was full, an exploration draw and its chance, a network member
listed with its best-ranked member).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import polars as pl

from riskpipe import schema as S
from riskpipe.csvsafe import formula_safe
from riskpipe.features import graph
from riskpipe.store import scan_raw_shipments
from riskpipe.web.days import DayFiles, SingleFlightLRU, _stamp
from riskpipe.web.explain import PCT_BELOW, WHY_KIND, WHY_TEXT, explain_selection

VIEWS = ("targets", "all")
PAGE_SIZES = (25, 50, 100, 200)
REASON_KEY = "reason_key"
ROW = "_row"
SEP = "|"
#: identifiers that tie shipments of a day into a network (shared party data).
SORTABLE = {
    "targets": [
        S.RANK,
        S.RISK_SCORE,
        S.PORT_OF_ENTRY,
        S.MODE,
        S.COUNTRY_OF_ORIGIN,
        S.DECLARED_VALUE_USD,
        S.GROSS_WEIGHT_KG,
    ],
    "all": [S.RISK_SCORE, S.RULE_SCORE, S.RANK, S.PORT_OF_ENTRY, S.MODE, S.COUNTRY_OF_ORIGIN],
}
DEFAULT_SORT = {"targets": (S.RANK, False), "all": (S.RISK_SCORE, True)}
FILTER_CACHE_SIZE = 64  # filter/sort results kept per day view
WARM_PORTS = 24  # a worker computes the port filters of the day's busiest ports at start
WARM_PAGES = 20  # ... and each order's first pages (of 50 rows) at start


@dataclass(frozen=True)
class ListQuery:
    """A list request: view, filters, order and page (all from the query string)."""

    view: str = "targets"
    port: str = ""
    mode: str = ""
    origin: str = ""
    reason: str = ""
    selection: str = ""  # risk | exploration | none
    network: str = ""  # any | none | <network_id>
    sort: str = ""
    desc: bool | None = None
    page: int = 1
    page_size: int = 50

    def normalised(self) -> ListQuery:
        view = self.view if self.view in VIEWS else "targets"
        sort = self.sort if self.sort in SORTABLE[view] else DEFAULT_SORT[view][0]
        desc = (
            self.desc
            if self.desc is not None
            else (
                DEFAULT_SORT[view][1]
                if sort == DEFAULT_SORT[view][0]
                else sort in (S.RISK_SCORE, S.RULE_SCORE, S.DECLARED_VALUE_USD, S.GROSS_WEIGHT_KG)
            )
        )
        size = self.page_size if self.page_size in PAGE_SIZES else 50
        return replace(self, view=view, sort=sort, desc=desc, page=max(1, self.page), page_size=size)

    def filter_key(self) -> tuple:
        return (self.port, self.mode, self.origin, self.reason, self.selection, self.network)


@dataclass
class ListResult:
    rows: list[dict[str, Any]]
    total: int
    query: ListQuery
    options: dict[str, list[str]]
    pages: int


@dataclass
class DayFrame:
    """One day's list, compact and in default order, with cached filter results."""

    frame: pl.DataFrame
    options: dict[str, list[str]]
    reason_keys: list[str]
    cache: SingleFlightLRU = field(default_factory=lambda: SingleFlightLRU(FILTER_CACHE_SIZE))


class ListData(DayFiles):
    """The list pages of a data home (one compact frame per day and view, cached)."""

    def day_version(self, day: date) -> tuple:
        """What a day's list is built from: the published targets and scores files (two stats)."""
        return _stamp(self.targets_path(day)), _stamp(self.scores_path(day))

    def day_frame(self, day: date, view: str) -> DayFrame | None:
        key = (day, view, *self.day_version(day))
        build = self._build_targets if view == "targets" else self._build_all
        return self._days.get_or_compute(key, lambda: build(day))  # one build per day and view

    def _build_targets(self, day: date) -> DayFrame | None:
        path = self.targets_path(day)
        if not path.exists():
            return None
        f = pl.read_parquet(path)
        for col, dtype in S.TARGETS_SCHEMA.items():
            if col not in f.columns:
                f = f.with_columns(pl.lit(None, dtype).alias(col))
        f = f.with_columns(pl.col(S.REASONS).list.join(SEP).fill_null("").alias(REASON_KEY)).sort(S.RANK)
        spath = self.scores_path(day)
        day_scores = (
            pl.read_parquet(spath, columns=[S.RISK_SCORE]).get_column(S.RISK_SCORE)
            if spath.exists()
            else f.get_column(S.RISK_SCORE)
        )
        ranked = day_scores.drop_nulls().sort()
        f = f.join(explain_selection(f, ranked), on=S.SHIPMENT_ID, how="left", maintain_order="left")
        return self._finish(f.with_row_index(ROW))

    def _build_all(self, day: date) -> DayFrame | None:
        path = self.scores_path(day)
        if not path.exists():
            return None
        scores = pl.scan_parquet(path).select(S.SHIPMENT_ID, S.RISK_SCORE, S.RULE_SCORE, S.REASONS, S.MODEL_VERSION)
        raw = scan_raw_shipments(self.layout, [day]).select(
            S.SHIPMENT_ID,
            pl.col(S.PORT_OF_ENTRY).cast(pl.Categorical),
            pl.col(S.MODE).cast(pl.String).cast(pl.Categorical),
            pl.col(S.COUNTRY_OF_ORIGIN).cast(pl.Categorical),
        )
        lf = scores.join(raw, on=S.SHIPMENT_ID, how="left")
        f = (
            lf.with_columns(pl.col(S.REASONS).list.join(SEP).fill_null("").cast(pl.Categorical).alias(REASON_KEY))
            .drop(S.REASONS)
            .with_columns(pl.col(S.MODEL_VERSION).cast(pl.Categorical))
            .sort([S.RISK_SCORE, S.SHIPMENT_ID], descending=[True, False], nulls_last=True)
            .collect()
        )
        n = f.get_column(S.RISK_SCORE).drop_nulls().len()
        # % strictly below: n minus the shipments scoring at least as high (rank "max" descending)
        f = f.with_columns(
            ((n - pl.col(S.RISK_SCORE).rank("max", descending=True)) * (100.0 / max(n, 1)))
            .cast(pl.Float32)
            .alias(PCT_BELOW)
        )
        tpath = self.targets_path(day)
        if tpath.exists():
            cols = [
                S.SHIPMENT_ID,
                S.RANK,
                S.PORT_OF_ENTRY,
                S.RISK_SCORE,
                S.SELECTION,
                S.NETWORK_ID,
                S.SELECTION_PROBABILITY,
            ]
            targets = pl.read_parquet(tpath, columns=[c for c in cols if c in pl.read_parquet_schema(tpath)]).sort(
                S.RANK
            )
            ranked = f.get_column(S.RISK_SCORE).drop_nulls().reverse()  # ascending
            why = explain_selection(targets, ranked).with_columns(pl.col(WHY_KIND).cast(pl.Categorical))
            targets = targets.select(
                S.SHIPMENT_ID,
                S.RANK,
                pl.col(S.SELECTION).cast(pl.String).cast(pl.Categorical),
                pl.col(S.NETWORK_ID).cast(pl.Categorical),
            ).join(why, on=S.SHIPMENT_ID, how="left")
            f = f.join(targets, on=S.SHIPMENT_ID, how="left", maintain_order="left")
        else:
            f = f.with_columns(
                pl.lit(None, pl.Int64).alias(S.RANK),
                pl.lit(None, pl.Categorical).alias(S.SELECTION),
                pl.lit(None, pl.Categorical).alias(S.NETWORK_ID),
                pl.lit(None, pl.Categorical).alias(WHY_KIND),
                pl.lit(None, pl.String).alias(WHY_TEXT),
            )
        return self._finish(f.with_row_index(ROW))

    def _finish(self, f: pl.DataFrame) -> DayFrame:
        def opts(col: str) -> list[str]:
            return sorted(str(v) for v in f.get_column(col).cast(pl.String).drop_nulls().unique().to_list())

        keys = opts(REASON_KEY)
        reasons = sorted({r for k in keys for r in k.split(SEP) if r})
        options = {
            "port": opts(S.PORT_OF_ENTRY),
            "mode": opts(S.MODE),
            "origin": opts(S.COUNTRY_OF_ORIGIN),
            "reason": reasons,
            "network": opts(S.NETWORK_ID)[:500],
        }
        return DayFrame(frame=f, options=options, reason_keys=keys)

    def _filter_expr(self, df: DayFrame, q: ListQuery) -> pl.Expr | None:
        conds: list[pl.Expr] = []
        # categorical columns compare with a string directly (no per-row cast)
        for col, value in ((S.PORT_OF_ENTRY, q.port), (S.MODE, q.mode), (S.COUNTRY_OF_ORIGIN, q.origin)):
            if value:
                conds.append(pl.col(col) == value)
        if q.reason:
            keys = [k for k in df.reason_keys if q.reason in k.split(SEP)]
            conds.append(pl.col(REASON_KEY).is_in(keys))
        if q.selection == "none":
            conds.append(pl.col(S.SELECTION).is_null())
        elif q.selection:
            conds.append(pl.col(S.SELECTION) == q.selection)
        if q.network == "any":
            conds.append(pl.col(S.NETWORK_ID).is_not_null())
        elif q.network == "none":
            conds.append(pl.col(S.NETWORK_ID).is_null())
        elif q.network:
            conds.append(pl.col(S.NETWORK_ID) == q.network)
        return pl.all_horizontal(conds) if conds else None

    def _ordered_rows(self, df: DayFrame, q: ListQuery) -> tuple[pl.Series | None, int]:
        """Row numbers (into the day frame) of the rows to show, and the filtered total."""
        expr = self._filter_expr(df, q)
        idx = None  # None: every row, in the default order
        if expr is not None:
            idx = df.cache.get_or_compute(  # once however many users ask at the same time
                ("f", q.filter_key()),
                lambda: df.frame.lazy().filter(expr).select(ROW).collect(engine="in-memory").get_column(ROW),
            )
        total = df.frame.height if idx is None else idx.len()
        default_sort, default_desc = DEFAULT_SORT[q.view]
        if q.sort == default_sort and q.desc == default_desc:
            return idx, total
        need = q.page * q.page_size
        need = max(1024, 1 << (need - 1).bit_length())  # coarse, so nearby pages share one top_k

        def top() -> pl.Series:
            sub = df.frame.select(q.sort, ROW) if idx is None else df.frame.select(q.sort, ROW).gather(idx)
            col = pl.col(q.sort).cast(pl.String) if sub.schema[q.sort] == pl.Categorical else pl.col(q.sort)
            return first_in_order(sub.with_columns(col), q.sort, bool(q.desc), need)

        return df.cache.get_or_compute(("o", q.filter_key(), q.sort, q.desc, need), top), total

    def warm_list_views(self, day: date, df: DayFrame | None, view: str) -> None:
        """Compute what the first request of a kind would (a port filter of one of the day's
        busiest ports, every order of the view and its first :data:`WARM_PAGES` pages): each cost
        20-130 ms on a 4 M-row day while every other analyst's request queued behind it. A worker
        does this before it accepts connections; a page already built costs under a millisecond."""
        if df is None:
            return
        queries = [ListQuery(view=view, sort=col, page=WARM_PAGES).normalised() for col in SORTABLE[view]]
        if view == "all":
            queries += [ListQuery(view=view, port=p).normalised() for p in busiest_ports(df)]
        for q in queries:
            self._ordered_rows(df, q)

    def list_page(self, day: date, query: ListQuery) -> ListResult:
        q = query.normalised()
        df = self.day_frame(day, q.view)
        if df is None:
            return ListResult([], 0, q, {}, 0)
        order, total = self._ordered_rows(df, q)
        pages = max(1, -(-total // q.page_size))
        if q.page > pages:
            q = replace(q, page=pages)
        start = (q.page - 1) * q.page_size
        if order is None:
            page = df.frame.slice(start, q.page_size)
        else:
            page = df.frame.gather(order.slice(start, q.page_size))
        rows = page.with_columns(pl.col(pl.Categorical).cast(pl.String)).to_dicts()
        for r in rows:
            codes = [c for c in (r.get(REASON_KEY) or "").split(SEP) if c]
            r["reason_list"] = codes
            # a graph reason's words with the date the list's text gives ("... seized on D")
            r["reason_pairs"] = graph.dated_pairs([(c, self.reason_words(c)) for c in codes], r.get(S.REASON_TEXT))
            r["reason_first"] = r["reason_pairs"][0][1] if codes else ""
            r["reason_words"] = r.get(S.REASON_TEXT) or "; ".join(self.reason_words(c) for c in codes[:3])
        return ListResult(rows, total, q, df.options, pages)

    def export_csv(self, day: date, query: ListQuery) -> bytes:
        """The filtered list in the current order as CSV (every row, not just a page)."""
        q = query.normalised()
        df = self.day_frame(day, q.view)
        if df is None:
            return b""
        expr = self._filter_expr(df, q)
        f = df.frame if expr is None else df.frame.filter(expr)
        f = f.sort([q.sort, ROW], descending=[bool(q.desc), False], nulls_last=True)
        if q.view == "targets":
            f = f.select([c for c in S.TARGETS_SCHEMA if c in f.columns])
            f = f.with_columns(pl.col(S.REASONS).list.join(S.REASONS_SEPARATOR))  # as in targets.csv
        else:
            reasons = pl.col(REASON_KEY).cast(pl.String).str.replace_all(SEP, S.REASONS_SEPARATOR, literal=True)
            f = f.select(
                S.SHIPMENT_ID,
                S.RISK_SCORE,
                S.RULE_SCORE,
                reasons.alias(S.REASONS),
                S.RANK,
                S.SELECTION,
                S.NETWORK_ID,
                S.PORT_OF_ENTRY,
                S.MODE,
                S.COUNTRY_OF_ORIGIN,
                S.MODEL_VERSION,
            )
        f = f.with_columns(pl.col(pl.Categorical).cast(pl.String))
        f = formula_safe(f)  # spreadsheet formula injection: such cells are written as text
        buf = io.BytesIO()
        f.write_csv(buf)
        return buf.getvalue()


def busiest_ports(df: DayFrame) -> list[str]:
    """The day view's :data:`WARM_PORTS` ports with the most shipments, busiest first (ties by
    code): the port filters a worker computes at start."""
    counts = df.frame.get_column(S.PORT_OF_ENTRY).drop_nulls().cast(pl.String).value_counts(name="n")
    top = counts.sort(["n", S.PORT_OF_ENTRY], descending=[True, False]).head(WARM_PORTS)
    return top.get_column(S.PORT_OF_ENTRY).to_list()


def first_in_order(sub: pl.DataFrame, by: str, desc: bool, need: int) -> pl.Series:
    """``ROW`` of the first ``need`` rows of ``sub`` (in ``ROW`` order) sorted by ``by`` then
    ``ROW``, nulls last. A one-column ``top_k`` finds the cut-off value (a frame ``top_k`` on two
    keys took ~170 ms on 4 M rows, this ~30 ms), then only rows on the right side of it are
    sorted; when ties at the cut-off leave too many rows, the frame ``top_k`` is used instead."""
    values = sub.get_column(by)
    nulls = values.null_count()
    present = sub.filter(pl.col(by).is_not_null()) if nulls else sub
    if present.height > need:
        kept = present.get_column(by)
        cut = kept.top_k(need).min() if desc else kept.bottom_k(need).max()
        cand = present.filter(pl.col(by) >= cut if desc else pl.col(by) <= cut)
        if cand.height > max(8 * need, 65_536):
            cand = present.top_k(need, by=[by, ROW], reverse=[not desc, True])
    else:
        cand = present
    head = cand.sort([by, ROW], descending=[desc, False]).head(need)
    if head.height < need and nulls:
        head = pl.concat([head, sub.filter(pl.col(by).is_null()).head(need - head.height)])
    return head.get_column(ROW)
