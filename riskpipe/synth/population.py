"""The persistent population: shippers, consignees and their US addresses, sellers, carriers, ports.

Tables are built with numpy draws and Polars string expressions (no loop per entity) and only
grow: new legitimate shippers and consignee accounts appear every day, and illicit cells append
their aliases, mules and drops. Rows of the day refer to entities by integer index.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl
from numpy.typing import ArrayLike

from riskpipe.synth.catalog import Catalog
from riskpipe.synth.places import (
    APARTMENT,
    CITIES,
    CN_CITIES,
    CO_SUFFIX,
    COMMERCIAL,
    DEPTS,
    FIRST,
    FORWARDER,
    LAST,
    MAIL_DOMAINS,
    MARKETPLACES,
    PHONE_CC,
    SHIPPER_COUNTRIES,
    SHIPPER_MAIL,
    STREETS,
    SUFFIX_SHORT,
    TRADES,
    UNIVERSITIES,
    UNIVERSITY,
    WORDS,
)


def _pick(rng: np.random.Generator, items: Sequence[object], probs: ArrayLike, n: int) -> np.ndarray:
    p = np.asarray(probs, dtype=float)
    return rng.choice(len(items), size=n, p=p / p.sum())


def _s(values: Iterable[str], idx: np.ndarray) -> pl.Series:
    """Gather strings from a small Python list by an index array (vectorised)."""
    return pl.Series(values=list(values), dtype=pl.String).gather(pl.Series(idx.astype(np.int64)))


def _digits(rng: np.random.Generator, n: int, k: int) -> pl.Series:
    """n random strings of k decimal digits (leading zeros kept)."""
    return pl.Series(rng.integers(0, 10**k, n)).cast(pl.String).str.zfill(k)


class Table:
    """An append-only entity table: Polars columns plus numpy columns used for sampling.

    Appends are queued and joined (one contiguous chunk) on the next read, so hundreds of small
    appends of a day cost one copy, and gathers never walk a many-chunk column."""

    def __init__(self, frame: pl.DataFrame, arrays: dict[str, np.ndarray] | None = None) -> None:
        self._frames = [frame]
        self._arrays = {k: [v] for k, v in (arrays or {}).items()}
        self._len = frame.height

    def __len__(self) -> int:
        return self._len

    @property
    def frame(self) -> pl.DataFrame:
        if len(self._frames) > 1:
            self._frames = [pl.concat(self._frames, how="vertical", rechunk=True)]
        return self._frames[0]

    @frame.setter
    def frame(self, value: pl.DataFrame) -> None:
        self._frames = [value]
        self._len = value.height

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        for k, parts in self._arrays.items():
            if len(parts) > 1:
                self._arrays[k] = [np.concatenate(parts)]
        return _ArrayView(self._arrays)

    def append(self, other: Table) -> range:
        start = self._len
        self._frames.extend(other._frames)
        for k, parts in other._arrays.items():
            self._arrays[k].extend(parts)
        self._len += len(other)
        return range(start, self._len)


class _ArrayView(dict):
    """Read/write view of a table's numpy columns (each stored as a one-element list)."""

    def __init__(self, store: dict[str, list[np.ndarray]]) -> None:
        super().__init__({k: v[0] for k, v in store.items()})
        self._store = store

    def __setitem__(self, key: str, value: np.ndarray) -> None:
        super().__setitem__(key, value)
        self._store[key] = [value]


#: legitimate shippers that file through a fulfilment agent, marketplace or consolidator and so
#: share its phone, e-mail or IP address with the agent's other clients
AGENT_SHARE = 0.35
#: a new shop sells less than an established one at first
NEW_SHIPPER_POPULARITY = 0.7
#: new legitimate shippers a day, per shipper of the starting population (shops open every day)
NEW_SHIPPERS_PER_DAY = 0.012
#: a new shipper's account was opened days before its first parcel
NEW_ACCOUNT_MAX_DAYS = 7
#: established shippers whose marketplace account is nevertheless recent (shops open and close)
YOUNG_ACCOUNT_SHARE = 0.2


