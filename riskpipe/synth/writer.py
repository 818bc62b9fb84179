"""Turn the day's integer-coded parcels into contract files: manifests, partner exports, outcomes, truth.

Rows travel as small integers until a file is written; strings are gathered from the entity and
description tables one file at a time, which keeps a 4-million-row day within memory. Every file
is written under a hidden temporary name and renamed into place, and every byte is a function of
the seed (gzip headers carry no timestamp).
"""

from __future__ import annotations

import gzip as gz
import io
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl

from riskpipe import schema as S
from riskpipe.ingest.readers import get_format
from riskpipe.store import write_atomic, write_bytes_atomic
from riskpipe.synth.catalog import Catalog
from riskpipe.synth.places import CARRIER_CODES, COUNTRIES, CURRENCIES, MODES, PORT_CODES, SUFFIX_LONG, SUFFIX_SHORT
from riskpipe.synth.population import Population

FORMATS = ("csv", "parquet", "ndjson")
TS_SUFFIX = ["Z", "+00:00", "+0000", ""]  # "" = no offset (read as UTC)
# fault kinds (0 = none); 5 and 6 only fit text files, elsewhere they fall back to 1-4
FAULT_MISSING, FAULT_WEIGHT, FAULT_COUNTRY, FAULT_CURRENCY, FAULT_DATE, FAULT_VALUE = 1, 2, 3, 4, 5, 6
BROKEN_KINDS = ("truncated", "empty", "missing_column", "not_utf8")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def day_micros(day: date) -> int:
    return int((datetime(day.year, day.month, day.day, tzinfo=UTC) - _EPOCH).total_seconds()) * 1_000_000


def _gather(series: pl.Series, idx: pl.Series | np.ndarray) -> pl.Series:
    return series.gather(pl.Series(np.asarray(idx, dtype=np.int64)) if isinstance(idx, np.ndarray) else idx)


_SHORT = [f" {x} " for x in SUFFIX_SHORT] + ["Apt ", "Suite ", "Ste "]
_LONG = [f" {x} " for x in SUFFIX_LONG] + ["#", "#", "#"]
_UNIT = [" Apt ", " Suite ", " Ste "]
_UNIT_COMMA = [", Apt ", ", Suite ", ", Ste "]


def street_variants(lines: pl.Series, variant: pl.Series) -> pl.Series:
    """The same place written differently, as carriers really file it: variant 0 as is, 1 upper
    case, 2 long suffix and "#4", 3 lower case with a comma before the unit. Only the rows with a
    variant are rewritten (a fifth of them), then scattered back."""
    sel = variant != 0
    idx = sel.arg_true()
    if len(idx) == 0:
        return lines
    sub = lines.filter(sel)
    var = variant.filter(sel)
    v2 = (sub + " ").str.replace_many(_SHORT, _LONG).str.strip_chars_end()
    v3 = sub.str.replace_many(_UNIT, _UNIT_COMMA).str.to_lowercase()
    new = pl.select(pl.when(var == 1).then(sub.str.to_uppercase()).when(var == 2).then(v2).otherwise(v3)).to_series()
    return lines.scatter(idx, new)


