"""The command line's surface (every command, its help and its options) is the one recorded in
``cli_surface.json``, captured from the single-module CLI before it became the package
``riskpipe/cli/``: splitting or reorganising the commands must not add, drop, rename or reorder
a command or an option, nor change a default or a help text. A deliberate change of the
surface updates the file (``python tests/unit/test_cli_surface.py > tests/unit/cli_surface.json``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from riskpipe.cli import app

RECORDED = Path(__file__).with_name("cli_surface.json")


def _walk(cmd: Any, path: list[str], out: dict[str, Any]) -> None:
    params = []
    for p in cmd.params:
        params.append(
            {
                "name": p.name,
                "opts": list(p.opts),
                "secondary_opts": list(p.secondary_opts),
                "kind": type(p).__name__,
                "type": str(getattr(p.type_descriptor, "annotation", None))
                if hasattr(p, "type_descriptor")
                else str(p.type),
                "required": p.required,
                "default": repr(p.default),
                "multiple": p.multiple,
                "nargs": p.nargs,
                "help": getattr(p, "help", None),
                "is_flag": getattr(p, "is_flag", None),
                "hidden": getattr(p, "hidden", None),
                "envvar": p.envvar,
            }
        )
    groups = getattr(cmd, "commands", None)
    out[" ".join(path) or "riskpipe"] = {
        "help": cmd.help,
        "short_help": cmd.short_help,
        "params": params,
        "subcommands": list(groups) if groups is not None else None,
    }
    for name, sub in (groups or {}).items():
        _walk(sub, [*path, name], out)


def surface() -> dict[str, Any]:
    out: dict[str, Any] = {}
    _walk(typer.main.get_command(app), [], out)
    return out


def test_every_command_and_option_is_the_recorded_one() -> None:
    recorded = json.loads(RECORDED.read_text(encoding="utf-8"))
    now = surface()
    assert list(now) == list(recorded)  # the same commands, in the same --help order
    for name, spec in recorded.items():
        assert now[name] == spec, name


if __name__ == "__main__":
    json.dump(surface(), sys.stdout, indent=1)
    print()
