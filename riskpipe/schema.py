"""The data contract as code: column names, enums and Polars schemas.

This is the one place a column name is spelled. Everything else imports the constants
(``from riskpipe import schema as S`` then ``S.SHIPMENT_ID``) so a rename is one edit here.
Sections refer to the contract in ``riskpipe/docs/contract.md``.
"""

from __future__ import annotations

import polars as pl

# ---------------------------------------------------------------------------------------------
# Section 1: shipment manifests (input)
# ---------------------------------------------------------------------------------------------
SHIPMENT_ID = "shipment_id"
FILED_AT = "filed_at"
ARRIVAL_DATE = "arrival_date"
ENTRY_TYPE = "entry_type"
MODE = "mode"
CARRIER_CODE = "carrier_code"
PORT_OF_ENTRY = "port_of_entry"
SHIPPER_NAME = "shipper_name"
SHIPPER_ADDRESS = "shipper_address"
SHIPPER_COUNTRY = "shipper_country"
CONSIGNEE_NAME = "consignee_name"
CONSIGNEE_ADDRESS = "consignee_address"
CONSIGNEE_CITY = "consignee_city"
CONSIGNEE_STATE = "consignee_state"
CONSIGNEE_POSTAL_CODE = "consignee_postal_code"
DESCRIPTION = "description"
COUNTRY_OF_ORIGIN = "country_of_origin"
DECLARED_VALUE = "declared_value"
CURRENCY = "currency"
GROSS_WEIGHT_KG = "gross_weight_kg"
PIECE_COUNT = "piece_count"

# optional
MASTER_BILL = "master_bill"
HTS_CODE = "hts_code"
SELLER_NAME = "seller_name"
SELLER_ID = "seller_id"
MARKETPLACE = "marketplace"
LISTED_PRICE = "listed_price"
SHIPPER_PHONE = "shipper_phone"
SHIPPER_EMAIL = "shipper_email"
CONSIGNEE_PHONE = "consignee_phone"
CONSIGNEE_EMAIL = "consignee_email"
ACCOUNT_CREATED_DATE = "account_created_date"
ACCOUNT_IP = "account_ip"
KNOWN_CONSIGNOR = "known_consignor"
TRUSTED_TRADER = "trusted_trader"
EXPORT_COUNTRY = "export_country"

# derived at ingest (normalised raw store)
DECLARED_VALUE_USD = "declared_value_usd"
LISTED_PRICE_USD = "listed_price_usd"
CONSIGNEE_ADDRESS_KEY = "consignee_address_key"
SOURCE_FILE = "source_file"
INGESTED_AT = "ingested_at"

ENTRY_TYPES = ["321", "86", "11", "01", "postal"]
MODES = ["express", "postal", "air_cargo", "truck", "rail", "vessel"]
TRUSTED_TRADER_KINDS = ["ctpat", "mx_oea", "other_mra"]

EntryType = pl.Enum(ENTRY_TYPES)
Mode = pl.Enum(MODES)
TrustedTrader = pl.Enum(TRUSTED_TRADER_KINDS)

#: required manifest columns and their type once parsed (before normalisation).
MANIFEST_REQUIRED: dict[str, pl.DataType] = {
    SHIPMENT_ID: pl.String(),
    FILED_AT: pl.Datetime("us", "UTC"),
    ARRIVAL_DATE: pl.Date(),
    ENTRY_TYPE: EntryType,
    MODE: Mode,
    CARRIER_CODE: pl.String(),
    PORT_OF_ENTRY: pl.String(),
    SHIPPER_NAME: pl.String(),
    SHIPPER_ADDRESS: pl.String(),
    SHIPPER_COUNTRY: pl.String(),
    CONSIGNEE_NAME: pl.String(),
    CONSIGNEE_ADDRESS: pl.String(),
    CONSIGNEE_CITY: pl.String(),
    CONSIGNEE_STATE: pl.String(),
    CONSIGNEE_POSTAL_CODE: pl.String(),
    DESCRIPTION: pl.String(),
    COUNTRY_OF_ORIGIN: pl.String(),
    DECLARED_VALUE: pl.Float64(),
    CURRENCY: pl.String(),
    GROSS_WEIGHT_KG: pl.Float64(),
    PIECE_COUNT: pl.Int64(),
}

