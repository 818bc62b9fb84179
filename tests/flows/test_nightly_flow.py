"""The nightly flow end to end on a small world: contract outputs, reruns, quarantine, failures,
kill-and-rerun atomicity and sharded scoring (threads and a 2-worker Dask cluster)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.store import Layout, scan_raw_shipments

OUTPUT_KINDS = ("scores", "targets", "reports")


def _outputs(home: Path, day: str) -> dict[str, pl.DataFrame]:
    layout = Layout(home)
    d = date.fromisoformat(day)
    return {
        "scores": pl.read_parquet(layout.day_dir(layout.scores, d) / "scores.parquet"),
        "targets": pl.read_parquet(layout.day_dir(layout.targets, d) / "targets.parquet"),
    }


def _snapshot(home: Path, day: str) -> dict[str, bytes]:
    """Every visible file under the output folders (name -> bytes)."""
    out = {}
    for kind in OUTPUT_KINDS:
        base = home / kind
        for f in sorted(base.rglob("*")) if base.exists() else []:
            rel = f.relative_to(home)
            if f.is_file() and not any(part.startswith(".") for part in rel.parts):
                out[str(rel)] = f.read_bytes()
    return out


def _leftovers(home: Path) -> list[str]:
    found = [str(p) for kind in OUTPUT_KINDS for p in (home / kind).glob(".*")] if home.exists() else []
    journal = home / ".publish"
    found += [str(p) for p in journal.glob("*.json")] if journal.exists() else []
    return found


def test_outputs_follow_the_contract(world, baseline):
    scores, targets = baseline["scores"], baseline["targets"]
    assert scores.schema == pl.Schema(S.SCORES_FILE_SCHEMA)
    assert targets.columns == list(S.TARGETS_SCHEMA)
    raw_ids = scan_raw_shipments(Layout(baseline["home"]), [date.fromisoformat(world["day"])]).collect()[S.SHIPMENT_ID]
    assert scores.height == raw_ids.len() > 1000
    assert scores[S.SHIPMENT_ID].n_unique() == scores.height
    assert set(scores[S.SHIPMENT_ID]) == set(raw_ids)
    assert 0 < targets.height < scores.height
    assert targets[S.RANK].to_list() == list(range(1, targets.height + 1))
    assert (Path(baseline["result"]["outputs"]["reports"]) / "report.html").stat().st_size > 1000
    assert _leftovers(baseline["home"]) == []
    # exploration picks carry their chance; the summary says what of the top risk went unexamined
    explore = targets.filter(pl.col(S.SELECTION) == "exploration")
    assert explore.height > 0 and explore[S.SELECTION_PROBABILITY].is_between(0.0, 1.0, closed="right").all()
    gaps = baseline["result"]["summary"]["top_risk_gaps"]
    assert gaps["top_n"] == targets.height
    assert gaps["not_examined"] == sum(r["shipments"] for r in gaps["reasons"].values())
    assert "Top risk not examined" in (Path(baseline["result"]["outputs"]["reports"]) / "report.html").read_text()


def test_rerun_of_a_date_gives_the_same_outputs(world, baseline):
    from flows.nightly import nightly_flow

    home = baseline["home"]
    nightly_flow(str(home), world["day"], ingest=False)
    again = _outputs(home, world["day"])
    assert_frame_equal(again["scores"], baseline["scores"])
    assert_frame_equal(again["targets"], baseline["targets"])
    assert _leftovers(home) == []


def test_a_broken_input_file_is_quarantined_and_the_night_succeeds(world, home_copy):
    from flows.nightly import nightly_flow

    broken = home_copy / "landing" / f"manifest-{world['day']}-9.parquet"
    broken.write_bytes(b"PAR1 this is not a parquet file")
    result = nightly_flow(str(home_copy), world["day"], ingest=True)
    assert result["summary"]["shipments"] > 1000
    quarantined = [p.name for p in Layout(home_copy).quarantine_files.rglob("*") if p.is_file()]
    assert any(broken.name in name for name in quarantined), quarantined


def test_a_failure_names_its_step(home_copy):
    from flows.nightly import nightly_flow

    with pytest.raises(
        RiskpipeError, match=r"nightly step 'features' failed: no ingested manifests for arrival date 2030-01-01"
    ):
        nightly_flow(str(home_copy), "2030-01-01", ingest=False)
    assert not (home_copy / "scores" / "2030-01-01").exists()
    assert _leftovers(home_copy) == []


def test_sharded_scoring_in_threads_equals_single_process(world, baseline, home_copy):
    from flows.nightly import nightly_flow

    result = nightly_flow(str(home_copy), world["day"], ingest=False, shards=3)
    got = _outputs(home_copy, world["day"])
    assert_frame_equal(got["scores"], baseline["scores"])
    assert_frame_equal(got["targets"], baseline["targets"])
    assert result["summary"]["shipments"] == baseline["scores"].height


def _assert_same_summary(got: object, want: object, path: str = "summary") -> None:
    """Equal summaries; floats equal to 1e-12 relative (the sharded features sum a day's values in
    another order, so scores, and the sums of scores in the summary, may differ in the last bit)."""
    if isinstance(want, float) and isinstance(got, float):
        assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-300), (path, got, want)
    elif isinstance(want, dict) and isinstance(got, dict):
        assert got.keys() == want.keys(), (path, sorted(got.keys() ^ want.keys()))
        for k in want:
            _assert_same_summary(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list) and isinstance(got, list):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same_summary(g, w, f"{path}[{i}]")
    else:
        assert got == want, (path, got, want)


def _features(home: Path, day: str) -> pl.DataFrame:
    layout = Layout(home)
    return pl.read_parquet(layout.day_dir(layout.features, date.fromisoformat(day)) / "features.parquet")


def test_the_whole_night_on_shards_in_threads_equals_single_process(world, baseline, home_copy, monkeypatch):
    """Features built shard by shard (row families per shard, whole-day columns as a map-reduce
    over key partitions: no step builds the day's thin frame), scored per piece, combined: the
    features file, scores, targets and summary of a single-process run."""
    import riskpipe.distnight as distnight
    import riskpipe.features.build as build
    from flows.nightly import nightly_flow

    def whole_day(*_a, **_k):
        raise AssertionError("a step of the night on shards built the whole day's columns in one task")

    monkeypatch.setattr(distnight, "day_columns", whole_day)
    monkeypatch.setattr(build, "_day_frame", whole_day)
    monkeypatch.setattr(distnight, "_day_frame", whole_day)
    # after publishing, the look-up files and the history tables are tasks on the runner (a
    # worker on a cluster), not calls in the flow's own thread
    import threading

    import riskpipe.lookup as lookup
    import riskpipe.nightly as steps

    where: dict[str, int] = {}
    prepare_day, history_step = lookup.prepare_day, steps.history_step
    monkeypatch.setattr(lookup, "prepare_day", lambda *a: where.update(lookup=threading.get_ident()) or prepare_day(*a))
    monkeypatch.setattr(
        steps, "history_step", lambda *a: where.update(history=threading.get_ident()) or history_step(*a)
    )
    result = nightly_flow(str(home_copy), world["day"], ingest=False, shards=3, distributed=True)
    got = _outputs(home_copy, world["day"])
    assert_frame_equal(_features(home_copy, world["day"]), _features(baseline["home"], world["day"]))
    assert_frame_equal(got["scores"], baseline["scores"])
    assert_frame_equal(got["targets"], baseline["targets"])
    _assert_same_summary(result["summary"], baseline["result"]["summary"])
    assert not (home_copy / "work" / world["day"] / "shards").exists()
    assert set(where) == {"lookup", "history"} and threading.get_ident() not in where.values()
    from riskpipe.features import history

    layout, d = Layout(home_copy), date.fromisoformat(world["day"])
    assert lookup.ready_lookup(layout, d) is not None
    assert history.history_current(layout, d) and history.window_current(layout, d + timedelta(days=1))


def test_a_large_day_is_scored_in_batches_with_the_same_outputs(world, baseline, home_copy, monkeypatch):
    """Above SCORE_BATCH_ROWS the score step scores id ranges one after the other in-process."""
    import riskpipe.nightly as steps
    import riskpipe.score as score
    import riskpipe.shard as shard
    from flows.nightly import nightly_flow

    calls = []
    score_day = score.score_day
    monkeypatch.setattr(score, "score_day", lambda *a, **k: calls.append(k["features"].height) or score_day(*a, **k))
    rows = baseline["scores"].height
    monkeypatch.setattr(steps, "SCORE_BATCH_ROWS", rows // 3)
    nightly_flow(str(home_copy), world["day"], ingest=False)
    assert len(calls) == -(-rows // (rows // 3)) >= 3 and sum(calls) == rows
    got = _outputs(home_copy, world["day"])
    assert_frame_equal(got["scores"], baseline["scores"])
    assert_frame_equal(got["targets"], baseline["targets"])
    assert not shard.shard_dir(Layout(home_copy), date.fromisoformat(world["day"])).exists()


@pytest.mark.slow  # ~15 s: two Dask worker processes start and import the stack
def test_the_whole_night_on_a_two_worker_dask_cluster_equals_single_process(world, baseline, home_copy):
    """Features, scoring and the day's files on two Dask worker processes (4 shards): the same
    features file, scores, targets and summary as the single-process run."""
    pytest.importorskip("prefect_dask")
    from flows.nightly import with_task_runner

    run = with_task_runner("dask", workers=2)
    result = run(str(home_copy), world["day"], ingest=False, shards=4, distributed=True)
    got = _outputs(home_copy, world["day"])
    assert_frame_equal(_features(home_copy, world["day"]), _features(baseline["home"], world["day"]))
    assert_frame_equal(got["scores"], baseline["scores"])
    assert_frame_equal(got["targets"], baseline["targets"])
    _assert_same_summary(result["summary"], baseline["result"]["summary"])


def test_killed_run_leaves_published_outputs_intact_and_rerun_recovers(world, baseline, home_copy):
    import prefect.settings

    from flows.nightly import nightly_flow

    day = world["day"]
    nightly_flow(str(home_copy), day, ingest=False)  # the previously published outputs
    before = _snapshot(home_copy, day)
    assert any(name.endswith("scores.parquet") for name in before)

    env = dict(os.environ)
    env["PREFECT_API_URL"] = prefect.settings.PREFECT_API_URL.value()  # the harness's server
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    code = f"from flows.nightly import nightly_flow; nightly_flow({str(home_copy)!r}, {day!r}, ingest=False)"
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    staging_parent = home_copy / "targets"
    try:
        deadline = time.monotonic() + 120
        while not list(staging_parent.glob(f".{day}.staging-*")):
            assert child.poll() is None, f"child ended before staging: {child.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "staging directory never appeared"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert _snapshot(home_copy, day) == before  # byte-identical, nothing visible added

    nightly_flow(str(home_copy), day, ingest=False)
    got = _outputs(home_copy, day)
    assert_frame_equal(got["scores"], baseline["scores"])
    assert_frame_equal(got["targets"], baseline["targets"])
    assert _leftovers(home_copy) == []


def test_shard_task_logic_through_fn(world, baseline, home_copy):
    """Tasks called as plain functions: shards partition the day by consignee address key."""
    from flows.nightly import features, split_shards

    feats = features.fn(str(home_copy), world["day"])
    parts = split_shards.fn(str(home_copy), world["day"], feats, 2)
    raws = [pl.read_parquet(p["raw"]) for p in parts]
    assert sum(r.height for r in raws) == baseline["scores"].height
    keys = [set(r[S.CONSIGNEE_ADDRESS_KEY].fill_null("")) for r in raws]
    assert keys[0].isdisjoint(keys[1]) and all(keys)


def test_the_shard_steps_partition_the_day_and_refuse_a_lost_or_doubled_row(world, baseline, home_copy, tmp_path):
    """The distributed night's steps as plain functions: the raw split partitions the day by
    consignee address, the pieces gathered from the shards give the single-process features file
    and scores, and a lost or doubled row is an error, not a silently different night."""
    from riskpipe import distnight
    from riskpipe.config import load_settings
    from riskpipe.score import scores_file_frame
    from riskpipe.shard import combine_pieces

    layout, day = Layout(home_copy), date.fromisoformat(world["day"])
    settings = load_settings(home_copy)
    parts = distnight.split_raw(layout, day, 3)
    raws = [pl.read_parquet(p["raw"]) for p in parts]
    ids = pl.concat([r.select(S.SHIPMENT_ID) for r in raws])
    assert ids.height == ids[S.SHIPMENT_ID].n_unique() == baseline["scores"].height
    keys = [set(r[S.CONSIGNEE_ADDRESS_KEY].fill_null("")) for r in raws]
    assert all(keys) and all(keys[i].isdisjoint(keys[j]) for i in range(3) for j in range(i + 1, 3))
    whole = distnight.day_columns(layout, settings, day, 3)
    files = [distnight.features_shard(layout, settings, day, p, whole["file"]) for p in parts]
    for f, r in zip(files, raws, strict=True):
        assert pl.read_parquet(f, columns=[S.SHIPMENT_ID])[S.SHIPMENT_ID].to_list() == sorted(r[S.SHIPMENT_ID])
    pieces = whole["pieces"]
    assert len(pieces) == 3 and not any(cascade for _, _, cascade in pieces)  # a small day: no cascade
    outs = distnight.piece_paths(layout, day, len(pieces))
    done = [distnight.score_piece(layout, settings, day, files, p, o) for p, o in zip(pieces, outs, strict=True)]
    feats = distnight.join_ranges(layout, day, [o["features"] for o in done], whole["rows"])
    assert_frame_equal(pl.read_parquet(feats), _features(baseline["home"], world["day"]))
    piece_features = [pl.read_parquet(o["features"]) for o in done]
    scored = combine_pieces(layout, settings, day, [o["scored"] for o in done], feats, tmp_path / "scored.parquet")
    assert_frame_equal(scores_file_frame(pl.read_parquet(scored), day), baseline["scores"])

    rest = [tmp_path / f"piece-{i}.parquet" for i in range(1, 3)]
    for frame, path in zip(piece_features[1:], rest, strict=True):
        frame.write_parquet(path)
    first = piece_features[0]
    for broken in (first.slice(1), pl.concat([first, first.head(1)])):  # a row lost, a row twice
        broken.write_parquet(tmp_path / "piece-0.parquet")
        with pytest.raises(ValueError, match=r"feature rows.* for \d+ shipments of the day|repeats shipments"):
            distnight.join_ranges(layout, day, [str(tmp_path / "piece-0.parquet"), *map(str, rest)], whole["rows"])
    parts = distnight.split_raw(layout, day, 3)
    whole = distnight.day_columns(layout, settings, day, 3)
    doubled = pl.read_parquet(parts[0]["raw"])
    pl.concat([doubled, doubled.head(1)]).write_parquet(parts[0]["raw"].replace("*", "part-0000"))
    with pytest.raises(RuntimeError, match="different shipments"):
        distnight.features_shard(layout, settings, day, parts[0], whole["file"])


def test_the_night_on_shards_keeps_the_cascade_of_the_single_process_run(world, home_copy, tmp_path, monkeypatch):
    """A day scored with the two-stage cascade (its candidates are the top of each batch of the
    id-sorted day): the pieces follow the single-process batches, so the scores and the list are
    the same (scoring each address shard on its own chose other candidates)."""
    import shutil

    import riskpipe.nightly as steps
    import riskpipe.score as score
    from flows.nightly import nightly_flow

    # as if the constants were smaller (the scoring functions' defaults were bound at import)
    monkeypatch.setattr(score, "CASCADE_MIN_ROWS", 300)
    monkeypatch.setattr(score, "BATCH_ROWS", 400)
    monkeypatch.setitem(score.score_frame.__kwdefaults__, "cascade_min_rows", 300)
    monkeypatch.setitem(score.score_frame.__kwdefaults__, "batch_rows", 400)
    monkeypatch.setitem(score.score_day.__kwdefaults__, "batch_rows", 400)
    monkeypatch.setattr(steps, "SCORE_BATCH_ROWS", 1000)  # two id ranges of about 750 rows
    single = tmp_path / "single"
    shutil.copytree(home_copy, single)
    nightly_flow(str(single), world["day"], ingest=False)
    result = nightly_flow(str(home_copy), world["day"], ingest=False, shards=2, distributed=True)
    want, got = _outputs(single, world["day"]), _outputs(home_copy, world["day"])
    assert_frame_equal(got["scores"], want["scores"])
    assert_frame_equal(got["targets"], want["targets"])
    assert result["summary"]["shipments"] == want["scores"].height


@pytest.mark.parametrize("breakage", ["fresh", "corrupt", "tampered"])
def test_a_night_without_a_usable_champion_is_published_rules_only_and_says_so(world, home_copy, breakage):
    """No champion.json (a fresh home) or one that cannot be used: the rules rank the night, which
    is published with a report banner, summary fields and a Prefect artifact, and the flow fails
    (non-zero exit) unless rules-only nights are allowed."""
    from prefect.artifacts import Artifact

    from flows.nightly import nightly_flow
    from riskpipe.registry import CHAMPION_FILE, MODEL_FILE, champion_version

    models = home_copy / "models"
    version = champion_version(models)
    expected = {
        "fresh": "no champion model has been registered",
        "corrupt": "champion.json: not a valid champion pointer",
        "tampered": f"model {version}: model.skops does not match its signature",
    }[breakage]
    if breakage == "fresh":
        (models / CHAMPION_FILE).unlink()
    elif breakage == "corrupt":
        (models / CHAMPION_FILE).write_text("{")
    else:
        with open(models / version / MODEL_FILE, "ab") as fh:
            fh.write(b"\0")
    day = world["day"]
    with pytest.raises(RiskpipeError, match=f"no usable champion model.*{expected}.*--allow-rules-only") as caught:
        nightly_flow(str(home_copy), day, ingest=False)
    from riskpipe.nightly import RulesOnlyNight

    assert isinstance(caught.value, RulesOnlyNight)
    summary = caught.value.result["summary"]
    assert summary["model_version"] == "rules-only" and expected in summary["champion_problem"]
    assert summary["champion_registered"] is (breakage != "fresh")
    targets = pl.read_parquet(
        Layout(home_copy).day_dir(Layout(home_copy).targets, date.fromisoformat(day)) / "targets.parquet"
    )
    assert targets.height > 0 and set(targets[S.MODEL_VERSION]) == {"rules-only"}
    report = (Path(caught.value.result["outputs"]["reports"]) / "report.html").read_text()
    assert "No usable model tonight" in report
    artifact = Artifact.get(f"rules-only-{day}")
    assert artifact is not None and expected.split(":")[0] in artifact.data
    allowed = nightly_flow(str(home_copy), day, ingest=False, allow_rules_only=True)
    assert allowed["summary"]["champion_problem"] == summary["champion_problem"]


def test_a_promotion_during_the_night_does_not_give_one_night_two_models(home_copy, world, monkeypatch):
    """The champion is resolved once per night and every piece, shard and combine step loads
    that version: a promotion between pieces (or shards) left the later ones, and the top rows'
    attributions, to another model (the rank step then refused the night, or reasons silently
    came from another model than the scores)."""
    import riskpipe.shard as shard
    from riskpipe import distnight
    from riskpipe.config import load_settings
    from riskpipe.nightly import features_path, scoring_champion
    from riskpipe.registry import champion_version, load_model, save_model, set_champion
    from riskpipe.score import NO_MODEL_VERSION

    layout, day = Layout(home_copy), date.fromisoformat(world["day"])
    settings = load_settings(home_copy)
    models = Path(settings.models_dir)
    v1 = champion_version(models)
    first = load_model(models, v1, key_path=settings.registry_key_path)
    meta = {k: v for k, v in first.meta.items() if k != "version"}
    save_model(models, first.model, meta, version="v2promoted", key_path=settings.registry_key_path)
    pinned = shard.night_champion(settings)
    assert pinned == v1
    loaded: list[str | None] = []
    real_load, real_champion = shard.load_model, shard.load_champion
    monkeypatch.setattr(shard, "load_model", lambda *a, **k: (m := real_load(*a, **k), loaded.append(m.version))[0])
    monkeypatch.setattr(shard, "load_champion", lambda s: (m := real_champion(s), loaded.append(m and m.version))[0])

    def used(files) -> list[str]:
        return (
            pl.concat([pl.read_parquet(f, columns=[S.MODEL_VERSION]) for f in files])[S.MODEL_VERSION]
            .unique()
            .to_list()
        )

    # the night on pieces (--distributed)
    parts = distnight.split_raw(layout, day, 2)
    whole = distnight.day_columns(layout, settings, day, 2)
    files = [distnight.features_shard(layout, settings, day, p, whole["file"]) for p in parts]
    outs = distnight.piece_paths(layout, day, len(whole["pieces"]))
    assert len(outs) == 2
    done = []
    for i, (p, o) in enumerate(zip(whole["pieces"], outs, strict=True)):
        if i == 1:
            set_champion(models, "v2promoted")  # a promotion while the pieces run
        done.append(distnight.score_piece(layout, settings, day, files, p, o, pinned))
    assert used([o["scored"] for o in done]) == [v1]
    # a night that started rules-only stays rules-only though a champion is usable meanwhile
    rules_only = {k: str(home_copy / f"rules-only-{k}.parquet") for k in ("features", "scored")}
    distnight.score_piece(layout, settings, day, files, whole["pieces"][0], rules_only, NO_MODEL_VERSION)
    assert used([rules_only["scored"]]) == [NO_MODEL_VERSION]
    feats = distnight.join_ranges(layout, day, [o["features"] for o in done], whole["rows"])
    loaded.clear()
    out = shard.combine_pieces(
        layout, settings, day, [o["scored"] for o in done], feats, home_copy / "a.parquet", model_version=pinned
    )
    assert loaded == [v1]  # the top rows' reasons come from the model that scored them
    assert scoring_champion(settings, pl.read_parquet(out)).model.version == v1

    # the older --shards path: features once, shards scored, then combined
    set_champion(models, v1)
    pinned = shard.night_champion(settings)
    split = shard.split_day(layout, day, features_path(layout, day), 2)
    scored = []
    for i, part in enumerate(split):
        if i == 1:
            set_champion(models, "v2promoted")
        scored.append(str(shard.score_shard(layout, settings, day, part, pinned)))
    assert used(scored) == [v1]
    loaded.clear()
    out = shard.combine_shards(
        layout, settings, day, scored, features_path(layout, day), home_copy / "b.parquet", model_version=pinned
    )
    assert loaded == [v1]
    assert scoring_champion(settings, pl.read_parquet(out)).model.version == v1
