from __future__ import annotations

from datetime import date

import polars as pl

from riskpipe import schema as S
from riskpipe.features import parties as P
from riskpipe.features.testing import raw_frame

DAY = date(2026, 1, 6)


def run(rows: list[dict]) -> pl.DataFrame:
    return P.add_parties(raw_frame(rows, DAY).lazy(), DAY).collect()


def col(f: pl.DataFrame, name: str) -> list:
    return f.get_column(name).to_list()


def test_address_kind_po_box_forwarder_institution():
    f = run(
        [
            {S.CONSIGNEE_NAME: "Pat Doe", S.CONSIGNEE_ADDRESS: "12 Maple St Apt 3"},
            {S.CONSIGNEE_NAME: "Acme LLC", S.CONSIGNEE_ADDRESS: "500 Industrial Pkwy"},
            {S.CONSIGNEE_NAME: "Pat Doe", S.CONSIGNEE_ADDRESS: "P.O. Box 77"},
            {S.CONSIGNEE_NAME: "Pat Doe", S.CONSIGNEE_ADDRESS: "1 Harbor Rd, c/o MyUS"},
            {S.CONSIGNEE_NAME: "Dr Kim, Dept of Chemistry", S.CONSIGNEE_ADDRESS: "State University, 9 Campus Dr"},
        ]
    )
    assert col(f, P.CONSIGNEE_RESIDENTIAL) == [1, 0, 1, 1, 0]
    assert col(f, P.CONSIGNEE_PO_BOX) == [0, 0, 1, 0, 0]
    assert col(f, P.CONSIGNEE_FORWARDER) == [0, 0, 0, 1, 0]
    assert col(f, P.CONSIGNEE_INSTITUTION) == [0, 0, 0, 0, 1]


def test_distinct_names_at_one_address_key():
    f = run(
        [
            {S.CONSIGNEE_NAME: "A One", S.CONSIGNEE_ADDRESS: "5 Elm"},
            {S.CONSIGNEE_NAME: "B Two", S.CONSIGNEE_ADDRESS: "5 Elm"},
            {S.CONSIGNEE_NAME: "b two", S.CONSIGNEE_ADDRESS: "5 Elm"},  # same name, other case
            {S.CONSIGNEE_NAME: "C Three", S.CONSIGNEE_ADDRESS: "6 Elm"},
        ]
    )
    assert col(f, P.NAMES_AT_ADDRESS_DAY) == [2, 2, 2, 1]


def test_account_age_known_consignor_trusted_trader():
    f = run(
        [
            {S.ACCOUNT_CREATED_DATE: date(2026, 1, 1), S.KNOWN_CONSIGNOR: True, S.TRUSTED_TRADER: "ctpat"},
            {S.ACCOUNT_CREATED_DATE: date(2025, 1, 6), S.KNOWN_CONSIGNOR: False, S.TRUSTED_TRADER: "mx_oea"},
            {},
        ]
    )
    assert col(f, P.ACCOUNT_AGE_DAYS) == [5, 365, None]
    assert col(f, P.KNOWN_CONSIGNOR) == [1, 0, None]
    assert col(f, P.TRUSTED_TRADER) == ["ctpat", "mx_oea", "none"]
    assert f.schema[P.TRUSTED_TRADER] == P.TrustedKind


def test_shared_phone_email_ip_across_shipper_names():
    f = run(
        [
            {S.SHIPPER_NAME: "Alpha Co", S.SHIPPER_PHONE: "+86 138 0000 1111"},
            {S.SHIPPER_NAME: "Beta Co", S.SHIPPER_PHONE: "13800001111"},  # same phone, other name
            {S.SHIPPER_NAME: "Gamma", S.SHIPPER_EMAIL: "x@qq.com", S.ACCOUNT_IP: "10.0.0.1"},
            {S.SHIPPER_NAME: "Delta", S.SHIPPER_EMAIL: "X@QQ.com"},
            {S.SHIPPER_NAME: "Epsilon", S.ACCOUNT_IP: "10.0.0.1"},
            {S.SHIPPER_NAME: "Alpha Co", S.SHIPPER_PHONE: "555"},
            {S.SHIPPER_NAME: "Zeta"},
        ]
    )
    assert col(f, P.SHARED_CONTACT_SHIPPER_NAMES) == [2, 2, 2, 2, 2, 1, 0]
    assert col(f, P.SHARED_CONTACT_MULTI_SHIPPER) == [1, 1, 1, 1, 1, 0, 0]
