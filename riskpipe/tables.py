"""All tables of the labels, users and cases store in one ``MetaData``, as the code defines them:
what the newest migration must equal (Alembic's environment and the migration tests compare
them). Its own module because the stores import :mod:`riskpipe.migrate` (to open a current
database): defined there, it would import them back."""

from __future__ import annotations

from sqlalchemy import MetaData

from riskpipe import cases, labels, users


def store_metadata() -> MetaData:
    """All tables of the store, as the code defines them (what head must equal)."""
    md = MetaData()
    for source in (labels.metadata, users.metadata, cases.metadata):
        for table in source.tables.values():
            table.to_metadata(md)
    return md
