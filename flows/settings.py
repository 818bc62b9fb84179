"""The settings a flow run uses: the home's riskpipe.toml under ``RISKPIPE_`` environment
overrides, as the CLI reads them. Flows are an edge of the system (a served deployment runs them
without the CLI), so this is where the environment is read; the library never reads it."""

from __future__ import annotations

import os
from pathlib import Path

from riskpipe.config import Settings, load_settings


def home_settings(home: str | Path) -> Settings:
    """Settings of ``home``: defaults, then ``<home>/riskpipe.toml``, then ``RISKPIPE_`` variables."""
    return load_settings(Path(home), environ=os.environ)
