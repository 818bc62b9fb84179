"""Parts of the synthetic world in isolation: adaptation of cells, exam rules, spellings, draws."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from riskpipe.synth import exams
from riskpipe.synth.catalog import COVER_KINDS, KINDS, build_catalog, cover_descriptions
from riskpipe.synth.daily import weighted_draw
from riskpipe.synth.population import build_population
from riskpipe.synth.schemes import adapt, illicit_rows, make_cells, record_seizures
from riskpipe.synth.writer import street_variants

DAY = date(2026, 1, 5)


def _small_world(seed: int = 0):
    rng = np.random.default_rng(seed)
    catalog = build_catalog()
    pop = build_population(rng, 2000, catalog, DAY)
    cells = make_cells(rng, 30.0, pop, catalog, DAY)
    return rng, catalog, pop, cells


def test_catalog_has_forty_kinds_with_ten_digit_codes():
    catalog = build_catalog()
    assert len(KINDS) >= 40
    assert catalog.hts.str.contains(r"^\d{10}$").all()
    assert all(len(k.descriptions) >= 3 for k in KINDS)
    texts = set(catalog.descriptions.to_list())
    # look-alikes and illicit covers share texts on purpose
    assert {"dog food", "machine parts", "corsets", "cosmetic materials"} <= texts


def test_a_seized_cell_changes_covers_aliases_drops_modes_and_ports_after_a_lag():
    rng, catalog, pop, cells = _small_world()
    cell, other = cells[0], cells[1]
    before = (
        set(cell.cover),
        set(cell.aliases),
        set(cell.drops),
        set(cell.mules),
        cell.modes.copy(),
        set(cell.sellers),
    )
    other_before = set(other.aliases)
    record_seizures(cells, {cell.cell_id}, DAY, rng)
    assert cell.seizures == [DAY] and cell.adapt_on is not None
    lag = (cell.adapt_on - DAY).days
    assert 2 <= lag <= 6
    assert adapt(cells, DAY + timedelta(days=1), rng, pop, catalog) == []  # not yet
    assert set(cell.aliases) == before[1]
    changed = adapt(cells, cell.adapt_on, rng, pop, catalog)
    assert changed == [cell.cell_id]
    assert cell.generation == 2 and cell.adapt_on is None
    assert set(cell.aliases).isdisjoint(before[1])
    assert set(cell.mules).isdisjoint(before[3])
    assert set(cell.sellers).isdisjoint(before[5])  # its own marketplace listings, not honest sellers
    assert (pop.sellers.arrays["popularity"][cell.sellers] == 0).all()
    assert set(cell.drops) != before[2]
    assert not np.allclose(cell.modes, before[4])  # a burnt cell shifts its channels
    assert abs(cell.modes.sum() - 1) < 1e-9 and cell.modes[3] == 0  # no trucks from China
    assert set(other.aliases) == other_before  # the other cells keep their disguise
    # new parcels of the cell carry the new aliases
    rows = illicit_rows([cell], 50, rng, pop, catalog)
    assert set(rows["shipper"]) <= set(cell.aliases)
    assert set(rows["seller"]) <= set(cell.sellers)
    # over many seized cells, covers and preferred ports change too
    old = {c.cell_id: (set(c.cover), tuple(c.ports)) for c in cells}
    record_seizures(cells, {c.cell_id for c in cells}, DAY + timedelta(days=10), rng)
    adapt(cells, DAY + timedelta(days=20), rng, pop, catalog)
    assert sum(set(c.cover) != old[c.cell_id][0] for c in cells) > len(cells) / 2
    assert sum(tuple(c.ports) != old[c.cell_id][1] for c in cells) > len(cells) / 2


def test_covers_are_legitimate_goods_and_named_parcels_write_what_labs_write():
    catalog = build_catalog()
    legit_texts = {t for k in KINDS for t in k.descriptions + k.special}
    legit_codes = {c for k in KINDS for c in k.hts + k.special_hts}
    for scheme, kinds in COVER_KINDS.items():
        assert len(kinds) >= 8, scheme
    assert set(cover_descriptions()) <= legit_texts
    for scheme, ids in catalog.scheme_explicit.items():
        texts = set(catalog.descriptions.gather(pl.Series(ids.astype(np.int64))).to_list())
        assert len(texts & legit_texts) >= len(texts) / 3, scheme  # labs and makers write them too
        codes = set(catalog.hts.gather(pl.Series(catalog.scheme_explicit_hts[scheme].astype(np.int64))).to_list())
        assert codes <= legit_codes, scheme


def test_legitimate_shippers_share_contacts_and_cells_file_them_three_ways():
    _, _, pop, cells = _small_world(1)
    legit = pop.shippers.frame.head(300)  # the starting population: no cell alias among them
    for col in ("phone", "email", "ip"):
        shared = legit.filter(pl.col(col).is_duplicated()).height
        assert shared > 0.15 * legit.height, col  # agents', marketplaces' and consolidators' contacts
    styles = {c.contacts for c in cells}
    assert styles <= {"shared", "agent", "own"} and len(styles) >= 2
    agents = set(pop.agents.frame["phone"].to_list()) | set(pop.agents.frame["ip"].to_list())
    for cell in cells:
        f = pop.shippers.frame[cell.aliases]
        assert f["name"].n_unique() == len(cell.aliases)
        if cell.contacts == "shared":
            assert f["phone"].n_unique() <= 2 < len(cell.aliases) + 1
            assert f["ip"].n_unique() <= 2
        elif cell.contacts == "agent":
            assert (set(f["phone"].to_list()) | set(f["ip"].to_list())) & agents
        else:
            assert f["phone"].n_unique() == len(cell.aliases)


def test_illicit_rows_follow_their_scheme():
    rng, catalog, pop, cells = _small_world(2)
    rows = illicit_rows(cells, 400, rng, pop, catalog)
    assert len(rows["shipper"]) == 400
    scheme = rows["scheme"]
    press = scheme == 1
    assert np.median(rows["weight"][press]) > 10 * np.median(rows["weight"][scheme == 0])
    from riskpipe.synth.places import COUNTRIES

    assert (rows["origin"][scheme == 2] == COUNTRIES.index("MX")).all()


def test_exam_rules_and_selection():
    catalog = build_catalog()
    flags = exams.description_flags(pl.Series(["NPP CAS 39742-60-4", "gift", "punch die set", "T-shirt"]))
    assert flags["chem"].tolist() == [True, False, False, False]
    assert flags["vague"].tolist() == [False, True, False, False]
    assert flags["press"].tolist() == [False, False, True, False]
    risky = exams.hts_flags(pl.Series(["2933399100", "6109100012"]))
    assert risky.tolist() == [True, False]
    score = exams.rule_score(
        np.array([0, 1, 2, 3]),
        np.array([0, -1, -1, 1]),
        np.array([True, True, False, False]),
        np.array([False, False, False, True]),
        np.array([10.0, 5.0, 60.0, 20.0]),
        np.array([1.0, 0.2, 40.0, 2.0]),
        flags,
        risky,
    )
    assert score.tolist() == [3.5, 1.0, 3.5, 1.5]
    reason = exams.select_exams(
        np.array([5.0, 0.0, 2.0, 0.0]),
        np.array([True, True, True, True]),
        np.random.default_rng(0),
        random_share=0.0,
        targeted_share=0.25,
    )
    assert reason.tolist() == [1, 0, 0, 0]
    assert len(catalog.descriptions) > 200


def test_street_variants_write_the_same_place_differently():
    lines = pl.Series(["12 Maple St Apt 4", "7 Oak Ave", "99 Pine Rd Suite 200", "5 Elm Dr Ste 101", "3 Bay Ct"])
    out = street_variants(lines, pl.Series([2, 2, 3, 1, 0], dtype=pl.Int8))
    assert out.to_list() == [
        "12 Maple Street #4",
        "7 Oak Avenue",
        "99 pine rd, suite 200",
        "5 ELM DR STE 101",
        "3 Bay Ct",
    ]


def test_weighted_draw_follows_the_weights_and_the_seed():
    w = np.array([1.0, 0.0, 3.0])
    a = weighted_draw(np.random.default_rng(9), w, 40_000)
    b = weighted_draw(np.random.default_rng(9), w, 40_000)
    assert (a == b).all()
    share = np.bincount(a, minlength=3) / len(a)
    assert share[1] == 0.0
    assert abs(share[2] - 0.75) < 0.01
    assert (np.diff(a[:1000]) != 0).any()  # not sorted: row order stays random


def test_split_parcels_and_partner_mismatch_add_rule_points():
    flags = exams.description_flags(pl.Series(["T-shirt"]))
    risky = exams.hts_flags(pl.Series(["6109100012"]))
    z = np.zeros(4, dtype=np.int64)
    score = exams.rule_score(
        z,
        z,
        np.zeros(4, bool),
        np.zeros(4, bool),
        np.full(4, 20.0),
        np.full(4, 1.0),
        flags,
        risky,
        parcels_to_address=np.array([1, 3, 5, 1]),
        partner_status=np.array([0, 1, 2, 3]),
    )
    assert score.tolist() == [0.0, 1.0, 2.5, 1.0]  # honest partner filings differ too: a difference is one point
    score = exams.rule_score(
        z,
        z,
        np.zeros(4, bool),
        np.zeros(4, bool),
        np.full(4, 20.0),
        np.full(4, 1.0),
        flags,
        risky,
        lookout=np.array([True, False, False, True]),
        new_account=np.array([False, True, False, True]),
    )
    assert score.tolist() == [3.0, 1.0, 0.0, 4.0]


def test_new_cells_spawn_naive_with_fresh_ids():
    from riskpipe.synth.schemes import spawn

    rng, catalog, pop, cells = _small_world(3)
    n = len(cells)
    new = spawn(cells, rng, pop, catalog, DAY + timedelta(days=3), rate=1.0)
    assert len(new) > 0 and len(cells) == n + len(new)
    assert [c.cell_id for c in new] == [f"C{n + i + 1:04d}" for i in range(len(new))]
    assert all(c.generation == 1 and len(c.aliases) >= 3 for c in new)


def test_the_kinds_table_loads_as_kinds_every_cover_and_named_kind_known(tmp_path) -> None:
    from riskpipe.synth.catalog import COVER_KINDS, KINDS, SCHEME_EXPLICIT_KIND, Kind, load_kinds

    keys = [k.key for k in KINDS]
    assert len(keys) == len(set(keys)) >= 50
    assert all(isinstance(k.hts, tuple) and isinstance(k.descriptions, tuple) and k.origins for k in KINDS)
    assert {key for keys_ in COVER_KINDS.values() for key in keys_} | set(SCHEME_EXPLICIT_KIND.values()) <= set(keys)
    # the file's order is the kinds' order (the generator indexes kinds by position)
    toml = tmp_path / "kinds.toml"
    toml.write_text(
        '[[kind]]\nkey = "b"\nhts = ["1"]\ndescriptions = ["x"]\nvalue_usd = 1\nweight_kg = 0.5\n'
        'origins = { MX = 0.4, CN = 0.6 }\n\n[[kind]]\nkey = "a"\nhts = ["2"]\ndescriptions = ["y", "z"]\n'
        "value_usd = 2.5\nweight_kg = 1\norigins = { CN = 1.0 }\nmodes = { truck = 1.0 }\n",
        encoding="utf-8",
    )
    assert load_kinds(toml) == (
        Kind("b", ("1",), ("x",), 1, 0.5, {"MX": 0.4, "CN": 0.6}),
        Kind("a", ("2",), ("y", "z"), 2.5, 1, {"CN": 1.0}, modes={"truck": 1.0}),
    )
    assert list(load_kinds(toml)[0].origins) == ["MX", "CN"]
