"""One day of the synthetic world's rows: legitimate and illicit rows assembled into shipments,
amendments, the partner's declarations, the ground truth and the exams (all vectorised per day;
:func:`riskpipe.synth.world.generate` calls them day after day and writes the files)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from riskpipe import schema as S
from riskpipe.synth import exams
from riskpipe.synth.catalog import Catalog
from riskpipe.synth.places import (
    CANADA_TRUCK_PORTS,
    CARRIER_CODES,
    CARRIERS,
    COUNTRIES,
    CURRENCIES,
    LOCAL_CURRENCY,
    MODES,
    PER_USD,
    PORT_CODES,
    PORTS,
    POSTAL_OPERATOR,
    SHIPPER_COUNTRIES,
)
from riskpipe.synth.population import Population
from riskpipe.synth.schemes import (
    SCHEMES,
    Cell,
)
from riskpipe.synth.writer import (
    day_micros,
)

WEEKDAY_FACTOR = np.array([1.06, 1.04, 1.02, 1.0, 1.0, 0.92, 0.96])  # Monday..Sunday
AMEND_SHARE = 0.025
FAULT_SHARE = 0.004
ENTRY_PROBS = {  # per mode: 321, 86, 11, 01, postal
    "express": (0.55, 0.35, 0.1, 0.0, 0.0),
    "postal": (0.0, 0.0, 0.0, 0.0, 1.0),
    "air_cargo": (0.4, 0.5, 0.0, 0.1, 0.0),
    "truck": (0.5, 0.0, 0.3, 0.2, 0.0),
}
LEAD_HOURS = {"express": (6, 30), "postal": (12, 96), "air_cargo": (8, 48), "truck": (1, 6)}
DEFAULT_MODES = {
    "CN": (0.45, 0.3, 0.25, 0.0),
    "HK": (0.5, 0.25, 0.25, 0.0),
    "MX": (0.45, 0.15, 0.0, 0.4),
    "CA": (0.45, 0.2, 0.0, 0.35),
}
OTHER_MODES = (0.6, 0.3, 0.1, 0.0)


def weighted_draw(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """``n`` indices drawn with probability proportional to ``weights``.

    Same law as ``rng.choice(p=...)`` but about five times faster on big tables: sorted uniforms
    (cumulated exponential spacings) make the binary searches walk memory in order, and a random
    permutation then restores independence of the row order."""
    cum = np.cumsum(weights)
    spacings = rng.exponential(size=n + 1)
    u = np.cumsum(spacings)[:-1] / spacings.sum() * cum[-1]
    idx = np.searchsorted(cum, u, side="right").clip(0, len(weights) - 1)
    return idx[rng.permutation(n)]


def _choice_rows(rng: np.random.Generator, cum: np.ndarray) -> np.ndarray:
    """Per-row categorical draw from per-row cumulative probabilities (rows x k)."""
    u = rng.random(int(cum.shape[0]))[:, None]
    return (cum < u).sum(axis=1).clip(0, cum.shape[1] - 1)


def _mode_table(catalog: Catalog) -> np.ndarray:
    """Cumulative mode probabilities per (kind, shipper country)."""
    codes = list(SHIPPER_COUNTRIES)
    t = np.zeros((len(catalog.kinds), len(codes), len(MODES)))
    for i, k in enumerate(catalog.kinds):
        for j, c in enumerate(codes):
            p = (
                np.array([k.modes.get(m, 0.0) for m in MODES])
                if k.modes
                else np.array(DEFAULT_MODES.get(c, OTHER_MODES))
            )
            if c not in ("MX", "CA"):
                p[3] = 0.0  # no trucks from overseas
                if p.sum() == 0:
                    p = np.array(OTHER_MODES)
            t[i, j] = np.cumsum(p / p.sum())
    return t


def legit_rows(
    n: int, rng: np.random.Generator, pop: Population, catalog: Catalog, mode_cum: np.ndarray
) -> dict[str, np.ndarray]:
    """``n`` legitimate parcels drawn from the population and the catalog: most consignees are
    occasional buyers (the day's first-time buyers among them), lab reagents go mostly to
    university labs and some kinds to businesses."""
    shipper = weighted_draw(rng, pop.shippers.arrays["popularity"], n)
    col = rng.choice(3, n, p=[0.55, 0.3, 0.15])
    kind = pop.shippers.arrays["kinds"][shipper, col].astype(np.int64)
    country = pop.shippers.arrays["country"][shipper].astype(np.int64)
    desc = catalog.pick(catalog.kind_desc, kind, rng)
    hts = catalog.pick(catalog.kind_hts, kind, rng)
    special = rng.random(n) < catalog.special_share[kind]
    desc = np.where(special, catalog.pick(catalog.kind_special, kind, rng), desc)
    hts = np.where(special, catalog.pick(catalog.kind_special_hts, kind, rng), hts)
    mode = _choice_rows(rng, mode_cum[kind, country])
    hts = np.where(rng.random(n) < np.where(mode == MODES.index("postal"), 0.4, 0.1), -1, hts)
    med_v = np.log(np.array([k.value_usd for k in catalog.kinds]))
    sig_v = np.array([k.value_sigma for k in catalog.kinds])
    med_w = np.log(np.array([k.weight_kg for k in catalog.kinds]))
    sig_w = np.array([k.weight_sigma for k in catalog.kinds])
    value = np.exp(med_v[kind] + sig_v[kind] * rng.standard_normal(n))
    weight = np.exp(med_w[kind] + sig_w[kind] * rng.standard_normal(n))
    pieces = rng.geometric(0.8, n).astype(np.int32)
    person = weighted_draw(rng, pop.people.arrays["popularity"], n)
    to_lab = rng.random(n) < catalog.to_lab[kind]
    person[to_lab] = rng.choice(pop.universities, int(to_lab.sum()))
    to_business = ~to_lab & (rng.random(n) < catalog.to_business[kind])
    bw = pop.people.arrays["popularity"][pop.business]
    person[to_business] = pop.business[weighted_draw(rng, bw, int(to_business.sum()))]
    # the day's first-time buyers, one parcel each, in place of drawn occasional buyers
    candidates = np.flatnonzero(~to_lab & ~to_business)
    first = rng.choice(candidates, min(len(pop.fresh), len(candidates)), replace=False)
    person[first] = pop.fresh[: len(first)]
    address = pop.people.arrays["address"][person]
    fwd = (~to_lab) & (rng.random(n) < 0.03)
    address[fwd] = rng.choice(pop.forwarders, int(fwd.sum()))
    hk = country == COUNTRIES.index("HK")
    via_hk = hk & (rng.random(n) < 0.6)
    origin = np.where(via_hk, COUNTRIES.index("CN"), country).astype(np.int16)
    export = np.where(via_hk, COUNTRIES.index("HK"), -1).astype(np.int16)
    # Chinese goods also leave through bonded warehouses and consolidation hubs abroad
    hub = (origin == COUNTRIES.index("CN")) & (export < 0) & (rng.random(n) < 0.03)
    hubs = np.array([COUNTRIES.index(c) for c in ("SG", "MY", "NL")])
    export = np.where(hub, hubs[rng.integers(0, len(hubs), n)], export).astype(np.int16)
    vague = np.array([k.vague for k in catalog.kinds])[kind]
    u = rng.random(n)
    p_viol = 0.015 + 0.04 * vague
    cls = np.where(
        u < p_viol,
        S.OUTCOMES.index("other_violation"),
        np.where(u > 1 - 0.0004, S.OUTCOMES.index("other_narcotic"), S.OUTCOMES.index("no_finding")),
    )
    return {
        "shipper": shipper.astype(np.int64),
        "person": person.astype(np.int64),
        "address": address.astype(np.int64),
        "desc": desc.astype(np.int32),
        "hts": hts.astype(np.int32),
        "mode": mode.astype(np.int8),
        "value_usd": value,
        "weight": weight,
        "pieces": pieces,
        "origin": origin,
        "export": export,
        "kind": kind.astype(np.int16),
        "cls": cls.astype(np.int8),
        "cell": np.full(n, -1, dtype=np.int32),
        "scheme": np.full(n, -1, dtype=np.int8),
        "port": np.full(n, -1, dtype=np.int16),
        "seller": np.full(n, -1, dtype=np.int64),
    }


def _per_mode(
    rng: np.random.Generator, mode: np.ndarray, table: dict[str, list[tuple[str, float]]], codes: list[str]
) -> np.ndarray:
    out = np.zeros(len(mode), dtype=np.int16)
    for m, name in enumerate(MODES):
        sel = np.flatnonzero(mode == m)
        items = table[name]
        p = np.array([w for _, w in items])
        out[sel] = np.array([codes.index(c) for c, _ in items])[rng.choice(len(items), len(sel), p=p / p.sum())]
    return out


def assemble(
    parts: list[dict[str, np.ndarray]],
    rng: np.random.Generator,
    pop: Population,
    day: date,
    day_index: int,
    faults: bool,
) -> pl.DataFrame:
    """Common filing attributes, shuffling, ids, amendments and fault marks for all parcels of a day."""
    # legitimate rows are independent draws, already in random order; the illicit ones are
    # dropped in at random places so that ids and file positions do not reveal the class
    n = sum(len(p["shipper"]) for p in parts)
    if len(parts) == 1:
        cols = dict(parts[0])
    else:
        legit, ill = parts
        at = np.zeros(n, dtype=bool)
        at[rng.choice(n, len(ill["shipper"]), replace=False)] = True
        cols = {}
        for k in legit:
            col = np.empty(n, dtype=np.result_type(legit[k], ill[k]))
            col[at] = ill[k]
            col[~at] = legit[k]
            cols[k] = col
    mode = cols["mode"]
    port = _per_mode(rng, mode, PORTS, PORT_CODES)
    port = np.where(cols["port"] >= 0, cols["port"], port).astype(np.int16)  # a cell's preferred port
    from_ca = np.flatnonzero((mode == MODES.index("truck")) & (cols["origin"] == COUNTRIES.index("CA")))
    ca = np.array([PORT_CODES.index(c) for c, _ in CANADA_TRUCK_PORTS])
    w = np.array([x for _, x in CANADA_TRUCK_PORTS])
    port[from_ca] = ca[rng.choice(len(ca), len(from_ca), p=w / w.sum())]
    cols["port"] = port.astype(np.int16)
    carrier = _per_mode(rng, mode, CARRIERS, CARRIER_CODES)
    postal = mode == MODES.index("postal")
    op = np.array([CARRIER_CODES.index(POSTAL_OPERATOR.get(c, "UPU")) for c in COUNTRIES])
    cols["carrier"] = np.where(postal, op[cols["origin"]], carrier).astype(np.int16)
    entry = np.zeros(n, dtype=np.int8)
    for m, name in enumerate(MODES):
        sel = np.flatnonzero(mode == m)
        p = np.array(ENTRY_PROBS[name])
        entry[sel] = rng.choice(len(p), len(sel), p=p / p.sum())
    cols["entry"] = entry
    ship_country = pop.shippers.arrays["country"][cols["shipper"]]
    local = np.array([CURRENCIES.index(LOCAL_CURRENCY.get(c, "USD")) for c in SHIPPER_COUNTRIES])
    currency = np.where(rng.random(n) < 0.2, local[ship_country], 0).astype(np.int8)
    cols["currency"] = currency
    decimals = np.where(currency == CURRENCIES.index("JPY"), 0, 2)
    raw_value = cols["value_usd"] * PER_USD[currency]
    cols["declared_value"] = np.round(raw_value * 10.0**decimals) / 10.0**decimals
    cols["weight"] = np.maximum(0.01, np.round(cols["weight"], 3))
    illicit = cols["cell"] >= 0
    cols["has_seller"] = (mode != MODES.index("truck")) & (rng.random(n) < np.where(illicit, 0.45, 0.6))
    drawn = weighted_draw(rng, pop.sellers.arrays["popularity"], n)
    cols["seller"] = np.where(
        cols["has_seller"], np.where(cols["seller"] >= 0, cols["seller"], drawn), -1
    )  # cells list their own
    cols["listed_price"] = np.round(cols["declared_value"] * rng.uniform(1.0, 1.6, n), 2)
    air = mode == MODES.index("air_cargo")
    express = mode == MODES.index("express")
    has_master = air | (express & (rng.random(n) < 0.3))
    groups = max(1, n // 150)
    cols["master"] = np.where(
        has_master,
        (np.array([int(p) for p in PORT_CODES])[cols["port"]] % 1000) * 100_000_000
        + (day_index * 1_000_003 + rng.integers(0, groups, n)) % 100_000_000,
        -1,
    )
    lo = np.array([LEAD_HOURS[m][0] for m in MODES])[mode]
    hi = np.array([LEAD_HOURS[m][1] for m in MODES])[mode]
    lead_s = (rng.uniform(lo, hi) * 3600).astype(np.int64)
    cols["filed_us"] = day_micros(day) - lead_s * 1_000_000 + rng.integers(0, 1000, n) * 1000 * (rng.random(n) < 0.3)
    cols["ts_style"] = rng.choice(8, n, p=[0.3, 0.15, 0.1, 0.03, 0.2, 0.1, 0.1, 0.02]).astype(np.int8)
    cols["addr_var"] = rng.choice(4, n, p=[0.8, 0.08, 0.07, 0.05]).astype(np.int8)
    cols["desc_upper"] = rng.random(n) < 0.06
    cols["name_upper"] = rng.random(n) < 0.05
    cols["hts_style"] = rng.choice(3, n, p=[0.8, 0.12, 0.08]).astype(np.int8)
    p_contact = np.array([0.85, 0.3, 0.5, 0.7])[mode]
    cols["has_contact"] = rng.random(n) < p_contact
    cols["has_consignee_contact"] = rng.random(n) < p_contact * 0.95
    cols["has_account"] = rng.random(n) < np.array([0.7, 0.0, 0.3, 0.2])[mode]
    cols["has_known"] = express & (rng.random(n) < 0.8)
    cols["fault"] = np.where(faults & (rng.random(n) < FAULT_SHARE), rng.integers(1, 7, n), 0).astype(np.int8)
    prefix = pl.Series(["EX", "LP", "AC", "TR"]).gather(pl.Series(mode.astype(np.int64)))
    seq = pl.Series(np.arange(n, dtype=np.int64)).cast(pl.String).str.zfill(8)
    ids = pl.select(pl.concat_str([prefix, pl.lit(day.strftime("%y%m%d")), seq]).alias("id")).to_series()
    core = pl.DataFrame(cols).with_columns(ids, pl.lit(0, dtype=pl.Int8).alias("version"))
    return core


def amendments(core: pl.DataFrame, rng: np.random.Generator, catalog: Catalog) -> pl.DataFrame:
    """Later filings of ~2.5 % of shipments: corrected value, description or weight (``_pos`` is
    the row of the original filing)."""
    n = core.height
    pick = np.flatnonzero((rng.random(n) < AMEND_SHARE) & (core["fault"].to_numpy() == 0))
    if len(pick) == 0:
        return core.clear().with_columns(pl.Series("_pos", [], dtype=pl.Int64))
    a = core[pick].with_columns(pl.Series("_pos", pick.astype(np.int64)))
    m = len(pick)
    what = rng.integers(0, 3, m)
    kind = a["kind"].to_numpy().astype(np.int64)
    new_desc = np.where(
        (what == 1) & (kind >= 0), catalog.pick(catalog.kind_desc, np.clip(kind, 0, None), rng), a["desc"].to_numpy()
    )
    factor = np.where(what == 0, rng.uniform(0.7, 1.3, m), 1.0)
    wfactor = np.where(what == 2, rng.uniform(0.8, 1.25, m), 1.0)
    return a.with_columns(
        pl.Series("desc", new_desc.astype(np.int32)),
        (pl.col("declared_value") * factor).round(2).alias("declared_value"),
        (pl.col("weight") * wfactor).round(3).clip(0.01, None).alias("weight"),
        (pl.col("filed_us") + rng.integers(3600, 20 * 3600, m) * 1_000_000).alias("filed_us"),
        pl.lit(1, dtype=pl.Int8).alias("version"),
    )


#: what Mexican export declarations say instead of the manifest's English text
GENERIC_ES = (
    "mercancia general",
    "mercancias varias",
    "articulos varios",
    "productos diversos",
    "muestras sin valor",
    "refacciones",
    "artesanias",
    "ropa y accesorios",
)


def _partner(
    core: pl.DataFrame, rng: np.random.Generator, pop: Population, catalog: Catalog
) -> tuple[pl.DataFrame, np.ndarray]:
    """Mexico's export declarations for Mexico-origin parcels. Honest ones disagree too: an FOB
    value below the retail value on the manifest (or a list price above it), a net weight beside
    a gross one, a generic Spanish description; about one in eight is never sent. Pill cells'
    parcels are missing more often and disagree more often, by amounts an honest filing also shows."""
    is_mx = core["origin"].to_numpy() == COUNTRIES.index("MX")
    status = np.zeros(core.height, dtype=np.int8)  # 0 not Mexican, 1 match, 2 missing, 3 mismatch
    mx = core.filter(pl.Series(is_mx))
    n = mx.height
    if n == 0:
        return pl.DataFrame(schema=S.PARTNER_SCHEMA), status
    illicit = mx["cell"].to_numpy() >= 0
    keep = rng.random(n) > np.where(illicit, 0.4, 0.12)
    u_v, u_w, u_d = rng.random(n), rng.random(n), rng.random(n)
    fob = u_v < np.where(illicit, 0.45, 0.25)  # FOB (or undervalued) on the export side
    retail = ~fob & (u_v < np.where(illicit, 0.55, 0.35))  # list price above the manifest value
    v_factor = np.where(
        fob, rng.uniform(0.35, 0.85, n), np.where(retail, rng.uniform(1.2, 2.2, n), rng.uniform(0.98, 1.02, n))
    )
    net = u_w < np.where(illicit, 0.35, 0.2)  # net weight (no packaging) vs gross
    tare = ~net & (u_w < np.where(illicit, 0.45, 0.3))  # pallet or tare counted in
    w_factor = np.where(
        net, rng.uniform(0.5, 0.9, n), np.where(tare, rng.uniform(1.1, 1.6, n), rng.uniform(0.97, 1.03, n))
    )
    generic = u_d < np.where(illicit, 0.4, 0.25)
    desc = catalog.descriptions.gather(mx["desc"])
    es = pl.Series(GENERIC_ES).gather(pl.Series(rng.integers(0, len(GENERIC_ES), n)))
    sh = pop.shippers.frame.select(pl.all().gather(mx["shipper"]))
    out = pl.DataFrame(
        {
            S.SHIPMENT_ID: mx["id"],
            S.EXPORT_COUNTRY: pl.Series(["MX"] * n),
            S.EXPORTER_NAME: sh["name"],
            S.EXPORTER_AEO: sh["trusted"].is_not_null().to_numpy() | (rng.random(n) < 0.05),
            S.PARTNER_DECLARED_VALUE_USD: np.round(mx["value_usd"].to_numpy() * v_factor, 2),
            S.GROSS_WEIGHT_KG: np.round(mx["weight"].to_numpy() * w_factor, 3),
            S.DESCRIPTION: pl.select(pl.when(pl.Series(generic)).then(es).otherwise(desc)).to_series(),
            S.DECLARED_AT: pl.Series(mx["filed_us"].to_numpy() - rng.integers(3600, 24 * 3600, n) * 1_000_000).cast(
                pl.Datetime("us", "UTC")
            ),
        }
    )
    differs = (np.abs(np.log(v_factor)) > 0.3) | (np.abs(np.log(w_factor)) > 0.2) | generic
    status[is_mx] = np.where(~keep, 2, np.where(differs, 3, 1))
    return out.filter(pl.Series(keep)).cast(pl.Schema(S.PARTNER_SCHEMA)), status


def _truth(core: pl.DataFrame, cells: list[Cell], day: date) -> pl.DataFrame:
    cell_ids = pl.Series([c.cell_id for c in cells] or [""], dtype=pl.String)
    return pl.DataFrame(
        {
            S.SHIPMENT_ID: core["id"],
            S.ARRIVAL_DATE: pl.Series([day] * core.height, dtype=pl.Date),
            S.TRUE_CLASS: pl.Series(S.OUTCOMES).gather(core["cls"]),
            S.SCHEME: pl.select(
                pl.when(core["scheme"] >= 0).then(pl.Series(SCHEMES).gather(core["scheme"].clip(0, None)))
            ).to_series(),
            S.CELL_ID: pl.select(
                pl.when(core["cell"] >= 0).then(cell_ids.gather(core["cell"].clip(0, None)))
            ).to_series(),
        }
    ).cast(pl.Schema(S.TRUTH_SCHEMA))


@dataclass
class Lookouts:
    """Parties of earlier seizures that officers watch for, for ``exams.LOOKOUT_DAYS`` after the
    seizure: shippers, their phones, consignees and delivery addresses (package forwarders
    excepted: everyone ships through them)."""

    since: dict[str, dict] = field(default_factory=lambda: {"shipper": {}, "person": {}, "address": {}, "phone": {}})

    def hit(self, core: pl.DataFrame, pop: Population, day: date) -> np.ndarray:
        def live(kind: str) -> list:
            return [k for k, d in self.since[kind].items() if (day - d).days <= exams.LOOKOUT_DAYS]

        out = pop.shippers.frame["phone"].gather(core["shipper"]).is_in(live("phone")).to_numpy()
        for col in ("shipper", "person", "address"):
            out |= np.isin(core[col].to_numpy(), np.array(live(col), dtype=np.int64))
        return out

    def add(self, seized: pl.DataFrame, pop: Population, day: date) -> None:
        ids = {
            "shipper": seized["shipper"].to_list(),
            "person": seized["person"].to_list(),
            "address": np.setdiff1d(seized["address"].to_numpy(), pop.forwarders).tolist(),
            "phone": pop.shippers.frame["phone"].gather(seized["shipper"]).to_list(),
        }
        for kind, keys in ids.items():
            self.since[kind].update(dict.fromkeys(keys, day))


def _exams(
    core: pl.DataFrame,
    rng: np.random.Generator,
    pop: Population,
    catalog: Catalog,
    day: date,
    dflags: dict[str, np.ndarray],
    risky_hts: np.ndarray,
    partner_status: np.ndarray,
    lookouts: Lookouts | None = None,
    random_share: float = exams.RANDOM_SHARE,
) -> pl.DataFrame:
    origin = core["origin"].to_numpy()
    cn_hk = np.isin(origin, [COUNTRIES.index("CN"), COUNTRIES.index("HK")])
    trusted = pop.shippers.frame["trusted"].is_not_null().to_numpy()[core["shipper"].to_numpy()]
    mx_truck = (origin == COUNTRIES.index("MX")) & (core["mode"].to_numpy() == MODES.index("truck")) & ~trusted
    created = pop.shippers.frame["account_created"].gather(core["shipper"]).to_numpy()
    age = (np.datetime64(day, "D") - created.astype("datetime64[D]")).astype(np.int64)
    new_account = core["has_account"].to_numpy() & (age < exams.NEW_ACCOUNT_DAYS)
    score = exams.rule_score(
        core["desc"].to_numpy(),
        core["hts"].to_numpy(),
        cn_hk,
        mx_truck,
        core["value_usd"].to_numpy(),
        core["weight"].to_numpy(),
        dflags,
        risky_hts,
        parcels_to_address=np.bincount(address := core["address"].to_numpy())[address],
        partner_status=partner_status,
        lookout=None if lookouts is None else lookouts.hit(core, pop, day),
        new_account=new_account,
        known_lab=np.isin(core["person"].to_numpy(), pop.universities),
    )
    reason = exams.select_exams(score, core["fault"].to_numpy() == 0, rng, random_share=random_share)
    sel = np.flatnonzero(reason > 0)
    ex = core[sel]
    outcome = pl.Series(S.OUTCOMES).gather(ex["cls"])
    notes = pl.select(
        pl.when(outcome.is_in(S.POSITIVE_OUTCOMES))
        .then(pl.lit("seized; sample sent to lab"))
        .when(outcome == "other_violation")
        .then(pl.lit("IPR or valuation issue"))
    ).to_series()
    return pl.DataFrame(
        {
            S.SHIPMENT_ID: ex["id"],
            S.EXAM_DATE: pl.Series([day] * len(sel), dtype=pl.Date),
            S.OUTCOME: outcome,
            S.EXAM_REASON: pl.Series(["", "targeted", "random"]).gather(pl.Series(reason[sel].astype(np.int64))),
            S.EXAMINER: pl.select(
                pl.concat_str([pl.lit("CBPO-"), pl.Series(rng.integers(100, 999, len(sel))).cast(pl.String)])
            ).to_series(),
            S.NOTES: notes,
            "cell": ex["cell"],
            "shipper": ex["shipper"],
            "person": ex["person"],
            "address": ex["address"],
        }
    )