#: optional manifest columns (absent or null when not filed).
MANIFEST_OPTIONAL: dict[str, pl.DataType] = {
    MASTER_BILL: pl.String(),
    HTS_CODE: pl.String(),
    SELLER_NAME: pl.String(),
    SELLER_ID: pl.String(),
    MARKETPLACE: pl.String(),
    LISTED_PRICE: pl.Float64(),
    SHIPPER_PHONE: pl.String(),
    SHIPPER_EMAIL: pl.String(),
    CONSIGNEE_PHONE: pl.String(),
    CONSIGNEE_EMAIL: pl.String(),
    ACCOUNT_CREATED_DATE: pl.Date(),
    ACCOUNT_IP: pl.String(),
    KNOWN_CONSIGNOR: pl.Boolean(),
    TRUSTED_TRADER: TrustedTrader,
    EXPORT_COUNTRY: pl.String(),
}

MANIFEST_SCHEMA: dict[str, pl.DataType] = {**MANIFEST_REQUIRED, **MANIFEST_OPTIONAL}

#: columns added by ingest to every row of the raw store.
RAW_DERIVED: dict[str, pl.DataType] = {
    DECLARED_VALUE_USD: pl.Float64(),
    LISTED_PRICE_USD: pl.Float64(),
    CONSIGNEE_ADDRESS_KEY: pl.String(),
    SOURCE_FILE: pl.String(),
    INGESTED_AT: pl.Datetime("us", "UTC"),
}

#: the normalised raw store of manifests (``raw/shipments``), in this column order.
RAW_SHIPMENT_SCHEMA: dict[str, pl.DataType] = {**MANIFEST_SCHEMA, **RAW_DERIVED}

#: filings replaced by a later one (``raw/shipments_superseded``): the raw columns plus when the
#: filing that replaced it was filed and ingested (its validity ends there: point in time)
SUPERSEDED_BY_FILED_AT = "superseded_by_filed_at"
SUPERSEDED_BY_INGESTED_AT = "superseded_by_ingested_at"
SUPERSEDED_DERIVED: dict[str, pl.DataType] = {
    SUPERSEDED_BY_FILED_AT: pl.Datetime("us", "UTC"),
    SUPERSEDED_BY_INGESTED_AT: pl.Datetime("us", "UTC"),
}

# ---------------------------------------------------------------------------------------------
# Section 2: partner export declarations (optional input)
# ---------------------------------------------------------------------------------------------
EXPORTER_NAME = "exporter_name"
EXPORTER_AEO = "exporter_aeo"
PARTNER_DECLARED_VALUE_USD = "declared_value_usd"  # same spelling as the contract's partner column
DECLARED_AT = "declared_at"
PARTNER_FILE_PREFIX = "partner-exports"

PARTNER_SCHEMA: dict[str, pl.DataType] = {
    SHIPMENT_ID: pl.String(),
    EXPORT_COUNTRY: pl.String(),
    EXPORTER_NAME: pl.String(),
    EXPORTER_AEO: pl.Boolean(),
    PARTNER_DECLARED_VALUE_USD: pl.Float64(),
    GROSS_WEIGHT_KG: pl.Float64(),
    DESCRIPTION: pl.String(),
    DECLARED_AT: pl.Datetime("us", "UTC"),
}
PARTNER_REQUIRED = list(PARTNER_SCHEMA)

# ---------------------------------------------------------------------------------------------
# Section 3: exam outcomes (labels)
# ---------------------------------------------------------------------------------------------
EXAM_DATE = "exam_date"
OUTCOME = "outcome"
EXAM_REASON = "exam_reason"
EXAMINER = "examiner"
NOTES = "notes"

OUTCOMES = ["fentanyl", "precursor", "pill_press", "other_narcotic", "other_violation", "no_finding"]
POSITIVE_OUTCOMES = ["fentanyl", "precursor", "pill_press"]
EXAM_REASONS = ["targeted", "random", "other"]

Outcome = pl.Enum(OUTCOMES)
ExamReason = pl.Enum(EXAM_REASONS)

LABEL_SCHEMA: dict[str, pl.DataType] = {
    SHIPMENT_ID: pl.String(),
    EXAM_DATE: pl.Date(),
    OUTCOME: Outcome,
    EXAM_REASON: ExamReason,
    EXAMINER: pl.String(),
    NOTES: pl.String(),
}
LABEL_REQUIRED = [SHIPMENT_ID, EXAM_DATE, OUTCOME, EXAM_REASON]

#: derived label column: 1 when the outcome is fentanyl-related.
IS_POSITIVE = "is_positive"

# ---------------------------------------------------------------------------------------------
# Synthetic ground truth (evaluation only; never read by features, training or scoring)
# ---------------------------------------------------------------------------------------------
TRUE_CLASS = "true_class"  # one of OUTCOMES: what an exam would find
SCHEME = "scheme"  # illicit scheme kind, null for legitimate trade
CELL_ID = "cell_id"  # the illicit organisation, null for legitimate trade

