"""The partner administration's side of the synthetic world (generate --partner-out)."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from riskpipe import partner as P
from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.ingest import import_labels, ingest_paths
from riskpipe.labels import LabelStore
from riskpipe.store import Layout, scan_raw_shipments
from riskpipe.synth import generate

START = date(2026, 1, 5)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_partner_side_leaves_the_us_world_unchanged_and_its_feed_holds_no_identifier(tmp_path: Path) -> None:
    plain, us, mx = Layout(tmp_path / "plain"), Layout(tmp_path / "us"), Layout(tmp_path / "mx")
    generate(plain, START, 4, 1500, 11)
    generate(us, START, 4, 1500, 11, partner_out=mx.home)
    assert _digests(us.home) == _digests(plain.home)  # the US side is byte for byte the default world
    assert (mx.home / "oea-operators.csv").is_file() and (mx.home / "riskpipe.toml").is_file()

    ingest_paths(mx)
    store = LabelStore(Settings(home=mx.home).db_url)
    import_labels(mx, mx.landing / "outcomes", store)
    labels = store.current()
    assert labels.height > 0 and labels[S.OUTCOME].cast(pl.String).is_in(S.POSITIVE_OUTCOMES).all()
    key = bytes(range(32))
    entries = P.finding_entries(mx, labels, key, START, date(2026, 1, 8))
    env = P.make_envelope(
        P.FINDINGS,
        entries,
        key,
        "Mexico's customs service",
        START,
        date(2026, 1, 8),
        datetime(2026, 1, 8, 20, tzinfo=UTC),
        30,
    )
    feed = P.write_feed(env, tmp_path / "feed.json")
    data = feed.read_bytes().lower()
    assert len(entries) > 10
    # every raw phone, e-mail, IP, address, shipper and seller of both worlds: none in clear
    cols = [
        S.CONSIGNEE_PHONE,
        S.SHIPPER_PHONE,
        S.CONSIGNEE_EMAIL,
        S.SHIPPER_EMAIL,
        S.ACCOUNT_IP,
        S.CONSIGNEE_ADDRESS,
        S.CONSIGNEE_ADDRESS_KEY,
        S.SHIPPER_NAME,
        S.SELLER_ID,
        S.CONSIGNEE_NAME,
    ]
    ingest_paths(us)
    from riskpipe.features.keys import NORMALISED

    raw = pl.concat([scan_raw_shipments(mx).collect(), scan_raw_shipments(us).collect()])
    values = set()
    for c in cols:
        values |= set(raw[c].drop_nulls().str.to_lowercase().to_list())
    for k in ("cons_phone", "shipper_phone", "cons_email", "shipper"):
        values |= set(raw.select(NORMALISED[k]).to_series().drop_nulls().to_list())
    values = {v for v in values if len(v) >= 5}
    assert len(values) > 1000
    leaked = [v for v in values if v.encode() in data]
    assert leaked == []
