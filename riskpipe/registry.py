"""Versioned models on disk, safe loading, champion and challenger.

Layout under ``settings.models_dir`` (default ``<home>/models``)::

    models/<version>/model.skops     the fitted model (skops format: no pickle is ever loaded)
    models/<version>/meta.json       sha256 of model.skops, feature list + schema, training
                                     window, metrics, baselines used for reasons
    models/<version>/signature.json  HMAC-SHA256 of model.skops and meta.json (registry key)
    models/<version>/model_card.md   the model card (what, trained on what, how good, limits)
    models/champion.json             {"version": ...}: the model the nightly run uses
    models/decisions.jsonl           the audit trail: one JSON line per retrain decision and per
                                     champion change (promote, rollback, trust): who, when, from,
                                     to, why; ``riskpipe models rollback`` reads it

Write access to ``models/`` must not be enough to run code or to change a ranking, so loading:

1. accepts only a version name matching :data:`VERSION_PATTERN` (a folder directly inside the
   registry: no ``..``, no separators, no absolute paths, no symlinks);
2. verifies the HMAC-SHA256 of ``meta.json`` and ``model.skops`` (bound to the version name) with
   the registry key, a random secret kept *outside* ``models/`` (default
   ``<registry's parent>/.riskpipe/registry.key``, i.e. ``<home>/.riskpipe/registry.key``; setting
   ``registry_key_path``), created 0600 by the first save; a sha256 in ``meta.json`` alone can be
   recomputed by whoever changes the file;
3. lists every node of the skops file and refuses any (kind, type) outside the reviewed
   :data:`MODEL_NODES`: exact types only, and no function, method or partial at all (the one
   function sklearn keeps in a fitted HGB, ``partial(check_array, ...)``, is taken out by
   :func:`dumps_model` and rebuilt by :func:`loads_model` in riskpipe's own code);
4. checks that the features the model needs are the ones this version of riskpipe builds.

A model saved before signing existed is refused with the way out: ``riskpipe models trust
VERSION`` (:func:`trust_model`) re-saves it, signed, as a new version, or retrain.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from riskpipe.errors import RiskpipeError
from riskpipe.model.card import model_card
from riskpipe.store import replace_dir_atomic, sha256_file, staging_dir, write_bytes_atomic, write_text_atomic  # noqa: F401 - sha256_file re-exported

MODEL_FILE = "model.skops"
META_FILE = "meta.json"
CARD_FILE = "model_card.md"
SIGNATURE_FILE = "signature.json"
CHAMPION_FILE = "champion.json"
DECISIONS_FILE = "decisions.jsonl"
FORMAT_VERSION = 1
DECISION_VIEW = "labelled"  # decisions use outcomes only, never ground truth (riskpipe.retrain)
#: a model version is a plain folder name: letters, digits, ``_`` and ``-`` (``new_version`` makes
#: ``m<UTC timestamp>``); anything else in champion.json or on the command line is refused
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
KEY_DIR = ".riskpipe"
KEY_FILE = "registry.key"
_MAC_CONTEXT = b"riskpipe-registry-v1"

_NUMPY_SCALARS = frozenset(
    f"numpy.{t}"
    for t in (
        "bool",
        "bool_",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    )
)
#: Every node a model file may hold, as skops loader -> exact type names. Derived by saving the
#: models riskpipe trains (``RiskModel`` over ``TabularRiskClassifier`` with numeric, categorical
#: and high-cardinality columns, the ``LinearBaseline`` partner, sigmoid, isotonic and identity
#: calibrators and the cascade's first stage) and listing their nodes; reviewed by hand: each is
#: data or a class whose loading runs no code named by the file. No ``FunctionNode``,
#: ``PartialNode``, ``MethodNode``, ``OperatorFuncNode`` or ``ReduceNode`` kind is allowed, so a
#: file can reference no callable. A new kind of model that needs more is a reviewed change here
#: (``save_model`` refuses to write a file that ``load_model`` would refuse).
MODEL_NODES: dict[str, frozenset[str]] = {
    "ObjectNode": frozenset(
        {
            "riskpipe.model.RiskModel",
            "riskpipe.model.ProbabilityCalibrator",
            "riskpipe.model.LinearBaseline",
            "riskpipe.estimator.TabularRiskClassifier",
            "sklearn.pipeline.Pipeline",
            "sklearn.compose._column_transformer.ColumnTransformer",
            "sklearn.preprocessing._function_transformer.FunctionTransformer",  # func None only
            "sklearn.preprocessing._encoders.OrdinalEncoder",
            "sklearn.preprocessing._encoders.OneHotEncoder",
            "sklearn.preprocessing._target_encoder.TargetEncoder",
            "sklearn.preprocessing._label.LabelEncoder",
            "sklearn.preprocessing._data.StandardScaler",
            "sklearn.impute._base.SimpleImputer",
            "sklearn.model_selection._split.StratifiedKFold",
            "sklearn.linear_model._logistic.LogisticRegression",
            "sklearn.isotonic.IsotonicRegression",
            "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
            "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
            "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
            "sklearn._loss.loss.HalfBinomialLoss",
            "sklearn._loss.link.LogitLink",
            "sklearn._loss.link.Interval",
        }
    ),
    "LossNode": frozenset({"sklearn._loss._loss.CyHalfBinomialLoss"}),
    "RandomGeneratorNode": frozenset({"numpy.random._generator.Generator"}),  # bit generator by name
    "NdArrayNode": frozenset({"numpy.ndarray"}) | _NUMPY_SCALARS,  # loaded with allow_pickle=False
    "DTypeNode": frozenset({"numpy.dtype"}),
    "TypeNode": frozenset({"builtins.str", "builtins.int", "builtins.float", "builtins.bool"}) | _NUMPY_SCALARS,
    "JsonNode": frozenset({"builtins.str", "builtins.int", "builtins.float", "builtins.bool", "builtins.NoneType"}),
    "DictNode": frozenset({"builtins.dict"}),
    "ListNode": frozenset({"builtins.list"}),
    "TupleNode": frozenset({"builtins.tuple"}),
    "SliceNode": frozenset({"builtins.slice"}),
}
#: What a model file written before riskpipe took functions out may hold on top (HGB's
#: ``partial(check_array, ...)``); accepted only by :func:`trust_model`, which re-saves the model
#: without it.
_LEGACY_NODES: dict[str, frozenset[str]] = {
    "PartialNode": frozenset({"functools.partial"}),
    "FunctionNode": frozenset({"sklearn.utils.validation.check_array"}),
}
#: marker left on a ``FunctionTransformer`` whose function ``dumps_model`` took out
_RESTORE_ATTR = "riskpipe_restore_func_"
_HGB_CHECK = "hgb_check_array"


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
    action: str = "retrain"  # or "trust" (a re-signed model), "forced-promote" (retrain --force);
    # promote/rollback: record_champion_change
    #: riskpipe.promotion.PromotionEvidence.as_dict() of the comparison (None: nothing compared)
    evidence: dict[str, Any] | None = None
    min_positives: int | None = None
    forced: bool = False

    def as_record(self) -> dict[str, Any]:
        return {
            "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "action": self.action,
            "by": operator_name(),
            "from_version": self.champion_version,
            "to_version": self.challenger_version if self.promoted else self.champion_version,
            "promoted": self.promoted,
            "challenger_version": self.challenger_version,
            "champion_version": self.champion_version,
            "reason": self.reason,
            "metric": self.metric,
            "challenger_score": self.challenger_score,
            "champion_score": self.champion_score,
            "margin": self.margin,
            "eval_days": self.eval_days,
            "decided_on": "hits_at_capacity_doubly_robust" if self.evidence else None,
            "min_positives": self.min_positives,
            "evidence": self.evidence,
            "forced": self.forced,
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


def check_version_name(version: Any, source: str = "version") -> str:
    """``version`` if it names a folder directly inside the registry, else a one-line refusal."""
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        shown = repr(version)[:80]
        raise RiskpipeError(
            f"{source}: {shown} is not a model version name (letters, digits, '_' and '-' only): refusing it"
        )
    return version


def _version_folder(models_dir: Path, version: str) -> Path:
    folder = Path(models_dir) / version
    if folder.is_symlink():
        raise RiskpipeError(f"model {version}: {folder} is a symbolic link, not a folder of the registry: refusing it")
    return folder


# -- the registry key ---------------------------------------------------------------------------
def default_key_path(models_dir: Path) -> Path:
    """``<registry's parent>/.riskpipe/registry.key``: for the default registry ``<home>/models``,
    ``<home>/.riskpipe/registry.key``; never inside the registry."""
    return Path(models_dir).absolute().parent / KEY_DIR / KEY_FILE


def _key_path(models_dir: Path, key_path: Path | None) -> Path:
    path = Path(key_path) if key_path is not None else default_key_path(models_dir)
    inside = Path(os.path.realpath(path))
    registry = Path(os.path.realpath(models_dir))
    if inside == registry or registry in inside.parents:
        raise RiskpipeError(
            f"registry key {path} is inside the model registry {models_dir}: whoever can write models "
            "could sign them; set registry_key_path outside it"
        )
    return path


def _read_key(path: Path, version: str) -> bytes:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise RiskpipeError(
            f"model {version}: registry key {path} not found, so its signature cannot be verified "
            "(was the home copied without its .riskpipe folder?)"
        ) from None
    if st.st_mode & 0o022:
        raise RiskpipeError(f"registry key {path} is writable by other users: refusing to trust it (chmod 600)")
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (ValueError, UnicodeDecodeError):
        raise RiskpipeError(f"registry key {path} is not a hex-encoded key") from None
    if len(key) < 32:
        raise RiskpipeError(f"registry key {path} is shorter than 32 bytes")
    return key


def _ensure_key(path: Path) -> bytes:
    """The registry key at ``path``, created on first use (0600, in a 0700 folder): written to a
    private temporary file, then linked into place, so concurrent first saves agree on one key."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(32) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another save created it first: use that one
        finally:
            tmp.unlink(missing_ok=True)
    return _read_key(path, "(new)")


