"""Party indicators: who sends and who receives (address kind, PO box, forwarder, names at one
address, account age, known consignor, trusted-trader credit, contacts shared across shippers)."""

from __future__ import annotations

from datetime import date

import polars as pl

from riskpipe import schema as S
from riskpipe.features.family import DayContext, FamilyDay, NoWork
from riskpipe.features.keys import ensure_keys, key_col
from riskpipe.features.lexicon import Lexicon, load_lexicon, normalise_text

CONSIGNEE_RESIDENTIAL = "consignee_residential"
CONSIGNEE_PO_BOX = "consignee_po_box"
CONSIGNEE_FORWARDER = "consignee_forwarder"
CONSIGNEE_INSTITUTION = "consignee_institution"
NAMES_AT_ADDRESS_DAY = "names_at_address_day"
ACCOUNT_AGE_DAYS = "account_age_days"
KNOWN_CONSIGNOR = "known_consignor_flag"
TRUSTED_TRADER = "trusted_trader_kind"
SHARED_CONTACT_SHIPPER_NAMES = "shared_contact_shipper_names"
SHARED_CONTACT_MULTI_SHIPPER = "shared_contact_multi_shipper"

COLUMNS = [
    CONSIGNEE_RESIDENTIAL,
    CONSIGNEE_PO_BOX,
    CONSIGNEE_FORWARDER,
    CONSIGNEE_INSTITUTION,
    NAMES_AT_ADDRESS_DAY,
    ACCOUNT_AGE_DAYS,
    KNOWN_CONSIGNOR,
    TRUSTED_TRADER,
    SHARED_CONTACT_SHIPPER_NAMES,
    SHARED_CONTACT_MULTI_SHIPPER,
]

TRUSTED_KINDS = ["none", *S.TRUSTED_TRADER_KINDS]
TrustedKind = pl.Enum(TRUSTED_KINDS)
PO_BOX_PATTERN = r"(?i)(\bp\.?\s*o\.?\s*box\b|\bpost\s+office\s+box\b|\bpmb\b|\bpo\s+bx\b)"
NEW_ACCOUNT_DAYS = 30


def _names_sharing(contact: str) -> pl.Expr:
    """Distinct shipper keys using the same contact on the day (0 when the contact is missing)."""
    c = pl.col(key_col(contact))
    return pl.when(c.is_not_null()).then(pl.col(key_col("shipper")).n_unique().over(c)).otherwise(0)


def row_exprs(day: date, lex: Lexicon | None = None) -> list[pl.Expr]:
    """The columns of the family that need only the row itself."""
    lex = lex or load_lexicon()
    cons = normalise_text(pl.concat_str(pl.col(S.CONSIGNEE_NAME), pl.col(S.CONSIGNEE_ADDRESS), separator=" "))
    commercial = cons.str.contains_any(lex.terms("commercial"), ascii_case_insensitive=True)
    return [
        (~commercial).cast(pl.Int8).alias(CONSIGNEE_RESIDENTIAL),
        pl.col(S.CONSIGNEE_ADDRESS).str.contains(PO_BOX_PATTERN).fill_null(False).cast(pl.Int8).alias(CONSIGNEE_PO_BOX),
        cons.str.contains_any(lex.terms("forwarders"), ascii_case_insensitive=True)
        .cast(pl.Int8)
        .alias(CONSIGNEE_FORWARDER),
        cons.str.contains_any(lex.terms("institutions"), ascii_case_insensitive=True)
        .cast(pl.Int8)
        .alias(CONSIGNEE_INSTITUTION),
        (pl.lit(day) - pl.col(S.ACCOUNT_CREATED_DATE)).dt.total_days().cast(pl.Int32).alias(ACCOUNT_AGE_DAYS),
        pl.col(S.KNOWN_CONSIGNOR).cast(pl.Int8).alias(KNOWN_CONSIGNOR),
        pl.col(S.TRUSTED_TRADER).cast(pl.String).fill_null("none").cast(TrustedKind).alias(TRUSTED_TRADER),
    ]


def day_exprs() -> list[pl.Expr]:
    """The columns that count over the day's rows sharing an address or a contact (windows over
    hashed keys: every row of the day, but only the key columns)."""
    addr_key = pl.col(key_col("cons_addr"))
    shared = pl.max_horizontal(
        _names_sharing("shipper_phone"), _names_sharing("shipper_email"), _names_sharing("account_ip")
    ).cast(pl.Int32)
    return [
        pl.when(addr_key.is_not_null())
        .then(pl.col(key_col("cons_name")).n_unique().over(addr_key))
        .otherwise(1)
        .cast(pl.Int32)
        .alias(NAMES_AT_ADDRESS_DAY),
        shared.alias(SHARED_CONTACT_SHIPPER_NAMES),
        (shared > 1).cast(pl.Int8).alias(SHARED_CONTACT_MULTI_SHIPPER),
    ]


ROW_COLUMNS = [
    CONSIGNEE_RESIDENTIAL,
    CONSIGNEE_PO_BOX,
    CONSIGNEE_FORWARDER,
    CONSIGNEE_INSTITUTION,
    ACCOUNT_AGE_DAYS,
    KNOWN_CONSIGNOR,
    TRUSTED_TRADER,
]
DAY_COLUMNS = [NAMES_AT_ADDRESS_DAY, SHARED_CONTACT_SHIPPER_NAMES, SHARED_CONTACT_MULTI_SHIPPER]


NEEDED_KEYS = ["shipper", "shipper_phone", "shipper_email", "account_ip", "cons_addr", "cons_name"]


def add_parties(frame: pl.LazyFrame, day: date) -> pl.LazyFrame:
    """Add the parties family (adds the hashed party keys it needs if missing)."""
    return ensure_keys(frame, NEEDED_KEYS).with_columns(*row_exprs(day), *day_exprs())


def fires() -> pl.Expr:
    return (
        (pl.col(CONSIGNEE_PO_BOX) == 1)
        | (pl.col(CONSIGNEE_FORWARDER) == 1)
        | (pl.col(NAMES_AT_ADDRESS_DAY) >= 4)
        | (pl.col(SHARED_CONTACT_MULTI_SHIPPER) == 1)
        | (pl.col(ACCOUNT_AGE_DAYS) < NEW_ACCOUNT_DAYS).fill_null(False)
    )


class _Work(NoWork):
    def __init__(self, day: date) -> None:
        self.day = day

    def rows(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        return frame.with_columns(row_exprs(self.day))

    def day_exprs(self) -> list[pl.Expr]:
        return day_exprs()


class PartiesFamily:
    """Row-level party facts plus windows over the day's hashed address and contact keys."""

    name = "parties"
    columns = COLUMNS
    categorical = [TRUSTED_TRADER]
    day_columns = DAY_COLUMNS
    reasons = {
        CONSIGNEE_PO_BOX: "the consignee address is a PO box",
        CONSIGNEE_FORWARDER: "the consignee is a freight forwarder",
        NAMES_AT_ADDRESS_DAY: "four or more consignee names at one address today",
        SHARED_CONTACT_MULTI_SHIPPER: "a shipper phone, e-mail or IP used by several shipper names today",
        ACCOUNT_AGE_DAYS: f"the buyer's account is less than {NEW_ACCOUNT_DAYS} days old",
    }

    def fires(self) -> pl.Expr:
        return fires()

    def open(self, ctx: DayContext) -> FamilyDay:
        return _Work(ctx.day)


FAMILY = PartiesFamily()
