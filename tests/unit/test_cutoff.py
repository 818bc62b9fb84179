"""One cut-off for every input the feature path of day D may know (review finding: watchlist
entries counted until the end of D in the configured zone, partner feeds until 00:00 UTC of D,
so one moment could be known for one kind and not for the other)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from riskpipe import cases, labels, partner
from riskpipe.cutoff import day_cutoff


def test_watchlist_partner_feeds_and_outcomes_share_the_day_cut_off() -> None:
    day = date(2026, 5, 13)
    assert day_cutoff(day) == datetime(2026, 5, 13, tzinfo=UTC)
    assert cases.cutoff(day) == partner.cutoff(day) == labels.cutoff(day) == day_cutoff(day)