def make_agents(rng: np.random.Generator, n: int) -> Table:
    """Fulfilment agents, marketplace platforms and consolidators: the contact data many small
    sellers put on their filings (one phone desk, one mailbox, one office IP), with a size."""
    word = _s(WORDS, rng.integers(0, len(WORDS), n))
    kind = _s(["logistics", "fulfillment", "express", "supplychain", "ecommerce"], rng.integers(0, 5, n))
    frame = pl.DataFrame(
        {
            "w": word,
            "k": kind,
            "tel": _digits(rng, n, 9),
            "no": rng.integers(1, 999, n),
            "mail": _s(SHIPPER_MAIL, rng.integers(0, len(SHIPPER_MAIL), n)),
            **{f"ip{j}": rng.integers(1, 255, n) for j in range(4)},
        }
    )
    out = frame.select(
        pl.format("+86{}", pl.col("tel")).alias("phone"),
        pl.format("{}{}{}@{}", pl.col("w").str.to_lowercase(), pl.col("k"), pl.col("no"), pl.col("mail")).alias(
            "email"
        ),
        pl.format("{}.{}.{}.{}", "ip0", "ip1", "ip2", "ip3").alias("ip"),
    )
    return Table(out, {"popularity": rng.lognormal(0.0, 1.0, n)})


def use_agents(
    frame: pl.DataFrame, rng: np.random.Generator, agents: Table, share: float, agent: np.ndarray | None = None
) -> pl.DataFrame:
    """Replace the contacts of a ``share`` of the shippers by their agent's (each of phone,
    e-mail and IP independently, as filings differ in what they carry). ``agent``: the agent of
    every row (drawn by the agents' sizes when not given)."""
    n = frame.height
    if n == 0 or len(agents) == 0 or share <= 0:
        return frame
    if agent is None:
        p = agents.arrays["popularity"]
        agent = rng.choice(len(agents), n, p=p / p.sum())
    client = rng.random(n) < share
    ag = agents.frame.select(pl.all().gather(pl.Series(agent.astype(np.int64))))
    return frame.with_columns(
        pl.when(pl.Series(client & (rng.random(n) < p_))).then(ag[c]).otherwise(pl.col(c)).alias(c)
        for c, p_ in (("phone", 0.7), ("email", 0.6), ("ip", 0.8))
    )


def make_shippers(
    rng: np.random.Generator,
    n: int,
    catalog: Catalog,
    day: date,
    new: bool,
    countries: np.ndarray | None = None,
    agents: Table | None = None,
    agent_share: float = AGENT_SHARE,
) -> Table:
    """Shippers with a home country, a few kinds of goods they sell, contact data and account data
    (a share files through an agent whose contacts it shares, see :func:`use_agents`)."""
    codes = list(SHIPPER_COUNTRIES)
    cidx = _pick(rng, codes, list(SHIPPER_COUNTRIES.values()), n) if countries is None else countries
    country = _s(codes, cidx)
    # kinds compatible with each country, drawn by popularity x origin weight
    kw = np.array([[k.popularity * k.origins.get(c, 0.0) for k in catalog.kinds] for c in codes])
    kw = kw / kw.sum(axis=1, keepdims=True)
    cum = np.cumsum(kw, axis=1)
    u = rng.random((n, 3))
    kinds = np.empty((n, 3), dtype=np.int16)
    for j in range(3):  # three picks per shipper, vectorised over shippers
        kinds[:, j] = (cum[cidx] < u[:, j : j + 1]).sum(axis=1).clip(0, len(catalog.kinds) - 1)
    suffix = pl.Series([CO_SUFFIX.get(c, "Ltd") for c in codes]).gather(pl.Series(cidx))
    city = _s(CN_CITIES, rng.integers(0, len(CN_CITIES), n))
    word = _s(WORDS, rng.integers(0, len(WORDS), n))
    trade = _s(TRADES, rng.integers(0, len(TRADES), n))
    is_cn = pl.Series(np.isin(cidx, [0, 1]))
    frame = pl.DataFrame(
        {
            "country": country,
            "city": city,
            "word": word,
            "trade": trade,
            "suffix": suffix,
            "is_cn": is_cn,
            "num": rng.integers(1, 999, n),
            "street": _s(STREETS, rng.integers(0, len(STREETS), n)),
            "cc": pl.Series([PHONE_CC.get(c, "1") for c in codes]).gather(pl.Series(cidx)),
            "tel": _digits(rng, n, 9),
            "mail": _s(SHIPPER_MAIL, rng.integers(0, len(SHIPPER_MAIL), n)),
            "mailno": rng.integers(1, 9999, n),
            **{f"ip{j}": rng.integers(1, 255, n) for j in range(4)},
        }
    )
    if new:
        age = rng.integers(0, NEW_ACCOUNT_MAX_DAYS, n)
    else:
        age = np.where(
            rng.random(n) < YOUNG_ACCOUNT_SHARE, rng.integers(0, 120, n), rng.gamma(1.5, 500.0, n).astype(np.int64) + 30
        )
    created = pl.Series(np.datetime64(day, "D") - age.astype("timedelta64[D]"))
    tt = np.zeros(n, dtype=np.int64)  # 0 none, 1 ctpat, 2 mx_oea, 3 other_mra
    r = rng.random(n)
    mx = cidx == codes.index("MX")
    tt[mx & (r < 0.3)] = 2
    tt[~mx & (r < 0.03)] = 1
    tt[np.isin(cidx, [codes.index(c) for c in ("JP", "KR", "CA", "GB", "DE")]) & (r > 0.95)] = 3
    out = frame.select(
        pl.when(pl.col("is_cn"))
        .then(pl.concat_str([pl.col("city"), pl.col("word"), pl.col("trade"), pl.col("suffix")], separator=" "))
        .otherwise(pl.concat_str([pl.col("word"), pl.col("trade"), pl.col("suffix")], separator=" "))
        .alias("name"),
        pl.when(pl.col("is_cn"))
        .then(pl.format("No. {} {} Road, {}", pl.col("num"), pl.col("street"), pl.col("city")))
        .otherwise(pl.format("{} {} Street", pl.col("num"), pl.col("street")))
        .alias("address"),
        pl.col("country"),
        pl.format("+{}{}", pl.col("cc"), pl.col("tel")).alias("phone"),
        pl.format("{}{}@{}", pl.col("word").str.to_lowercase(), pl.col("mailno"), pl.col("mail")).alias("email"),
        pl.format("{}.{}.{}.{}", "ip0", "ip1", "ip2", "ip3").alias("ip"),
        created.alias("account_created"),
        pl.Series([None, "ctpat", "mx_oea", "other_mra"], dtype=pl.String).gather(pl.Series(tt)).alias("trusted"),
    )
    if agents is not None:
        out = use_agents(out, rng, agents, agent_share)
    pop = rng.lognormal(0.0, 1.6, n) * (NEW_SHIPPER_POPULARITY if new else 1.0)
    return Table(
        out,
        {
            "country": cidx.astype(np.int16),
            "kinds": kinds,
            "popularity": pop,
            "known": (rng.random(n) < (0.2 if new else 0.7)),
        },
    )