def manifest_frame(core: pl.DataFrame, pop: Population, catalog: Catalog, day: date) -> pl.DataFrame:
    """The contract's manifest columns (typed as ``S.MANIFEST_SCHEMA``) for a slice of the core."""
    sh = pop.shippers.frame.select("name", "address", "country", "phone", "email", "ip", "account_created", "trusted")
    sh = sh.select(pl.all().gather(core["shipper"]))
    ppl = pop.people.frame.select(pl.all().gather(core["person"]))
    addr = pop.addresses.frame.select("city", "state", "zip").select(pl.all().gather(core["address"]))
    street = street_variants(pop.address_strings().gather(core["address"]), core["addr_var"])
    sellers = pop.sellers.frame.select(pl.all().gather(core["seller"].clip(0, None)))
    desc = catalog.descriptions.gather(core["desc"])
    hts = catalog.hts.gather(core["hts"].clip(0, None))
    f = pl.DataFrame({"_": core["shipper"]}).with_columns(
        core["id"].alias(S.SHIPMENT_ID),
        pl.Series(core["filed_us"]).cast(pl.Datetime("us", "UTC")).alias(S.FILED_AT),
        pl.lit(day, dtype=pl.Date).alias(S.ARRIVAL_DATE),
        pl.Series(S.ENTRY_TYPES).gather(core["entry"]).alias(S.ENTRY_TYPE),
        pl.Series(MODES).gather(core["mode"]).alias(S.MODE),
        pl.Series(CARRIER_CODES).gather(core["carrier"]).alias(S.CARRIER_CODE),
        pl.Series(PORT_CODES).gather(core["port"]).alias(S.PORT_OF_ENTRY),
        sh["name"].alias(S.SHIPPER_NAME),
        sh["address"].alias(S.SHIPPER_ADDRESS),
        sh["country"].alias(S.SHIPPER_COUNTRY),
        ppl["name"].alias(S.CONSIGNEE_NAME),
        street.alias(S.CONSIGNEE_ADDRESS),
        addr["city"].alias(S.CONSIGNEE_CITY),
        addr["state"].alias(S.CONSIGNEE_STATE),
        addr["zip"].alias(S.CONSIGNEE_POSTAL_CODE),
        desc.alias(S.DESCRIPTION),
        pl.Series(COUNTRIES).gather(core["origin"]).alias(S.COUNTRY_OF_ORIGIN),
        core["declared_value"].alias(S.DECLARED_VALUE),
        pl.Series(CURRENCIES).gather(core["currency"]).alias(S.CURRENCY),
        core["weight"].round(3).alias(S.GROSS_WEIGHT_KG),
        core["pieces"].cast(pl.Int64).alias(S.PIECE_COUNT),
        core["master"].alias(S.MASTER_BILL),
        hts.alias(S.HTS_CODE),
        sellers["name"].alias(S.SELLER_NAME),
        sellers["id"].alias(S.SELLER_ID),
        sellers["marketplace"].alias(S.MARKETPLACE),
        core["listed_price"].alias(S.LISTED_PRICE),
        sh["phone"].alias(S.SHIPPER_PHONE),
        sh["email"].alias(S.SHIPPER_EMAIL),
        ppl["phone"].alias(S.CONSIGNEE_PHONE),
        ppl["email"].alias(S.CONSIGNEE_EMAIL),
        sh["account_created"].alias(S.ACCOUNT_CREATED_DATE),
        sh["ip"].alias(S.ACCOUNT_IP),
        pl.Series(pop.shippers.arrays["known"]).gather(core["shipper"]).alias(S.KNOWN_CONSIGNOR),
        sh["trusted"].alias(S.TRUSTED_TRADER),
        pl.Series(COUNTRIES).gather(core["export"].clip(0, None)).alias(S.EXPORT_COUNTRY),
        core["desc_upper"],
        core["name_upper"],
        core["hts_style"],
        core["hts"].alias("_hts"),
        core["export"].alias("_exp"),
        core["has_seller"],
        core["has_contact"],
        core["has_consignee_contact"],
        core["has_account"],
        core["has_known"],
        core["fault"],
    )
    null = pl.lit(None)
    opt = {
        S.DESCRIPTION: pl.when(pl.col("desc_upper"))
        .then(pl.col(S.DESCRIPTION).str.to_uppercase())
        .otherwise(pl.col(S.DESCRIPTION)),
        S.CONSIGNEE_NAME: pl.when(pl.col("name_upper"))
        .then(pl.col(S.CONSIGNEE_NAME).str.to_uppercase())
        .otherwise(pl.col(S.CONSIGNEE_NAME)),
        S.HTS_CODE: pl.when(pl.col("_hts") < 0)
        .then(null)
        .when(pl.col("hts_style") == 1)
        .then(
            pl.format(
                "{}.{}.{}",
                pl.col(S.HTS_CODE).str.slice(0, 4),
                pl.col(S.HTS_CODE).str.slice(4, 2),
                pl.col(S.HTS_CODE).str.slice(6, 4),
            )
        )
        .when(pl.col("hts_style") == 2)
        .then(pl.col(S.HTS_CODE).str.slice(0, 6))
        .otherwise(pl.col(S.HTS_CODE)),
        S.EXPORT_COUNTRY: pl.when(pl.col("_exp") >= 0).then(pl.col(S.EXPORT_COUNTRY)),
        S.MASTER_BILL: pl.when(pl.col(S.MASTER_BILL) >= 0).then(
            pl.format(
                "{}-{}",
                pl.col(S.MASTER_BILL) // 100_000_000,
                (pl.col(S.MASTER_BILL) % 100_000_000).cast(pl.String).str.zfill(8),
            )
        ),
        **{
            c: pl.when(pl.col("has_seller")).then(pl.col(c))
            for c in (S.SELLER_NAME, S.SELLER_ID, S.MARKETPLACE, S.LISTED_PRICE)
        },
        **{c: pl.when(pl.col("has_contact")).then(pl.col(c)) for c in (S.SHIPPER_PHONE, S.SHIPPER_EMAIL)},
        **{c: pl.when(pl.col("has_consignee_contact")).then(pl.col(c)) for c in (S.CONSIGNEE_PHONE, S.CONSIGNEE_EMAIL)},
        **{c: pl.when(pl.col("has_account")).then(pl.col(c)) for c in (S.ACCOUNT_CREATED_DATE, S.ACCOUNT_IP)},
        S.KNOWN_CONSIGNOR: pl.when(pl.col("has_known")).then(pl.col(S.KNOWN_CONSIGNOR)),
    }
    f = f.with_columns(**opt)
    return f.select(*S.MANIFEST_SCHEMA, "fault")


