"""The ``riskpipe`` command: one module per command group, registered here in the order
``--help`` lists them (registration is explicit so that sorting imports cannot reorder it).

``base`` holds the app, its global options and ``main``; ``show`` the printing shared by
commands; ``world`` (demo, generate), ``data`` (ingest, labels), ``run`` (retrain, nightly,
serve, schedule), ``study`` (evaluate, indicators, adaptation, bench), ``admin`` (users, db,
sql), ``models`` and ``partner`` the commands.
"""

from __future__ import annotations

from riskpipe.cli import admin, data, models, partner, run, study, world
from riskpipe.cli.base import app, main

for _command in (
    world.demo,
    world.generate,
    data.ingest,
    data.watch,
    run.retrain,
    run.nightly,
    run.serve,
    run.schedule,
    study.evaluate,
    study.indicators,
    study.adaptation,
    study.bench,
    admin.sql,
):
    app.command()(_command)
app.add_typer(data.labels_app, name="labels")
app.add_typer(admin.users_app, name="users")
app.add_typer(models.models_app, name="models")
app.add_typer(admin.db_app, name="db")
app.add_typer(partner.partner_app, name="partner")

__all__ = ["app", "main"]
