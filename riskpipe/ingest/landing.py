"""Landing files: which entries are read (regular files only, never a link or a special file),
opened without following links, and hashed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.store import (
    Layout,
)


class _Refused(Exception):
    """A landing entry that is not a regular file (reason code): never read, never copied."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _entry_kind(mode: int) -> str | None:
    """None for a regular file, else the reason it is refused."""
    if stat.S_ISREG(mode):
        return None
    return "symlink" if stat.S_ISLNK(mode) else "not_regular_file"


def _list_inputs(layout: Layout, paths: list[Path] | None, refused: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Files to ingest: given files, top-level files of given folders (default: the landing
    folder). Hidden files (``.`` or ``_`` prefix, e.g. partial uploads) and subfolders are left
    alone. Only regular files are read: a symbolic link or a special file (FIFO, socket,
    device) in a folder is never followed, opened or copied (a link to the workbench's secret
    was copied into quarantine); it is appended to ``refused`` with its reason. A given path
    that is a link or a special file is an error."""
    if paths is None:
        if not layout.landing.exists():
            return []
        paths = [layout.landing]
        explicit = False  # the home's own landing folder may be a link the operator made
    else:
        explicit = True
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        try:
            mode = os.lstat(p).st_mode if explicit else os.stat(p).st_mode
        except FileNotFoundError:
            raise RiskpipeError(f"{p}: no such file or folder") from None
        if stat.S_ISLNK(mode):
            raise RiskpipeError(f"{p}: is a symbolic link; give the file or folder itself")
        if stat.S_ISDIR(mode):
            with os.scandir(p) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if entry.name.startswith((".", "_")) or entry.is_dir(follow_symlinks=False):
                        continue
                    why = _entry_kind(entry.stat(follow_symlinks=False).st_mode)
                    if why is None:
                        files.append(p / entry.name)
                    elif refused is not None:
                        refused.append((p / entry.name, why))
        elif stat.S_ISREG(mode):
            files.append(p)
        else:
            raise RiskpipeError(f"{p}: not a regular file")
    return files


def _open_regular_fd(path: Path) -> int:
    """A read-only descriptor of ``path`` if it is a regular file: a symbolic link is never
    followed (O_NOFOLLOW) and a FIFO never blocks (O_NONBLOCK); anything else raises _Refused
    (an entry may have been swapped since it was listed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Refused("symlink") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _Refused("not_regular_file")
    return fd


@contextmanager
def _open_regular(path: Path) -> Iterator[BinaryIO]:
    """``open(path, "rb")`` for regular files only (see :func:`_open_regular_fd`)."""
    with os.fdopen(_open_regular_fd(path), "rb") as fh:
        yield fh


def _sha256_regular(path: Path) -> str:
    """Content hash of a regular file (read without following a link: see _open_regular)."""
    import hashlib

    digest = hashlib.sha256()
    with _open_regular(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_partner(path: Path) -> bool:
    return path.name.startswith(S.PARTNER_FILE_PREFIX)
