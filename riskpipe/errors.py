"""Errors a user can act on. The CLI prints them as one line, without a traceback."""

from __future__ import annotations


class RiskpipeError(Exception):
    """Bad input or a failed step, with a message naming the file, row, column or rule."""
