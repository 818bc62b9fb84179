"""Typed settings: defaults in code, then ``<home>/riskpipe.toml``, then ``RISKPIPE_`` environment
variables (for the CLI only), then explicit overrides.

Library code never reads the environment: :class:`Settings` built in code takes only the values
passed to it, and :func:`load_settings` applies environment variables only when its caller hands
it an ``environ`` (the CLI passes ``os.environ``). Every value is checked when the settings are
loaded, and a bad one is refused in one line naming the file (or variable) and the key.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.sources import PydanticBaseSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

from riskpipe.errors import RiskpipeError


class Where(Protocol):
    """Which file or variable gave a setting (``sub``: one key of a table setting): for error lines."""

    def __call__(self, key: str, sub: str | None = None) -> str: ...


DEFAULT_PORT_CAPACITY: dict[str, int] = {
    # Schedule D port code -> exams per day (defaults; override in riskpipe.toml [port_capacity])
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

CONFIG_FILE = "riskpipe.toml"
ENV_PREFIX = "RISKPIPE_"
#: ``RISKPIPE_`` variables that are not settings: the CLI's data home and Prefect's server wrapper
#: (and the partner key file, read by the `riskpipe partner` commands only)
#: the partner key file: an alias of RISKPIPE_PARTNER_KEY_PATH
PARTNER_KEY_FILE_ENV = "RISKPIPE_PARTNER_KEY_FILE"
ENV_NOT_SETTINGS = frozenset({"RISKPIPE_HOME", "RISKPIPE_PREFECT_PARENT_PID", PARTNER_KEY_FILE_ENV})
#: values never echoed in an error (a database URL or a notification URL can hold a password)
SECRET_SETTINGS = frozenset({"database_url", "notify_url"})
#: paths that a relative value in riskpipe.toml means relative to the home (where the file is)
PATH_SETTINGS = ("registry_dir", "registry_key_path", "rules_path", "fx_rates_path", "partner_key_path")
#: land ports of the Unified Cargo Processing program on the Mexican border (Schedule D codes)
DEFAULT_UCP_PORTS = ["2304", "2506", "2604"]  # Laredo, Otay Mesa, Nogales


class Settings(BaseSettings):
    """Everything a run needs to know, with defaults that work on an empty home.

    Built in code (``Settings(home=...)``) it takes only the values given: no file, no
    environment. :func:`load_settings` is the loader that adds riskpipe.toml and the environment.
    """

    model_config = SettingsConfigDict(
        extra="forbid", env_prefix=ENV_PREFIX, case_sensitive=False, validate_default=True
    )

    home: Path = Path("data")
    registry_dir: Path | None = None  # default: <home>/models
    registry_key_path: Path | None = None  # default: <registry's parent>/.riskpipe/registry.key
    database_url: str | None = None  # default: sqlite:///<home>/riskpipe.db
    rules_path: Path | None = None  # default: the shipped rules file
    fx_rates_path: Path | None = None  # default: the shipped FX table
    port_capacity: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_PORT_CAPACITY))
    other_port_capacity: int = Field(DEFAULT_OTHER_PORT_CAPACITY, ge=0)
    exploration_share: float = Field(0.10, ge=0.0, le=1.0)
    # share of the exploration slots drawn with chances weighted by novelty (riskpipe.model.novelty),
    # each pick's probability recorded; 0 = uniform exploration only. Off by default: in
    # `riskpipe adaptation` it found less than uniform exploration (README, "Adaptation"). Below 1:
    # the uniform part keeps every shipment's chance > 0 (a chance of 0 hides it from the estimates)
    # The nightly computes the novelty column only when this is > 0 (one more model pass over the day).
    exploration_novelty_share: float = Field(0.0, ge=0.0, lt=1.0)
    # train with random exams weighted by 1 / selection probability (riskpipe.training); off by
    # default: with ~1 exploration exam a day the weights reach the hundreds (README, "Adaptation")
    training_selection_weights: bool = False
    # a risk pick needs risk_score > this; slots nothing above it can take become exploration
    min_target_risk: float = Field(0.0, ge=0.0, le=1.0)
    # promotion (riskpipe.promotion): a challenger replaces the champion only with at least this
    # many labelled positives on the evaluation days and a bootstrap interval of the difference
    # in (doubly robust) hits at capacity whose lower bound exceeds the margin (in hits)
    promotion_min_positives: int = Field(10, ge=0)
    promotion_margin: float = Field(0.0, ge=0.0)
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
    # sharing risk with a partner customs service (riskpipe.partner)
    partner_key_path: Path | None = None  # the shared HMAC key, outside the home, mode 0600
    partner_name: str = "the partner customs service"  # who shares the feeds we import (in reasons)
    administration_name: str = "this customs service"  # the issuer written into feeds we export
    ucp_ports: list[str] = Field(default_factory=lambda: list(DEFAULT_UCP_PORTS))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values passed in: library code never reads the environment (see load_settings)."""
        return (init_settings,)

    @field_validator("timezone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        check_time_zone(value)
        return value

    @field_validator("nightly_cron", "retrain_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        check_cron(value)
        return value

    @field_validator("port_capacity")
    @classmethod
    def _capacities(cls, value: dict[str, int]) -> dict[str, int]:
        bad = [port for port, n in value.items() if n < 0]
        if bad:
            raise ValueError(f"exams per day must be >= 0 (port {bad[0]})")
        return value

    @field_validator("ucp_ports")
    @classmethod
    def _port_codes(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if not re.fullmatch(r"\d{4}", str(p))]
        if bad:
            raise ValueError(f"a port is a 4-digit Schedule D code (port {bad[0]!r})")
        return value

    @field_validator("rules_path", "fx_rates_path")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("no such file" if not value.exists() else "not a file")
        return value

    @field_validator("registry_key_path")
    @classmethod
    def _key_file_or_its_folder(cls, value: Path | None) -> Path | None:
        """The key file, or the folder a first save creates it in, must exist: a mistyped path
        would otherwise sign new models with a new key."""
        if value is None:
            return value
        if value.exists() and not value.is_file():
            raise ValueError("not a file")
        if not value.exists() and not value.parent.is_dir():
            raise ValueError(f"no such file, and no folder {value.parent} to create it in")
        return value

    @property
    def models_dir(self) -> Path:
        return self.registry_dir if self.registry_dir is not None else self.home / "models"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'riskpipe.db').resolve()}"


