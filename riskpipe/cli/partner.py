"""``riskpipe partner``: sharing risk with a partner customs service (riskpipe.partner)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from riskpipe.cli.base import _one_line, console, parse_day, settings, state
from riskpipe.errors import RiskpipeError

if TYPE_CHECKING:
    from riskpipe.config import Settings

partner_app = typer.Typer(
    help="Share risk with a partner customs service: keyed-hash findings feeds, the "
    "partner's OEA list, joint lists for Unified Cargo Processing ports.",
    no_args_is_help=True,
)


def _partner_key(cfg: Settings) -> bytes:
    """The shared key: the partner_key_path setting (riskpipe.toml, RISKPIPE_PARTNER_KEY_PATH or
    its alias RISKPIPE_PARTNER_KEY_FILE), the same the nightly's feature step is given."""
    from riskpipe.partner import read_key

    if not cfg.partner_key_path:
        raise RiskpipeError("no partner key: set partner_key_path in riskpipe.toml or RISKPIPE_PARTNER_KEY_FILE")
    return read_key(Path(cfg.partner_key_path), cfg.home)


def _as_of(value: str | None) -> datetime:
    """``--as-of``: a replay's clock (ISO timestamp, UTC if no offset), else now."""
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RiskpipeError(f"--as-of: {value!r} is not a timestamp YYYY-MM-DDTHH:MM[:SS][Z]") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_AS_OF_HELP = (
    "Replay only: the time to record instead of now (ISO timestamp, UTC), for rebuilding a "
    "past exchange on a synthetic world; imports refuse it on a home without truth/."
)


@partner_app.command("keygen")
def partner_keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the new key (outside the home).")],
) -> None:
    """Write a new random shared key (0600). Hand it to the partner over a secure channel."""
    from riskpipe.partner import generate_key

    kid = generate_key(path, state.home)
    console.print(f"key written to {path} (key id {kid}); both administrations need the same file", highlight=False)


@partner_app.command("export")
def partner_export(
    out: Annotated[Path, typer.Argument(help="The feed file to write (JSON).")],
    since: Annotated[str, typer.Option(help="First exam date of the findings, YYYY-MM-DD.")],
    until: Annotated[str | None, typer.Option(help="Last exam date (default: today, UTC).")] = None,
    valid_days: Annotated[int, typer.Option("--valid-days", help="Days until the feed expires.", min=1)] = 30,
    as_of: Annotated[str | None, typer.Option("--as-of", help=_AS_OF_HELP)] = None,
) -> None:
    """Write the identifiers of confirmed findings as keyed hashes (no identifier in clear), signed."""
    from riskpipe import partner as P
    from riskpipe.labels import LabelStore
    from riskpipe.store import Layout

    cfg = settings()
    key = _partner_key(cfg)
    now = _as_of(as_of)
    first = parse_day(since, "--since")
    last = parse_day(until, "--until") or now.date()
    if last < first:
        raise RiskpipeError(f"--until {last} is before --since {first}")
    labels = LabelStore(cfg.db_url, timezone=cfg.timezone).current()
    entries = P.finding_entries(Layout(cfg.home), labels, key, first, last)
    env = P.make_envelope(P.FINDINGS, entries, key, cfg.administration_name, first, last, now, valid_days)
    P.write_feed(env, out)
    console.print(
        f"{out}: {len(entries):,} keyed identifiers of findings {first}..{last}, key id {env['key_id']}, "
        f"expires {env['expires_at']}",
        highlight=False,
    )


