"""The protocol of an indicator family: what the feature build needs to know and call.

A family is one module holding a :class:`Family` object (``FAMILY``) that is listed once in
:data:`riskpipe.features.families.FAMILIES`; both build paths (the one lazy plan of a day and the
batched build of a large day) iterate that list, so they cannot drift apart. See
``riskpipe/features/README.md`` for a worked example.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

import polars as pl

from riskpipe.store import Layout


@dataclass(frozen=True)
class DayContext:
    """What a family may read for arrival day ``day``, all known at run time."""

    layout: Layout
    day: date
    #: the day's raw rows (a scan; a family's day inputs may read them, e.g. to key identifiers)
    raw: pl.LazyFrame
    #: raw days of the history lookback before ``day`` whose history tables exist (ascending)
    history_days: list[date]
    #: exam outcomes known at D's cut-off (``shipment_id``, ``exam_date``, ``outcome``), or None
    known_labels: pl.DataFrame | None
    #: the shared key of partner feeds (None: the home's riskpipe.toml)
    partner_key_path: Path | None = None


class FamilyDay(Protocol):
    """A family's work for one day (its inputs already read). :class:`NoWork` does nothing at
    every step: subclass it and override the steps the family needs."""

    def adjust_raw(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """The raw rows as every family reads them (a correction made before any family runs)."""
        ...

    def rows(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """Add the family's row-level columns: each row on its own (joins to small per-day tables
        allowed, no window over the day), so that the batched build can stream them."""
        ...

    def day_exprs(self) -> list[pl.Expr]:
        """Window expressions over the whole day (``.over()`` a hashed party key) that read only the
        ``_key_*`` columns, ``shipment_id`` and ``declared_value_usd``."""
        ...

    def day_frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Add whole-day columns computed eagerly (history lookups, networks) to the day's thin frame
        (sorted by shipment id, ``_key_*`` columns and the earlier families' day columns)."""
        ...


class NoWork:
    """A :class:`FamilyDay` whose every step does nothing (the base of the families' day work)."""

    def adjust_raw(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        return frame

    def rows(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        return frame

    def day_exprs(self) -> list[pl.Expr]:
        return []

    def day_frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        return frame


class Family(Protocol):
    """An indicator family. ``columns`` are its output columns in order; ``day_columns`` the
    subset built from the whole day (by ``day_exprs`` or ``day_frame``), the rest come from
    ``rows``. ``categorical`` are its ``pl.Enum`` columns (the model one-hot encodes them)."""

    @property
    def name(self) -> str: ...

    @property
    def columns(self) -> Sequence[str]: ...

    @property
    def categorical(self) -> Sequence[str]: ...

    @property
    def day_columns(self) -> Sequence[str]: ...

    @property
    def reasons(self) -> Mapping[str, str]:
        """Plain words for each strong flag that :meth:`fires` reads (flag column -> words)."""
        ...

    def fires(self) -> pl.Expr:
        """Does the family flag the shipment (its strong flags; null counts as no)."""
        ...

    def open(self, ctx: DayContext) -> FamilyDay:
        """Read what the family needs for ``ctx.day`` (norms, partner tables...) and return its work."""
        ...
