"""The partner administration's side of the synthetic world (``riskpipe generate --partner-out DIR``).

Mexico's customs service seizes parcels of the same illicit cells on its side: each day, about
``SEIZURE_SHARE`` x the day's expected fentanyl-related parcels, drawn from the cells' current
disguise (same aliases, mules, drops, sellers, contacts). A seizure on day d helps the US side on
the days after d, until the cell changes disguise. Written as a home-able folder: ``DIR/landing``
(manifests and ``outcomes/``) and ``DIR/oea-operators.csv`` (Mexico's certified operators: the
world's ``mx_oea`` shippers less ``DECERTIFIED_SHARE`` that claim it without being on the list),
and ``DIR/riskpipe.toml`` naming the administration. So ``riskpipe --home DIR ingest``, ``labels
import`` and ``partner export`` run on it as on the US home.

Its own random streams (``[seed, 19, day]``): the US world's files are byte for byte the same
with or without ``--partner-out``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from riskpipe import schema as S
from riskpipe.store import write_text_atomic
from riskpipe.synth.catalog import Catalog
from riskpipe.synth.daily import assemble
from riskpipe.synth.population import Population
from riskpipe.synth.schemes import Cell, illicit_rows
from riskpipe.synth.writer import file_name, write_frame, write_manifest_file

#: the partner's seizures a day, as a share of the US side's expected positives a day
SEIZURE_SHARE = 0.5
#: share of the world's mx_oea shippers left off the partner's OEA list (claims not confirmed)
DECERTIFIED_SHARE = 0.15
ADMINISTRATION = "Mexico's customs service"
_STREAM = 19


def write_partner_day(
    out: Path,
    day: date,
    day_index: int,
    seed: int,
    expected_positives: float,
    cells: list[Cell],
    pop: Population,
    catalog: Catalog,
) -> int:
    """The partner's seizures of ``day`` (manifests and outcomes) under ``out/landing``; their count."""
    rng = np.random.default_rng([seed, _STREAM, day_index])
    k = int(rng.poisson(SEIZURE_SHARE * expected_positives)) if cells else 0
    if k == 0:
        return 0
    core = assemble([illicit_rows(cells, k, rng, pop, catalog)], rng, pop, day, day_index, False)
    core = core.with_columns(pl.concat_str(pl.lit("MX"), pl.col("id")).alias("id"))
    landing = out / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    write_manifest_file(
        core, pop, catalog, day, landing / file_name("manifest", day, 1, "parquet", False), "parquet", False
    )
    outcomes = pl.DataFrame(
        {
            S.SHIPMENT_ID: core["id"],
            S.EXAM_DATE: pl.Series([day] * core.height, dtype=pl.Date),
            S.OUTCOME: pl.Series(S.OUTCOMES).gather(core["cls"]),
            S.EXAM_REASON: pl.Series(["targeted"] * core.height),
            S.EXAMINER: pl.Series([f"ANAM-{n}" for n in rng.integers(100, 999, core.height)]),
            S.NOTES: pl.Series(["seized at export"] * core.height),
        }
    )
    write_frame(outcomes, landing / "outcomes" / f"outcomes-{day.isoformat()}.csv", "csv", False)
    return core.height


def write_partner_home_files(out: Path, seed: int, pop: Population) -> int:
    """``oea-operators.csv`` (name, country) and ``riskpipe.toml``; the number of operators listed."""
    rng = np.random.default_rng([seed, _STREAM, 1_000_000])  # not a day index
    sh = pop.shippers.frame.select("name", "country", "trusted").filter(pl.col("trusted") == "mx_oea")
    keep = rng.random(sh.height) >= DECERTIFIED_SHARE
    listed = sh.filter(pl.Series(keep)).select("name", "country").unique(maintain_order=True)
    out.mkdir(parents=True, exist_ok=True)
    listed.write_csv(out / "oea-operators.csv")
    toml = out / "riskpipe.toml"
    if not toml.exists():
        write_text_atomic(
            f'administration_name = "{ADMINISTRATION}"\npartner_name = "U.S. Customs and Border Protection"\n', toml
        )
    return listed.height
