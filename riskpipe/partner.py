"""Sharing risk with a partner customs service without sharing personal data.

Two administrations (say CBP and Mexico's customs service, under the CTPAT / OEA mutual
recognition arrangement) agree on one secret key. Each exports the identifiers linked to its
confirmed findings (phones, e-mails, IPs, consignee address keys, shipper and seller keys) as
keyed hashes, HMAC-SHA256 under that key, after the same normalisation the features use
(:data:`riskpipe.features.keys.NORMALISED`); the other imports the feed and, from the next night,
hashes its own day's identifiers with the same key and flags the matches
(``riskpipe.features.partner``). The partner's list of certified operators (Mexico's OEA) is
exchanged the same way and verifies ``mx_oea`` claims.

The feed is one JSON file: format, version, issuer, key id, period, created_at, expires_at,
entries (kind, hmac, finding, finding_date) and a signature: HMAC-SHA256 over the canonical
JSON of everything else, under a key derived from the shared key. The signature proves the file
was made by a holder of the shared key and not changed since; it does not prove which of the two
administrations made it (both hold the key). Ed25519 would prove that, but needs a second key
pair per administration and a way to exchange and trust the public keys; with two parties and one
shared secret already agreed, HMAC adds no key to manage.

Keys: a key file outside the data home, owner-only (0600), holding at least 32 random bytes as
hex (``riskpipe partner keygen``). Library functions take the key bytes (:func:`read_key` checks
and reads a path); only the CLI reads ``RISKPIPE_PARTNER_KEY_FILE``. The key id is the first 16
hex digits of SHA-256 of the key: SHA-256 is one-way and the key has 256 random bits, so 64 bits
of its digest tell a reader nothing usable about the key; they only say whether two files were
made under the same key.

Stored under ``<home>/partner/`` (0700; files 0600): ``feeds/<id>.json`` and ``oea/<id>.json``,
each the verified feed with ``imported_at`` (UTC) and ``shared_by``. Point in time: the features
of arrival day D use only files imported before D's cut-off (00:00 UTC of D) and not expired at
it, and only findings dated before D.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from riskpipe import schema as S
from riskpipe.config import load_settings
from riskpipe.cutoff import day_cutoff
from riskpipe.errors import RiskpipeError
from riskpipe.store import PRIVATE_DIR, PRIVATE_FILE, Layout, private_dir, scan_raw_shipments, write_bytes_atomic

FORMAT = "riskpipe-partner-feed"
VERSION = 1
FINDINGS = "findings"
OEA = "oea_operators"
CONTENTS = (FINDINGS, OEA)

#: identifier kinds a feed may carry, and the class each is hashed in: a phone is a phone whoever
#: holds it (a consignee's phone matches a phone the partner found on a shipper)
KIND_CLASS: dict[str, str] = {
    "cons_phone": "phone",
    "shipper_phone": "phone",
    "cons_email": "email",
    "shipper_email": "email",
    "account_ip": "ip",
    "cons_addr": "address",
    "shipper": "shipper",
    "seller": "seller",
}
FEED_KINDS = list(KIND_CLASS)
#: how a reason names the identifier of today's shipment that matched
KIND_WORDS: dict[str, str] = {
    "cons_phone": "the consignee's phone",
    "shipper_phone": "the shipper's phone",
    "cons_email": "the consignee's e-mail",
    "shipper_email": "the shipper's e-mail",
    "account_ip": "the buyer account's IP address",
    "cons_addr": "the consignee's address",
    "shipper": "the shipper",
    "seller": "the marketplace seller",
}
DEFAULT_VALID_DAYS = 30
#: how far ahead of our clock a feed's created_at may be (clock skew between administrations)
CLOCK_SKEW = timedelta(minutes=10)
#: how far before an exam its shipment's arrival day is searched (as history.EXAM_SEARCH_DAYS)
EXAM_SEARCH_DAYS = 7
KEY_MIN_BYTES = 32
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ID_LABEL = b"riskpipe partner identifiers v1"
_SIG_LABEL = b"riskpipe partner signature v1"


# ---------------------------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------------------------
def _inside(path: Path, home: Path) -> bool:
    p, h = path.resolve(), home.resolve()
    return p == h or h in p.parents


def read_key(path: Path, home: Path) -> bytes:
    """The shared key from ``path`` (hex text, >= 32 bytes); refused when the file is inside the
    data home (backups and copies of the home would carry it) or readable by group or others."""
    path = Path(path)
    if not path.is_file():
        raise RiskpipeError(f"partner key {path}: no such file (make one with `riskpipe partner keygen PATH`)")
    if _inside(path, home):
        raise RiskpipeError(
            f"partner key {path}: is inside the data home {home}; keep it outside (copies of the home would carry it)"
        )
    if path.stat().st_mode & 0o077:
        raise RiskpipeError(
            f"partner key {path}: readable by group or others (mode {path.stat().st_mode & 0o777:o}); chmod 600 it"
        )
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise RiskpipeError(
            f"partner key {path}: not a hex key (make one with `riskpipe partner keygen PATH`)"
        ) from None
    if len(key) < KEY_MIN_BYTES:
        raise RiskpipeError(f"partner key {path}: {len(key)} bytes; need at least {KEY_MIN_BYTES} random bytes")
    return key


def generate_key(path: Path, home: Path) -> str:
    """Write a new random 32-byte key (hex) to ``path`` (0600, never overwriting); its key id."""
    path = Path(path)
    if _inside(path, home):
        raise RiskpipeError(f"partner key {path}: is inside the data home {home}; keep it outside")
    if path.exists():
        raise RiskpipeError(f"partner key {path}: already exists (a new key would orphan every feed made with it)")
    key = secrets.token_bytes(KEY_MIN_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        os.fchmod(fd, PRIVATE_FILE)
        fh.write(key.hex() + "\n")
    return key_id(key)


def key_id(key: bytes) -> str:
    """First 16 hex digits of SHA-256 of the key: names the key, reveals nothing about it."""
    return hashlib.sha256(key).hexdigest()[:16]


def _derived(key: bytes, label: bytes) -> bytes:
    """A sub-key per use (identifiers, signature): one never serves as the other."""
    return hmac.new(key, label, hashlib.sha256).digest()


def keyed_hashes(key: bytes, kind: str, values: list[str]) -> list[str]:
    """HMAC-SHA256 (hex) of normalised identifiers of ``kind``, in the kind's class. One call per
    distinct value (hashlib is not vectorised; callers pass distinct values only)."""
    sub = _derived(key, _ID_LABEL)
    prefix = KIND_CLASS[kind].encode() + b"\x1f"
    return [hmac.new(sub, prefix + v.encode("utf-8"), hashlib.sha256).hexdigest() for v in values]


def normalised_frame(frame: pl.LazyFrame, kinds: list[str]) -> pl.LazyFrame:
    """``shipment_id``, ``kind``, ``value``: the normalised identifiers of each row (the features'
    normalisation), one row per present, non-empty identifier."""
    from riskpipe.features.keys import NORMALISED

    parts = [
        frame.select(S.SHIPMENT_ID, pl.lit(k).alias("kind"), NORMALISED[k].alias("value")).filter(
            pl.col("value").is_not_null() & (pl.col("value") != "")
        )
        for k in kinds
    ]
    return pl.concat(parts)


# ---------------------------------------------------------------------------------------------
# the file
# ---------------------------------------------------------------------------------------------
def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ts(text: object, field: str, source: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise RiskpipeError(f"{source}: refused: {field} {text!r} is not a timestamp") from None
    if moment.tzinfo is None:
        raise RiskpipeError(f"{source}: refused: {field} {text!r} has no time zone")
    return moment.astimezone(UTC)


def canonical(envelope: dict) -> bytes:
    """The bytes the signature covers: every field but ``signature``, sorted keys, no spaces."""
    body = {k: v for k, v in envelope.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign(envelope: dict, key: bytes) -> dict:
    """``envelope`` with its ``signature`` (HMAC-SHA256 under the derived signature key)."""
    sig = hmac.new(_derived(key, _SIG_LABEL), canonical(envelope), hashlib.sha256).hexdigest()
    return {**{k: v for k, v in envelope.items() if k != "signature"}, "signature": sig}


def make_envelope(
    content: str,
    entries: list[dict],
    key: bytes,
    issuer: str,
    since: date | None,
    until: date | None,
    now: datetime,
    valid_days: int,
) -> dict:
    if valid_days < 1:
        raise RiskpipeError(f"--valid-days: need at least 1, got {valid_days}")
    return sign(
        {
            "format": FORMAT,
            "version": VERSION,
            "content": content,
            "issuer": issuer,
            "key_id": key_id(key),
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "created_at": _ts(now),
            "expires_at": _ts(now + timedelta(days=valid_days)),
            "entries": entries,
        },
        key,
    )


def write_feed(envelope: dict, out: Path) -> Path:
    """The feed as JSON, written atomically, 0600 (keyed hashes are still personal data to whoever
    holds the key)."""
    text = json.dumps(envelope, sort_keys=True, indent=1, ensure_ascii=True) + "\n"
    return write_bytes_atomic(text.encode("ascii"), Path(out), PRIVATE_FILE)


def verify(data: bytes, key: bytes, now: datetime, content: str, source: str) -> dict:
    """The feed in ``data`` if it is well formed, made under ``key``, unchanged, not expired and of
    ``content``; else a one-line :class:`RiskpipeError` starting with ``source: refused``."""
    try:
        env = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RiskpipeError(f"{source}: refused: not a JSON partner feed") from None
    if not isinstance(env, dict) or env.get("format") != FORMAT:
        raise RiskpipeError(f"{source}: refused: not a {FORMAT} file")
    if env.get("version") != VERSION:
        raise RiskpipeError(f"{source}: refused: format version {env.get('version')!r}, this riskpipe reads {VERSION}")
    if env.get("key_id") != key_id(key):
        raise RiskpipeError(
            f"{source}: refused: made under key {str(env.get('key_id'))[:16]!r}, ours is "
            f"{key_id(key)!r} (wrong or rotated key)"
        )
    sig = env.get("signature")
    if not isinstance(sig, str) or not hmac.compare_digest(sign(env, key)["signature"], sig):
        raise RiskpipeError(f"{source}: refused: bad signature (the file was changed after it was made)")
    if env.get("content") != content:
        raise RiskpipeError(f"{source}: refused: holds {env.get('content')!r}, expected {content!r}")
    created = _parse_ts(env.get("created_at"), "created_at", source)
    expires = _parse_ts(env.get("expires_at"), "expires_at", source)
    if expires <= now:
        raise RiskpipeError(f"{source}: refused: expired at {_ts(expires)}")
    if created > now + CLOCK_SKEW:
        raise RiskpipeError(f"{source}: refused: created_at {_ts(created)} is in the future")
    entries = env.get("entries")
    if not isinstance(entries, list):
        raise RiskpipeError(f"{source}: refused: entries is not a list")
    for i, e in enumerate(entries):
        # every field a string of its exact form: a signed file with a number or a list where a
        # string belongs must be refused here, not crash every night that reads it
        ok = (
            isinstance(e, dict)
            and isinstance(e.get("kind"), str)
            and e["kind"] in KIND_CLASS
            and isinstance(e.get("hmac"), str)
            and _HEX64.match(e["hmac"]) is not None
        )
        if ok and content == FINDINGS:
            ok = (
                isinstance(e.get("finding"), str)
                and e["finding"] in S.POSITIVE_OUTCOMES
                and _is_date(e.get("finding_date"))
            )
        if not ok:
            raise RiskpipeError(f"{source}: refused: entry {i} is not a valid {content} entry")
    return env


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _is_date(text: object) -> bool:
    """``YYYY-MM-DD`` as a string (``date.fromisoformat`` also takes ``20260412``)."""
    if not isinstance(text, str) or not _ISO_DATE.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------
def finding_entries(layout: Layout, labels: pl.DataFrame, key: bytes, since: date, until: date) -> list[dict]:
    """Feed entries of the confirmed (positive) findings examined from ``since`` to ``until``: each
    identifier of each examined shipment, keyed; per (kind, hmac) the latest finding."""
    found = labels.filter(
        pl.col(S.OUTCOME).cast(pl.String).is_in(S.POSITIVE_OUTCOMES) & pl.col(S.EXAM_DATE).is_between(since, until)
    ).select(S.SHIPMENT_ID, S.EXAM_DATE, pl.col(S.OUTCOME).cast(pl.String).alias("finding"))
    if found.height == 0:
        return []
    days = [
        since - timedelta(days=EXAM_SEARCH_DAYS) + timedelta(days=k)
        for k in range((until - since).days + EXAM_SEARCH_DAYS + 1)
    ]
    rows = scan_raw_shipments(layout, days).filter(pl.col(S.SHIPMENT_ID).is_in(found[S.SHIPMENT_ID].implode()))
    ids = normalised_frame(rows, FEED_KINDS).unique().collect()
    ids = ids.join(found, on=S.SHIPMENT_ID, how="inner")
    if ids.height == 0:
        return []
    distinct = ids.select("kind", "value").unique().sort("kind", "value")
    hashed = pl.concat(
        [
            g.with_columns(pl.Series("hmac", keyed_hashes(key, str(kind), g["value"].to_list()), dtype=pl.String))
            for (kind,), g in distinct.group_by("kind", maintain_order=True)
        ]
    )
    out = (
        ids.join(hashed, on=["kind", "value"])
        .drop("value", S.SHIPMENT_ID)
        .sort(S.EXAM_DATE, "finding")
        .group_by("kind", "hmac")
        .agg(pl.all().last())
        .select("kind", "hmac", "finding", pl.col(S.EXAM_DATE).cast(pl.String).alias("finding_date"))
        .sort("kind", "hmac")
    )
    return out.to_dicts()


def operator_entries(operators: pl.DataFrame, key: bytes, source: str) -> list[dict]:
    """OEA list entries from a table of certified operators (``name``, ``country``), keyed as the
    features key a manifest's shipper (name normalised, ``|``, country)."""
    missing = [c for c in ("name", "country") if c not in operators.columns]
    if missing:
        raise RiskpipeError(f"{source}: missing column {missing[0]!r} (need name, country)")
    shaped = operators.select(
        pl.col("name").cast(pl.String).alias(S.SHIPPER_NAME),
        pl.col("country").cast(pl.String).str.strip_chars().str.to_uppercase().alias(S.SHIPPER_COUNTRY),
        pl.lit("").alias(S.SHIPMENT_ID),
    )
    values = normalised_frame(shaped.lazy(), ["shipper"]).collect()["value"].unique().sort().to_list()
    return [{"kind": "shipper", "hmac": h} for h in sorted(keyed_hashes(key, "shipper", values))]


