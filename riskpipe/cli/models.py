"""``riskpipe models``: the model registry (list, show, promote, roll back, re-sign)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console, JustifyMethod

from riskpipe.cli.base import console, settings
from riskpipe.errors import RiskpipeError

models_app = typer.Typer(
    help="The model registry: list and show versions, promote one, roll back to the "
    "previous champion (audited in models/decisions.jsonl), re-sign older models.",
    no_args_is_help=True,
)


@models_app.command("trust")
def models_trust(
    version: Annotated[str, typer.Argument(help="The unsigned model version (a folder of the registry).")],
) -> None:
    """Re-save an unsigned model (saved before riskpipe signed its registry) as a new signed
    version, after checking its sha256 and that it holds only reviewed types. A champion stays
    the champion under its new version. Only for models whose origin you know."""
    from riskpipe.registry import champion_version, trust_model

    s = settings()
    new = trust_model(s.models_dir, version, s.registry_key_path)
    now_champion = champion_version(s.models_dir) == new
    console.print(f"model {version} re-signed as {new}" + (" (the champion)" if now_champion else ""), highlight=False)


@models_app.command("list")
def models_list() -> None:
    """Every model version: when it was saved, the days it was trained on, its precision at
    capacity on held-out later days, which is the champion, and whether it loads (signature,
    sha256, reviewed types: the checks the nightly run makes)."""
    from rich.markup import escape
    from rich.table import Table

    from riskpipe.registry import DECISION_VIEW, describe_versions

    s = settings()
    infos = describe_versions(s.models_dir, s.registry_key_path)
    if not infos:
        console.print(f"no models in {s.models_dir}: train one with `riskpipe retrain`", highlight=False)
        return
    table = Table(
        title=f"models in {escape(str(s.models_dir))}",
        caption=f"P@cap: precision at capacity on held-out later days ({DECISION_VIEW} view)",
    )
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("version", "left"),
        ("saved (UTC)", "left"),
        ("trained on", "left"),
        ("P@cap", "right"),
        ("champion", "center"),
        ("loads", "left"),
    )
    for col, justify in columns:
        table.add_column(col, justify=justify, no_wrap=True)
    for info in infos:
        start, end = info.training_window
        metric = info.key_metric
        saved = (info.saved_at or "?").replace("T", " ")[:16]
        table.add_row(
            info.version,
            escape(saved),
            escape(f"{start or '?'} .. {end or '?'}"),
            f"{metric:.3f}" if metric is not None else "",
            "[bold]*[/bold]" if info.champion else "",
            "yes" if info.problem is None else "[red]no[/red] (below)",
        )
    Console(width=max(console.width, 120)).print(table)  # rows stay whole in a log file
    for info in infos:
        if info.problem is not None:
            console.print(
                f"{info.version} does not load: {info.problem}", highlight=False, markup=False, soft_wrap=True
            )


@models_app.command("show")
def models_show(
    version: Annotated[str, typer.Argument(help="The model version (see `riskpipe models list`).")],
) -> None:
    """A version's model card: what it is, the days it learned from, how good it was on later
    days, its limits; and whether it loads."""
    from riskpipe.registry import check_version_name, describe_version, list_versions, model_card

    s = settings()
    check_version_name(version)
    if version not in list_versions(s.models_dir) and not (s.models_dir / version).exists():
        raise RiskpipeError(f"no model {version} in {s.models_dir} (see `riskpipe models list`)")
    info = describe_version(s.models_dir, version, s.registry_key_path)
    start, end = info.training_window
    lines = [
        f"model {version}" + (" (the champion)" if info.champion else ""),
        "loads: yes (signature, sha256 and reviewed types checked)"
        if info.problem is None
        else f"loads: NO: {info.problem}\n(the card below is from its meta.json, unverified)",
        f"saved: {info.saved_at or '?'}; trained on {start or '?'} .. {end or '?'}",
    ]
    if info.meta:
        lines += ["", model_card(info.meta)]
    console.print("\n".join(lines), highlight=False, markup=False)


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="The model version to make the champion.")],
    reason: Annotated[str | None, typer.Option(help="Why, for the audit trail.")] = None,
) -> None:
    """Make VERSION the champion the nightly run uses, after it loads (a model that fails its
    checks is refused). Recorded in models/decisions.jsonl (who, when, from, to, why)."""
    from riskpipe.registry import DECISIONS_FILE, promote

    s = settings()
    before = promote(
        s.models_dir, version, reason or "operator promotion (riskpipe models promote)", s.registry_key_path
    )
    if before == version:
        console.print(f"{version} is already the champion: nothing changed", highlight=False)
        return
    console.print(
        f"champion is now {version} (was {before or 'none'}); recorded in {s.models_dir / DECISIONS_FILE}",
        highlight=False,
    )


@models_app.command("rollback")
def models_rollback(
    reason: Annotated[str | None, typer.Option(help="Why, for the audit trail.")] = None,
) -> None:
    """Restore the champion before the current one (from the audit trail in
    models/decisions.jsonl), after it loads; the rollback itself is recorded there too. A second
    rollback goes one champion further back."""
    from riskpipe.registry import DECISIONS_FILE, rollback

    s = settings()
    before, after = rollback(
        s.models_dir, reason or "operator rollback (riskpipe models rollback)", s.registry_key_path
    )
    console.print(
        f"champion rolled back from {before} to {after}; recorded in {s.models_dir / DECISIONS_FILE}", highlight=False
    )
