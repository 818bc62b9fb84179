"""A day's files landing after the previous night: the watcher ingests them and scores the day
provisionally; the night of that day (nothing else arrived) publishes the same scores, which
replace the provisional ones. Also: the ingest-landed deployment's flow does one look."""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from riskpipe import schema as S
from riskpipe.config import load_settings
from riskpipe.provisional import provisional_path, read_provisional
from riskpipe.store import Layout

START, DAYS, PER_DAY = date(2026, 2, 2), 8, 1200


@pytest.fixture(scope="module")
def landed(tmp_path_factory):
    """A home trained up to the night before its last day, whose last day's files (manifests and
    partner exports named after the day) are back in the landing folder, not yet ingested."""
    from riskpipe.ingest import import_labels, ingest_paths
    from riskpipe.labels import LabelStore
    from riskpipe.retrain import retrain
    from riskpipe.synth import generate

    home = tmp_path_factory.mktemp("landed") / "home"
    home.mkdir()
    layout, settings = Layout(home), load_settings(home)
    last = START + timedelta(days=DAYS - 1)
    generate(layout, START, DAYS, PER_DAY, 11)
    aside = home.parent / "aside"
    aside.mkdir()
    today = [p for p in layout.landing.iterdir() if p.is_file() and last.isoformat() in p.name]
    assert today
    for p in today:
        shutil.move(p, aside / p.name)
    ingest_paths(layout)
    import_labels(layout, layout.landing / "outcomes", LabelStore(settings.db_url))
    retrain(layout, settings, last - timedelta(days=1))
    for p in sorted(aside.iterdir()):
        shutil.move(p, layout.landing / p.name)
    return {"home": home, "day": last, "files": sorted(p.name for p in today)}


def test_provisional_scores_equal_the_nightly_scores_when_nothing_else_arrived(landed, tmp_path, monkeypatch):
    from flows.nightly import nightly_flow
    from riskpipe.ingest import run as ingest_run
    from riskpipe.watch import Watcher

    home = tmp_path / "home"
    shutil.copytree(landed["home"], home)
    layout, day = Layout(home), landed["day"]
    result = Watcher(layout, load_settings(home), settle_s=0).poll()
    assert result.errors == [] and result.ingest is not None
    assert result.ingest["files_ingested"] == len(landed["files"])
    assert [r.day for r in result.provisional] == [day]
    assert set(result.latency_s) >= {f for f in landed["files"] if not f.startswith(S.PARTNER_FILE_PREFIX)}
    provisional = read_provisional(layout, day)
    assert provisional is not None and provisional.height > 1000
    assert provisional["model_version"].unique().to_list() != ["rules-only"]  # the champion scored
    # a partial day's history tables are not written by each provisional re-score (wasted work on
    # the watcher's path: the night writes them once it is published)
    from riskpipe.features import history

    assert not history.history_current(layout, day, history.raw_fingerprint(layout, day))

    hashed: list[str] = []
    real_hash = ingest_run._sha256_regular
    monkeypatch.setattr(ingest_run, "_sha256_regular", lambda p: hashed.append(p.name) or real_hash(p))
    run = nightly_flow(str(home), day.isoformat())  # the night ingests what arrived since: nothing
    assert hashed == []  # the files the watcher handled are not read again (on the critical path)
    nightly = pl.read_parquet(f"{run['outputs']['scores']}/scores.parquet")
    assert_frame_equal(
        provisional.drop("provisional").sort(S.SHIPMENT_ID), nightly.sort(S.SHIPMENT_ID), check_exact=True
    )
    assert read_provisional(layout, day) is None  # replaced by the night
    assert Watcher(layout, load_settings(home), settle_s=0).poll().replaced == [day]
    assert not provisional_path(layout, day).exists()


def test_the_landed_flow_ingests_once_and_skips_what_it_handled(landed, tmp_path):
    from flows.ingest import landed_flow

    home = tmp_path / "home"
    shutil.copytree(landed["home"], home)
    first = landed_flow(str(home), settle_seconds=0, provisional=False)
    assert first["ingest"]["files_ingested"] == len(landed["files"]) and first["provisional"] == []
    second = landed_flow(str(home), settle_seconds=0, provisional=False)
    assert second["ingest"] is None and second["errors"] == []


def test_the_landed_deployment_is_served_on_an_interval_one_run_at_a_time(landed):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.runner import Runner

    from flows.deploy import LANDED_DEPLOYMENT, LANDED_INTERVAL_S, add_to_runner

    async def registered():
        runner = Runner(pause_on_shutdown=False)
        await add_to_runner(runner, landed["home"], load_settings(landed["home"]))
        async with get_client() as client:
            return await client.read_deployment_by_name(f"ingest-landed/{LANDED_DEPLOYMENT}")

    deployment = asyncio.run(registered())
    schedule = deployment.schedules[0].schedule
    assert schedule.interval == timedelta(seconds=LANDED_INTERVAL_S)
    assert deployment.global_concurrency_limit is not None and deployment.global_concurrency_limit.limit == 1
    assert deployment.parameters == {"home": str(landed["home"].resolve())}