def _import(path: Path, content: str, as_of: str | None) -> None:
    from riskpipe import partner as P
    from riskpipe.store import Layout

    if not path.is_file():
        raise RiskpipeError(f"{path}: no such file")
    cfg = settings()
    if as_of is not None and not Layout(cfg.home).truth.is_dir():
        # a backdated import would put the feed into days already published, and its expiry would
        # be judged by the backdated clock: only a synthetic world (it has truth/) is replayed
        raise RiskpipeError(
            "--as-of is for replaying a synthetic world (a home with truth/): on this home an "
            "import is recorded at the real time"
        )
    rec = P.import_feed(Layout(cfg.home), path, _partner_key(cfg), content, cfg.partner_name, _as_of(as_of))
    what = "imported" if rec.new else "already imported"
    console.print(
        f"{path}: {what} ({rec.entries:,} entries, id {rec.feed_id}, at {rec.imported_at:%Y-%m-%d %H:%M} "
        f"UTC); used from the next arrival day's run",
        highlight=False,
    )


@partner_app.command("import")
def partner_import(
    path: Annotated[Path, typer.Argument(help="A partner's findings feed (JSON).")],
    as_of: Annotated[str | None, typer.Option("--as-of", help=_AS_OF_HELP)] = None,
) -> None:
    """Verify (signature, key id, expiry) and store a partner's findings feed; refused: nothing stored."""
    from riskpipe.partner import FINDINGS

    _import(path, FINDINGS, as_of)


@partner_app.command("oea-export")
def partner_oea_export(
    out: Annotated[Path, typer.Argument(help="The OEA list file to write (JSON).")],
    operators: Annotated[Path, typer.Option("--list", help="CSV of certified operators: name, country.")],
    valid_days: Annotated[int, typer.Option("--valid-days", help="Days until the list expires.", min=1)] = 30,
    as_of: Annotated[str | None, typer.Option("--as-of", help=_AS_OF_HELP)] = None,
) -> None:
    """Write this administration's certified operators (e.g. Mexico's OEA) as keyed hashes, signed."""
    import polars as pl

    from riskpipe import partner as P

    cfg = settings()
    key = _partner_key(cfg)
    if not operators.is_file():
        raise RiskpipeError(f"{operators}: no such file")
    try:
        table = pl.read_csv(operators, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise RiskpipeError(f"{operators}: not a CSV file ({_one_line(exc)[:120]})") from None
    entries = P.operator_entries(table, key, str(operators))
    env = P.make_envelope(P.OEA, entries, key, cfg.administration_name, None, None, _as_of(as_of), valid_days)
    P.write_feed(env, out)
    console.print(f"{out}: {len(entries):,} certified operators keyed, expires {env['expires_at']}", highlight=False)


@partner_app.command("oea-import")
def partner_oea_import(
    path: Annotated[Path, typer.Argument(help="A partner's OEA list (JSON).")],
    as_of: Annotated[str | None, typer.Option("--as-of", help=_AS_OF_HELP)] = None,
) -> None:
    """Verify and store a partner's list of certified operators: mx_oea claims are checked against
    the latest list from the next arrival day's run."""
    from riskpipe.partner import OEA

    _import(path, OEA, as_of)


@partner_app.command("joint-list")
def partner_joint_list(
    date_: Annotated[str, typer.Option("--date", help="Arrival date of a published night, YYYY-MM-DD.")],
    port: Annotated[str, typer.Option(help="A Unified Cargo Processing port (ucp_ports setting).")],
    out: Annotated[Path | None, typer.Option(help="Folder for the files (default <home>/partner/joint).")] = None,
) -> None:
    """Write the shipments both services inspect together at a UCP port (CSV and Parquet), with
    only the fields both may see."""
    from riskpipe import partner as P
    from riskpipe import partner_joint as J
    from riskpipe.store import Layout

    cfg = settings()
    layout = Layout(cfg.home)
    day = parse_day(date_, "--date")
    needs_key = P.active_findings(layout, day).height > 0 or P.active_oea(layout, day) is not None
    frame = J.joint_list(layout, day, port, list(cfg.ucp_ports), _partner_key(cfg) if needs_key else None)
    csv, pq = J.write_joint_list(frame, out or P.partner_dir(layout) / "joint", day, port)
    console.print(
        f"{frame.height:,} shipments for joint inspection at port {port} on {day}\n{csv}\n{pq}", highlight=False
    )
