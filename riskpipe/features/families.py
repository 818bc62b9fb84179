"""The registry of indicator families: the one list both feature build paths iterate.

Order matters twice: it is the order of the output columns (and of ``family_fires``), and the
order in which the families run (a family may read the columns of an earlier one: network reads
history's). Adding a family: one module with a ``FAMILY`` object (:class:`~riskpipe.features.family.Family`)
and one entry below.
"""

from __future__ import annotations

from riskpipe.features import commodity, crossborder, graph, history, network, parties, partner, value
from riskpipe.features.family import Family

FAMILIES: list[Family] = [
    commodity.FAMILY,
    value.FAMILY,
    parties.FAMILY,
    history.FAMILY,
    network.FAMILY,
    crossborder.FAMILY,
    partner.FAMILY,
    graph.FAMILY,
]
