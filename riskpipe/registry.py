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
   ``riskpipe.modelfile.MODEL_NODES``: exact types only, and no function, method or partial at
   all (the one function sklearn keeps in a fitted HGB, ``partial(check_array, ...)``, is taken
   out by ``dumps_model`` and rebuilt by ``loads_model`` in riskpipe's own code);
4. checks that the features the model needs are the ones this version of riskpipe builds.

Signing and the key: ``riskpipe.signing``; the model file's bytes: ``riskpipe.modelfile``; the
audit trail: ``riskpipe.decisions``; the retrain workflow: ``riskpipe.retrain``.

A model saved before signing existed is refused with the way out: ``riskpipe models trust
VERSION`` (:func:`trust_model`) re-saves it, signed, as a new version, or retrain.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from riskpipe.decisions import (
    DECISIONS_FILE,
    RetrainDecision,
    _json_default,
    champion_history,
    record_champion_change,
    record_decision,
)
from riskpipe.errors import RiskpipeError
from riskpipe.model.card import model_card
from riskpipe.modelfile import dumps_model, loads_model
from riskpipe.signing import _ensure_key, _key_id, _key_path, _read_key, _signature, _verified
from riskpipe.store import replace_dir_atomic, staging_dir, write_bytes_atomic, write_text_atomic

MODEL_FILE = "model.skops"
META_FILE = "meta.json"
CARD_FILE = "model_card.md"
SIGNATURE_FILE = "signature.json"
CHAMPION_FILE = "champion.json"
FORMAT_VERSION = 1
DECISION_VIEW = "labelled"  # decisions use outcomes only, never ground truth (riskpipe.retrain)
#: a model version is a plain folder name: letters, digits, ``_`` and ``-`` (``new_version`` makes
#: ``m<UTC timestamp>``); anything else in champion.json or on the command line is refused
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class LoadedModel:
    """A verified model and its metadata."""

    version: str
    #: the saved estimator as loaded (``riskpipe.model.RiskModel``, ``LinearBaseline`` or any
    #: reviewed sklearn estimator): its class is known only at run time, so callers narrow it
    model: Any
    meta: dict[str, Any]
    path: Path | None = None

    @property
    def feature_columns(self) -> list[str]:
        return list(self.meta.get("feature_columns", []))

    @property
    def baseline(self) -> dict[str, object]:
        """Feature -> its usual value (training median / most frequent), for occlusion reasons."""
        return dict(self.meta.get("baseline", {}))

    @property
    def importance(self) -> dict[str, float]:
        return dict(self.meta.get("importance", {}))


def new_version(now: datetime | None = None) -> str:
    """A sortable, unique version name: ``m<UTC timestamp to the microsecond>``."""
    now = now or datetime.now(UTC)
    return "m" + now.strftime("%Y%m%dT%H%M%S%fZ")


def check_version_name(version: object, source: str = "version") -> str:
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


def sign_version(models_dir: Path, version: str, key_path: Path | None = None) -> None:
    """(Re)sign ``models/<version>`` as it is on disk. Riskpipe signs only what it has just
    written or checked itself (``save_model``, ``trust_model``); tests use it to act as an
    insider who holds the key."""
    check_version_name(version)
    key = _ensure_key(_key_path(models_dir, key_path))
    folder = _version_folder(models_dir, version)
    files = {name: (folder / name).read_bytes() for name in (META_FILE, MODEL_FILE)}
    write_bytes_atomic(_signature(key, version, files), folder / SIGNATURE_FILE)


def save_model(
    models_dir: Path,
    model: object,
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


def _text(value: object) -> str | None:
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
        meta: object = {}
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
