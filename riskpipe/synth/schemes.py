"""Illicit schemes: small cells with drops, mules and rotating shipper aliases, and how they adapt.

A cell is one organisation running one scheme (precursor chemicals, pill presses and dies,
finished pills from Mexico, reshipper consolidation, and from about 60 % of the run a new route:
precursors from India by mail and air cargo disguised as everyday goods, which neither the
simulated exam rules nor the early outcomes know). Its cover descriptions and HTS codes come from
legitimate kinds of goods; its aliases are mostly new accounts (some bought, old ones) that share
a phone, e-mail or IP address with each other or with a legitimate fulfilment agent, or none;
its parcels go to drops (new addresses, the homes of mules who also shop there, package
forwarders) in the names of mules, through a preferred mode and port. After a seizure (an exam
that found its parcel) the cell waits a few days, then changes its covers, aliases, drops, mules,
modes and ports: a model trained on last month's cells decays, which is the point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl

from riskpipe import schema as S
from riskpipe.synth.catalog import Catalog
from riskpipe.synth.places import COUNTRIES, MODES, PORT_CODES, PORTS, SHIPPER_COUNTRIES
from riskpipe.synth.population import Population, make_addresses, make_people, make_sellers, make_shippers, use_agents

SCHEMES = ["precursor", "pill_press", "pills_mx", "reshipper", "precursor_in"]
SCHEME_SHARE = np.array([0.42, 0.13, 0.25, 0.20, 0.0])  # share of fentanyl-related parcels by scheme at the start
#: the scheme that appears mid-run, and the share of the positives its cells take from then on
EMERGING = "precursor_in"
EMERGING_SHARE = 0.25
#: when it appears, as a share of the run's days
EMERGING_AT = 0.6
SCHEME_CLASS = {
    "precursor": "precursor",
    "pill_press": "pill_press",
    "pills_mx": "fentanyl",
    "reshipper": "fentanyl",
    "precursor_in": "precursor",
}
MODE_PROBS = {  # express, postal, air_cargo, truck
    "precursor": (0.55, 0.3, 0.15, 0.0),
    "pill_press": (0.45, 0.0, 0.55, 0.0),
    "pills_mx": (0.4, 0.0, 0.0, 0.6),
    "reshipper": (0.6, 0.3, 0.1, 0.0),
    "precursor_in": (0.2, 0.6, 0.2, 0.0),
}
ORIGINS = {
    "precursor": ("CN", "HK"),
    "pill_press": ("CN",),
    "pills_mx": ("MX",),
    "reshipper": ("CN", "HK"),
    "precursor_in": ("IN",),
}
TRANSSHIP = ("HK", "SG", "MY", "NL")
#: share of a cell's aliases that are old accounts bought or borrowed, not opened for the job
AGED_ALIAS_SHARE = 0.3
#: how a cell's aliases file contacts: one or two shared sets, a legitimate agent's, each its own
CONTACT_STYLES = (0.5, 0.25, 0.25)
#: share of a cell's parcels through its preferred port of the mode
PORT_LOYALTY = 0.7


@dataclass
class Cell:
    """One illicit organisation and its current disguise (``generation``)."""

    cell_id: str
    scheme: str
    activity: float  # relative share of the positives
    explicit_share: float  # share of parcels that name their goods (a precursor's name, a press)
    generation: int = 0
    aliases: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # shipper ids
    mules: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # people ids
    drops: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # address ids
    cover: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # kind indices of its covers
    explicit: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # desc ids when named
    modes: np.ndarray = field(default_factory=lambda: np.zeros(4))  # probability of each mode
    ports: np.ndarray = field(default_factory=lambda: np.full(4, -1, dtype=np.int16))  # preferred port per mode
    contacts: str = "shared"  # how its aliases file contacts: "shared", "agent" or "own" (CONTACT_STYLES)
    sellers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # its marketplace listings
    adapt_on: date | None = None
    seizures: list[date] = field(default_factory=list)
    changes: list[date] = field(default_factory=list)


def make_cells(
    rng: np.random.Generator, expected_per_day: float, pop: Population, catalog: Catalog, day: date
) -> list[Cell]:
    """Enough cells that each ships a few parcels a day at the expected prevalence."""
    n = int(np.clip(round(expected_per_day / 3), 6, 400))
    counts = np.round(SCHEME_SHARE * n).astype(int)
    counts = np.where(SCHEME_SHARE > 0, np.maximum(1, counts), 0)
    schemes = [s for s, k in zip(SCHEMES, counts, strict=False) for _ in range(k)]
    return _new_cells(rng, schemes, 0, pop, catalog, day)


def _new_cells(
    rng: np.random.Generator,
    schemes: list[str],
    first: int,
    pop: Population,
    catalog: Catalog,
    day: date,
    activity: np.ndarray | None = None,
) -> list[Cell]:
    act = rng.lognormal(0, 0.6, len(schemes)) if activity is None else activity
    cells = [
        Cell(
            cell_id=f"C{first + i + 1:04d}",
            scheme=scheme,
            activity=float(act[i]),
            explicit_share=float(rng.uniform(0.1, 0.4)) if scheme in catalog.scheme_explicit else 0.0,
        )
        for i, scheme in enumerate(schemes)
    ]
    refresh_many(cells, rng, pop, catalog, day)
    for cell in cells:
        cell.changes.clear()
    return cells


def spawn(
    cells: list[Cell], rng: np.random.Generator, pop: Population, catalog: Catalog, day: date, rate: float = 0.02
) -> list[Cell]:
    """New organisations enter the trade now and then (about ``rate`` x the number of cells a
    day), naive at first: the population of cells renews itself as old ones learn to hide. They
    run the schemes already in the world (the emerging one once it has appeared)."""
    k = int(rng.poisson(rate * len(cells)))
    if k == 0:
        return []
    share = SCHEME_SHARE.copy()
    if any(c.scheme == EMERGING for c in cells):
        share[SCHEMES.index(EMERGING)] = EMERGING_SHARE
    new = _new_cells(rng, list(rng.choice(SCHEMES, k, p=share / share.sum())), len(cells), pop, catalog, day)
    cells.extend(new)
    return new


def emerge(cells: list[Cell], rng: np.random.Generator, pop: Population, catalog: Catalog, day: date) -> list[Cell]:
    """The new scheme appears: cells of :data:`EMERGING` that take :data:`EMERGING_SHARE` of the
    positives from today on (the other cells keep their relative shares)."""
    k = max(2, round(len(cells) * EMERGING_SHARE))
    total = sum(c.activity for c in cells)
    act = rng.lognormal(0, 0.6, k)
    act = act / act.sum() * total * EMERGING_SHARE / (1 - EMERGING_SHARE)
    new = _new_cells(rng, [EMERGING] * k, len(cells), pop, catalog, day, activity=act)
    cells.extend(new)
    return new


def refresh(cell: Cell, rng: np.random.Generator, pop: Population, catalog: Catalog, day: date) -> None:
    """New disguise for one cell (see :func:`refresh_many`)."""
    refresh_many([cell], rng, pop, catalog, day)


def _modes(rng: np.random.Generator, scheme: str, generation: int) -> np.ndarray:
    """A cell's mix of modes: its scheme's at first; after a seizure it may shift to other modes
    that its origin allows (no trucks from overseas)."""
    base = np.array(MODE_PROBS[scheme], dtype=float)
    if generation <= 1:
        return base / base.sum()
    allowed = np.flatnonzero(np.array([True, True, True, "MX" in ORIGINS[scheme]]))
    out = np.zeros(len(base))
    out[allowed] = rng.dirichlet(base[allowed] / base.sum() * 6 + 0.6)
    return out


def _ports(rng: np.random.Generator) -> np.ndarray:
    """One preferred port per mode (index in ``PORT_CODES``)."""
    out = np.empty(len(MODES), dtype=np.int16)
    for m, name in enumerate(MODES):
        codes, w = zip(*PORTS[name], strict=False)
        out[m] = PORT_CODES.index(codes[rng.choice(len(codes), p=np.array(w) / sum(w))])
    return out


def refresh_many(cells: list[Cell], rng: np.random.Generator, pop: Population, catalog: Catalog, day: date) -> None:
    """New disguise: other covers, modes and ports, new shipper aliases (with their contacts), new
    drops, mules and marketplace seller accounts.

    Entities of all the cells are made in one batch (one table append each), so hundreds of cells
    cost about as much as one."""
    if not cells:
        return
    codes = list(SHIPPER_COUNTRIES)
    n_alias = rng.integers(3, 7, len(cells))
    n_drop = rng.integers(3, 7, len(cells))
    n_mule = rng.integers(3, 8, len(cells))
    alias_country = []
    for cell, k in zip(cells, n_alias, strict=False):
        cell.generation += 1
        cell.changes.append(day)
        if cell.generation > 1:  # burnt once: name the goods less often
            cell.explicit_share *= 0.5
        candidates = catalog.cover_kinds[cell.scheme]
        cell.cover = rng.choice(candidates, size=min(int(rng.integers(2, 4)), len(candidates)), replace=False)
        explicit = catalog.scheme_explicit.get(cell.scheme, np.zeros(0, dtype=np.int32))
        cell.explicit = rng.choice(explicit, size=min(4, len(explicit)), replace=False) if len(explicit) else explicit
        cell.modes = _modes(rng, cell.scheme, cell.generation)
        cell.ports = _ports(rng)
        origin = ORIGINS[cell.scheme]
        alias_country.append(np.array([codes.index(origin[i]) for i in rng.integers(0, len(origin), k)]))
    # aliases: accounts from the scheme's origin, most opened days ago, some old ones bought
    total = int(n_alias.sum())
    alias = make_shippers(rng, total, catalog, day, new=True, countries=np.concatenate(alias_country), agent_share=0.0)
    aged = rng.random(total) < AGED_ALIAS_SHARE
    age = np.where(aged, rng.integers(60, 900, total), rng.integers(0, 12, total))
    created = pl.Series(np.datetime64(day, "D") - age.astype("timedelta64[D]"))
    starts = np.concatenate([[0], np.cumsum(n_alias)[:-1]])
    cell_of_alias = np.repeat(np.arange(len(cells)), n_alias)
    cell_style = rng.choice(3, len(cells), p=CONTACT_STYLES)
    if not len(pop.agents):
        cell_style[cell_style == 1] = 2  # no agent to file through: each alias its own contacts
    style = cell_style[cell_of_alias]
    # style 0: the cell's aliases share one or two contact sets (those of its first aliases)
    owner = np.repeat(starts, n_alias) + np.minimum(rng.integers(0, 2, total), np.repeat(n_alias - 1, n_alias))
    own = pl.Series(np.where(style == 0, owner, np.arange(total)).astype(np.int64))
    alias.frame = alias.frame.with_columns(
        *(pl.col(c).gather(own) for c in ("phone", "email", "ip")), created.alias("account_created")
    )
    # style 1: they file through a legitimate agent, like a third of honest sellers
    if len(pop.agents):
        p = pop.agents.arrays["popularity"]
        agent = rng.choice(len(pop.agents), len(cells), p=p / p.sum())[cell_of_alias]
        alias.frame = use_agents(alias.frame, rng, pop.agents, 1.0, agent=agent).with_columns(
            *(
                pl.when(pl.Series(style == 1)).then(pl.col(c)).otherwise(alias.frame[c]).alias(c)
                for c in ("phone", "email", "ip")
            )
        )
    pills = np.repeat(np.array([c.scheme == "pills_mx" for c in cells]), n_alias)
    abuse = pills & (rng.random(len(pills)) < 0.2)  # trusted channels get abused: some claim OEA
    alias.frame = alias.frame.with_columns(
        pl.when(pl.Series(pills))
        .then(pl.Series([None, "mx_oea"], dtype=pl.String).gather(pl.Series(abuse.astype(np.int64))))
        .otherwise(pl.col("trusted"))
        .alias("trusted")
    )
    alias.arrays["popularity"] = np.zeros(len(alias))  # never drawn by legitimate trade
    alias_ids = np.asarray(pop.shippers.append(alias), dtype=np.int64)
    # drops: new addresses, the homes of people who also shop there, package forwarders
    d_total = int(n_drop.sum())
    drops = np.asarray(pop.addresses.append(make_addresses(rng, d_total, kind_probs=(0.3, 0.6, 0.1, 0.0, 0.0))))
    drops = drops.astype(np.int64)
    u = rng.random(d_total)
    lived_in = u < 0.35
    drops[lived_in] = pop.people.arrays["address"][rng.integers(0, len(pop.people), int(lived_in.sum()))]
    to_fwd = (u > 0.8) & (len(pop.forwarders) > 0)
    if len(pop.forwarders):
        drops[to_fwd] = rng.choice(pop.forwarders, int(to_fwd.sum()))
    d_starts = np.concatenate([[0], np.cumsum(n_drop)[:-1]])
    cell_of_mule = np.repeat(np.arange(len(cells)), n_mule)
    mule_home = drops[d_starts[cell_of_mule] + (rng.random(len(cell_of_mule)) * n_drop[cell_of_mule]).astype(np.int64)]
    mules = make_people(rng, len(cell_of_mule), mule_home, new=True, popularity=np.zeros(len(cell_of_mule)))
    mule_ids = np.asarray(pop.people.append(mules), dtype=np.int64)
    m_starts = np.concatenate([[0], np.cumsum(n_mule)[:-1]])
    # its own marketplace listings (one or two seller accounts), never drawn by honest trade
    n_sell = rng.integers(1, 3, len(cells))
    sellers = make_sellers(rng, int(n_sell.sum()))
    sellers.arrays["popularity"] = np.zeros(len(sellers))
    seller_ids = np.asarray(pop.sellers.append(sellers), dtype=np.int64)
    s_starts = np.concatenate([[0], np.cumsum(n_sell)[:-1]])
    for i, cell in enumerate(cells):
        cell.aliases = alias_ids[starts[i] : starts[i] + n_alias[i]]
        cell.drops = drops[d_starts[i] : d_starts[i] + n_drop[i]]
        cell.mules = mule_ids[m_starts[i] : m_starts[i] + n_mule[i]]
        cell.contacts = ("shared", "agent", "own")[int(cell_style[i])]
        cell.sellers = seller_ids[s_starts[i] : s_starts[i] + n_sell[i]]


def record_seizures(cells: list[Cell], seized_cells: set[str], day: date, rng: np.random.Generator) -> None:
    """A seizure on ``day`` makes a cell plan a change of disguise after a lag of 2-6 days."""
    for cell in cells:
        if cell.cell_id in seized_cells:
            cell.seizures.append(day)
            if cell.adapt_on is None:
                cell.adapt_on = day + timedelta(days=int(rng.integers(2, 7)))


def adapt(cells: list[Cell], day: date, rng: np.random.Generator, pop: Population, catalog: Catalog) -> list[str]:
    """Cells whose lag has run out change disguise today; returns their ids."""
    due = [c for c in cells if c.adapt_on is not None and c.adapt_on <= day]
    refresh_many(due, rng, pop, catalog, day)
    for cell in due:
        cell.adapt_on = None
    return [c.cell_id for c in due]


def illicit_rows(
    cells: list[Cell], n: int, rng: np.random.Generator, pop: Population, catalog: Catalog
) -> dict[str, np.ndarray]:
    """``n`` fentanyl-related parcels of the day, spread over the cells (loop over cells, not rows)."""
    if n == 0 or not cells:
        return {}
    w = np.array([c.activity for c in cells])
    counts = rng.multinomial(n, w / w.sum())
    parts: list[dict[str, np.ndarray]] = []
    postal = MODES.index("postal")
    for ci, (cell, m) in enumerate(zip(cells, counts, strict=False)):
        if m == 0:
            continue
        s = cell.scheme
        kinds = cell.cover[rng.integers(0, len(cell.cover), m)]
        desc = catalog.pick(catalog.kind_desc, kinds, rng)
        hts = catalog.pick(catalog.kind_hts, kinds, rng)
        explicit = (rng.random(m) < cell.explicit_share) & (len(cell.explicit) > 0)
        if len(cell.explicit):
            desc = np.where(explicit, rng.choice(cell.explicit, m), desc)
            hts = np.where(explicit, rng.choice(catalog.scheme_explicit_hts[s], m), hts)
        mode = rng.choice(4, m, p=cell.modes)
        port = np.where(rng.random(m) < PORT_LOYALTY, cell.ports[mode], -1).astype(np.int16)
        hts = np.where(rng.random(m) < np.where(mode == postal, 0.45, 0.15), -1, hts)
        if s in ("precursor", "precursor_in"):
            value, weight = rng.lognormal(np.log(35), 0.8, m), rng.lognormal(np.log(1.0), 0.7, m)
        elif s == "pill_press":
            value, weight = rng.lognormal(np.log(90), 0.7, m), rng.lognormal(np.log(45), 0.8, m)
        elif s == "pills_mx":
            value, weight = rng.lognormal(np.log(45), 0.7, m), rng.lognormal(np.log(1.8), 0.7, m)
        else:
            value, weight = rng.lognormal(np.log(22), 0.6, m), rng.lognormal(np.log(0.8), 0.6, m)
        shipper = rng.choice(cell.aliases, m)
        person = rng.choice(cell.mules, m)
        address = rng.choice(cell.drops, m)
        if s == "reshipper":  # split parcels: the day's parcels of the cell go to one or two drops
            address = rng.choice(cell.drops[: 1 + int(rng.random() < 0.3)], m)
        origin = np.array([COUNTRIES.index(ORIGINS[s][0])] * m, dtype=np.int16)
        if len(ORIGINS[s]) > 1:
            origin = np.where(rng.random(m) < 0.8, origin, COUNTRIES.index(ORIGINS[s][1])).astype(np.int16)
        export = np.full(m, -1, dtype=np.int16)
        if s in ("precursor", "reshipper", "precursor_in"):  # transshipment through a third country
            tr = rng.random(m) < 0.15
            export = np.where(
                tr, np.array([COUNTRIES.index(c) for c in TRANSSHIP])[rng.integers(0, len(TRANSSHIP), m)], -1
            ).astype(np.int16)
        parts.append(
            {
                "shipper": shipper,
                "person": person,
                "address": address,
                "desc": desc.astype(np.int32),
                "hts": hts.astype(np.int32),
                "mode": mode.astype(np.int8),
                "value_usd": value,
                "weight": weight,
                "pieces": np.where(s == "pill_press", rng.integers(1, 4, m), 1).astype(np.int32),
                "origin": origin,
                "export": export,
                "kind": np.where(explicit, -1, kinds).astype(np.int16),
                "cls": np.full(m, S.OUTCOMES.index(SCHEME_CLASS[s]), dtype=np.int8),
                "cell": np.full(m, ci, dtype=np.int32),
                "scheme": np.full(m, SCHEMES.index(s), dtype=np.int8),
                "port": port,
                "seller": rng.choice(cell.sellers, m),
            }
        )
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