# ---------------------------------------------------------------------------------------------
# checks shared with other readers of time zones and cron strings
# ---------------------------------------------------------------------------------------------
def check_time_zone(name: str) -> None:
    """Refuse a name the time-zone database does not know (``Mars/Base``)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError("not a known time zone (an IANA name such as 'UTC' or 'America/New_York')") from None


_CRON_FIELDS = (  # name, lowest, highest, names allowed
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_CRON_PART = re.compile(r"^(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/([0-9]+))?$")


def check_cron(text: str) -> None:
    """Refuse what is not a standard five-field cron string (``minute hour day month weekday``,
    each ``*``, ``N``, ``N-M`` or a list of them, with an optional ``/step``; month and weekday
    names; ``@daily`` and the other aliases). A subset of what Prefect's cron schedules accept
    (no seconds field, no ``L``/``W``/``#``, no random ``R``/hashed ``H``), checked without
    importing Prefect."""
    if text.strip().lower() in _CRON_ALIASES:
        return
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(
            f"a cron string has 5 fields (minute hour day-of-month month day-of-week), this has {len(parts)}"
        )
    for part, (name, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        for item in part.lower().split(","):
            match = _CRON_PART.match(item)
            if match is None or (match.group(2) is not None and int(match.group(2)) == 0):
                raise ValueError(
                    f"{name} field {part!r} is not '*', 'N', 'N-M' or a list of them, with an optional /step"
                )
            if match.group(1) == "*":
                continue
            found = [_cron_number(v, names) for v in match.group(1).split("-")]
            bounds = [b for b in found if b is not None]
            if len(bounds) < len(found):
                raise ValueError(f"{name} field {part!r} is not a number{' or a name' if names else ''}")
            if not all(low <= b <= high for b in bounds):
                raise ValueError(f"{name} field {part!r} is outside {low}-{high}")
            if bounds[0] > bounds[-1]:
                raise ValueError(f"{name} field {part!r} is a range that runs backwards")


def _cron_number(value: str, names: tuple[str, ...]) -> int | None:
    if value.isdigit():
        return int(value)
    if value in names:
        return names.index(value) + (1 if len(names) == 12 else 0)
    return None


# ---------------------------------------------------------------------------------------------
# the loader
# ---------------------------------------------------------------------------------------------
class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source over a mapping given by the caller, never
    ``os.environ`` read behind the caller's back."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = dict(environ)
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


def load_settings(
    home: Path, overrides: Mapping[str, object] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings for ``home``: code defaults, then ``<home>/riskpipe.toml``, then the ``RISKPIPE_``
    variables of ``environ`` (only when given: the CLI passes ``os.environ``; library callers
    pass nothing and get no environment), then ``overrides``.

    A partial ``port_capacity`` table changes those ports and keeps the others. A relative path
    in riskpipe.toml is relative to the home. Unknown keys and bad values are refused with a
    one-line :class:`RiskpipeError` naming the file or variable and the key.
    """
    home = Path(home)
    toml_path = home / CONFIG_FILE
    file_values = _read_file(toml_path)
    env_values, env_names = _read_environ(environ) if environ is not None else ({}, {})
    given = {str(k): v for k, v in (overrides or {}).items()}
    sources: list[tuple[str, dict[str, Any]]] = [("override", given), ("env", env_values), ("file", file_values)]

    values: dict[str, Any] = {}
    for _, layer in reversed(sources):  # lowest priority first
        values.update({k: v for k, v in layer.items() if k != "port_capacity"})

    def label(kind: str, key: str) -> str:
        return {
            "override": "settings override",
            "env": f"environment variable {env_names.get(key)}",
            "file": str(toml_path),
        }[kind]

    def where(key: str, sub: str | None = None) -> str:
        """The file or variable that gave ``key`` (``sub``: the port of a capacity table)."""
        for kind, layer in sources:
            if key in layer and (sub is None or not isinstance(layer[key], Mapping) or sub in layer[key]):
                return label(kind, key)
        return "default settings"

    tables = [(kind, layer["port_capacity"]) for kind, layer in reversed(sources) if "port_capacity" in layer]
    if tables:  # a partial table overrides those ports, keeps the others
        merged: dict[str, Any] = dict(DEFAULT_PORT_CAPACITY)
        for kind, table in tables:
            if not isinstance(table, Mapping):
                raise RiskpipeError(
                    f"{label(kind, 'port_capacity')}: port_capacity: must be a table of port code = "
                    f"exams per day (got {_shown(table)})"
                )
            merged.update({str(k): v for k, v in table.items()})
        values["port_capacity"] = merged
    values["home"] = home

    try:
        settings = Settings(**values)
    except ValidationError as exc:
        raise RiskpipeError(_one_error(exc, where)) from None
    _check_key_outside_registry(settings, where)
    return settings


def _read_file(path: Path) -> dict[str, Any]:
    """``riskpipe.toml``'s values; unknown keys refused (with the closest known key); relative
    paths made relative to the home the file is in."""
    if not path.exists():
        return {}
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RiskpipeError(f"{path}: not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RiskpipeError(f"{path}: cannot read it ({type(exc).__name__}: {exc})") from None
    for key in values:
        if key == "home":
            raise RiskpipeError(f"{path}: 'home' cannot be set in the home's own file (use --home or RISKPIPE_HOME)")
        if key not in Settings.model_fields:
            raise RiskpipeError(f"{path}: unknown setting {key!r}{_did_you_mean(key)}")
    for key in PATH_SETTINGS:
        if isinstance(values.get(key), str) and values[key] and not Path(values[key]).expanduser().is_absolute():
            values[key] = str(path.parent / values[key])
    return values


def _read_environ(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Settings from ``RISKPIPE_<SETTING>`` variables (``port_capacity`` as JSON) and the
    variable each came from. A variable that looks like a misspelt setting is refused; other
    ``RISKPIPE_`` variables that name no setting are left alone (they may be another tool's)."""
    fields = [f for f in Settings.model_fields if f != "home"]
    names: dict[str, str] = {}
    for var in environ:
        upper = var.upper()
        if not upper.startswith(ENV_PREFIX) or upper in ENV_NOT_SETTINGS:
            continue
        key = upper[len(ENV_PREFIX) :].lower()
        if key in fields:
            names[key] = var
        elif difflib.get_close_matches(key, fields, n=1, cutoff=0.8):
            raise RiskpipeError(f"environment variable {var}: unknown setting {key!r}{_did_you_mean(key)}")
    try:
        values = _EnvironSource(Settings, environ)()
    except ValueError as exc:  # pydantic-settings' SettingsError: a table that is not JSON
        field = next((f for f in ("port_capacity",) if f in names), None)
        if field is None:
            raise RiskpipeError(f"environment: {exc}") from None
        raise RiskpipeError(
            f"environment variable {names[field]}: {field}: not a JSON table such as '{{\"4701\": 80}}'"
        ) from None
    values.pop("home", None)  # the data home is the CLI's --home / RISKPIPE_HOME, not a setting
    values = {k: v for k, v in values.items() if k in names}
    # RISKPIPE_PARTNER_KEY_FILE (the name issue 19 gives) is another spelling of partner_key_path
    alias = next((v for v in environ if v.upper() == PARTNER_KEY_FILE_ENV), None)
    if alias and "partner_key_path" not in values and environ[alias]:
        values["partner_key_path"] = environ[alias]
        names["partner_key_path"] = alias
    return values, names


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, [f for f in Settings.model_fields if f != "home"], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _one_error(exc: ValidationError, where: Where) -> str:
    """The first validation error as ``<file or variable>: <key>: <what is wrong> (got <value>)``."""
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err.get("loc", ())]
    key = ".".join(loc) or "settings"
    source = where(loc[0], loc[1] if len(loc) > 1 else None) if loc else "settings"
    shown = "<hidden>" if loc and loc[0] in SECRET_SETTINGS else _shown(err.get("input"))
    return f"{source}: {key}: {_what(err)} (got {shown})"


def _what(err: ErrorDetails) -> str:
    kind, ctx = err.get("type", ""), err.get("ctx") or {}
    says = {
        "less_than_equal": lambda: f"must be <= {_number(ctx.get('le'))}",
        "less_than": lambda: f"must be < {_number(ctx.get('lt'))}",
        "greater_than_equal": lambda: f"must be >= {_number(ctx.get('ge'))}",
        "greater_than": lambda: f"must be > {_number(ctx.get('gt'))}",
        "float_parsing": lambda: "must be a number",
        "float_type": lambda: "must be a number",
        "int_parsing": lambda: "must be a whole number",
        "int_type": lambda: "must be a whole number",
        "int_from_float": lambda: "must be a whole number",
        "string_type": lambda: "must be text",
        "dict_type": lambda: "must be a table of port code = exams per day",
        "path_type": lambda: "must be a path",
        "value_error": lambda: str(ctx.get("error", err.get("msg", ""))),
    }
    return says[kind]() if kind in says else str(err.get("msg", "invalid value")).rstrip(".").lower()


def _number(value: object) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _shown(value: object) -> str:
    text = repr(str(value) if isinstance(value, Path) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_key_outside_registry(settings: Settings, where: Where) -> None:
    """The registry refuses a key inside the registry when it signs or loads; say so at load."""
    key = settings.registry_key_path
    if key is None:
        return
    inside, registry = key.resolve(), settings.models_dir.resolve()
    if inside == registry or registry in inside.parents:
        raise RiskpipeError(
            f"{where('registry_key_path')}: registry_key_path: {key} is inside the model registry "
            f"{settings.models_dir}: whoever can write models could sign them; keep the key outside it"
        )