def make_addresses(
    rng: np.random.Generator,
    n: int,
    kind_probs: tuple[float, ...] = (0.55, 0.35, 0.1, 0.0, 0.0),
    kinds: np.ndarray | None = None,
) -> Table:
    """US addresses: houses, apartments, businesses, package forwarders and university labs."""
    kind = _pick(rng, [0, 1, 2, 3, 4], kind_probs, n) if kinds is None else kinds
    city = rng.integers(0, len(CITIES), n)
    # forwarders cluster near ports and tax-free states; the pick is not important for the model
    unit = np.where(
        kind == APARTMENT,
        rng.integers(1, 40, n) * np.where(rng.random(n) < 0.5, 100, 1) + rng.integers(0, 20, n),
        np.where(
            kind == FORWARDER, rng.integers(100, 999, n), np.where(kind == COMMERCIAL, rng.integers(100, 600, n), 0)
        ),
    )
    frame = (
        pl.DataFrame(
            {
                "num": rng.integers(1, 9999, n),
                "street": _s(STREETS, rng.integers(0, len(STREETS), n)),
                "suffix": rng.integers(0, len(SUFFIX_SHORT), n),
                "kind": kind.astype(np.int8),
                "unit": unit,
                "city": _s([c[0] for c in CITIES], city),
                "state": _s([c[1] for c in CITIES], city),
                "zip3": _s([c[2] for c in CITIES], city),
                "zip2": _digits(rng, n, 2),
            }
        )
        .with_columns(pl.concat_str(["zip3", "zip2"]).alias("zip"))
        .drop("zip3", "zip2")
    )
    return Table(frame, {"kind": kind.astype(np.int8)})


