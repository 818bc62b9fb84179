"""What a model file may hold, and the model file's bytes (skops, no pickle ever loaded).

A file is refused unless every node of its skops schema is a (loader, type) pair of the reviewed
:data:`MODEL_NODES`; functions are taken out before saving (:func:`dumps_model`) and rebuilt by
riskpipe's own code on loading (:func:`loads_model`). Used by ``riskpipe.registry``.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import threading
import zipfile
from collections.abc import Iterator

import skops.io as sio
from sklearn.base import BaseEstimator
from sklearn.ensemble._hist_gradient_boosting.common import X_DTYPE
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.validation import check_array

from riskpipe.errors import RiskpipeError

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


def model_nodes(data: bytes) -> set[tuple[str, str]]:
    """Every (skops loader, type) a skops file would build, read from its schema: each JSON object
    with a ``__class__`` is a node, wherever it sits."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            schema = json.loads(zf.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise RiskpipeError(f"not a readable skops model file ({type(exc).__name__})") from None
    found: set[tuple[str, str]] = set()
    stack: list[object] = [schema]
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
    allowed = {**MODEL_NODES, **_LEGACY_NODES} if legacy else MODEL_NODES
    try:
        nodes = model_nodes(data)
    except RiskpipeError as exc:
        raise RiskpipeError(f"{what}: {exc}") from None
    bad = sorted(f"{t} ({loader})" for loader, t in nodes if t not in allowed.get(loader, ()))
    if bad:
        raise RiskpipeError(
            f"{what}: refusing it: the file holds types outside the reviewed list (riskpipe.modelfile.MODEL_NODES): "
            + ", ".join(bad[:6])
        )
    names = {t for ts in allowed.values() for t in ts}
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # any parse failure means an unreadable model
        raise RiskpipeError(f"{what}: not a readable skops model file ({type(exc).__name__})") from None
    extra = [t for t in untrusted if t not in names]
    if extra:  # skops saw a type the schema walk did not: refuse rather than guess
        raise RiskpipeError(
            f"{what}: refusing it: the file holds types outside the reviewed list: {', '.join(extra[:6])}"
        )
    return list(untrusted)


def _estimator_parts(model: object) -> Iterator[object]:
    """Every object reachable through estimators, lists, tuples and dicts (each once)."""
    seen: set[int] = set()
    stack: list[object] = [model]
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


def _hgb_check_array() -> functools.partial[object]:
    """The validator a fitted HistGradientBoosting keeps for its numeric columns (sklearn 1.9:
    ``partial(check_array, dtype=[X_DTYPE], ensure_all_finite=False)``)."""
    return functools.partial(check_array, dtype=[X_DTYPE], ensure_all_finite=False)


def _is_hgb_check_array(func: object) -> bool:
    want = _hgb_check_array()
    return (
        isinstance(func, functools.partial)
        and func.func is want.func
        and func.args == ()
        and set(func.keywords) == set(want.keywords)
        and func.keywords["ensure_all_finite"] is False
        and list(func.keywords["dtype"]) == list(want.keywords["dtype"])
    )


def dumps_model(model: object) -> bytes:
    """The skops bytes of ``model`` holding no function reference: HGB's ``partial(check_array)``
    is replaced by a marker (on a copy) that :func:`loads_model` turns back into the same partial.
    Refuses (one line) a model holding any other function or a type outside :data:`MODEL_NODES`."""
    import skops.io as sio

    model = copy.deepcopy(model)
    for part in _estimator_parts(model):
        if isinstance(part, FunctionTransformer) and part.func is not None and _is_hgb_check_array(part.func):
            if part.inverse_func is not None:
                continue  # not sklearn's validator step: left as is, refused below
            part.func = None
            setattr(part, _RESTORE_ATTR, _HGB_CHECK)
    try:
        data = sio.dumps(model)
    except Exception as exc:  # skops cannot save some objects at all
        raise RiskpipeError(f"cannot save the model with skops ({type(exc).__name__}: {exc})") from None
    _check_nodes(data, "model to save")
    return data


#: Serialises model loads within a process: skops parses the file's type names with the ``ast``
#: module, and CPython 3.11.7 (this venv) can fail with "SystemError: AST constructor recursion depth
#: mismatch" when threads do that at once (python/cpython#106905, fixed in later 3.11 releases); the
#: threaded night's shards each load the champion, and a full-suite run failed on it once.
_LOAD_LOCK = threading.Lock()


def loads_model(data: bytes, what: str = "model", legacy: bool = False) -> object:
    """Build a model from skops bytes checked against :data:`MODEL_NODES`, and put back the
    functions :func:`dumps_model` took out."""
    import skops.io as sio

    with _LOAD_LOCK:  # one load at a time per process: see _LOAD_LOCK
        trusted = _check_nodes(data, what, legacy=legacy)
        try:
            model = sio.loads(data, trusted=trusted)
        except Exception as exc:  # any load failure means an unloadable model
            raise RiskpipeError(f"{what}: cannot load it ({type(exc).__name__}: {exc})") from None
    for part in _estimator_parts(model):
        if not isinstance(part, FunctionTransformer):
            continue
        marker = getattr(part, _RESTORE_ATTR, None)
        if marker is None:
            continue
        if marker != _HGB_CHECK or part.func is not None:
            raise RiskpipeError(f"{what}: unknown function marker {str(marker)[:40]!r}: refusing it")
        part.func = _hgb_check_array()
        delattr(part, _RESTORE_ATTR)
    return model
