"""The one file-format registry: a file's name ending -> its format, and how that format is read
(lazily as text for ingest, eagerly for outside data) and written (synthetic landing files).

Ingest, ``riskpipe.external`` and ``riskpipe.synth.writer`` all ask this registry, so a format
registered once (:func:`register_format`) is read and written the same way everywhere.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import polars as pl

from riskpipe.errors import RiskpipeError
from riskpipe.ingest.columns import _ROW

#: the row-number column (1-based data row) a format's ``scan_text`` adds
ROW = _ROW
#: ``scan_text(source, check_utf8, all_keys)``: a lazy frame of a (decompressed) file with
#: :data:`ROW`, values as text where the format allows
ScanText = Callable[[Path, bool, bool], pl.LazyFrame]


@dataclass(frozen=True)
class Format:
    """One file format: the name endings it is known by, and its reader and writer."""

    name: str
    suffixes: tuple[str, ...]  # lower-case name endings, e.g. (".ndjson", ".jsonl")
    scan_text: ScanText  # ingest: lazy, text where the format allows, rejects duplicate names
    read: Callable[[Path], pl.DataFrame]  # outside data (riskpipe.external): eager
    write: Callable[[pl.DataFrame, Path | IO[bytes]], None]  # synthetic landing files
    gzip: bool = False  # "<suffix>.gz" is read (decompressed first) and written

    def endings(self) -> tuple[str, ...]:
        return self.suffixes + (tuple(f"{s}.gz" for s in self.suffixes) if self.gzip else ())


#: format name -> format, in registration order (the first whose ending matches wins)
REGISTRY: dict[str, Format] = {}


def register_format(fmt: Format) -> Format:
    """Add (or replace) a format; every reader and writer of riskpipe then knows it."""
    REGISTRY[fmt.name] = fmt
    return fmt


def get_format(name: str) -> Format:
    """The registered format called ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise RiskpipeError(f"unknown file format {name!r} (known: {', '.join(REGISTRY)})") from None


def format_of(path: Path) -> Format | None:
    """The format of a file from its name (case-insensitive), or None when unsupported."""
    name = Path(path).name.lower()
    for fmt in REGISTRY.values():
        if name.endswith(fmt.endings()):
            return fmt
    return None


def file_format(path: Path) -> str | None:
    """``csv``, ``parquet``, ``ndjson`` (or a registered format's name) from the file name, or
    None when unsupported."""
    fmt = format_of(path)
    return fmt.name if fmt is not None else None


class _FileRejected(Exception):
    """A whole file goes to quarantine (reason code, detail)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def _gunzip(path: Path, workdir: Path) -> Path:
    """Decompress a ``.gz`` file to ``workdir`` (streamed); a broken archive rejects the file."""
    out = workdir / f"{uuid.uuid4().hex}-{path.name[:-3]}"
    try:
        with gzip.open(path, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise _FileRejected("unreadable", f"broken gzip ({type(exc).__name__})") from None
    return out


def _check_utf8(path: Path) -> None:
    """Reject a text file that is not UTF-8 (streamed incremental decode; cheap next to parsing)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise _FileRejected("not_utf8", f"invalid UTF-8 at byte {exc.start}") from None


def _duplicates(names: Iterable[str]) -> list[str]:
    """Names given more than once (in order of first appearance)."""
    return [n for n, k in Counter(names).items() if k > 1]


