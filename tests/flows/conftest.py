"""One Prefect test harness for the whole session (it takes ~10 s to start)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session", autouse=True)
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# --- a small world shared by the flow tests (about 10 s to build) --------------------------------
WORLD_START = "2026-01-05"
WORLD_DAYS = 10
WORLD_PER_DAY = 1500


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A generated, ingested and trained home; the last day ("tonight") is scored by the tests.

    Tests copy it (:func:`home_copy`) before running flows in it."""
    from datetime import date, timedelta

    from riskpipe.config import load_settings
    from riskpipe.ingest import import_labels, ingest_paths
    from riskpipe.labels import LabelStore
    from riskpipe.retrain import retrain
    from riskpipe.store import Layout
    from riskpipe.synth import generate

    home = tmp_path_factory.mktemp("world") / "home"
    home.mkdir()
    layout = Layout(home)
    settings = load_settings(home)
    start = date.fromisoformat(WORLD_START)
    last = start + timedelta(days=WORLD_DAYS - 1)
    generate(layout, start, WORLD_DAYS, WORLD_PER_DAY, 7)
    ingest_paths(layout)
    import_labels(layout, layout.landing / "outcomes", LabelStore(settings.db_url))
    retrain(layout, settings, last - timedelta(days=1))
    return {"home": home, "day": last.isoformat()}


@pytest.fixture
def home_copy(world, tmp_path):
    """A private copy of the world's home (flows write outputs and work files into it)."""
    import shutil

    dst = tmp_path / "home"
    shutil.copytree(world["home"], dst)
    return dst


@pytest.fixture(scope="session")
def baseline(world, tmp_path_factory):
    """The nightly outputs of the world's last day from one clean single-process run."""
    import shutil

    import polars as pl

    from flows.nightly import nightly_flow

    home = tmp_path_factory.mktemp("baseline") / "home"
    shutil.copytree(world["home"], home)
    result = nightly_flow(str(home), world["day"], ingest=False)
    out = {k: pl.read_parquet(f"{result['outputs'][k]}/{k}.parquet") for k in ("scores", "targets")}
    return {"home": home, "result": result, **out}
