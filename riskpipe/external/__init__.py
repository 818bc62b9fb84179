"""External benchmark: train the shared estimator on a foreign labelled dataset via a mapping.

The rooms: ``mapping`` (the TOML mapping: format and validation), ``readers`` (the mapped columns
of the data files, through the one format registry), ``transform`` (fitted derivations and the
estimator behind a mapping) and ``evaluate`` (train, score, report).
"""

from __future__ import annotations

from riskpipe.external.evaluate import backtest, backtest_periods, contract_json, evaluate, view_report, views_report
from riskpipe.external.mapping import DERIVATIONS, FITTED, ROLES, Derivation, Mapping, load_mapping, parse_mapping
from riskpipe.external.readers import (
    first_rows,
    inverse_group_sizes,
    load_labelled,
    load_labelled_keys,
    novel_rows,
    read_table,
    unseen_rows,
)
from riskpipe.external.transform import GroupMedians, GroupRanks, MappedModel, build_model

__all__ = [
    "DERIVATIONS",
    "FITTED",
    "ROLES",
    "Derivation",
    "GroupMedians",
    "GroupRanks",
    "MappedModel",
    "Mapping",
    "backtest",
    "backtest_periods",
    "build_model",
    "contract_json",
    "evaluate",
    "first_rows",
    "inverse_group_sizes",
    "load_labelled",
    "load_labelled_keys",
    "load_mapping",
    "novel_rows",
    "parse_mapping",
    "read_table",
    "unseen_rows",
    "view_report",
    "views_report",
]