def _csv_header(path: Path) -> list[str]:
    """The header row's names as written (Polars renames a repeat to ``<name>_duplicated_0``)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return next(csv.reader(fh), [])


def _reject_duplicates(names: Iterable[str]) -> None:
    dups = _duplicates(names)
    if dups:
        raise _FileRejected(f"duplicate_column:{dups[0]}", f"column name(s) given twice: {', '.join(dups)}")


#: an object key in an NDJSON line: after "{" or "," (a quote inside a string value is escaped)
_NDJSON_KEY = r'[{,]\s*"((?:[^"\\]|\\.)*)"\s*:'


def _reject_repeated_ndjson_keys(source: Path) -> None:
    """Reject an NDJSON file in which one object gives a key twice (Polars would keep one of the
    values silently). One pass over the lines as text: about 1.8 s per 400 k lines of 28 keys."""
    lines = pl.scan_csv(
        source,
        has_header=False,
        separator="\x1f",
        quote_char=None,
        new_columns=["line"],
        infer_schema=False,
        row_index_name=_ROW,
        row_index_offset=1,
    )
    keys = pl.col("line").str.extract_all(_NDJSON_KEY)
    first = lines.filter(keys.list.len() != keys.list.n_unique()).select(_ROW, keys.alias("keys")).head(1).collect()
    if first.height:
        found = [k.rstrip(": \t").lstrip("{, \t")[1:-1] for k in first["keys"][0]]
        line = first[_ROW][0]
        name = _duplicates(found)[0]
        raise _FileRejected(f"duplicate_key:{name}", f"line {line} gives {name} twice")


def _scan_csv(source: Path, check_utf8: bool, all_keys: bool) -> pl.LazyFrame:
    """CSV entirely as text (codes keep leading zeros; a bad value is a row error)."""
    if check_utf8:
        _check_utf8(source)
    _reject_duplicates(_csv_header(source))
    return pl.scan_csv(source, infer_schema=False, row_index_name=_ROW, row_index_offset=1, raise_if_empty=True)


def _scan_parquet(source: Path, check_utf8: bool, all_keys: bool) -> pl.LazyFrame:
    """Parquet keeps its types (they are cast per column during validation)."""
    import pyarrow.parquet as pq  # slow to import; only needed for Parquet input

    _reject_duplicates(pq.read_schema(source).names)  # Polars refuses them as "unreadable"
    return pl.scan_parquet(source, row_index_name=_ROW, row_index_offset=1)


def _scan_ndjson(source: Path, check_utf8: bool, all_keys: bool) -> pl.LazyFrame:
    """NDJSON as text for every key of the file (``all_keys=False``: the keys of the first 1000
    lines only, for reading ids: finding every key costs a second parse of the file)."""
    if check_utf8:
        _check_utf8(source)
    if all_keys:
        _reject_repeated_ndjson_keys(source)
    # the keys of every line: a schema inferred from the first 1000 lines dropped the
    # values of a key first seen later, silently
    names = pl.scan_ndjson(source, infer_schema_length=None if all_keys else 1000).collect_schema().names()
    return pl.scan_ndjson(source, schema={n: pl.String() for n in names}, row_index_name=_ROW, row_index_offset=1)


def _write_csv(frame: pl.DataFrame, target: Path | IO[bytes]) -> None:
    frame.write_csv(target)


def _write_ndjson(frame: pl.DataFrame, target: Path | IO[bytes]) -> None:
    frame.write_ndjson(target)


def _write_parquet(frame: pl.DataFrame, target: Path | IO[bytes]) -> None:
    frame.write_parquet(target, compression="lz4", statistics=False)  # lz4: cheapest to write


def _read_csv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)  # everything as text: codes keep leading zeros


register_format(Format("csv", (".csv",), _scan_csv, _read_csv, _write_csv, gzip=True))
register_format(Format("parquet", (".parquet", ".pq"), _scan_parquet, pl.read_parquet, _write_parquet))
register_format(Format("ndjson", (".ndjson", ".jsonl"), _scan_ndjson, pl.read_ndjson, _write_ndjson, gzip=True))


def _scan_text(path: Path, workdir: Path, check_utf8: bool = True, all_keys: bool = True) -> tuple[pl.LazyFrame, str]:
    """Lazy frame of a file with ``_row_number`` (1-based data row); returns (frame, format).

    CSV is read entirely as text; NDJSON as text for every key of the file (a key first seen on
    its last line is kept); Parquet keeps its types (they are cast per column during
    validation). A column name given twice rejects the file (``duplicate_column:<name>``, and
    ``duplicate_key:<name>`` for an NDJSON object giving a key twice): no value is renamed or
    dropped silently. ``all_keys=False``: NDJSON keys of the first 1000
    lines only (for reading ids: finding every key costs a second parse of the file, 1.7 s per
    400 k lines).
    """
    fmt = format_of(path)
    if fmt is None:
        raise _FileRejected("unsupported_format", path.name)
    if path.stat().st_size == 0:
        raise _FileRejected("empty", "0 bytes")
    source = _gunzip(path, workdir) if path.name.lower().endswith(".gz") else path
    if source.stat().st_size == 0:
        raise _FileRejected("empty", "0 bytes after decompression")
    try:
        lf = fmt.scan_text(source, check_utf8, all_keys)
        schema = lf.collect_schema()
    except _FileRejected:
        raise
    except Exception as exc:  # any parser error means the file cannot be parsed
        raise _FileRejected("unreadable", f"{type(exc).__name__}: {_first_line(exc)}") from None
    if len(schema) <= 1:
        raise _FileRejected("unreadable", "no columns")
    return lf, fmt.name