def inject_faults(f: pl.DataFrame, fmt: str) -> pl.DataFrame:
    """Spoil the rows marked in ``fault``: realistic filing errors the ingest must quarantine.

    A bad date fits CSV and NDJSON (dates are text there), a non-numeric value only CSV; other
    formats get one of the typed faults instead, so column types stay those of the contract."""
    fault = pl.col("fault")
    top = {"csv": FAULT_VALUE, "ndjson": FAULT_DATE}.get(fmt, FAULT_CURRENCY)
    fault = pl.when(fault > top).then((fault - 1) % 4 + 1).otherwise(fault)
    f = f.with_columns(fault.alias("fault"))
    out = f.with_columns(
        pl.when(pl.col("fault") == FAULT_MISSING).then(None).otherwise(pl.col(S.DESCRIPTION)).alias(S.DESCRIPTION),
        pl.when(pl.col("fault") == FAULT_WEIGHT)
        .then(-pl.col(S.GROSS_WEIGHT_KG) * (pl.col(S.PIECE_COUNT) % 2))
        .otherwise(pl.col(S.GROSS_WEIGHT_KG))
        .alias(S.GROSS_WEIGHT_KG),
        pl.when(pl.col("fault") == FAULT_COUNTRY)
        .then(pl.lit("XX"))
        .otherwise(pl.col(S.COUNTRY_OF_ORIGIN))
        .alias(S.COUNTRY_OF_ORIGIN),
        pl.when(pl.col("fault") == FAULT_CURRENCY).then(pl.lit("XYZ")).otherwise(pl.col(S.CURRENCY)).alias(S.CURRENCY),
    )
    if top >= FAULT_DATE:
        out = out.with_columns(
            pl.when(pl.col("fault") == FAULT_DATE)
            .then(pl.lit("2026-02-30"))
            .otherwise(pl.col(S.ARRIVAL_DATE).cast(pl.String))
            .alias(S.ARRIVAL_DATE)
        )
    if top >= FAULT_VALUE:
        out = out.with_columns(
            pl.when(pl.col("fault") == FAULT_VALUE)
            .then(pl.lit("N/A"))
            .otherwise(pl.col(S.DECLARED_VALUE).cast(pl.String))
            .alias(S.DECLARED_VALUE)
        )
    return out


