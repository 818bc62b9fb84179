"""Prefect settings for local, self-contained runs (set before ``import prefect``).

Local ephemeral mode keeps its SQLite database under the data home; analytics are off because
the machines have no internet (otherwise every start logs a telemetry error); the ephemeral
server gets 60 s to start because a busy 2-core machine can need more than the default 20 s.
"""

from __future__ import annotations

import os
from pathlib import Path


def configure_prefect(home: Path, environ: dict[str, str] | None = None) -> None:
    env = os.environ if environ is None else environ
    from riskpipe.store import private_dir

    prefect_home = private_dir((home / ".prefect").resolve())  # flow parameters, logs: owner only
    env.setdefault("PREFECT_HOME", str(prefect_home))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
    env.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(prefect_home / "results"))
    env.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    env.setdefault("PREFECT_UI_ENABLED", "false")
