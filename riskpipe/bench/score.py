"""Scoring benchmarks: ``score_frame`` on a tiled synthetic day, and the sharded nightly path.

``python -c "from riskpipe.bench.score import bench_score; print(bench_score(4_000_000))"``;
``python -m riskpipe.bench.score --home DIR --rows N --shards K --models DIR`` (sharded path).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from riskpipe import nightly as steps
from riskpipe import publish
from riskpipe import schema as S
from riskpipe.bench.features import make_bench_world
from riskpipe.config import load_settings
from riskpipe.estimator import TabularRiskClassifier
from riskpipe.features import FEATURE_COLUMNS, build_features
from riskpipe.features.testing import write_raw_day
from riskpipe.model import DEFAULT_LEARNING_RATE, DEFAULT_LEAVES, DEFAULT_TREES
from riskpipe.model.fit import fit_risk_model
from riskpipe.registry import LoadedModel
from riskpipe.rules import load_rules
from riskpipe.score import BATCH_ROWS, CASCADE_MIN_ROWS, join_raw_features, score_frame
from riskpipe.shard import combine_shards, score_shard, split_day
from riskpipe.store import Layout, scan_raw_shipments


def bench_score(
    n_rows: int = 4_000_000,
    *,
    joined: pl.DataFrame | None = None,
    model: Any | None = None,
    rules: Any | None = None,
    seed: int = 0,
    batch_rows: int = BATCH_ROWS,
) -> dict[str, Any]:
    """Time ``score_frame`` (model, rules, blend, reasons) on ``n_rows`` with features built.

    Without ``joined``: a 20 k-row synthetic day (varied descriptions, values, origins, trusted
    traders) goes through the real feature path in a temporary home, is tiled to ``n_rows``
    with fresh shipment ids, and a model with the full tree budget (no early stopping) is fitted
    on it; ``rules`` default to the shipped ones. Returns rows, seconds, rows/s, trees, and the
    process's peak RSS in MB.
    """
    if joined is None or model is None:
        base, fitted = _bench_day(seed)
        joined = joined if joined is not None else tile_frame(base, n_rows)
        model = model if model is not None else fitted
    if rules is None:
        rules = load_rules(None)
    t0 = time.perf_counter()
    out = score_frame(joined, model, rules, batch_rows=batch_rows)
    secs = time.perf_counter() - t0
    est = getattr(model.model, "estimator_", None)
    return {
        "stage": "score",
        "rows": out.height,
        "features": len(model.feature_columns),
        "trees": getattr(est, "n_iter_", None),
        "seconds": round(secs, 2),
        "rows_per_second": round(out.height / secs) if secs else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "cascade": out.height > CASCADE_MIN_ROWS,
    }


def tile_frame(frame: pl.DataFrame, n_rows: int) -> pl.DataFrame:
    """``frame`` repeated to ``n_rows`` rows, each with a fresh ``shipment_id``."""
    reps = -(-n_rows // max(frame.height, 1))
    out = pl.concat([frame] * reps).head(n_rows)
    return out.with_columns(pl.format("B{}", pl.int_range(pl.len(), dtype=pl.Int64)).alias(S.SHIPMENT_ID))


def _bench_day(seed: int, n: int = 20_000) -> tuple[pl.DataFrame, Any]:
    """A synthetic day through the real feature path, and a full-budget model fitted on it."""
    rng = np.random.default_rng(seed)
    benign = [
        "T-shirt",
        "Phone case",
        "Wireless earbuds",
        "Yoga mat",
        "Kitchen knife set",
        "Socks",
        "LED strip",
        "Cosmetic materials",
        "Dog food",
        "Hardware nuts",
        "Gift",
        "Sample",
    ]
    chem = ["4-piperidone hydrochloride", "NPP powder", "1-boc-4-piperidone 79099-07-3", "TDP-5 tablet press die"]
    is_chem = rng.random(n) < 0.01
    desc = np.where(
        is_chem, np.array(chem)[rng.integers(0, len(chem), n)], np.array(benign)[rng.integers(0, len(benign), n)]
    )
    origin = np.array(["CN", "HK", "MX", "GB", "DE", "IN"])[rng.integers(0, 6, n)]
    rows = [
        {
            S.DESCRIPTION: str(desc[i]),
            S.COUNTRY_OF_ORIGIN: str(origin[i]),
            S.DECLARED_VALUE: float(rng.integers(3, 900)),
            S.GROSS_WEIGHT_KG: float(rng.uniform(0.05, 5.0)),
            S.CONSIGNEE_ADDRESS: f"{rng.integers(0, n // 3)} Main St",
            S.TRUSTED_TRADER: "ctpat" if rng.random() < 0.1 else None,
            S.PORT_OF_ENTRY: ("4701", "2720", "4196", "2304")[i % 4],
        }
        for i in range(n)
    ]
    day = date(2026, 1, 15)
    with tempfile.TemporaryDirectory() as tmp:
        layout = Layout(Path(tmp))
        raw = write_raw_day(layout, day, rows)
        feats = build_features(layout, day, None)
    joined = join_raw_features(raw, feats)
    y = (is_chem | (rng.random(n) < 0.005)).astype(np.int8)
    labelled = joined.join(
        pl.DataFrame({S.SHIPMENT_ID: raw[S.SHIPMENT_ID], S.IS_POSITIVE: y}), on=S.SHIPMENT_ID, how="left"
    )
    est = TabularRiskClassifier(
        random_state=seed,
        learning_rate=DEFAULT_LEARNING_RATE,
        max_iter=DEFAULT_TREES,
        max_leaf_nodes=DEFAULT_LEAVES,
        early_stopping=False,
    )
    model, meta = fit_risk_model(
        labelled.head(15_000), labelled.tail(5_000), list(FEATURE_COLUMNS), estimator=est, seed=seed
    )
    return joined, LoadedModel(version="bench", model=model, meta=meta)


# ---------------------------------------------------------------------------------------------
# sharded path: python -m riskpipe.bench.score --home DIR --rows N --shards K --models DIR
# ---------------------------------------------------------------------------------------------
def _stage(name: str, home: str, day: str, registry: str | None, arg):
    """One stage of the sharded path in this (fresh) process: (result, seconds, peak RSS MB)."""
    layout = Layout(Path(home))
    settings = load_settings(layout.home, {"registry_dir": registry} if registry else None)
    d = date.fromisoformat(day)
    t0 = time.perf_counter()
    out: str | list[dict[str, str]] | dict[str, str]
    if name == "features":
        out = str(steps.build_features_step(layout, settings, d))
    elif name == "split":
        out = split_day(layout, d, steps.features_path(layout, d), arg)
    elif name == "score-shard":
        out = str(score_shard(layout, settings, d, arg))
    elif name == "combine":
        out = str(
            combine_shards(
                layout, settings, d, arg, steps.features_path(layout, d), steps.work_dir(layout, d) / steps.SCORED_FILE
            )
        )
    else:  # rank, report and publish
        staged = publish.stage(layout, d)
        steps.rank_and_stage_step(
            layout,
            settings,
            d,
            steps.work_dir(layout, d) / steps.SCORED_FILE,
            {k: str(v) for k, v in staged.dirs.items()},
            None,
            {},
        )
        out = {k: str(v) for k, v in publish.commit(layout, staged).items()}
    secs = time.perf_counter() - t0
    return out, secs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_sharded(home: Path, day: date, shards: int, registry: Path | None = None) -> list[dict]:
    """Wall time and peak memory of each stage of the sharded nightly path, each stage in a fresh
    process (so a stage's peak is its own); the raw store of ``day`` must exist in ``home``."""
    rows = scan_raw_shipments(Layout(home), [day]).select(pl.len()).collect().item()
    report: list[dict] = []

    def run(name: str, arg=None):
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            out, secs, peak = pool.submit(
                _stage, name, str(home), day.isoformat(), str(registry) if registry else None, arg
            ).result()
        report.append(
            {
                "stage": name,
                "rows": rows,
                "seconds": round(secs, 1),
                "peak_rss_mb": round(peak),
                "load_avg_1m": round(os.getloadavg()[0], 1),
            }
        )
        return out

    run("features")
    parts = run("split", shards)
    scored = [run("score-shard", p) for p in parts]
    run("combine", scored)
    run("rank-publish")
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Sharded nightly path: time and peak memory per stage.")
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--history-days", type=int, default=3)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--models", type=Path, default=None, help="a registry with a champion (default: rules only)")
    ap.add_argument("--day", type=date.fromisoformat, default=date(2026, 3, 1))
    args = ap.parse_args(argv)
    layout = Layout(args.home)
    if args.day not in set(layout.raw_days()):
        make_bench_world(layout, args.day, args.rows, args.history_days)
    for row in bench_sharded(args.home, args.day, args.shards, args.models):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
