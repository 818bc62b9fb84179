"""Versioned models on disk, safe loading, champion and challenger.

Layout under ``settings.models_dir`` (default ``<home>/models``)::

    models/<version>/model.skops     the fitted model (skops format: no pickle is ever loaded)
    models/<version>/meta.json       sha256 of model.skops, feature list + schema, training
                                     window, metrics, baselines used for reasons
    models/<version>/model_card.md   the model card (what, trained on what, how good, limits)
    models/champion.json             {"version": ...}: the model the nightly run uses
    models/decisions.jsonl           one JSON line per retrain decision

Loading checks the sha256 first (a changed file is refused), then asks skops which types the
file would build and refuses any outside an explicit allow-list of module prefixes, then checks
that the features the model needs are the ones this version of riskpipe builds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from riskpipe.errors import RiskpipeError
from riskpipe.store import replace_dir_atomic, sha256_file, staging_dir, write_text_atomic

MODEL_FILE = "model.skops"
META_FILE = "meta.json"
CARD_FILE = "model_card.md"
CHAMPION_FILE = "champion.json"
DECISIONS_FILE = "decisions.jsonl"
FORMAT_VERSION = 1

#: module prefixes whose types a model file may build. Anything else (os, subprocess, an
#: unknown package, a pickled function) makes loading fail.
TRUSTED_MODULE_PREFIXES: tuple[str, ...] = ("sklearn.", "numpy.", "scipy.", "riskpipe.")
#: exact extra names (HGB keeps ``functools.partial(check_array)`` in its preprocessor).
TRUSTED_EXACT: frozenset[str] = frozenset({"functools.partial"})


def trusted_names() -> frozenset[str]:
    """Exact type names trusted on top of the prefixes (incl. the shared estimator's list)."""
    try:
        from riskpipe.estimator import TABULAR_TRUSTED_TYPES

        return TRUSTED_EXACT | frozenset(TABULAR_TRUSTED_TYPES)
    except ImportError:
        return TRUSTED_EXACT


@dataclass(frozen=True)
class LoadedModel:
    """A verified model and its metadata."""

    version: str
    model: Any
    meta: dict[str, Any]
    path: Path | None = None

    @property
    def feature_columns(self) -> list[str]:
        return list(self.meta.get("feature_columns", []))

    @property
    def baseline(self) -> dict[str, Any]:
        """Feature -> its usual value (training median / most frequent), for occlusion reasons."""
        return dict(self.meta.get("baseline", {}))

    @property
    def importance(self) -> dict[str, float]:
        return dict(self.meta.get("importance", {}))


@dataclass
class RetrainDecision:
    """What ``retrain`` decided and why (also one line of ``decisions.jsonl``)."""

    promoted: bool
    challenger_version: str | None
    champion_version: str | None
    reason: str
    metric: str = "precision_at_capacity"
    challenger_score: float | None = None
    champion_score: float | None = None
    margin: float = 0.0
    eval_days: list[str] = field(default_factory=list)
    table: Any = None  # pl.DataFrame evaluation table (not written to the decisions file)
    report: dict[str, Any] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        return {
            "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "promoted": self.promoted,
            "challenger_version": self.challenger_version,
            "champion_version": self.champion_version,
            "reason": self.reason,
            "metric": self.metric,
            "challenger_score": self.challenger_score,
            "champion_score": self.champion_score,
            "margin": self.margin,
            "eval_days": self.eval_days,
        }


def new_version(now: datetime | None = None) -> str:
    """A sortable, unique version name: ``m<UTC timestamp to the microsecond>``."""
    now = now or datetime.now(UTC)
    return "m" + now.strftime("%Y%m%dT%H%M%S%fZ")


def _json_default(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_model(
    models_dir: Path,
    model: Any,
    meta: dict[str, Any],
    card: str | None = None,
    version: str | None = None,
) -> str:
    """Write ``models/<version>/`` (model, meta with the model's sha256, card) atomically."""
    import skops.io as sio

    version = version or new_version()
    final = Path(models_dir) / version
    if final.exists():
        raise RiskpipeError(f"model version {version} already exists in {models_dir}")
    staged = staging_dir(final)
    try:
        sio.dump(model, staged / MODEL_FILE)
        full = {
            **meta,
            "version": version,
            "format_version": FORMAT_VERSION,
            "artifact": MODEL_FILE,
            "sha256": sha256_file(staged / MODEL_FILE),
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (staged / META_FILE).write_text(json.dumps(full, indent=2, default=_json_default), encoding="utf-8")
        (staged / CARD_FILE).write_text(card or model_card(full), encoding="utf-8")
        replace_dir_atomic(staged, final)
    except BaseException:
        import shutil

        shutil.rmtree(staged, ignore_errors=True)
        raise
    return version


def list_versions(models_dir: Path) -> list[str]:
    base = Path(models_dir)
    if not base.exists():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / META_FILE).exists())


def champion_version(models_dir: Path) -> str | None:
    path = Path(models_dir) / CHAMPION_FILE
    if not path.exists():
        return None
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RiskpipeError(f"{path}: not a valid champion pointer ({exc})") from None


def set_champion(models_dir: Path, version: str) -> None:
    """Point ``champion.json`` at ``version`` (atomic rename)."""
    if version not in list_versions(models_dir):
        raise RiskpipeError(f"cannot promote {version}: no such model in {models_dir}")
    record = {"version": version, "promoted_at": datetime.now(UTC).isoformat(timespec="seconds")}
    write_text_atomic(json.dumps(record, indent=2) + "\n", Path(models_dir) / CHAMPION_FILE)


def record_decision(models_dir: Path, decision: RetrainDecision) -> None:
    path = Path(models_dir) / DECISIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(decision.as_record(), default=_json_default) + "\n")