# ---------------------------------------------------------------------------------------------
# import and the store
# ---------------------------------------------------------------------------------------------
def partner_dir(layout: Layout) -> Path:
    return layout.home / "partner"


def _store(layout: Layout, content: str) -> Path:
    return partner_dir(layout) / ("feeds" if content == FINDINGS else "oea")


@dataclass(frozen=True)
class Imported:
    path: Path
    feed_id: str
    entries: int
    new: bool
    imported_at: datetime


def import_feed(
    layout: Layout, source: Path, key: bytes, content: str, shared_by: str, now: datetime | None = None
) -> Imported:
    """Verify the feed in ``source`` and store it with its import time (``now``, default the
    clock). A refused feed stores nothing. Importing the same feed again keeps the first import."""
    now = now or datetime.now(UTC)
    data = Path(source).read_bytes()
    env = verify(data, key, now, content, str(source))
    feed_id = hashlib.sha256(canonical(env) + env["signature"].encode()).hexdigest()[:16]
    folder = private_dir(_store(layout, content), under=layout.home)
    path = folder / f"{feed_id}.json"
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        return Imported(
            path, feed_id, len(env["entries"]), False, _parse_ts(old["imported_at"], "imported_at", str(path))
        )
    record = {"imported_at": _ts(now), "shared_by": shared_by, "feed": env}
    write_bytes_atomic(json.dumps(record, sort_keys=True).encode("ascii"), path, PRIVATE_FILE)
    return Imported(path, feed_id, len(env["entries"]), True, now)


