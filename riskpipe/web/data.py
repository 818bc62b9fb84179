"""What the workbench reads: published lists, scores, manifests, partner data, labels, models.

One object, :class:`WorkbenchData`, made of the readers in :mod:`riskpipe.web.lists` (the
targeting list), :mod:`riskpipe.web.shipment` (one shipment's page) and :mod:`riskpipe.web.health`
(model health), which share the day paths and caches of :class:`riskpipe.web.days.DayFiles`.
"""

from __future__ import annotations

from riskpipe.web.health import HealthData
from riskpipe.web.lists import ListData
from riskpipe.web.shipment import ShipmentData


class WorkbenchData(ListData, ShipmentData, HealthData):
    """Read access to a data home for the workbench (thread-safe caches)."""
