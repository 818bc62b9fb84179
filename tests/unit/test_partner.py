"""Sharing risk with a partner customs service (riskpipe.partner, features.partner)."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from riskpipe import partner as P
from riskpipe import partner_joint as J
from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.features import build_features
from riskpipe.features.build import write_features
from riskpipe.features.partner import inputs, reason_texts
from riskpipe.features.testing import write_raw_day
from riskpipe.store import Layout, scan_raw_shipments

D0 = date(2026, 5, 12)  # the partner's seizure
D1 = date(2026, 5, 13)  # the US day after the import
D2 = date(2026, 5, 14)


@pytest.fixture()
def key_file(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    P.generate_key(keys / "shared.key", tmp_path / "nowhere")
    return keys / "shared.key"


def _home(tmp_path: Path, name: str, key_file: Path, partner_name: str) -> Layout:
    home = tmp_path / name
    home.mkdir()
    (home / "riskpipe.toml").write_text(f'partner_key_path = "{key_file}"\npartner_name = "{partner_name}"\n')
    return Layout(home)


SEIZED = {  # the network's parties, as the partner filed them (other spelling, same identifiers)
    S.SHIPMENT_ID: "MX-1",
    S.CONSIGNEE_PHONE: "+1 (617) 555-0199",
    S.CONSIGNEE_EMAIL: "Mule.One@Example.com",
    S.ACCOUNT_IP: " 203.0.113.7 ",
    S.CONSIGNEE_ADDRESS: "77 Drop Rd",
    S.SELLER_ID: "SELL-42",
    S.SHIPPER_PHONE: "86-755-1234-5678",
    S.SHIPPER_EMAIL: "chem@trade.cn",
    S.SHIPPER_NAME: "Golden Chem Co",
}
# every raw identifier of the partner's world: none may be in the feed in clear (no fragment
# short enough to occur by chance in hex digests: "617" alone made the test flaky)
WORLD_RAW = [
    "555-0199",
    "6175550199",
    "mule.one@example.com",
    "Mule.One@Example.com",
    "203.0.113.7",
    "77 drop rd",
    "77 Drop Rd",
    "SELL-42",
    "7551234567",
    "1234-5678",
    "chem@trade.cn",
    "golden chem co",
    "Golden Chem Co",
]


def _partner_side(tmp_path: Path, key_file: Path) -> tuple[Layout, bytes]:
    mx = _home(tmp_path, "mx", key_file, "U.S. Customs and Border Protection")
    write_raw_day(mx, D0, [SEIZED, {S.SHIPMENT_ID: "MX-2", S.CONSIGNEE_PHONE: "3125550000"}])
    return mx, P.read_key(key_file, mx.home)


def _labels(rows: list[tuple[str, date, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={S.SHIPMENT_ID: pl.String, S.EXAM_DATE: pl.Date, S.OUTCOME: pl.String}, orient="row"
    )


def _export(mx: Layout, key: bytes, out: Path, now: datetime, valid_days: int = 30) -> dict:
    labels = _labels([("MX-1", D0, "precursor"), ("MX-2", D0, "no_finding")])
    entries = P.finding_entries(mx, labels, key, D0, D0)
    env = P.make_envelope(P.FINDINGS, entries, key, "Mexico's customs service", D0, D0, now, valid_days)
    P.write_feed(env, out)
    return env


US_DAY = [
    {S.SHIPMENT_ID: "US-phone", S.CONSIGNEE_PHONE: "617-555-0199"},
    {S.SHIPMENT_ID: "US-email", S.CONSIGNEE_EMAIL: "mule.one@example.com "},
    {S.SHIPMENT_ID: "US-addr", S.CONSIGNEE_ADDRESS: "77 Drop Rd"},
    {S.SHIPMENT_ID: "US-seller", S.SELLER_ID: "SELL-42"},
    {S.SHIPMENT_ID: "US-shipper-phone-as-consignee", S.CONSIGNEE_PHONE: "(755) 123 45678"},
    {S.SHIPMENT_ID: "US-clean", S.CONSIGNEE_PHONE: "3125550000"},  # the partner's no-finding exam
]


def _round_trip(tmp_path: Path, key_file: Path, imported_at: datetime) -> Layout:
    mx, key = _partner_side(tmp_path, key_file)
    feed = tmp_path / "feed.json"
    _export(mx, key, feed, datetime(2026, 5, 12, 20, tzinfo=UTC))
    us = _home(tmp_path, "us", key_file, "Mexico's customs service")
    for d in (D1, D2):
        write_raw_day(us, d, [{**r, S.SHIPMENT_ID: f"{r[S.SHIPMENT_ID]}-{d.day}"} for r in US_DAY])
    P.import_feed(us, feed, P.read_key(key_file, us.home), P.FINDINGS, "Mexico's customs service", imported_at)
    return us


def test_round_trip_finds_planted_matches_and_file_holds_no_identifier(tmp_path: Path, key_file: Path) -> None:
    us = _round_trip(tmp_path, key_file, datetime(2026, 5, 12, 22, tzinfo=UTC))
    data = (tmp_path / "feed.json").read_bytes().lower()
    for raw in WORLD_RAW:
        assert raw.lower().encode() not in data, raw
    assert oct((tmp_path / "feed.json").stat().st_mode & 0o777) == "0o600"
    f = build_features(us, D1).sort(S.SHIPMENT_ID)
    hit = dict(zip(f[S.SHIPMENT_ID], f["partner_watch_hit"], strict=True))
    assert hit == {
        "US-addr-13": 1,
        "US-clean-13": 0,
        "US-email-13": 1,
        "US-phone-13": 1,
        "US-seller-13": 1,
        "US-shipper-phone-as-consignee-13": 1,
    }
    assert f.filter(pl.col(S.SHIPMENT_ID) == "US-phone-13")["partner_watch_days_since"].item() == 1
    raw = scan_raw_shipments(us, [D1])
    texts = dict(reason_texts(raw, inputs(us, D1, raw)).collect().iter_rows())
    assert texts["US-phone-13"] == (
        "the consignee's phone matches a precursor finding shared by Mexico's customs service on 2026-05-12"
    )
    assert texts["US-clean-13"] is None
    # stored 0600 under a 0700 folder
    stored = next((us.home / "partner" / "feeds").glob("*.json"))
    assert stored.stat().st_mode & 0o077 == 0 and (us.home / "partner").stat().st_mode & 0o077 == 0


def test_feed_imported_after_the_cut_off_does_not_affect_the_day(tmp_path: Path, key_file: Path) -> None:
    us = _round_trip(tmp_path, key_file, datetime(2026, 5, 13, 0, 0, 1, tzinfo=UTC))  # just after D1's cut-off
    assert build_features(us, D1)["partner_watch_hit"].sum() == 0
    assert build_features(us, D2)["partner_watch_hit"].sum() == 5


def test_batched_build_equals_one_plan_with_a_feed_and_an_oea_list(tmp_path: Path, key_file: Path) -> None:
    us = _round_trip(tmp_path, key_file, datetime(2026, 5, 12, 22, tzinfo=UTC))
    key = P.read_key(key_file, us.home)
    write_raw_day(
        us,
        D1,
        [{**r, S.SHIPMENT_ID: f"{r[S.SHIPMENT_ID]}-{D1.day}", S.TRUSTED_TRADER: "mx_oea"} for r in US_DAY]
        + [{S.SHIPMENT_ID: "OEA-ok", S.SHIPPER_NAME: "Listed SA", S.SHIPPER_COUNTRY: "MX", S.TRUSTED_TRADER: "mx_oea"}],
    )
    oea = tmp_path / "oea.json"
    P.write_feed(
        P.make_envelope(
            P.OEA,
            P.operator_entries(pl.DataFrame({"name": ["LISTED  SA "], "country": ["mx"]}), key, "list"),
            key,
            "MX",
            None,
            None,
            datetime(2026, 5, 12, 20, tzinfo=UTC),
            30,
        ),
        oea,
    )
    P.import_feed(us, oea, key, P.OEA, "Mexico's customs service", datetime(2026, 5, 12, 22, tzinfo=UTC))
    one = build_features(us, D1)
    batched = pl.read_parquet(write_features(us, D1, None, tmp_path / "f.parquet", batch_rows=3))
    assert batched.equals(one)
    assert one["partner_watch_hit"].sum() == 5
    assert one.filter(pl.col(S.SHIPMENT_ID) == "OEA-ok")["xb_oea_confirmed"].item() == 1


def test_mx_oea_claim_not_on_the_list_gets_no_credit_and_a_reason(tmp_path: Path, key_file: Path) -> None:
    us = _home(tmp_path, "us", key_file, "Mexico's customs service")
    key = P.read_key(key_file, us.home)
    claims = [
        {S.SHIPMENT_ID: "A", S.SHIPPER_NAME: "Listed SA", S.SHIPPER_COUNTRY: "MX", S.TRUSTED_TRADER: "mx_oea"},
        {S.SHIPMENT_ID: "B", S.SHIPPER_NAME: "Pretender SA", S.SHIPPER_COUNTRY: "MX", S.TRUSTED_TRADER: "mx_oea"},
        {S.SHIPMENT_ID: "C", S.SHIPPER_NAME: "Pretender SA", S.SHIPPER_COUNTRY: "MX", S.TRUSTED_TRADER: "ctpat"},
    ]
    write_raw_day(us, D1, claims)
    before = build_features(us, D1)  # no list imported: claims neither confirmed nor refused
    assert before["trusted_trader_kind"].cast(pl.String).to_list() == ["mx_oea", "mx_oea", "ctpat"]
    assert before["xb_oea_unconfirmed"].sum() == 0
    oea = tmp_path / "oea.json"
    P.write_feed(
        P.make_envelope(
            P.OEA,
            P.operator_entries(pl.DataFrame({"name": ["Listed SA"], "country": ["MX"]}), key, "list"),
            key,
            "MX",
            None,
            None,
            datetime(2026, 5, 12, 20, tzinfo=UTC),
            30,
        ),
        oea,
    )
    P.import_feed(us, oea, key, P.OEA, "Mexico's customs service", datetime(2026, 5, 12, 22, tzinfo=UTC))
    f = build_features(us, D1).sort(S.SHIPMENT_ID)
    assert f["trusted_trader_kind"].cast(pl.String).to_list() == ["mx_oea", "none", "ctpat"]
    assert f["xb_oea_confirmed"].to_list() == [1, 0, 0]
    assert f["xb_oea_unconfirmed"].to_list() == [0, 1, 0]
    from riskpipe.rules import load_rules

    applied = load_rules().apply(build_features(us, D1).join(scan_raw_shipments(us, [D1]).collect(), on=S.SHIPMENT_ID))
    reasons = dict(zip(applied[S.SHIPMENT_ID], applied["rule_reasons"], strict=True))
    assert "OEA_CLAIM_NOT_CONFIRMED" in reasons["B"] and "OEA_CLAIM_NOT_CONFIRMED" not in reasons["A"]
    raw = scan_raw_shipments(us, [D1])
    texts = dict(reason_texts(raw, inputs(us, D1, raw)).collect().iter_rows())
    assert "not on the OEA list shared by Mexico's customs service" in texts["B"] and texts["A"] is None


def _refused(us: Layout, path: Path, key: bytes, now: datetime, match: str) -> None:
    with pytest.raises(RiskpipeError, match=match) as err:
        P.import_feed(us, path, key, P.FINDINGS, "MX", now)
    assert "\n" not in str(err.value)
    assert not (us.home / "partner" / "feeds").exists() or not any((us.home / "partner" / "feeds").iterdir())


def test_tampered_wrongly_keyed_and_expired_feeds_are_refused(tmp_path: Path, key_file: Path) -> None:
    mx, key = _partner_side(tmp_path, key_file)
    us = _home(tmp_path, "us", key_file, "MX")
    feed = tmp_path / "feed.json"
    env = _export(mx, key, feed, datetime(2026, 5, 12, 20, tzinfo=UTC), valid_days=2)
    now = datetime(2026, 5, 12, 22, tzinfo=UTC)
    # tampered: one entry's finding date moved
    bad = json.loads(feed.read_text())
    bad["entries"][0]["finding_date"] = "2026-05-01"
    (tmp_path / "tampered.json").write_text(json.dumps(bad))
    _refused(us, tmp_path / "tampered.json", key, now, "bad signature")
    # an entry added
    bad = json.loads(feed.read_text())
    bad["entries"].append({**bad["entries"][0], "hmac": "0" * 64})
    (tmp_path / "added.json").write_text(json.dumps(bad))
    _refused(us, tmp_path / "added.json", key, now, "bad signature")
    # wrongly keyed: another key (its id differs) and a forged key id under another key
    other = bytes(range(32))
    _refused(us, feed, other, now, "wrong or rotated key")
    forged = P.sign({**env, "key_id": P.key_id(key)}, other)
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    _refused(us, tmp_path / "forged.json", key, now, "bad signature")
    # expired
    _refused(us, feed, key, datetime(2026, 5, 14, 20, 0, 1, tzinfo=UTC), "expired")
    # an OEA list is not a findings feed
    (tmp_path / "junk.json").write_text("{not json")
    _refused(us, tmp_path / "junk.json", key, now, "not a JSON partner feed")
    # the genuine one is accepted, once
    assert P.import_feed(us, feed, key, P.FINDINGS, "MX", now).new
    assert not P.import_feed(us, feed, key, P.FINDINGS, "MX", now).new


def test_key_file_inside_the_home_or_readable_by_others_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with pytest.raises(RiskpipeError, match="inside the data home"):
        P.generate_key(home / "k.key", home)
    inside = home / "k.key"
    inside.write_text("ab" * 32)
    os.chmod(inside, 0o600)
    with pytest.raises(RiskpipeError, match="inside the data home"):
        P.read_key(inside, home)
    outside = tmp_path / "k.key"
    outside.write_text("ab" * 32)
    os.chmod(outside, 0o640)
    with pytest.raises(RiskpipeError, match="readable by group or others"):
        P.read_key(outside, home)
    os.chmod(outside, 0o600)
    assert P.read_key(outside, home) == bytes.fromhex("ab" * 32)
    assert len(P.key_id(bytes.fromhex("ab" * 32))) == 16


def test_normalisation_is_the_features_normalisation() -> None:
    """The feed keys exactly what the features key: one expression table (keys.NORMALISED)."""
    from riskpipe.features.keys import ENTITY_KEYS, LINK_KEYS, NORMALISED

    assert set(P.FEED_KINDS) <= set(NORMALISED)
    frame = pl.LazyFrame({S.SHIPMENT_ID: ["a", "b"], S.CONSIGNEE_PHONE: ["+1 617 555 0199", "6175550199"]})
    values = P.normalised_frame(frame, ["cons_phone"]).collect()["value"].to_list()
    assert values == ["6175550199", "6175550199"]
    assert str(LINK_KEYS["cons_phone"]) == str(ENTITY_KEYS["cons_phone"])


def test_joint_list_holds_only_the_allowed_columns(tmp_path: Path, key_file: Path) -> None:
    us = _round_trip(tmp_path, key_file, datetime(2026, 5, 12, 22, tzinfo=UTC))
    rows = [
        {
            **r,
            S.SHIPMENT_ID: f"{r[S.SHIPMENT_ID]}-{D1.day}",
            S.PORT_OF_ENTRY: "2304",
            S.MODE: "truck",
            S.DESCRIPTION: '=HYPERLINK("x")',
        }
        for r in US_DAY
    ]
    write_raw_day(us, D1, rows)
    targets = pl.DataFrame(
        {
            S.RANK: [1, 2, 3],
            S.SHIPMENT_ID: ["US-phone-13", "US-clean-13", "US-addr-13"],
            S.PORT_OF_ENTRY: ["2304", "2304", "2506"],
            S.RISK_SCORE: [0.9, 0.5, 0.4],
            S.REASONS: [["model:x"], ["US_ONLY"], []],
            S.REASON_TEXT: ["secret", "secret", "secret"],
        }
    )
    folder = us.day_dir(us.targets, D1)
    folder.mkdir(parents=True)
    targets.write_parquet(folder / "targets.parquet")
    key = P.read_key(key_file, us.home)
    with pytest.raises(RiskpipeError, match="not a Unified Cargo Processing port"):
        J.joint_list(us, D1, "4701", ["2304"], key)
    frame = J.joint_list(us, D1, "2304", ["2304"], key)
    assert frame.columns == J.JOINT_COLUMNS
    assert frame[S.SHIPMENT_ID].to_list() == ["US-phone-13", "US-clean-13"]
    assert frame["shared_reason"][0].startswith("the consignee's phone matches a precursor finding")
    csv, pq = J.write_joint_list(frame, tmp_path / "joint", D1, "2304")
    header = csv.read_text().splitlines()[0].split(",")
    assert header == J.JOINT_COLUMNS and pl.read_parquet(pq).columns == J.JOINT_COLUMNS
    text = csv.read_text()
    for private in ("secret", "US_ONLY", "model:", "0.9", S.RISK_SCORE, S.CONSIGNEE_NAME):
        assert private not in text
    assert "'=HYPERLINK" in text
    assert csv.stat().st_mode & 0o077 == 0


def test_the_key_given_only_in_the_environment_reaches_the_nightly_feature_step(tmp_path: Path, key_file: Path) -> None:
    """Review finding: the feature step read partner_key_path from riskpipe.toml alone, so a home
    whose key came from RISKPIPE_PARTNER_KEY_FILE imported a feed and then failed every night."""
    from riskpipe.config import load_settings
    from riskpipe.nightly import build_features_step

    us = _round_trip(tmp_path, key_file, datetime(2026, 5, 12, 22, tzinfo=UTC))
    (us.home / "riskpipe.toml").write_text('partner_name = "Mexico\'s customs service"\n')  # no key path in the file
    settings = load_settings(us.home, environ={"RISKPIPE_PARTNER_KEY_FILE": str(key_file)})
    assert settings.partner_key_path == key_file
    path = build_features_step(us, settings, D1)
    assert pl.read_parquet(path)["partner_watch_hit"].sum() == 5
    with pytest.raises(RiskpipeError, match="no partner key is configured"):
        build_features(us, D1)  # neither the file nor a caller names the key


@pytest.mark.parametrize(
    "field,value",
    [("finding_date", 20260512), ("finding_date", "20260512"), ("kind", ["phone"]), ("finding", ["precursor"])],
)
def test_a_signed_feed_with_a_field_of_the_wrong_type_is_refused(
    tmp_path: Path, key_file: Path, field: str, value: object
) -> None:
    """Review finding: ``"finding_date": 20260512`` passed verification (``date.fromisoformat``
    takes the basic format) and then crashed every night; a list as ``kind`` raised TypeError."""
    mx, key = _partner_side(tmp_path, key_file)
    us = _home(tmp_path, "us", key_file, "MX")
    env = _export(mx, key, tmp_path / "feed.json", datetime(2026, 5, 12, 20, tzinfo=UTC))
    entries = [dict(e) for e in env["entries"]]
    entries[0][field] = value
    body = {k: v for k, v in env.items() if k != "signature"}
    (tmp_path / "odd.json").write_text(json.dumps(P.sign({**body, "entries": entries}, key)))
    _refused(us, tmp_path / "odd.json", key, datetime(2026, 5, 12, 22, tzinfo=UTC), "is not a valid findings entry")


def test_import_as_of_is_refused_on_a_home_that_is_not_a_synthetic_world(
    tmp_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Review finding: ``--as-of`` backdated the import (the feed entered days already published)
    and judged expiry by that clock: an expired feed went in. Only a synthetic world replays."""
    import sys

    from riskpipe import cli

    mx, key = _partner_side(tmp_path, key_file)
    us = _home(tmp_path, "us", key_file, "MX")
    feed = tmp_path / "feed.json"
    _export(mx, key, feed, datetime(2026, 5, 12, 20, tzinfo=UTC), valid_days=2)  # long expired by now

    def run(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["riskpipe", "--home", str(us.home), "partner", "import", *args])
        with pytest.raises(SystemExit) as done:
            cli.main()
        return done.value.code or 0

    assert run(str(feed), "--as-of", "2026-05-12T22:00Z") == 1
    assert "--as-of is for replaying a synthetic world" in capsys.readouterr().err
    assert run(str(feed)) == 1 and "expired" in capsys.readouterr().err  # the real clock
    assert not (us.home / "partner" / "feeds").exists() or not any((us.home / "partner" / "feeds").iterdir())
    us.truth.mkdir(parents=True)  # a synthetic world may replay its own past
    assert run(str(feed), "--as-of", "2026-05-12T22:00Z") == 0
