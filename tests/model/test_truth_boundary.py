"""Ground truth stays in the evaluation package: production retraining never reads it, and no
library module below the top layer imports ``riskpipe.evaluation``."""

from __future__ import annotations

import ast
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
from test_model_pipeline import DAYS, START, fake_builder, make_world, settings_for, small_estimator

import riskpipe
from riskpipe import schema as S
from riskpipe.store import write_parquet_atomic

#: the top layer: the only places allowed to import the evaluation package
TOP = ("evaluation", "cli", "bench", "web")


def _retrain(layout, labels):
    from riskpipe.retrain import retrain

    return retrain(
        layout,
        settings_for(layout),
        until=START + timedelta(days=9),
        labels=labels,
        builder=fake_builder,
        use_rules=False,
        estimator=small_estimator(),
    )


def _meta(models: Path, version: str) -> dict:
    return json.loads((models / version / "meta.json").read_text())


def test_production_retrain_reads_no_ground_truth(tmp_path):
    """The same world with its truth files poisoned (every shipment a finding) or removed gives
    the same model metadata and figures: retrain's default path never opens truth/."""
    layouts = {}
    for variant in ("intact", "poisoned", "removed"):
        layout, labels = make_world(tmp_path / variant)
        for i in range(DAYS):
            path = layout.partition(layout.truth, START + timedelta(days=i)) / "truth.parquet"
            if variant == "poisoned":
                ids = pl.read_parquet(path)[S.SHIPMENT_ID]
                write_parquet_atomic(
                    pl.DataFrame({S.SHIPMENT_ID: ids, S.TRUE_CLASS: np.full(ids.len(), "precursor")}), path
                )
            elif variant == "removed":
                path.unlink()
        layouts[variant] = (layout, _retrain(layout, labels))
    metas = {}
    for variant, (layout, decision) in layouts.items():
        assert "truth" not in decision.report["views"], variant
        assert decision.report["preferred_view"] == "labelled"
        meta = _meta(settings_for(layout).models_dir, decision.challenger_version)
        metas[variant] = {k: meta[k] for k in ("metrics", "headline_metrics", "importance", "baseline")}
    assert metas["intact"] == metas["poisoned"] == metas["removed"]


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions count too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_only_the_top_layer_imports_the_evaluation_package():
    root = Path(riskpipe.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in TOP or rel.parts[0].removesuffix(".py") in TOP:
            continue
        bad = sorted(m for m in _imports(path) if m == "riskpipe.evaluation" or m.startswith("riskpipe.evaluation."))
        if bad or "from riskpipe import evaluation" in path.read_text(encoding="utf-8"):
            offenders.append(f"{rel}: {bad}")
    assert not offenders, offenders
    # and the check itself sees an import when there is one
    assert "riskpipe.evaluation.truth" in _imports(root / "cli" / "run.py")
