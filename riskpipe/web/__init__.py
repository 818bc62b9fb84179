"""The analyst workbench (``riskpipe serve``): FastAPI + server-rendered pages on loopback."""

from __future__ import annotations


def create_app(settings, **options):  # noqa: ANN001, ANN201 - thin re-export, keeps fastapi out of import time
    """Build the FastAPI app for ``settings`` (see :func:`riskpipe.web.app.create_app`)."""
    from riskpipe.web.app import create_app as _create

    return _create(settings, **options)