def cutoff(day: date) -> datetime:
    """D's cut-off (:func:`riskpipe.cutoff.day_cutoff`): feeds imported before it are known to D."""
    return day_cutoff(day)


def _records(layout: Layout, content: str, day: date) -> list[dict]:
    """Stored files of ``content`` known at D's cut-off and not expired at it, oldest import first."""
    folder = _store(layout, content)
    if not folder.is_dir():
        return []
    cut = cutoff(day)
    out = []
    for path in sorted(folder.glob("*.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        imported = _parse_ts(rec["imported_at"], "imported_at", str(path))
        expires = _parse_ts(rec["feed"]["expires_at"], "expires_at", str(path))
        if imported < cut <= expires:
            out.append({**rec, "_id": path.stem, "_imported": imported})
    return sorted(out, key=lambda r: (r["_imported"], r["_id"]))


ENTRY_SCHEMA = {
    "kind": pl.String,
    "class": pl.String,
    "hmac": pl.String,
    "finding": pl.String,
    "finding_date": pl.Date,
    "shared_by": pl.String,
}


def active_findings(layout: Layout, day: date) -> pl.DataFrame:
    """Entries of the findings feeds known at D's cut-off, with findings dated before D."""
    rows = [
        {
            **{k: e[k] for k in ("kind", "hmac", "finding")},
            "class": KIND_CLASS[e["kind"]],
            "finding_date": date.fromisoformat(e["finding_date"]),
            "shared_by": r["shared_by"],
        }
        for r in _records(layout, FINDINGS, day)
        for e in r["feed"]["entries"]
    ]
    frame = pl.DataFrame(rows, schema=ENTRY_SCHEMA) if rows else pl.DataFrame(schema=ENTRY_SCHEMA)
    return frame.filter(pl.col("finding_date") < day)


@dataclass(frozen=True)
class OeaList:
    hmacs: frozenset[str]
    shared_by: str
    feed_id: str


def active_oea(layout: Layout, day: date) -> OeaList | None:
    """The latest OEA list known at D's cut-off (a new list replaces the old), or None."""
    recs = _records(layout, OEA, day)
    if not recs:
        return None
    r = recs[-1]
    return OeaList(frozenset(e["hmac"] for e in r["feed"]["entries"]), r["shared_by"], r["_id"])


def fingerprint(layout: Layout, day: date) -> list[str]:
    """Ids of the stored files the features of ``day`` use (training's feature cache key)."""
    return [f"{c}:{r['_id']}" for c in CONTENTS for r in _records(layout, c, day)]


def day_key(layout: Layout, key_path: Path | None = None) -> bytes:
    """The shared key for the feature path: ``key_path`` (the caller's ``settings.partner_key_path``,
    loaded with its environment overrides by the CLI or the flow), else ``partner_key_path`` of
    the home's riskpipe.toml. Asked for only when a feed or OEA list is active for the day."""
    if key_path is None:
        key_path = load_settings(layout.home).partner_key_path
    if key_path is None:
        raise RiskpipeError(
            f"{layout.home}: partner feeds are stored but no partner key is configured "
            "(partner_key_path in riskpipe.toml or RISKPIPE_PARTNER_KEY_PATH)"
        )
    return read_key(key_path, layout.home)


def ensure_private(layout: Layout) -> None:
    """``<home>/partner`` exists with mode 0700."""
    private_dir(partner_dir(layout), under=layout.home)
    os.chmod(partner_dir(layout), PRIVATE_DIR)