def _key_id(key: bytes) -> str:
    """Names the key in signatures (tells "another key" from "changed file") without revealing it."""
    return hmac.new(key, _MAC_CONTEXT + b"\0key-id", hashlib.sha256).hexdigest()[:16]


def _mac(key: bytes, version: str, name: str, data: bytes) -> str:
    """HMAC-SHA256 of one artifact, bound to its version and file name (no swapping files)."""
    msg = hmac.new(key, b"\0".join([_MAC_CONTEXT, version.encode(), name.encode()]) + b"\0", hashlib.sha256)
    msg.update(data)
    return msg.hexdigest()


def _signature(key: bytes, version: str, files: dict[str, bytes]) -> bytes:
    record = {
        "format": 1,
        "algorithm": "hmac-sha256",
        "key_id": _key_id(key),
        "version": version,
        "files": {name: _mac(key, version, name, data) for name, data in sorted(files.items())},
    }
    return (json.dumps(record, indent=2) + "\n").encode()


def sign_version(models_dir: Path, version: str, key_path: Path | None = None) -> None:
    """(Re)sign ``models/<version>`` as it is on disk. Riskpipe signs only what it has just
    written or checked itself (``save_model``, ``trust_model``); tests use it to act as an
    insider who holds the key."""
    check_version_name(version)
    key = _ensure_key(_key_path(models_dir, key_path))
    folder = _version_folder(models_dir, version)
    files = {name: (folder / name).read_bytes() for name in (META_FILE, MODEL_FILE)}
    write_bytes_atomic(_signature(key, version, files), folder / SIGNATURE_FILE)


