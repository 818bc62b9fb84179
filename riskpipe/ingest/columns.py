"""Internal helper columns of an ingest (never written to the raw store) and the columns of a
quarantined-rows file besides the original values.
"""

from __future__ import annotations

from riskpipe import schema as S

# internal helper columns (never written to the raw store)
_ROW = "_row_number"
_REASONS = "_reasons"
_BAD = "_bad"
_HIT = "_contested"
_SEQ = "_seq"  # 0 = already in the store, 1 = this run
_ORD = "_ord"  # file order
_WIN = "_win"
_TOUCHED = "_touched"

# columns of a quarantined-rows file besides the original values
Q_SOURCE_FILE = S.SOURCE_FILE
Q_ROW_NUMBER = "row_number"
Q_REASONS = "reasons"
Q_KIND = "kind"
Q_RUN_ID = "run_id"