def read_decisions(models_dir: Path) -> list[dict[str, Any]]:
    path = Path(models_dir) / DECISIONS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _check_types(path: Path) -> list[str]:
    """The types the file would build, all within the allow-list (else RiskpipeError)."""
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001 - any parse failure means an unreadable model
        raise RiskpipeError(f"{path}: not a readable skops model file ({type(exc).__name__})") from None
    exact = trusted_names()
    bad = [t for t in untrusted if t not in exact and not t.startswith(TRUSTED_MODULE_PREFIXES)]
    if bad:
        raise RiskpipeError(f"{path}: refusing to load: the file would build untrusted types {bad[:5]}")
    return list(untrusted)


def load_model(
    models_dir: Path,
    version: str | None = None,
    feature_schema: dict[str, Any] | None = None,
) -> LoadedModel:
    """Load and verify a model (``version=None``: the champion).

    ``feature_schema`` (feature -> Polars dtype or its string) is what this riskpipe builds;
    when given, a model needing a feature that is absent or of another type is refused.
    """
    import skops.io as sio

    models_dir = Path(models_dir)
    if version is None:
        version = champion_version(models_dir)
        if version is None:
            raise RiskpipeError(f"no champion model in {models_dir}: run `riskpipe retrain` first")
    folder = models_dir / version
    meta_path = folder / META_FILE
    if not meta_path.exists():
        raise RiskpipeError(f"model {version}: {meta_path} not found")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RiskpipeError(f"model {version}: {meta_path} is not valid JSON ({exc})") from None
    artifact = folder / str(meta.get("artifact", MODEL_FILE))
    if not artifact.exists():
        raise RiskpipeError(f"model {version}: {artifact} not found")
    if meta.get("format_version") != FORMAT_VERSION:
        raise RiskpipeError(f"model {version}: format version {meta.get('format_version')} is not {FORMAT_VERSION}")
    digest = sha256_file(artifact)
    if digest != meta.get("sha256"):
        raise RiskpipeError(
            f"model {version}: {artifact.name} does not match its recorded sha256 (file changed or tampered): refusing to load"
        )
    if feature_schema is not None:
        check_features(meta, feature_schema, version)
    trusted = _check_types(artifact)
    try:
        model = sio.load(artifact, trusted=trusted)
    except Exception as exc:  # noqa: BLE001
        raise RiskpipeError(f"model {version}: cannot load {artifact.name} ({type(exc).__name__}: {exc})") from None
    return LoadedModel(version=version, model=model, meta=meta, path=folder)