def _verified(folder: Path, version: str, name: str, signature: dict[str, Any], key: bytes) -> bytes:
    """The bytes of ``folder/name`` once their HMAC matches the signature (read once: what is
    verified is what is parsed)."""
    path = folder / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RiskpipeError(f"model {version}: {path} not found") from None
    expected = (signature.get("files") or {}).get(name)
    if not isinstance(expected, str) or not hmac.compare_digest(expected, _mac(key, version, name, data)):
        raise RiskpipeError(
            f"model {version}: {name} does not match its signature (file changed or tampered): refusing to load"
        )
    return data


# -- what a model file may hold -----------------------------------------------------------------
def model_nodes(data: bytes) -> set[tuple[str, str]]:
    """Every (skops loader, type) a skops file would build, read from its schema: each JSON object
    with a ``__class__`` is a node, wherever it sits."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            schema = json.loads(zf.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise RiskpipeError(f"not a readable skops model file ({type(exc).__name__})") from None
    found: set[tuple[str, str]] = set()
    stack: list[Any] = [schema]
    while stack:
        obj = stack.pop()
        if isinstance(obj, dict):
            if "__class__" in obj:
                found.add((str(obj.get("__loader__")), f"{obj.get('__module__')}.{obj.get('__class__')}"))
            stack.extend(obj.values())
        elif isinstance(obj, list):
            stack.extend(obj)
    return found


def _check_nodes(data: bytes, what: str, legacy: bool = False) -> list[str]:
    """Refuse a file holding any node outside :data:`MODEL_NODES`; return the types to pass to
    skops as trusted (all within the reviewed list)."""
    import skops.io as sio

    allowed = {**MODEL_NODES, **_LEGACY_NODES} if legacy else MODEL_NODES
    try:
        nodes = model_nodes(data)
    except RiskpipeError as exc:
        raise RiskpipeError(f"{what}: {exc}") from None
    bad = sorted(f"{t} ({loader})" for loader, t in nodes if t not in allowed.get(loader, ()))
    if bad:
        raise RiskpipeError(
            f"{what}: refusing it: the file holds types outside the reviewed list (riskpipe.registry.MODEL_NODES): "
            + ", ".join(bad[:6])
        )
    names = {t for ts in allowed.values() for t in ts}
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - any parse failure means an unreadable model
        raise RiskpipeError(f"{what}: not a readable skops model file ({type(exc).__name__})") from None
    extra = [t for t in untrusted if t not in names]
    if extra:  # skops saw a type the schema walk did not: refuse rather than guess
        raise RiskpipeError(
            f"{what}: refusing it: the file holds types outside the reviewed list: {', '.join(extra[:6])}"
        )
    return list(untrusted)


def _estimator_parts(model: Any):
    """Every object reachable through estimators, lists, tuples and dicts (each once)."""
    from sklearn.base import BaseEstimator

    seen: set[int] = set()
    stack = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, BaseEstimator) or type(obj).__module__.startswith("riskpipe."):
            stack.extend(vars(obj).values())


def _hgb_check_array():
    """The validator a fitted HistGradientBoosting keeps for its numeric columns (sklearn 1.9:
    ``partial(check_array, dtype=[X_DTYPE], ensure_all_finite=False)``)."""
    from sklearn.ensemble._hist_gradient_boosting.common import X_DTYPE
    from sklearn.utils.validation import check_array

    return functools.partial(check_array, dtype=[X_DTYPE], ensure_all_finite=False)


def _is_hgb_check_array(func: Any) -> bool:
    want = _hgb_check_array()
    return (
        isinstance(func, functools.partial)
        and func.func is want.func
        and func.args == ()
        and set(func.keywords) == set(want.keywords)
        and func.keywords["ensure_all_finite"] is False
        and list(func.keywords["dtype"]) == list(want.keywords["dtype"])
    )


def dumps_model(model: Any) -> bytes:
    """The skops bytes of ``model`` holding no function reference: HGB's ``partial(check_array)``
    is replaced by a marker (on a copy) that :func:`loads_model` turns back into the same partial.
    Refuses (one line) a model holding any other function or a type outside :data:`MODEL_NODES`."""
    import copy

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    model = copy.deepcopy(model)
    for part in _estimator_parts(model):
        if isinstance(part, FunctionTransformer) and part.func is not None and _is_hgb_check_array(part.func):
            if part.inverse_func is not None:
                continue  # not sklearn's validator step: left as is, refused below
            part.func = None
            setattr(part, _RESTORE_ATTR, _HGB_CHECK)
    try:
        data = sio.dumps(model)
    except Exception as exc:  # noqa: BLE001 - skops cannot save some objects at all
        raise RiskpipeError(f"cannot save the model with skops ({type(exc).__name__}: {exc})") from None
    _check_nodes(data, "model to save")
    return data


def loads_model(data: bytes, what: str = "model", legacy: bool = False) -> Any:
    """Build a model from skops bytes checked against :data:`MODEL_NODES`, and put back the
    functions :func:`dumps_model` took out."""
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    trusted = _check_nodes(data, what, legacy=legacy)
    try:
        model = sio.loads(data, trusted=trusted)
    except Exception as exc:  # noqa: BLE001
        raise RiskpipeError(f"{what}: cannot load it ({type(exc).__name__}: {exc})") from None
    for part in _estimator_parts(model):
        marker = getattr(part, _RESTORE_ATTR, None) if isinstance(part, FunctionTransformer) else None
        if marker is None:
            continue
        if marker != _HGB_CHECK or part.func is not None:
            raise RiskpipeError(f"{what}: unknown function marker {str(marker)[:40]!r}: refusing it")
        part.func = _hgb_check_array()
        delattr(part, _RESTORE_ATTR)
    return model


def save_model(
    models_dir: Path,
    model: Any,
    meta: dict[str, Any],
    card: str | None = None,
    version: str | None = None,
    key_path: Path | None = None,
) -> str:
    """Write ``models/<version>/`` (model, meta with the model's sha256, signature, card)
    atomically. The model file holds only reviewed types (:func:`dumps_model`); the signature
    uses the registry key (created on first save, outside ``models/``)."""
    version = check_version_name(version or new_version())
    key = _ensure_key(_key_path(models_dir, key_path))
    final = Path(models_dir) / version
    if final.exists() or final.is_symlink():
        raise RiskpipeError(f"model version {version} already exists in {models_dir}")
    data = dumps_model(model)
    full = {
        **meta,
        "version": version,
        "format_version": FORMAT_VERSION,
        "artifact": MODEL_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    meta_bytes = json.dumps(full, indent=2, default=_json_default).encode("utf-8")
    staged = staging_dir(final)
    try:
        (staged / MODEL_FILE).write_bytes(data)
        (staged / META_FILE).write_bytes(meta_bytes)
        (staged / SIGNATURE_FILE).write_bytes(_signature(key, version, {MODEL_FILE: data, META_FILE: meta_bytes}))
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
    return sorted(
        p.name
        for p in base.iterdir()
        if VERSION_PATTERN.fullmatch(p.name) and p.is_dir() and not p.is_symlink() and (p / META_FILE).exists()
    )


def champion_version(models_dir: Path) -> str | None:
    """The version ``champion.json`` names (None: no champion registered yet). A pointer that
    cannot be read, or that names anything but a version folder of this registry, is refused."""
    path = Path(models_dir) / CHAMPION_FILE
    if not path.exists() and not path.is_symlink():
        return None
    try:
        version = json.loads(path.read_text(encoding="utf-8"))["version"]
    except OSError as exc:
        raise RiskpipeError(
            f"{path}: cannot read the champion pointer ({exc.strerror or type(exc).__name__})"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise RiskpipeError(f"{path}: not a valid champion pointer ({type(exc).__name__}: {exc})") from None
    return check_version_name(version, str(path))


def set_champion(models_dir: Path, version: str) -> None:
    """Point ``champion.json`` at ``version`` (atomic rename)."""
    check_version_name(version)
    if version not in list_versions(models_dir):
        raise RiskpipeError(f"cannot promote {version}: no such model in {models_dir}")
    record = {"version": version, "promoted_at": datetime.now(UTC).isoformat(timespec="seconds")}
    write_text_atomic(json.dumps(record, indent=2) + "\n", Path(models_dir) / CHAMPION_FILE)


def operator_name() -> str:
    """Who runs this process, for the audit trail: the OS account of the effective user (not an
    environment variable, which anyone can set)."""
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def record_decision(models_dir: Path, decision: RetrainDecision) -> None:
    _append_decision(models_dir, decision.as_record())


def _append_decision(models_dir: Path, record: dict[str, Any]) -> None:
    path = Path(models_dir) / DECISIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=_json_default) + "\n")


def read_decisions(models_dir: Path) -> list[dict[str, Any]]:
    path = Path(models_dir) / DECISIONS_FILE
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise RiskpipeError(f"{path}: line {number} is not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise RiskpipeError(f"{path}: line {number} is not a JSON object")
        records.append(record)
    return records


# -- champion changes by the operator, audited ---------------------------------------------------
def record_champion_change(
    models_dir: Path, action: str, from_version: str | None, to_version: str, reason: str
) -> dict[str, Any]:
    """Append a champion change (``promote``, ``rollback``) to the audit trail: who, when, from,
    to, why. Also written with the keys of a retrain decision (``promoted``,
    ``challenger_version``, ``champion_version``), so every reader of the file sees the change."""
    record = {
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "action": action,
        "by": operator_name(),
        "from_version": from_version,
        "to_version": to_version,
        "promoted": True,
        "challenger_version": to_version,
        "champion_version": from_version,
        "reason": reason,
        "metric": "none",
    }
    _append_decision(models_dir, record)
    return record


def champion_history(models_dir: Path) -> list[str]:
    """The champions in the order the audit trail made them, each rollback undoing the change it
    rolled back: the last is the current champion, the one before it what a rollback restores.
    A promotion of the current champion again adds nothing; a re-signed champion (``trust``)
    replaces its unsigned self; a champion a record replaced that the trail had not seen (set by
    hand) is taken as the record says."""
    stack: list[str] = []
    for record in read_decisions(models_dir):
        to = record.get("to_version", record.get("challenger_version"))
        if not record.get("promoted") or not isinstance(to, str):
            continue
        before = record.get("from_version", record.get("champion_version"))
        action = record.get("action") or (
            "trust" if str(record.get("reason", "")).startswith("operator re-signed") else "retrain"
        )
        if isinstance(before, str) and (not stack or stack[-1] != before):
            stack.append(before)  # a champion set outside riskpipe, as the record saw it
        if action in ("rollback", "trust") and stack and stack[-1] == before:
            stack.pop()
        if not stack or stack[-1] != to:
            stack.append(to)
    return stack


def promote(models_dir: Path, version: str, reason: str, key_path: Path | None = None) -> str | None:
    """Make ``version`` the champion after it loads (signature, sha256, reviewed types) and
    audit the change. Returns the champion it replaces (None: none, or an unreadable pointer).
    Promoting the current champion changes nothing and records nothing."""
    models_dir = Path(models_dir)
    check_version_name(version)
    try:
        load_model(models_dir, version, key_path=key_path)
    except RiskpipeError as exc:
        raise RiskpipeError(f"refusing to promote {version}: {exc}") from None
    current = _champion_or_none(models_dir)
    if current == version:
        return current
    set_champion(models_dir, version)
    record_champion_change(models_dir, "promote", current, version, reason)
    return current


def rollback(models_dir: Path, reason: str, key_path: Path | None = None) -> tuple[str, str]:
    """Restore the champion before the current one (from the audit trail), after it loads, and
    audit the change. Returns (the champion replaced, the one restored). Refused in one line
    when there is no champion, no earlier one, or champion.json disagrees with the trail."""
    models_dir = Path(models_dir)
    trail = models_dir / DECISIONS_FILE
    current = champion_version(models_dir)
    if current is None:
        raise RiskpipeError(f"no champion in {models_dir}: nothing to roll back")
    history = champion_history(models_dir)
    if not history or history[-1] != current:
        last = f"names {history[-1]}" if history else "names no champion"
        raise RiskpipeError(
            f"champion.json names {current} but the audit trail {trail} {last} (changed outside riskpipe?): "
            "no previous champion to restore; choose one with `riskpipe models promote VERSION`"
        )
    if len(history) < 2:
        raise RiskpipeError(f"no previous champion to roll back to: {current} is the first champion in {trail}")
    target = history[-2]
    try:
        load_model(models_dir, target, key_path=key_path)
    except RiskpipeError as exc:
        raise RiskpipeError(f"cannot roll back to {target}: {exc}") from None
    set_champion(models_dir, target)
    record_champion_change(models_dir, "rollback", current, target, reason)
    return current, target


@dataclass(frozen=True)
class VersionInfo:
    """What ``riskpipe models list/show`` tell about a version. ``problem`` None: the model loads
    (signature, sha256, reviewed types) and ``meta`` is verified; otherwise ``meta`` is what
    meta.json says, unverified, and ``problem`` is why the model would be refused."""

    version: str
    champion: bool
    problem: str | None
    meta: dict[str, Any]

    @property
    def saved_at(self) -> str | None:
        return _text(self.meta.get("saved_at"))

    @property
    def training_window(self) -> tuple[str | None, str | None]:
        window = self.meta.get("training_window")
        window = window if isinstance(window, dict) else {}
        return _text(window.get("train_start")), _text(window.get("train_end"))

    @property
    def key_metric(self) -> float | None:
        """Precision at capacity on held-out later days, labelled view (what retrain compares)."""
        headline = self.meta.get("headline_metrics")
        value = headline.get(f"{DECISION_VIEW} precision at capacity") if isinstance(headline, dict) else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def describe_version(
    models_dir: Path, version: str, key_path: Path | None = None, champion: str | None = None
) -> VersionInfo:
    """Load ``version`` as the nightly run would, and say whether it loads and what it is."""
    models_dir = Path(models_dir)
    check_version_name(version)
    if champion is None:
        champion = _champion_or_none(models_dir)
    try:
        loaded = load_model(models_dir, version, key_path=key_path)
        return VersionInfo(version, champion == version, None, loaded.meta)
    except RiskpipeError as exc:
        meta: Any = {}
        try:
            meta = json.loads((_version_folder(models_dir, version) / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, RiskpipeError):
            pass
        return VersionInfo(version, champion == version, str(exc), meta if isinstance(meta, dict) else {})


def describe_versions(models_dir: Path, key_path: Path | None = None) -> list[VersionInfo]:
    """Every version of the registry, oldest first (version names sort by time)."""
    champion = _champion_or_none(models_dir)
    return [describe_version(models_dir, v, key_path, champion or "") for v in list_versions(models_dir)]


def _read_signature(folder: Path, version: str) -> dict[str, Any]:
    path = folder / SIGNATURE_FILE
    if not path.exists():
        raise RiskpipeError(
            f"model {version} is not signed (saved before riskpipe signed its registry, or put there by hand): "
            f"refusing to load it; if you know where it came from run `riskpipe models trust {version}`, "
            "else retrain (`riskpipe retrain --force`)"
        )
    try:
        signature = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RiskpipeError(f"model {version}: {path} is not readable ({type(exc).__name__})") from None
    if not isinstance(signature, dict) or signature.get("version") != version:
        raise RiskpipeError(f"model {version}: {path} does not sign this version: refusing to load")
    return signature


def load_model(
    models_dir: Path,
    version: str | None = None,
    feature_schema: dict[str, Any] | None = None,
    key_path: Path | None = None,
) -> LoadedModel:
    """Load and verify a model (``version=None``: the champion): version name, signature of
    meta.json and model.skops under the registry key, sha256, features, reviewed types.

    ``feature_schema`` (feature -> Polars dtype or its string) is what this riskpipe builds;
    when given, a model needing a feature that is absent or of another type is refused.
    """
    models_dir = Path(models_dir)
    if version is None:
        version = champion_version(models_dir)
        if version is None:
            raise RiskpipeError(f"no champion model in {models_dir}: run `riskpipe retrain` first")
    check_version_name(version)
    folder = _version_folder(models_dir, version)
    if not folder.is_dir():
        raise RiskpipeError(f"model {version}: no such model folder in {models_dir}")
    key_file = _key_path(models_dir, key_path)
    signature = _read_signature(folder, version)
    key = _read_key(key_file, version)
    if signature.get("key_id") != _key_id(key):
        raise RiskpipeError(
            f"model {version} was signed with another registry key than {key_file}: refusing to load "
            "(copied from another home?)"
        )
    meta_bytes = _verified(folder, version, META_FILE, signature, key)
    try:
        meta = json.loads(meta_bytes)
    except ValueError as exc:
        raise RiskpipeError(f"model {version}: {folder / META_FILE} is not valid JSON ({exc})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise RiskpipeError(f"model {version}: format version {meta.get('format_version')} is not {FORMAT_VERSION}")
    if meta.get("artifact", MODEL_FILE) != MODEL_FILE or meta.get("version") != version:
        raise RiskpipeError(f"model {version}: meta.json describes another artifact or version: refusing to load")
    data = _verified(folder, version, MODEL_FILE, signature, key)
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise RiskpipeError(f"model {version}: {MODEL_FILE} does not match its recorded sha256: refusing to load")
    if feature_schema is not None:
        check_features(meta, feature_schema, version)
    model = loads_model(data, f"model {version}")
    return LoadedModel(version=version, model=model, meta=meta, path=folder)


@dataclass(frozen=True)
class ChampionState:
    """The champion the nightly run would use, or why there is none."""

    model: LoadedModel | None
    registered: bool  # champion.json exists (False: a fresh home, no model promoted yet)
    problem: str | None = None  # why there is no usable champion; None when ``model`` is set


def champion_state(models_dir: Path, key_path: Path | None = None) -> ChampionState:
    """Load the champion, telling a fresh home (no champion.json) from a broken one (pointer
    unreadable, model missing, unsigned, tampered or refused)."""
    models_dir = Path(models_dir)
    pointer = models_dir / CHAMPION_FILE
    if not pointer.exists() and not pointer.is_symlink():
        return ChampionState(
            None, False, f"no champion model has been registered in {models_dir} yet: run `riskpipe retrain`"
        )
    try:
        return ChampionState(load_model(models_dir, key_path=key_path), True)
    except RiskpipeError as exc:
        return ChampionState(None, True, f"the champion is not usable: {exc}")


def trust_model(models_dir: Path, version: str, key_path: Path | None = None) -> str:
    """Re-save an unsigned model (saved before riskpipe signed its registry) as a new signed
    version, after the checks that need no key: its sha256 matches meta.json and it holds only
    reviewed types (plus HGB's ``partial(check_array)``, which the re-save takes out). If it was
    the champion, the new version becomes the champion. Returns the new version.

    Only for models whose origin the operator knows: the signature vouches for them from now on."""
    models_dir = Path(models_dir)
    check_version_name(version)
    folder = _version_folder(models_dir, version)
    if not (folder / META_FILE).exists():
        raise RiskpipeError(f"model {version}: no such model in {models_dir}")
    if (folder / SIGNATURE_FILE).exists():
        raise RiskpipeError(
            f"model {version} is already signed: nothing to trust (a signed model that fails to load was changed)"
        )
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        data = (folder / MODEL_FILE).read_bytes()
    except (OSError, ValueError) as exc:
        raise RiskpipeError(f"model {version}: cannot read it ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise RiskpipeError(f"model {version}: {MODEL_FILE} does not match the sha256 in meta.json: not trusting it")
    model = loads_model(data, f"model {version}", legacy=True)
    was_champion = _champion_or_none(models_dir) == version
    keep = {k: v for k, v in meta.items() if k not in ("version", "format_version", "artifact", "sha256", "saved_at")}
    keep["trusted_from"] = version
    keep["trusted_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    card = (folder / CARD_FILE).read_text(encoding="utf-8") if (folder / CARD_FILE).exists() else None
    new = save_model(models_dir, model, keep, card=card, key_path=key_path)
    if was_champion:
        set_champion(models_dir, new)
    record_decision(
        models_dir,
        RetrainDecision(
            promoted=was_champion,
            challenger_version=new,
            champion_version=version if was_champion else None,
            reason=f"operator re-signed unsigned model {version} as {new} (riskpipe models trust)",
            metric="none",
            action="trust",
        ),
    )
    return new


def _champion_or_none(models_dir: Path) -> str | None:
    """The version champion.json names, or None when there is none or it cannot be read."""
    try:
        return champion_version(models_dir)
    except RiskpipeError:
        return None


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