def text_timestamps(f: pl.DataFrame, style: pl.Series) -> pl.DataFrame:
    """ISO 8601 ``filed_at`` with the offset forms carriers really send (Z, +00:00, +0000, none)."""
    ts = pl.col(S.FILED_AT)
    frac = style >= 4
    base = (
        pl.when(pl.lit(frac))
        .then(ts.dt.strftime("%Y-%m-%dT%H:%M:%S%.3f"))
        .otherwise(ts.dt.strftime("%Y-%m-%dT%H:%M:%S"))
    )
    return f.with_columns(pl.concat_str([base, pl.Series(TS_SUFFIX).gather(style % 4)]).alias(S.FILED_AT))


def write_frame(f: pl.DataFrame, path: Path, fmt: str, gzip: bool) -> Path:
    """Write one file atomically in format ``fmt`` of the one format registry
    (:mod:`riskpipe.ingest.readers`); gzip (for formats that allow it) without a timestamp, so
    bytes are stable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    form = get_format(fmt)
    if gzip and form.gzip:
        buf = io.BytesIO()
        form.write(f, buf)
        write_bytes_atomic(gz.compress(buf.getvalue(), compresslevel=1, mtime=0), path)
        return path
    return write_atomic(path, lambda tmp: form.write(f, tmp))  # streamed to disk, never held as bytes


def file_name(prefix: str, day: date, n: int | None, fmt: str, gzip: bool) -> str:
    form = get_format(fmt)
    ext = form.suffixes[0] + (".gz" if gzip and form.gzip else "")
    stem = f"{prefix}-{day.isoformat()}" + (f"-{n}" if n is not None else "")
    return f"{stem}{ext}"


def write_manifest_file(
    core: pl.DataFrame, pop: Population, catalog: Catalog, day: date, path: Path, fmt: str, gzip: bool
) -> int:
    """One manifest file; returns its row count."""
    f = manifest_frame(core, pop, catalog, day)
    text = fmt != "parquet"
    if f["fault"].max() or 0:
        f = inject_faults(f, fmt)
    f = f.drop("fault")
    if text:
        f = text_timestamps(f, core["ts_style"])
    else:
        f = f.cast({k: v for k, v in S.MANIFEST_SCHEMA.items()})
    write_frame(f, path, fmt, gzip)
    return f.height


def write_broken_files(
    sample: pl.DataFrame, landing: Path, day: date, first_n: int, kinds: tuple[str, ...]
) -> list[Path]:
    """Broken files a real landing folder sees: truncated Parquet, empty file, a CSV missing a
    required column, a CSV with bytes that are not UTF-8. Their rows repeat rows of good files."""
    paths = []
    n = first_n
    for kind in kinds:
        if kind == "truncated":
            buf = io.BytesIO()
            sample.write_parquet(buf)
            data = buf.getvalue()
            p = landing / file_name("manifest", day, n, "parquet", False)
            write_bytes_atomic(data[: len(data) // 2], p)
        elif kind == "empty":
            p = landing / file_name("manifest", day, n, "csv", False)
            write_bytes_atomic(b"", p)
        elif kind == "missing_column":
            p = landing / file_name("manifest", day, n, "csv", False)
            write_bytes_atomic(sample.drop(S.DECLARED_VALUE).write_csv().encode("utf-8"), p)
        else:  # not_utf8: a legacy system wrote Latin-1
            p = landing / file_name("manifest", day, n, "csv", False)
            text = sample.with_columns(pl.concat_str([pl.col(S.DESCRIPTION), pl.lit(" ni\u00f1os")])).write_csv()
            write_bytes_atomic(text.encode("latin-1", errors="replace"), p)
        paths.append(p)
        n += 1
    return paths
