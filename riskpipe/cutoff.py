"""The one cut-off of an arrival day: what the feature path of day D may know.

Everything recorded before 00:00 UTC of D is known to D's run: exam outcomes (as recorded),
partner feeds (as imported), watchlist entries (as added). One definition, so that a rerun of D
sees the same inputs whatever the inputs' kind, and no input of one kind is "known" at an instant
when another is not.
"""

from __future__ import annotations

from datetime import UTC, date, datetime


def day_cutoff(day: date) -> datetime:
    """00:00 UTC of arrival day ``day`` (aware)."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