TRUTH_SCHEMA: dict[str, pl.DataType] = {
    SHIPMENT_ID: pl.String(),
    ARRIVAL_DATE: pl.Date(),
    TRUE_CLASS: Outcome,
    SCHEME: pl.String(),
    CELL_ID: pl.String(),
}

# ---------------------------------------------------------------------------------------------
# Section 4: nightly outputs
# ---------------------------------------------------------------------------------------------
RISK_SCORE = "risk_score"
RULE_SCORE = "rule_score"
MODEL_SCORE = "model_score"
REASONS = "reasons"
REASON_TEXT = "reason_text"
MODEL_VERSION = "model_version"
RANK = "rank"
SELECTION = "selection"
#: chance the list picked the row given the scores: 1.0 for a risk pick, exploration slots at the
#: port / the port's shipments not picked by risk for an exploration pick (inverse-propensity weights)
SELECTION_PROBABILITY = "selection_probability"
NETWORK_ID = "network_id"

SELECTIONS = ["risk", "exploration"]
Selection = pl.Enum(SELECTIONS)

#: reason codes in one text cell (targets.csv, the workbench's CSV export): joined with this
REASONS_SEPARATOR = "|"

#: the scoring frame's leading columns (riskpipe.score)
SCORES_SCHEMA: dict[str, pl.DataType] = {
    SHIPMENT_ID: pl.String(),
    RISK_SCORE: pl.Float64(),
    RULE_SCORE: pl.Float64(),
    REASONS: pl.List(pl.String()),
    MODEL_VERSION: pl.String(),
}

#: the published ``scores/D/scores.parquet`` (contract section 4): the scores and the arrival
#: date, so that files of several days read together still tell the days apart
SCORES_FILE_SCHEMA: dict[str, pl.DataType] = {
    SHIPMENT_ID: pl.String(),
    ARRIVAL_DATE: pl.Date(),
    RISK_SCORE: pl.Float64(),
    RULE_SCORE: pl.Float64(),
    REASONS: pl.List(pl.String()),
    MODEL_VERSION: pl.String(),
}

TARGETS_SCHEMA: dict[str, pl.DataType] = {
    RANK: pl.Int64(),
    SHIPMENT_ID: pl.String(),
    PORT_OF_ENTRY: pl.String(),
    ARRIVAL_DATE: pl.Date(),
    RISK_SCORE: pl.Float64(),
    SELECTION: pl.String(),
    REASONS: pl.List(pl.String()),
    REASON_TEXT: pl.String(),
    NETWORK_ID: pl.String(),
    MODEL_VERSION: pl.String(),
    SHIPPER_NAME: pl.String(),
    SHIPPER_COUNTRY: pl.String(),
    CONSIGNEE_NAME: pl.String(),
    CONSIGNEE_ADDRESS: pl.String(),
    DESCRIPTION: pl.String(),
    HTS_CODE: pl.String(),
    DECLARED_VALUE_USD: pl.Float64(),
    GROSS_WEIGHT_KG: pl.Float64(),
    COUNTRY_OF_ORIGIN: pl.String(),
    MODE: pl.String(),
    CARRIER_CODE: pl.String(),
    SELECTION_PROBABILITY: pl.Float64(),  # appended (a widening): older lists lack it
}

# ---------------------------------------------------------------------------------------------
# Personal data: never logged (names, addresses, phones, emails, IPs)
# ---------------------------------------------------------------------------------------------
PERSONAL_COLUMNS = frozenset(
    {
        SHIPPER_NAME,
        SHIPPER_ADDRESS,
        CONSIGNEE_NAME,
        CONSIGNEE_ADDRESS,
        CONSIGNEE_CITY,
        CONSIGNEE_POSTAL_CODE,
        SHIPPER_PHONE,
        SHIPPER_EMAIL,
        CONSIGNEE_PHONE,
        CONSIGNEE_EMAIL,
        ACCOUNT_IP,
        CONSIGNEE_ADDRESS_KEY,
        EXPORTER_NAME,
        SELLER_NAME,
    }
)


def is_positive_expr(outcome_col: str = OUTCOME) -> pl.Expr:
    """1 when an exam outcome is fentanyl-related (contract section 3), else 0."""
    return pl.col(outcome_col).cast(pl.String).is_in(POSITIVE_OUTCOMES).cast(pl.Int8).alias(IS_POSITIVE)


# ---------------------------------------------------------------------------------------------
# Analyst rules (riskpipe/rules.py)
# ---------------------------------------------------------------------------------------------
RULE_REASONS = "rule_reasons"  # List[String]: codes of the rules that hit, strongest weight first
RULE_FLOOR_SCORE = "rule_floor_score"  # 1 - prod(1 - weight) over hits of `floor = true` rules