def address_lines(addr: pl.DataFrame) -> pl.Series:
    """The usual street line of each address ("12 Maple St Apt 4"); writers derive the other
    spellings of the same place from it (see ``riskpipe.synth.writer.street_variants``)."""
    short = pl.Series(SUFFIX_SHORT).gather(addr["suffix"])
    f = addr.with_columns(short.alias("s"))
    unit_word = (
        pl.when(pl.col("kind") == APARTMENT)
        .then(pl.lit("Apt"))
        .when(pl.col("kind") == COMMERCIAL)
        .then(pl.lit("Suite"))
        .when(pl.col("kind") == FORWARDER)
        .then(pl.lit("Ste"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    has_unit = pl.col("kind").is_in([APARTMENT, COMMERCIAL, FORWARDER])
    base = pl.format("{} {} {}", pl.col("num"), pl.col("street"), pl.col("s"))
    return f.select(
        pl.when(has_unit).then(pl.format("{} {} {}", base, unit_word, pl.col("unit"))).otherwise(base).alias("a")
    )["a"]


#: consignee accounts per parcel of a day: most buyers order about once a month (capped for the
#: national-size days of the benchmark, where buyers then simply order more often)
PEOPLE_PER_DAILY_PARCEL = 14
MAX_PEOPLE = 1_200_000
#: frequent buyers among the persons, and persons who buy for a business (a few per business)
FREQUENT_SHARE = 0.03
BUSINESS_PEOPLE_SHARE = 0.005
PEOPLE_PER_BUSINESS = 4
#: share of a day's legitimate parcels that go to a first-time buyer (a new account, most often at
#: an address never seen before); they then join the population of occasional buyers
FRESH_SHARE = 0.35


def buyer_weights(rng: np.random.Generator, n: int) -> np.ndarray:
    """How often each consignee orders, relative: mostly occasional buyers (weight about 1, about
    one parcel a month), a heavy-tailed minority of frequent buyers (weight about 10)."""
    frequent = rng.random(n) < FREQUENT_SHARE
    return np.where(frequent, rng.lognormal(np.log(8.0), 0.7, n), rng.lognormal(0.0, 0.5, n))


def make_people(
    rng: np.random.Generator, n: int, address_ids: np.ndarray, new: bool, popularity: np.ndarray | None = None
) -> Table:
    """Consignees (account holders): a name, phone, e-mail and a home address; ``popularity``
    (how often they order) defaults to :func:`buyer_weights`."""
    fi = rng.integers(0, len(FIRST), n)
    li = rng.integers(0, len(LAST), n)
    frame = pl.DataFrame(
        {
            "first": _s(FIRST, fi),
            "last": _s(LAST, li),
            "area": rng.integers(201, 990, n),
            "tel": _digits(rng, n, 7),
            "dom": _s(MAIL_DOMAINS, rng.integers(0, len(MAIL_DOMAINS), n)),
            "k": rng.integers(1, 999, n),
        }
    )
    out = frame.select(
        pl.format("{} {}", pl.col("first"), pl.col("last")).alias("name"),
        pl.format("{}-{}-{}", pl.col("area"), pl.col("tel").str.slice(0, 3), pl.col("tel").str.slice(3)).alias("phone"),
        pl.format("{}.{}{}@{}", pl.col("first"), pl.col("last"), pl.col("k"), pl.col("dom"))
        .str.to_lowercase()
        .alias("email"),
    )
    pop = buyer_weights(rng, n) if popularity is None else popularity
    return Table(out, {"address": address_ids.astype(np.int64), "popularity": pop})


def make_sellers(rng: np.random.Generator, n: int) -> Table:
    word = _s(WORDS, rng.integers(0, len(WORDS), n))
    trade = _s(["Store", "Shop", "Official", "Outlet", "Mall", "Direct", "Boutique"], rng.integers(0, 7, n))
    mk = rng.choice(len(MARKETPLACES), n, p=[0.3, 0.2, 0.15, 0.12, 0.1, 0.05, 0.05, 0.03])
    frame = pl.DataFrame({"w": word, "t": trade, "k": rng.integers(10, 99999, n), "mk": _s(MARKETPLACES, mk)}).select(
        pl.format("{} {} {}", pl.col("w"), pl.col("t"), pl.col("k")).alias("name"),
        pl.format("{}-{}", pl.col("mk").str.slice(0, 3).str.to_uppercase(), pl.col("k") * 7919 % 9_999_991).alias("id"),
        pl.col("mk").alias("marketplace"),
    )
    return Table(frame, {"popularity": rng.lognormal(0, 1.2, n)})


@dataclass
class Population:
    """Everything persistent: grows day by day."""

    shippers: Table
    addresses: Table
    people: Table
    sellers: Table
    universities: np.ndarray  # people ids at university lab addresses
    forwarders: np.ndarray  # address ids of package forwarders
    agents: Table  # contact data of fulfilment agents, marketplaces and consolidators
    business: np.ndarray  # people ids who buy for a business (commercial addresses)
    fresh: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # today's first-time buyers
    _lines: pl.Series | None = None

    def settle(self) -> None:
        """Join queued appends and extend caches now, so writer threads only read."""
        for t in (self.shippers, self.addresses, self.people, self.sellers):
            _ = t.frame  # the property joins pending chunks
            _ = t.arrays
        self.address_strings()

    def address_strings(self) -> pl.Series:
        """Street line of every address (cached; extended when addresses were appended)."""
        have = 0 if self._lines is None else len(self._lines)
        if self._lines is None or have < len(self.addresses):
            extra = address_lines(self.addresses.frame.slice(have))
            self._lines = extra if self._lines is None else pl.concat([self._lines, extra], rechunk=True)
        return self._lines


def build_population(rng: np.random.Generator, per_day: int, catalog: Catalog, day: date) -> Population:
    """A population sized for ``per_day`` shipments a day: about fourteen consignee accounts per daily
    parcel (so most receive a parcel or two a month), a few frequent buyers and businesses, package
    forwarders and university labs; shippers, a third of whom file through a shared agent."""
    n_ship = int(np.clip(per_day / 10, 300, 400_000))
    agents = make_agents(rng, int(np.clip(n_ship / 25, 10, 20_000)))
    shippers = make_shippers(rng, n_ship, catalog, day, new=False, agents=agents)
    n_people = int(np.clip(per_day * PEOPLE_PER_DAILY_PARCEL, 2_000, MAX_PEOPLE))
    n_bus = max(8, int(n_people * BUSINESS_PEOPLE_SHARE))
    n_home = n_people - n_bus
    n_addr = int(n_home * 0.85)  # some households hold two or more accounts
    addresses = make_addresses(rng, n_addr, kind_probs=(0.6, 0.4, 0.0, 0.0, 0.0))
    n_bus_addr = max(2, n_bus // PEOPLE_PER_BUSINESS)
    bus_addr = np.asarray(addresses.append(make_addresses(rng, n_bus_addr, kinds=np.full(n_bus_addr, COMMERCIAL))))
    n_fwd = int(np.clip(per_day / 2000, 5, 400))
    n_uni = int(np.clip(per_day / 1000, 10, 2000))
    fwd = addresses.append(make_addresses(rng, n_fwd, kinds=np.full(n_fwd, FORWARDER)))
    uni = addresses.append(make_addresses(rng, n_uni, kinds=np.full(n_uni, UNIVERSITY)))
    home = rng.integers(0, n_addr, n_home)
    people = make_people(rng, n_home, home, new=False)
    business = people.append(
        make_people(
            rng,
            n_bus,
            bus_addr[rng.integers(0, n_bus_addr, n_bus)],
            new=False,
            popularity=rng.lognormal(np.log(20.0), 1.0, n_bus),
        )
    )
    # university lab contacts: a department name in place of a person's name
    uni_people = make_people(rng, n_uni * 3, np.repeat(np.asarray(uni), 3), new=False)
    dept = _s(DEPTS, rng.integers(0, len(DEPTS), n_uni * 3))
    uname = _s(UNIVERSITIES, rng.integers(0, len(UNIVERSITIES), n_uni * 3))
    uni_people.frame = (
        uni_people.frame.with_columns(dept.alias("d"), uname.alias("u"))
        .with_columns(
            pl.format("{}, {} {}", pl.col("d"), pl.col("name").str.split(" ").list.last(), pl.col("u")).alias("name")
        )
        .drop("d", "u")
    )
    uni_ids = people.append(uni_people)
    sellers = make_sellers(rng, int(np.clip(per_day / 25, 100, 150_000)))
    return Population(
        shippers,
        addresses,
        people,
        sellers,
        np.asarray(uni_ids),
        np.asarray(fwd),
        agents,
        np.asarray(business, dtype=np.int64),
    )


def grow(pop: Population, rng: np.random.Generator, per_day: int, catalog: Catalog, day: date) -> None:
    """New legitimate shippers and marketplace sellers of the day, and the day's first-time buyers (``pop.fresh``: one
    parcel each today, then occasional buyers like the others)."""
    n_ship = max(2, int(per_day / 10 * NEW_SHIPPERS_PER_DAY))
    pop.shippers.append(make_shippers(rng, n_ship, catalog, day, new=True, agents=pop.agents))
    sellers = make_sellers(rng, max(1, int(per_day / 25 * NEW_SHIPPERS_PER_DAY)))
    sellers.arrays["popularity"] = sellers.arrays["popularity"] * NEW_SHIPPER_POPULARITY
    pop.sellers.append(sellers)
    n_fresh = int(round(per_day * FRESH_SHARE))
    n_new_addr = int(n_fresh * 0.75)
    addr = np.asarray(pop.addresses.append(make_addresses(rng, n_new_addr, kind_probs=(0.55, 0.45, 0.0, 0.0, 0.0))))
    homes = np.concatenate([addr, rng.integers(0, len(pop.addresses), n_fresh - n_new_addr)])
    pop.fresh = np.asarray(pop.people.append(make_people(rng, n_fresh, homes, new=True)), dtype=np.int64)
