"""Risk indicators: one point-in-time feature path for nightly scoring and training.

Families (one module each, listed once in ``families.FAMILIES``; protocol in ``family``): commodity,
value, parties, history, network, crossborder, partner.
"""

from __future__ import annotations

from riskpipe.features.build import (
    CATEGORICAL_FEATURES,
    FEATURE_COLUMNS,
    FEATURE_FAMILIES,
    build_features,
    family_fires,
)
from riskpipe.features.history import update_history

__all__ = [
    "CATEGORICAL_FEATURES",
    "FEATURE_COLUMNS",
    "FEATURE_FAMILIES",
    "build_features",
    "family_fires",
    "update_history",
]
