"""The night's rank step holds a range of the scored day, never the whole day (issue 16 point 4:
a day larger than one machine's memory ranks on a cluster worker): ranked in id ranges it
publishes exactly what it publishes from one range."""

from __future__ import annotations

import json
import re
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from riskpipe import nightly, publish
from riskpipe import schema as S
from riskpipe.config import load_settings
from riskpipe.ingest import ingest_paths
from riskpipe.store import Layout

DAY = date(2026, 1, 5)
N = 400


def _row(i: int, port: str) -> dict[str, str]:
    return {
        S.SHIPMENT_ID: f"S{i:05d}",
        S.FILED_AT: "2026-01-05T08:00:00Z",
        S.ARRIVAL_DATE: DAY.isoformat(),
        S.ENTRY_TYPE: "321",
        S.MODE: ["express", "postal", "air_cargo"][i % 3],
        S.CARRIER_CODE: "DHL",
        S.PORT_OF_ENTRY: port,
        S.SHIPPER_NAME: f"Shipper {i % 17}",
        S.SHIPPER_ADDRESS: "B",
        S.SHIPPER_COUNTRY: "CN",
        S.CONSIGNEE_NAME: f"C {i}",
        S.CONSIGNEE_ADDRESS: f"{i} Main St",
        S.CONSIGNEE_CITY: "X",
        S.CONSIGNEE_STATE: "NY",
        S.CONSIGNEE_POSTAL_CODE: "10001",
        S.DESCRIPTION: "phone case",
        S.COUNTRY_OF_ORIGIN: "CN",
        S.DECLARED_VALUE: "5",
        S.CURRENCY: "USD",
        S.GROSS_WEIGHT_KG: "0.2",
        S.PIECE_COUNT: "1",
    }


@pytest.fixture()
def day_home(tmp_path: Path):
    home = tmp_path / "home"
    layout = Layout(home)
    layout.landing.mkdir(parents=True)
    rng = np.random.default_rng(3)
    ports = rng.choice(["4701", "2720", "3001", "5201", "0901"], size=N, p=[0.1, 0.3, 0.3, 0.2, 0.1])
    pl.DataFrame([_row(i, str(p)) for i, p in enumerate(ports)]).write_csv(layout.landing / "m.csv")
    assert ingest_paths(layout).rows_ingested == N
    ids = [f"S{i:05d}" for i in range(N)]
    score = np.round(rng.random(N) * np.where(ports == "4701", 1.0, 0.4), 2)  # ties; a hot port
    scored = pl.DataFrame(
        {
            S.SHIPMENT_ID: ids,
            S.RISK_SCORE: score,
            S.RULE_SCORE: [0.0] * N,
            S.REASONS: [["rule:x"] if s > 0.5 else [] for s in score],
            S.MODEL_VERSION: [nightly.NO_MODEL_VERSION] * N,
            S.NETWORK_ID: [f"net-{i % 7}" if i % 11 == 0 else None for i in range(N)],
        },
        schema_overrides={S.NETWORK_ID: pl.String, S.REASONS: pl.List(pl.String)},
    )
    scored_file = tmp_path / "scored.parquet"
    scored.write_parquet(scored_file, row_group_size=50)
    return layout, scored_file


def _publish(layout: Layout, scored_file: Path, out: Path, **kw) -> Path:
    settings = load_settings(layout.home).model_copy(update={"exploration_share": 0.2, "other_port_capacity": 6})
    staged = publish.stage(layout, DAY)
    nightly.rank_and_stage_step(layout, settings, DAY, scored_file, staged, kw.pop("capacity", None), {}, **kw)
    for kind, folder in staged.dirs.items():
        shutil.copytree(folder, out / kind)
    publish.abandon(staged)
    return out


@pytest.mark.parametrize("capacity", [None, 9])
def test_the_rank_step_in_id_ranges_publishes_what_it_publishes_from_one(day_home, tmp_path, monkeypatch, capacity):
    layout, scored_file = day_home
    whole = _publish(layout, scored_file, tmp_path / "whole", capacity=capacity)

    real = pl.read_parquet

    def no_whole_day(source, *a, **kw):  # the scored day is never read whole
        assert Path(str(source)) != scored_file, "the rank step read the whole scored day"
        return real(source, *a, **kw)

    monkeypatch.setattr(pl, "read_parquet", no_whole_day)
    pieces = _publish(layout, scored_file, tmp_path / "pieces", capacity=capacity, piece_rows=37)
    targets = pl.read_parquet(whole / "targets" / "targets.parquet")
    assert targets.height >= 9 and (targets[S.SELECTION] == "exploration").sum() > 0
    assert targets.equals(pl.read_parquet(pieces / "targets" / "targets.parquet"))
    assert pl.read_parquet(whole / "scores" / "scores.parquet").equals(
        pl.read_parquet(pieces / "scores" / "scores.parquet")
    )
    assert (whole / "targets" / "targets.csv").read_bytes() == (pieces / "targets" / "targets.csv").read_bytes()
    assert json.loads((whole / "reports" / "summary.json").read_text()) == json.loads(
        (pieces / "reports" / "summary.json").read_text()
    )
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[^<\s\"]*")
    html = [stamp.sub("", (d / "reports" / "report.html").read_text()) for d in (whole, pieces)]
    assert html[0] == html[1]
    assert not (nightly.work_dir(layout, DAY) / "rank-pieces").exists()  # the ranges' copies are gone