def check_features(meta: dict[str, Any], feature_schema: dict[str, Any], version: str = "?") -> None:
    """Refuse a model whose features this riskpipe does not build (name or type)."""
    current = {k: str(v) for k, v in feature_schema.items()}
    wanted = dict(meta.get("feature_schema") or {c: None for c in meta.get("feature_columns", [])})
    missing = [c for c in wanted if c not in current]
    if missing:
        raise RiskpipeError(
            f"model {version} is incompatible: it needs features not built by this version ({', '.join(missing[:8])}); retrain it"
        )
    changed = [c for c, t in wanted.items() if t is not None and _base_type(t) != _base_type(current[c])]
    if changed:
        raise RiskpipeError(
            f"model {version} is incompatible: features changed type ({', '.join(changed[:8])}); retrain it"
        )


def _base_type(dtype: str) -> str:
    """Dtype string without Enum categories (new categories are read as missing, not an error)."""
    return dtype.split("(", 1)[0]


def model_card(meta: dict[str, Any]) -> str:
    """A short markdown model card from the metadata."""
    from riskpipe.model import training_warnings

    window = meta.get("training_window", {})
    lines = [
        f"# Model card: {meta.get('version', '?')}",
        "",
        "**Purpose.** Rank arriving low-value shipments by the probability that an exam finds fentanyl, "
        "a fentanyl precursor or a pill press, so officers examine the riskiest first. A decision aid, "
        "not a decision: every exam is an officer's call.",
        "",
        f"**Estimator.** {meta.get('estimator', '?')}; probabilities calibrated ({meta.get('calibration', '?')}) "
        "on later days than those trained on.",
        "",
        f"**Training data.** Examined shipments with outcomes, arrival days {window.get('train_start')} to "
        f"{window.get('train_end')}; calibration days {window.get('calib_start')} to {window.get('calib_end')}; "
        f"evaluated on {window.get('eval_start')} to {window.get('eval_end')}. "
        f"Rows: {meta.get('n_train', '?')} ({meta.get('n_train_positive', '?')} positive); "
        f"calibration rows: {meta.get('n_calib', '?')} ({meta.get('n_calib_positive', '?')} positive).",
        "",
    ]
    warnings = meta["warnings"] if "warnings" in meta else training_warnings(meta)
    if warnings:
        lines += ["**Warnings.**", "", *(f"- {w}" for w in warnings), ""]
    lines += [
        f"**Features** ({len(meta.get('feature_columns', []))}): {', '.join(meta.get('feature_columns', []))}.",
        "",
        "**Evaluation** (held-out later days; see metrics in meta.json):",
        "",
    ]
    for key, value in (meta.get("headline_metrics") or {}).items():
        lines.append(f"- {key}: {value:.4f}" if isinstance(value, float) else f"- {key}: {value}")
    lines += [
        "",
        "**Limits.** Labels exist only for examined shipments, mostly chosen by risk: metrics on them are "
        "biased towards what was already targeted; random exams give the unbiased hit rate. Smugglers adapt "
        "after seizures, so performance decays without retraining and exploration exams. The probability "
        "is calibrated on examined shipments, which are riskier than the average arrival.",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# retraining: challenger vs champion on the same later labelled days
# ---------------------------------------------------------------------------------------------
DEFAULT_MARGIN = 0.01
DECISION_VIEW = "labelled"  # decisions use outcomes only, never ground truth


def retrain(
    layout: Any,
    settings: Any,
    until: date | None = None,
    *,
    labels: Any = None,
    rules: Any = None,
    use_rules: bool = True,
    estimator: Any = None,
    margin: float = DEFAULT_MARGIN,
    eval_days: int | None = None,
    calib_days: int | None = None,
    builder: Any = None,
    with_truth: bool = True,
    promote: bool = True,
    unexamined_share: float = 0.0,
) -> RetrainDecision:
    """Train a challenger on labelled days up to ``until``, evaluate it, the champion and the
    baselines on the same latest labelled days, and promote the challenger only if its precision
    at capacity (labelled view) beats the champion's by ``margin``. A first model is promoted.
    The decision is appended to ``decisions.jsonl``; the challenger is saved either way.

    ``labels`` defaults to the label store at ``settings.db_url``; ``rules`` to the configured
    rules file (``use_rules=False``: none); ``estimator`` to ``TabularRiskClassifier``.
    """
    import polars as pl

    from riskpipe import schema as S
    from riskpipe.model import (
        evaluate_models,
        evaluation_table,
        fit_linear,
        fit_risk_model,
        time_split,
    )
    from riskpipe.score import blend
    from riskpipe.training import build_training_set, labelled_days

    models_dir = Path(settings.models_dir)
    if labels is None:
        from riskpipe.labels import LabelStore

        labels = LabelStore(settings.db_url).current(until)
    elif until is not None:
        labels = labels.filter(pl.col(S.EXAM_DATE) <= until)
    if rules is None and use_rules:
        try:
            from riskpipe.rules import load_rules

            rules = load_rules(settings.rules_path)
        except ImportError:
            rules = None
    located = labelled_days(layout, labels, until)
    if located.is_empty():
        raise RiskpipeError("no labelled shipments to train on: import exam outcomes first (riskpipe labels import)")
    train_days, cal_days, ev_days = time_split(located[S.ARRIVAL_DATE].unique().to_list(), eval_days, calib_days)
    data = build_training_set(
        layout, labels, train_days + cal_days, builder=builder, unexamined_share=unexamined_share, seed=settings.seed
    )
    train = data.filter(pl.col(S.ARRIVAL_DATE).is_in(train_days))
    # calibrate on examined shipments only: the probability is that of a finding if examined
    calib = data.filter(pl.col(S.ARRIVAL_DATE).is_in(cal_days) & pl.col(S.EXAM_REASON).is_not_null())
    model, meta = fit_risk_model(train, calib, estimator=estimator, seed=settings.seed)
    linear = fit_linear(train, model.feature_columns_)
    challenger = LoadedModel(version="challenger", model=model, meta=meta)

    champion: LoadedModel | None = None
    champion_note = ""
    current = champion_version(models_dir)
    if current is not None:
        try:
            champion = load_model(models_dir, current, feature_schema=meta["feature_schema"])
        except RiskpipeError as exc:
            champion_note = f" (champion {current} not usable: {exc})"

    def production(m: LoadedModel):
        return lambda joined: blend(
            m.model.predict_risk(joined), joined[S.RULE_SCORE].to_numpy(), floor_score=joined[S.RULE_FLOOR_SCORE].to_numpy()
        )

    scorers = {
        "model": production(challenger),
        "model_alone": lambda joined: model.predict_risk(joined),
        "linear": lambda joined: linear.predict_risk(joined),
    }
    if champion is not None:
        scorers["champion"] = production(champion)
    report = evaluate_models(layout, settings, labels, ev_days, scorers, rules=rules, with_truth=with_truth, builder=builder)
    view = report["views"][DECISION_VIEW]
    ch_score = view["model"]["precision_at_capacity"]
    champ_score = view["champion"]["precision_at_capacity"] if champion is not None else None

    meta = {
        **meta,
        "training_window": {
            "until": until,
            "train_start": train_days[0],
            "train_end": train_days[-1],
            "calib_start": cal_days[0],
            "calib_end": cal_days[-1],
            "eval_start": ev_days[0],
            "eval_end": ev_days[-1],
        },
        "metrics": report,
        "headline_metrics": {
            f"{v} precision at capacity": report["views"][v]["model"]["precision_at_capacity"] for v in report["views"]
        }
        | {f"{v} recall at capacity": report["views"][v]["model"]["recall_at_capacity"] for v in report["views"]},
        "rule_blend": "max(p, 0.05 * rule_score if rule_score >= 0.6 else 0.001 * rule_score)",
    }
    version = save_model(models_dir, model, meta)
    if champion is None:
        promoted = True
        reason = "no usable champion: first model promoted" + champion_note
    elif ch_score >= champ_score + margin:
        promoted = True
        reason = f"challenger precision at capacity {ch_score:.4f} >= champion {champ_score:.4f} + margin {margin}"
    else:
        promoted = False
        reason = f"challenger precision at capacity {ch_score:.4f} < champion {champ_score:.4f} + margin {margin}: champion kept"
    if champion is not None and champion.meta.get("training_window", {}).get("calib_end", "") >= ev_days[0].isoformat():
        reason += " (note: the champion was trained on days overlapping the evaluation days)"
    if promoted and promote:
        set_champion(models_dir, version)
    decision = RetrainDecision(
        promoted=promoted and promote,
        challenger_version=version,
        champion_version=current,
        reason=reason,
        challenger_score=ch_score,
        champion_score=champ_score,
        margin=margin,
        eval_days=[d.isoformat() for d in ev_days],
        table=evaluation_table(report),
        report=report,
    )
    record_decision(models_dir, decision)
    return decision
