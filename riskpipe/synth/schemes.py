"""Illicit schemes: small cells with drops, mules and rotating shipper aliases, and how they adapt.

A cell is one organisation running one scheme (precursor chemicals, pill presses and dies,
finished pills from Mexico, reshipper consolidation). Its aliases share a handful of phones,
e-mails and IP addresses; its parcels go to a few drop addresses in the names of mules. After a
seizure (an exam that found its parcel) the cell waits a few days, then changes its descriptions,
aliases and drops: a model trained on last month's cells decays, which is the point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl

from riskpipe import schema as S
from riskpipe.synth.catalog import Catalog
from riskpipe.synth.population import (
    COUNTRIES,
    SHIPPER_COUNTRIES,
    Population,
    make_addresses,
    make_people,
    make_shippers,
)

SCHEMES = ["precursor", "pill_press", "pills_mx", "reshipper"]
SCHEME_SHARE = np.array([0.42, 0.13, 0.25, 0.20])  # share of fentanyl-related parcels by scheme
SCHEME_CLASS = {"precursor": "precursor", "pill_press": "pill_press", "pills_mx": "fentanyl", "reshipper": "fentanyl"}
# legitimate kinds whose text and code a cell borrows when it wants to look clean
CLEAN_KINDS = {
    "precursor": ("cosmetic_raw", "coatings", "pet_food", "lab_reagent", "hair_dye"),
    "pill_press": ("machine_parts", "hardware", "tools", "molds"),
    "pills_mx": ("wood_crafts", "shapewear", "supplements", "mx_handicraft", "mx_apparel", "tablet_candy"),
    "reshipper": ("gift", "toys", "dress", "parts", "sample"),
}
MODE_PROBS = {  # express, postal, air_cargo, truck
    "precursor": (0.55, 0.3, 0.15, 0.0),
    "pill_press": (0.45, 0.0, 0.55, 0.0),
    "pills_mx": (0.4, 0.0, 0.0, 0.6),
    "reshipper": (0.6, 0.3, 0.1, 0.0),
}
ORIGINS = {"precursor": ("CN", "HK"), "pill_press": ("CN",), "pills_mx": ("MX",), "reshipper": ("CN", "HK")}
TRANSSHIP = ("HK", "SG", "MY", "NL")


@dataclass
class Cell:
    """One illicit organisation and its current disguise (``generation``)."""

    cell_id: str
    scheme: str
    activity: float  # relative share of its scheme's parcels
    explicit_share: float  # share of parcels described honestly (names, CAS numbers)
    clean_share: float  # share of parcels borrowing a legitimate kind's text and code
    generation: int = 0
    aliases: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # shipper ids
    mules: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # people ids
    drops: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # address ids
    descs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # desc ids in use
    explicit: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    adapt_on: date | None = None
    seizures: list[date] = field(default_factory=list)
    changes: list[date] = field(default_factory=list)


def make_cells(rng: np.random.Generator, expected_per_day: float, pop: Population, catalog: Catalog,
               day: date) -> list[Cell]:
    """Enough cells that each ships a few parcels a day at the expected prevalence."""
    n = int(np.clip(round(expected_per_day / 3), 6, 400))
    counts = np.maximum(1, np.round(SCHEME_SHARE * n)).astype(int)
    schemes = [s for s, k in zip(SCHEMES, counts) for _ in range(k)]
    return _new_cells(rng, schemes, 0, pop, catalog, day)


def _new_cells(rng: np.random.Generator, schemes: list[str], first: int, pop: Population, catalog: Catalog,
               day: date) -> list[Cell]:
    cells = [
        Cell(
            cell_id=f"C{first + i + 1:04d}",
            scheme=scheme,
            activity=float(rng.lognormal(0, 0.6)),
            explicit_share=float(rng.uniform(0.25, 0.6)) if scheme in ("precursor", "pill_press") else 0.0,
            clean_share=float(rng.uniform(0.1, 0.3)),
        )
        for i, scheme in enumerate(schemes)
    ]
    refresh_many(cells, rng, pop, catalog, day)
    for cell in cells:
        cell.changes.clear()
    return cells


def spawn(cells: list[Cell], rng: np.random.Generator, pop: Population, catalog: Catalog, day: date,
          rate: float = 0.02) -> list[Cell]:
    """New organisations enter the trade now and then (about ``rate`` x the number of cells a
    day), naive at first: the population of cells renews itself as old ones learn to hide."""
    k = int(rng.poisson(rate * len(cells)))
    if k == 0:
        return []
    new = _new_cells(rng, list(rng.choice(SCHEMES, k, p=SCHEME_SHARE)), len(cells), pop, catalog, day)
    cells.extend(new)
    return new


def refresh(cell: Cell, rng: np.random.Generator, pop: Population, catalog: Catalog, day: date) -> None:
    """New disguise for one cell (see :func:`refresh_many`)."""
    refresh_many([cell], rng, pop, catalog, day)


def refresh_many(cells: list[Cell], rng: np.random.Generator, pop: Population, catalog: Catalog, day: date) -> None:
    """New disguise: other descriptions, new shipper aliases (sharing contacts), new drops and mules.

    Entities of all the cells are made in one batch (one table append each), so hundreds of cells
    cost about as much as one."""
    if not cells:
        return
    codes = list(SHIPPER_COUNTRIES)
    n_alias = rng.integers(3, 7, len(cells))
    n_drop = rng.integers(2, 5, len(cells))
    n_mule = rng.integers(3, 8, len(cells))
    alias_country = []
    for cell, k in zip(cells, n_alias):
        cell.generation += 1
        cell.changes.append(day)
        if cell.generation > 1:  # burnt once: be less explicit, look cleaner
            cell.explicit_share *= 0.5
            cell.clean_share = min(0.6, cell.clean_share + 0.1)
        explicit, cover = catalog.scheme_explicit[cell.scheme], catalog.scheme_cover[cell.scheme]
        cell.explicit = rng.choice(explicit, size=min(2, len(explicit)), replace=False) if len(explicit) else explicit
        cell.descs = rng.choice(cover, size=min(3, len(cover)), replace=False)
        origin = ORIGINS[cell.scheme]
        alias_country.append(np.array([codes.index(origin[i]) for i in rng.integers(0, len(origin), k)]))
    # aliases: new accounts from the scheme's origin; each cell's aliases share two contact sets
    alias = make_shippers(rng, int(n_alias.sum()), catalog, day, new=True, countries=np.concatenate(alias_country))
    starts = np.concatenate([[0], np.cumsum(n_alias)[:-1]])
    owner = np.repeat(starts, n_alias) + np.minimum(rng.integers(0, 2, int(n_alias.sum())), np.repeat(n_alias - 1, n_alias))
    own = pl.Series(owner.astype(np.int64))
    alias.frame = alias.frame.with_columns(pl.col(c).gather(own) for c in ("phone", "email", "ip"))
    pills = np.repeat(np.array([c.scheme == "pills_mx" for c in cells]), n_alias)
    abuse = pills & (rng.random(len(pills)) < 0.2)  # trusted channels get abused: some claim OEA
    alias.frame = alias.frame.with_columns(
        pl.when(pl.Series(pills)).then(
            pl.Series([None, "mx_oea"], dtype=pl.String).gather(pl.Series(abuse.astype(np.int64)))
        ).otherwise(pl.col("trusted")).alias("trusted"))
    alias.arrays["popularity"] = np.zeros(len(alias))  # never drawn by legitimate trade
    alias_ids = np.asarray(pop.shippers.append(alias), dtype=np.int64)
    # drops: mostly apartments, sometimes a package forwarder shared with honest customers
    drops = np.asarray(pop.addresses.append(make_addresses(rng, int(n_drop.sum()), kind_probs=(0.3, 0.6, 0.1, 0.0, 0.0))))
    drops = drops.astype(np.int64)
    d_starts = np.concatenate([[0], np.cumsum(n_drop)[:-1]])
    use_fwd = (rng.random(len(cells)) < 0.3) & (len(pop.forwarders) > 0)
    if len(pop.forwarders):
        drops[d_starts[use_fwd]] = rng.choice(pop.forwarders, int(use_fwd.sum()))
    cell_of_mule = np.repeat(np.arange(len(cells)), n_mule)
    mule_home = drops[d_starts[cell_of_mule] + (rng.random(len(cell_of_mule)) * n_drop[cell_of_mule]).astype(np.int64)]
    mules = make_people(rng, len(cell_of_mule), mule_home, new=True)
    mules.arrays["popularity"] = np.zeros(len(mules))
    mule_ids = np.asarray(pop.people.append(mules), dtype=np.int64)
    m_starts = np.concatenate([[0], np.cumsum(n_mule)[:-1]])
    for i, cell in enumerate(cells):
        cell.aliases = alias_ids[starts[i] : starts[i] + n_alias[i]]
        cell.drops = drops[d_starts[i] : d_starts[i] + n_drop[i]]
        cell.mules = mule_ids[m_starts[i] : m_starts[i] + n_mule[i]]


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


def illicit_rows(cells: list[Cell], n: int, rng: np.random.Generator, pop: Population, catalog: Catalog) -> dict[str, np.ndarray]:
    """``n`` fentanyl-related parcels of the day, spread over the cells (loop over cells, not rows)."""
    if n == 0 or not cells:
        return {}
    w = np.array([c.activity for c in cells])
    counts = rng.multinomial(n, w / w.sum())
    kind_index = {k.key: i for i, k in enumerate(catalog.kinds)}
    parts: list[dict[str, np.ndarray]] = []
    for ci, (cell, m) in enumerate(zip(cells, counts)):
        if m == 0:
            continue
        s = cell.scheme
        u = rng.random(m)
        explicit = (u < cell.explicit_share) & (len(cell.explicit) > 0)
        clean = (~explicit) & (rng.random(m) < cell.clean_share)
        desc = rng.choice(cell.descs, m)
        if len(cell.explicit):
            desc = np.where(explicit, rng.choice(cell.explicit, m), desc)
        hts = rng.choice(catalog.scheme_hts[s], m)
        if s == "precursor":
            hts = np.where(explicit, catalog.scheme_hts[s][rng.integers(0, 2, m)], hts)
        hts = np.where(rng.random(m) < 0.35, -1, hts)
        ck = np.array([kind_index[k] for k in CLEAN_KINDS[s]])
        kinds = ck[rng.integers(0, len(ck), m)]
        desc = np.where(clean, catalog.pick(catalog.kind_desc, kinds, rng), desc)
        hts = np.where(clean, catalog.pick(catalog.kind_hts, kinds, rng), hts)
        mode = rng.choice(4, m, p=np.array(MODE_PROBS[s]) / sum(MODE_PROBS[s]))
        if s == "precursor":
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
        if s in ("precursor", "reshipper"):  # transshipment through a third country
            tr = rng.random(m) < 0.15
            export = np.where(tr, np.array([COUNTRIES.index(c) for c in TRANSSHIP])[rng.integers(0, len(TRANSSHIP), m)], -1).astype(np.int16)
        parts.append({
            "shipper": shipper, "person": person, "address": address, "desc": desc.astype(np.int32),
            "hts": hts.astype(np.int32), "mode": mode.astype(np.int8), "value_usd": value, "weight": weight,
            "pieces": np.where(s == "pill_press", rng.integers(1, 4, m), 1).astype(np.int32),
            "origin": origin, "export": export, "kind": np.where(clean, kinds, -1).astype(np.int16),
            "cls": np.full(m, S.OUTCOMES.index(SCHEME_CLASS[s]), dtype=np.int8),
            "cell": np.full(m, ci, dtype=np.int32), "scheme": np.full(m, SCHEMES.index(s), dtype=np.int8),
        })
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
