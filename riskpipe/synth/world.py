"""The synthetic world, day by day: legitimate trade, illicit cells, exams, adaptation, files.

``DEFAULT_PREVALENCE`` (0.003, 3 in 1,000 parcels fentanyl-related) is far above reality, where
the rate is about 1 in 10,000 or rarer (see the README's domain notes): at the real rate a demo of
~40 days x 10,000 parcels would hold a few dozen positives and nothing could be learned. Pass
``prevalence=1e-4`` for a realistic (and much harder) world.

Every signal an analyst uses exists and none gives the answer away (guarded by
``tests/unit/test_world_realism.py``): most consignees are occasional or first-time buyers, so a
drop does not stand out by its parcel count alone; honest sellers share agents' contacts and open
new accounts; honest partner declarations disagree; cells write the texts and codes of legitimate
goods, and registered labs import the listed chemicals that a cell sometimes names.

Determinism: every random draw comes from numpy generators seeded with ``[seed, stream, day]``,
so the same arguments give byte-identical files. Work is vectorised per day (numpy + Polars);
the only Python loops run over cells, kinds, files and days, never over parcels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.store import Layout, write_parquet_atomic
from riskpipe.synth import exams
from riskpipe.synth.catalog import build_catalog
from riskpipe.synth.daily import (
    WEEKDAY_FACTOR,
    Lookouts,
    _exams,
    _mode_table,
    _partner,
    _truth,
    amendments,
    assemble,
    legit_rows,
)
from riskpipe.synth.partner import write_partner_day, write_partner_home_files
from riskpipe.synth.population import build_population, grow
from riskpipe.synth.schemes import (
    EMERGING_AT,
    adapt,
    emerge,
    illicit_rows,
    make_cells,
    record_seizures,
    spawn,
)
from riskpipe.synth.writer import (
    BROKEN_KINDS,
    FORMATS,
    file_name,
    manifest_frame,
    text_timestamps,
    write_broken_files,
    write_frame,
    write_manifest_file,
)

DEFAULT_PREVALENCE = 0.003
ROWS_PER_FILE = 400_000
#: formats of a day's manifest files in turn (NDJSON, the slowest to write and read, least often)
FORMAT_CYCLE = ("csv", "parquet", "ndjson", "parquet", "csv", "parquet")


@dataclass
class DaySummary:
    day: date
    shipments: int
    rows: int  # manifest rows written (amendments and repeats in broken files included)
    positives: int  # fentanyl-related shipments (truth)
    files: int  # manifest files (broken ones included)
    amendments: int
    partner_rows: int
    examined: int
    seized: int  # examined and fentanyl-related
    fault_rows: int
    adapted_cells: int


@dataclass
class GenerateSummary:
    """What ``generate`` wrote: one row per day, totals, and rows ready for a printed table."""

    days: list[DaySummary] = field(default_factory=list)
    columns: tuple[str, ...] = (
        "day",
        "shipments",
        "rows",
        "positives",
        "files",
        "amendments",
        "partner",
        "examined",
        "seized",
        "faults",
        "adapted",
    )

    def totals(self) -> dict[str, int]:
        keys = (
            "shipments",
            "rows",
            "positives",
            "files",
            "amendments",
            "partner_rows",
            "examined",
            "seized",
            "fault_rows",
            "adapted_cells",
        )
        out = {k: sum(getattr(d, k) for d in self.days) for k in keys}
        out["days"] = len(self.days)
        return out

    def as_rows(self) -> list[tuple[str, ...]]:
        """One tuple of strings per day plus a ``total`` row, in the order of ``columns``."""

        def row(label: str, d: dict) -> tuple[str, ...]:
            return (
                label,
                *(
                    f"{d[k]:,}"
                    for k in (
                        "shipments",
                        "rows",
                        "positives",
                        "files",
                        "amendments",
                        "partner_rows",
                        "examined",
                        "seized",
                        "fault_rows",
                        "adapted_cells",
                    )
                ),
            )

        rows = [row(d.day.isoformat(), asdict(d)) for d in self.days]
        rows.append(row("total", self.totals()))
        return rows


# ---------------------------------------------------------------------------------------------
# the public entry point
# ---------------------------------------------------------------------------------------------
def files_per_day(per_day: int) -> int:
    return max(3, math.ceil(per_day * 1.1 / ROWS_PER_FILE))


def generate(
    layout: Layout,
    start: date,
    days: int,
    per_day: int,
    seed: int,
    prevalence: float = DEFAULT_PREVALENCE,
    faults: bool = False,
    gzip: bool = False,
    progress: Callable[[int, int], None] | None = None,
    partner_out: Path | None = None,
    random_exam_share: float = exams.RANDOM_SHARE,
) -> GenerateSummary:
    """Write ``days`` days of synthetic manifests, partner exports, exam outcomes (all days but the
    last, which is "tonight") and ground truth under ``layout``. Progress counts steps (a day's
    simulation, each manifest file, and the day's side files). ``partner_out``: also write the
    partner administration's side there (``riskpipe.synth.partner``; the US files are unchanged).
    ``random_exam_share``: the share of parcels given a random compliance exam (1 % by default,
    about what real programmes sample; a larger share gives an evaluation more unbiased outcomes)."""
    if days < 1:
        raise RiskpipeError(f"generate: --days must be at least 1, got {days}")
    if per_day < 1:
        raise RiskpipeError(f"generate: --per-day must be at least 1, got {per_day}")
    if not 0.0 <= prevalence < 0.5:
        raise RiskpipeError(f"generate: --prevalence must be in [0, 0.5), got {prevalence}")
    if not 0.0 <= random_exam_share <= 0.5:
        raise RiskpipeError(f"generate: --random-exam-share must be in [0, 0.5], got {random_exam_share}")
    catalog = build_catalog()
    rng0 = np.random.default_rng([seed, 0])
    pop = build_population(rng0, per_day, catalog, start)
    cells = make_cells(rng0, per_day * prevalence, pop, catalog, start)
    mode_cum = _mode_table(catalog)
    dflags = exams.description_flags(catalog.descriptions)
    risky_hts = exams.hts_flags(catalog.hts)
    # the new scheme appears at ~60 % of a run long enough to have a before and an after
    emerge_day = round(EMERGING_AT * days) if days >= 5 else None
    n_files = files_per_day(per_day)
    steps_per_day = n_files + 2
    total_steps = days * steps_per_day
    done = 0
    summary = GenerateSummary()
    lookouts = Lookouts()
    layout.landing.mkdir(parents=True, exist_ok=True)

    def tick(k: int = 1) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, total_steps)

    if progress is not None:
        progress(0, total_steps)
    for i in range(days):
        day = start + timedelta(days=i)
        rng = np.random.default_rng([seed, 1, i])
        if i > 0:
            grow(pop, rng, per_day, catalog, day)
        adapted = adapt(cells, day, rng, pop, catalog)
        if i > 0:
            spawn(cells, rng, pop, catalog, day)
        if i == emerge_day and prevalence > 0:
            emerge(cells, rng, pop, catalog, day)
        n = max(
            1, int(round(per_day * WEEKDAY_FACTOR[day.weekday()] / WEEKDAY_FACTOR.mean() * rng.uniform(0.97, 1.03)))
        )
        k = int(rng.binomial(n, prevalence)) if prevalence > 0 else 0
        k = min(k, n)
        parts = [legit_rows(n - k, rng, pop, catalog, mode_cum)] if n - k > 0 else []
        ill = illicit_rows(cells, k, rng, pop, catalog)
        if ill:
            parts.append(ill)
        core = assemble(parts, rng, pop, day, i, faults)
        amend = amendments(core, rng, catalog)
        tick()
        # files: contiguous slices of the shuffled day; an amendment goes to the same or a later file
        bounds = np.linspace(0, core.height, n_files + 1).astype(np.int64)
        file_of = np.searchsorted(bounds[1:], np.arange(core.height), side="right")
        a_file = np.minimum(file_of[amend["_pos"].to_numpy()] + rng.integers(0, 2, amend.height), n_files - 1)
        amend = amend.drop("_pos")
        rows = 0
        pop.settle()
        # two files in flight: Polars releases the GIL, so building one overlaps writing another
        with ThreadPoolExecutor(max_workers=2) as pool:
            jobs = []
            for f in range(n_files):
                fmt = FORMAT_CYCLE[(f + i) % len(FORMAT_CYCLE)]
                part = core.slice(int(bounds[f]), int(bounds[f + 1] - bounds[f]))
                extra = amend.filter(pl.Series(a_file == f))
                if extra.height:
                    part = pl.concat([part, extra])
                path = layout.landing / file_name("manifest", day, f + 1, fmt, gzip)
                jobs.append(pool.submit(write_manifest_file, part, pop, catalog, day, path, fmt, gzip))
                if len(jobs) >= 2:
                    rows += jobs.pop(0).result()
                    tick()
            for job in jobs:
                rows += job.result()
                tick()
        files = n_files
        if faults:
            kinds = BROKEN_KINDS if i == 0 else (BROKEN_KINDS[i % len(BROKEN_KINDS)],)
            sample_core = core.head(min(100, core.height)).with_columns(pl.lit(0, dtype=pl.Int8).alias("fault"))
            sample = text_timestamps(
                manifest_frame(sample_core, pop, catalog, day).drop("fault"), sample_core["ts_style"]
            )
            write_broken_files(sample, layout.landing, day, n_files + 1, kinds)
            files += len(kinds)
            rows += sample.height * sum(k != "empty" for k in kinds)
        partner, partner_status = _partner(core, rng, pop, catalog)
        if partner.height:
            pfmt = FORMATS[i % len(FORMATS)]
            write_frame(
                partner
                if pfmt == "parquet"
                else partner.with_columns(pl.col(S.DECLARED_AT).dt.strftime("%Y-%m-%dT%H:%M:%SZ")),
                layout.landing / file_name(S.PARTNER_FILE_PREFIX, day, None, pfmt, gzip),
                pfmt,
                gzip,
            )
        write_parquet_atomic(_truth(core, cells, day), layout.partition(layout.truth, day) / "truth.parquet")
        examined = seized = 0
        if i < days - 1:  # the last day is tonight: not examined yet
            ex = _exams(core, rng, pop, catalog, day, dflags, risky_hts, partner_status, lookouts, random_exam_share)
            positive = ex[S.OUTCOME].is_in(S.POSITIVE_OUTCOMES)
            lookouts.add(ex.filter(positive), pop, day)
            seized_cells = {
                cells[c].cell_id for c in ex.filter(positive & (pl.col("cell") >= 0))["cell"].unique().to_list()
            }
            record_seizures(cells, seized_cells, day, rng)
            # recorded the evening of the exam (20:00 UTC): known to the nights after the exam day
            recorded = (pl.col(S.EXAM_DATE).cast(pl.Datetime("us", "UTC")) + pl.duration(hours=20)).dt.strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            write_frame(
                ex.drop("cell", "shipper", "person", "address").with_columns(recorded.alias("recorded_at")),
                layout.landing / "outcomes" / f"outcomes-{day.isoformat()}.csv",
                "csv",
                False,
            )
            examined, seized = ex.height, int(positive.sum())
        if partner_out is not None:
            write_partner_day(partner_out, day, i, seed, per_day * prevalence, cells, pop, catalog)
        tick()
        summary.days.append(
            DaySummary(
                day=day,
                shipments=core.height,
                rows=rows,
                positives=int(
                    (core["cls"].cast(pl.Int64).is_in([S.OUTCOMES.index(o) for o in S.POSITIVE_OUTCOMES])).sum()
                ),
                files=files,
                amendments=amend.height,
                partner_rows=partner.height,
                examined=examined,
                seized=seized,
                fault_rows=int((core["fault"] > 0).sum()),
                adapted_cells=len(adapted),
            )
        )
    if partner_out is not None:
        write_partner_home_files(partner_out, seed, pop)
    return summary
