"""Ingest: read landing files, validate each row against the contract, normalise, apply
amendments and write the raw store; quarantine what is broken, account for every row.

Why the shape:
- Files are scanned lazily and written with streaming sinks, so a 4-million-row day never sits in
  memory whole. CSV is read as text (codes keep leading zeros, a bad value is a row error, not a
  file error); every rule is a Polars expression yielding a reason code or null, gathered into a
  list column per row (no Python loop per row).
- Amendments: for a ``shipment_id`` the row with the latest ``filed_at`` wins, also across files
  and across runs; ties go to the later ingest run, then the later file of the run (in the order
  given), then the later row. Only the partitions touched are rewritten, each atomically.
- Accounting: ``rows_in == rows_ingested + rows_amended + rows_quarantined`` for every run, where
  ``rows_amended`` counts the valid input rows superseded by a later version (or duplicates).
- Idempotency: a ledger of sha256 content hashes; a file already seen is skipped.
- Hostile input: plausible ranges and finite derived values are rules like the others (limits in
  ``validation``); only regular files are read (links and special files are refused, never followed).

The shipped FX table (``reference/fx_rates.csv``, ``currency,usd_per_unit``) holds indicative
rates; a user replaces it with ``fx_rates_path`` (``Settings.fx_rates_path``).

The rooms: ``readers`` (the one format registry), ``landing`` (which files are read),
``validation`` (rules as expressions), ``normalise`` (valid rows in raw-store form), ``merge``
(amendments), ``quarantine``, ``ledger`` (hashes and run log), ``labels_import`` and ``run`` (one
ingest, committed through one journal).
"""

from __future__ import annotations

from riskpipe.ingest.labels_import import import_labels
from riskpipe.ingest.ledger import ledger_path, read_runs, runs_path
from riskpipe.ingest.normalise import ADDRESS_ABBREVIATIONS, address_key
from riskpipe.ingest.quarantine import quarantine_reason_counts
from riskpipe.ingest.readers import Format, file_format, format_of, get_format, register_format
from riskpipe.ingest.run import ingest_paths
from riskpipe.ingest.summary import FileResult, IngestSummary, LabelImportSummary
from riskpipe.ingest.validation import (
    MAX_VALUE_USD,
    MAX_WEIGHT_KG,
    MIN_WEIGHT_KG,
    load_countries,
    load_fx_rates,
    parse_date,
    parse_timestamp,
)

__all__ = [
    "ADDRESS_ABBREVIATIONS",
    "MAX_VALUE_USD",
    "MAX_WEIGHT_KG",
    "MIN_WEIGHT_KG",
    "FileResult",
    "Format",
    "IngestSummary",
    "LabelImportSummary",
    "address_key",
    "file_format",
    "format_of",
    "get_format",
    "import_labels",
    "ingest_paths",
    "ledger_path",
    "load_countries",
    "load_fx_rates",
    "parse_date",
    "parse_timestamp",
    "quarantine_reason_counts",
    "read_runs",
    "register_format",
    "runs_path",
]
