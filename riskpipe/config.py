"""Typed settings: defaults in code, overridable by ``<home>/riskpipe.toml`` and by the CLI.

Library code never reads the environment: the CLI builds a :class:`Settings` once and passes it
(or the paths it holds) down.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_PORT_CAPACITY: dict[str, int] = {
    # Schedule D port code -> exams per day (defaults; override in riskpipe.toml [capacity])
    "4701": 60,  # JFK express/air hub
    "2720": 50,  # Los Angeles
    "4196": 40,  # Louisville (UPS hub)
    "2095": 40,  # Memphis (FedEx hub)
    "1704": 30,  # Atlanta
    "3901": 30,  # Chicago
    "4771": 25,  # JFK international mail facility
    "2704": 25,  # LA international mail facility
    "2304": 30,  # Laredo (truck)
    "2506": 25,  # Otay Mesa (truck)
    "2604": 20,  # Nogales (truck)
    "5206": 25,  # Miami
}
DEFAULT_OTHER_PORT_CAPACITY = 10


class Settings(BaseModel):
    """Everything a run needs to know, with defaults that work on an empty home."""

    model_config = ConfigDict(extra="forbid")

    home: Path = Path("data")
    registry_dir: Path | None = None  # default: <home>/models
    registry_key_path: Path | None = None  # default: <registry's parent>/.riskpipe/registry.key
    database_url: str | None = None  # default: sqlite:///<home>/riskpipe.db
    rules_path: Path | None = None  # default: the shipped rules file
    fx_rates_path: Path | None = None  # default: the shipped FX table
    port_capacity: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_PORT_CAPACITY))
    other_port_capacity: int = DEFAULT_OTHER_PORT_CAPACITY
    exploration_share: float = Field(0.10, ge=0.0, le=1.0)
    timezone: str = "UTC"
    nightly_cron: str = "0 2 * * *"
    retrain_cron: str = "0 4 * * 0"
    seed: int = 7
    # operations (Prefect): where failed or crashed nightly/retrain runs are announced (an apprise
    # URL such as json://host:port/path, or an http(s) webhook that receives JSON), and how long
    # a run or one of its I/O steps may take before Prefect fails it
    notify_url: str | None = None
    nightly_timeout_seconds: int = Field(7200, gt=0)
    retrain_timeout_seconds: int = Field(14400, gt=0)
    io_timeout_seconds: int = Field(3600, gt=0)

    @property
    def models_dir(self) -> Path:
        return self.registry_dir if self.registry_dir is not None else self.home / "models"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'riskpipe.db').resolve()}"


def load_settings(home: Path, overrides: dict | None = None) -> Settings:
    """Settings for ``home``: code defaults, then ``<home>/riskpipe.toml``, then ``overrides``."""
    values: dict = {}
    toml_path = home / "riskpipe.toml"
    if toml_path.exists():
        try:
            values.update(tomllib.loads(toml_path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{toml_path}: not valid TOML ({exc})") from exc
    values.update(overrides or {})
    if "port_capacity" in values:  # a partial table overrides those ports, keeps the others
        values["port_capacity"] = {**DEFAULT_PORT_CAPACITY, **{str(k): v for k, v in values["port_capacity"].items()}}
    values["home"] = home
    return Settings(**values)
