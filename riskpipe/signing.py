"""The registry key and the signatures of model versions (HMAC-SHA256, bound to the version).

The key is a random secret kept outside the registry (``<home>/.riskpipe/registry.key`` by
default), created 0600 by the first save; whoever can write ``models/`` cannot sign a model.
Used by ``riskpipe.registry``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from riskpipe.errors import RiskpipeError

KEY_DIR = ".riskpipe"
KEY_FILE = "registry.key"
_MAC_CONTEXT = b"riskpipe-registry-v1"


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
