from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.rank import exploration_slots, load_reason_texts, port_slots, rank_day

DAY = date(2026, 1, 10)
TEXTS = {"PRECURSOR_CAS": "CAS number of a listed precursor", "model:value_per_kg": "Unusual value per kg"}


def _settings(**kw) -> Settings:
    base = dict(port_capacity={"4701": 3, "2720": 2}, other_port_capacity=1, exploration_share=0.0)
    base.update(kw)
    return Settings(**base)


def _day(rows: list[tuple[str, str, float, str | None]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """rows: (shipment_id, port, risk_score, network_id)."""
    scores = pl.DataFrame(
        {
            S.SHIPMENT_ID: [r[0] for r in rows],
            S.RISK_SCORE: [r[2] for r in rows],
            S.RULE_SCORE: [0.0] * len(rows),
            S.REASONS: [["PRECURSOR_CAS"] if r[2] > 0.5 else [] for r in rows],
            S.MODEL_VERSION: ["v1"] * len(rows),
            S.NETWORK_ID: [r[3] for r in rows],
        },
        schema_overrides={S.REASONS: pl.List(pl.String), S.NETWORK_ID: pl.String},
    )
    raw = pl.DataFrame(
        {
            S.SHIPMENT_ID: [r[0] for r in rows],
            S.PORT_OF_ENTRY: [r[1] for r in rows],
            S.ARRIVAL_DATE: [DAY] * len(rows),
            S.SHIPPER_NAME: ["s"] * len(rows),
            S.DESCRIPTION: ["d"] * len(rows),
            S.DECLARED_VALUE_USD: [10.0] * len(rows),
            S.MODE: pl.Series(["express"] * len(rows), dtype=S.Mode),
        }
    )
    return scores, raw


def test_port_slots_default_and_scaled():
    s = _settings()
    assert port_slots({"4701": 100, "2720": 100, "9999": 100}, s) == {"2720": 2, "4701": 3, "9999": 1}
    # total 6 scaled to 4: exact 2.0, 1.333, 0.667 -> floors 2,1,0 -> remainder to 9999 (0.667)
    assert port_slots({"4701": 100, "2720": 100, "9999": 100}, s, capacity=4) == {"2720": 1, "4701": 2, "9999": 1}
    # never more slots than shipments
    assert port_slots({"4701": 1}, s) == {"4701": 1}
    assert exploration_slots(25, 0.1) == 3 and exploration_slots(24, 0.1) == 2 and exploration_slots(4, 0.1) == 0


def test_rank_exact_order_capacity_and_columns():
    scores, raw = _day(
        [
            ("a", "4701", 0.9, None),
            ("b", "4701", 0.2, None),
            ("c", "4701", 0.7, None),
            ("d", "4701", 0.1, None),
            ("e", "2720", 0.8, None),
            ("f", "2720", 0.3, None),
            ("g", "2720", 0.3, None),
            ("h", "9999", 0.05, None),
        ]
    )
    out = rank_day(scores, raw, _settings(), texts=TEXTS)
    assert list(out.schema.items()) == list(S.TARGETS_SCHEMA.items())
    assert out[S.SHIPMENT_ID].to_list() == ["a", "e", "c", "f", "b", "h"]  # f before g: tie by id
    assert out[S.RANK].to_list() == [1, 2, 3, 4, 5, 6]
    assert set(out[S.SELECTION]) == {"risk"}
    assert out[S.REASON_TEXT][0] == "CAS number of a listed precursor"
    assert out[S.MODE][0] == "express" and out[S.HTS_CODE][0] is None


def test_capacity_override_scales_ports():
    scores, raw = _day([(f"s{i}", "4701" if i < 5 else "2720", i / 10, None) for i in range(10)])
    out = rank_day(scores, raw, _settings(), capacity=10)
    assert out.group_by(S.PORT_OF_ENTRY).len().sort(S.PORT_OF_ENTRY).rows() == [("2720", 4), ("4701", 5)]


def test_network_members_follow_best_member():
    scores, raw = _day(
        [
            ("a", "4701", 0.9, None),
            ("b", "4701", 0.8, None),
            ("c", "4701", 0.1, "net1"),
            ("d", "2720", 0.95, "net1"),
            ("e", "2720", 0.5, None),
        ]
    )
    out = rank_day(scores, raw, _settings(port_capacity={"4701": 3, "2720": 2}), texts=TEXTS)
    assert out[S.SHIPMENT_ID].to_list() == ["d", "c", "a", "b", "e"]
    assert out[S.NETWORK_ID].to_list() == ["net1", "net1", None, None, None]


def test_exploration_is_random_seeded_and_order_free():
    rows = [(f"s{i:03d}", "4701", 1.0 - i / 100, None) for i in range(100)]
    scores, raw = _day(rows)
    settings = _settings(port_capacity={"4701": 20}, exploration_share=0.1)
    out = rank_day(scores, raw, settings, seed=3, texts=TEXTS)
    risk = out.filter(pl.col(S.SELECTION) == "risk")[S.SHIPMENT_ID].to_list()
    explore = out.filter(pl.col(S.SELECTION) == "exploration")[S.SHIPMENT_ID].to_list()
    assert risk == [f"s{i:03d}" for i in range(18)]
    assert len(explore) == 2 and not set(explore) & set(risk)
    assert out[S.RANK].to_list()[-2:] == [19, 20]
    assert out.filter(pl.col(S.SELECTION) == "exploration")[S.REASON_TEXT][0].startswith("Chosen at random")
    # same seed, shuffled input: same list; another seed: (almost surely) other picks
    again = rank_day(scores.sample(fraction=1.0, shuffle=True, seed=1), raw, settings, seed=3, texts=TEXTS)
    assert again.equals(out)
    other = rank_day(scores, raw, settings, seed=4, texts=TEXTS)
    assert other.filter(pl.col(S.SELECTION) == "exploration")[S.SHIPMENT_ID].to_list() != explore


def test_reason_text_falls_back_to_words_and_shipped_texts_load():
    scores, raw = _day([("a", "4701", 0.1, None)])
    scores = scores.with_columns(pl.Series(S.REASONS, [["model:value_per_kg", "NEW_RULE_X"]]))
    out = rank_day(scores, raw, _settings(), texts=TEXTS)
    assert out[S.REASON_TEXT][0] == "Unusual value per kg; new rule x"
    assert "model:score" in load_reason_texts()


def test_empty_day():
    scores, raw = _day([])
    out = rank_day(scores, raw, _settings(), texts=TEXTS)
    assert out.is_empty() and list(out.schema) == list(S.TARGETS_SCHEMA)


@pytest.mark.parametrize("bad", [-1])
def test_negative_capacity_rejected(bad):
    with pytest.raises(ValueError):
        port_slots({"4701": 3}, _settings(), capacity=bad)


def test_hub_networks_larger_than_the_limit_are_not_grouped():
    scores, raw = _day(
        [
            ("a", "4701", 0.9, "hub"),
            ("b", "4701", 0.8, None),
            ("c", "4701", 0.1, "hub"),
            ("d", "4701", 0.05, "hub"),
        ]
    )
    settings = _settings(port_capacity={"4701": 3})
    grouped = rank_day(scores, raw, settings, texts=TEXTS, max_network_size=3)
    assert grouped[S.SHIPMENT_ID].to_list() == ["a", "c", "b"]
    hub = rank_day(scores, raw, settings, texts=TEXTS, max_network_size=2)
    assert hub[S.SHIPMENT_ID].to_list() == ["a", "b", "c"]
    assert hub[S.NETWORK_ID].to_list() == ["hub", None, "hub"]


def test_every_feature_has_plain_words():
    from riskpipe.features import FEATURE_COLUMNS

    texts = load_reason_texts()
    assert [f for f in FEATURE_COLUMNS if f"model:{f}" not in texts] == []


def test_exploration_is_shared_across_small_ports():
    from riskpipe.rank import apportion

    # 3 ports x 3 slots, share 0.1 -> round(0.9) = 1 exploration slot overall (0 per port alone)
    assert apportion(1, {"a": 3, "b": 3, "c": 3}) == {"a": 1, "b": 0, "c": 0}
    assert apportion(5, {"a": 6, "b": 3, "c": 1}) == {"a": 3, "b": 2, "c": 0}
    rows = [(f"{p}{i}", p, 1.0 - i / 10, None) for p in ("4701", "2720") for i in range(6)]
    scores, raw = _day(rows)
    out = rank_day(scores, raw, _settings(port_capacity={"4701": 3, "2720": 2}, exploration_share=0.1), texts=TEXTS)
    assert out[S.SELECTION].to_list().count("exploration") == 1
    assert out.group_by(S.PORT_OF_ENTRY).len().sort(S.PORT_OF_ENTRY).rows() == [("2720", 2), ("4701", 3)]


# --- issue 14 point 5: a port's capacity is a ceiling, not a quota -------------------------------


def _hot_and_cold_day() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Port 4701 (ceiling 3): six high-risk shipments; port 2720 (ceiling 2): four of risk 0."""
    hot = [(f"h{i}", "4701", 0.9 - i / 100, None) for i in range(6)]
    cold = [(f"c{i}", "2720", 0.0, None) for i in range(4)]
    return _day(hot + cold)


def test_slots_go_by_risk_up_to_the_ports_ceiling_never_to_risk_zero():
    scores, raw = _hot_and_cold_day()
    out = rank_day(scores, raw, _settings(), texts=TEXTS)
    risk = out.filter(pl.col(S.SELECTION) == "risk")
    # the hot port up to its ceiling (3), by score; no score-0 shipment is a risk pick
    assert risk[S.SHIPMENT_ID].to_list() == ["h0", "h1", "h2"]
    assert risk.filter(pl.col(S.RISK_SCORE) <= 0.0).height == 0
    # the cold port's ceiling, unusable on risk, became exploration there (labelled so)
    spare = out.filter(pl.col(S.SELECTION) == "exploration")
    assert spare[S.PORT_OF_ENTRY].to_list() == ["2720", "2720"]
    # a total budget below the ceilings' sum goes to the highest risk, wherever it is: with
    # ceilings 3 and 3 and --capacity 3, all three exams go to the hot port (a quota split
    # gave the cold port its share of zero-risk shipments)
    out3 = rank_day(scores, raw, _settings(port_capacity={"4701": 3, "2720": 3}), capacity=3, texts=TEXTS)
    assert out3[S.SHIPMENT_ID].to_list() == ["h0", "h1", "h2"] and set(out3[S.SELECTION]) == {"risk"}
    # a floor: shipments at or below min_target_risk are not risk picks
    floor = rank_day(scores, raw, _settings(min_target_risk=0.885), texts=TEXTS)
    assert floor.filter(pl.col(S.SELECTION) == "risk")[S.SHIPMENT_ID].to_list() == ["h0", "h1"]
    assert floor.height == 5


def test_capacity_is_the_days_total_up_to_what_the_ceilings_allow():
    rows = [("p0", "4701", 0.9, None)] + [(f"q{i}", "2720", 0.5 - i / 100, None) for i in range(10)]
    scores, raw = _day(rows)
    s = _settings(exploration_share=0.1)
    # 3 exams, ceilings 3 (one shipment) and 2: a quota split (2 and 1, then capped by the one
    # shipment) spent only 2
    assert rank_day(scores, raw, s, capacity=3, texts=TEXTS).height == 3
    from riskpipe.rank import day_budget, port_ceilings

    # 4701 can examine its one shipment; 2720 up to 2 (its ceiling): 3 in all
    assert port_ceilings({"4701": 1, "2720": 10}, s, capacity=3) == {"2720": 2, "4701": 1}
    # (7 > the table's 5 for these ports: the ceilings grow to 7 * 3/5 -> 4 and 7 * 2/5 -> 3, then
    # 4701's single shipment caps it: 1 + 3)
    for n, want in [(1, 1), (2, 2), (3, 3), (7, 4)]:
        out = rank_day(scores, raw, s, capacity=n, texts=TEXTS)
        assert out.height == want == day_budget(port_ceilings({"4701": 1, "2720": 10}, s, n), n)
    # more than the table's sum: ceilings scale up in proportion, capped by each port's shipments
    assert port_ceilings({"4701": 100, "2720": 100, "9999": 100}, _settings(), capacity=12) == {
        "2720": 4,
        "4701": 6,
        "9999": 2,
    }
    assert port_ceilings({"4701": 100, "2720": 100, "9999": 100}, _settings(), capacity=4) == {
        "2720": 2,
        "4701": 3,
        "9999": 1,
    }
    out = rank_day(scores, raw, s, capacity=11, texts=TEXTS)
    assert out.height == 5  # ceilings 11 * 3/5 -> 7 and 11 * 2/5 -> 4, then 4701's one shipment: 1 + 4


def test_exploration_picks_carry_their_selection_probability():
    # 100 shipments at one port, ceiling 20, 10 % exploration: 18 risk picks, 2 drawn among the
    # other 82, each with chance 2/82
    scores, raw = _day([(f"s{i:03d}", "4701", 1.0 - i / 100, None) for i in range(100)])
    out = rank_day(scores, raw, _settings(port_capacity={"4701": 20}, exploration_share=0.1), seed=3, texts=TEXTS)
    prob = dict(out.group_by(S.SELECTION).agg(pl.col(S.SELECTION_PROBABILITY).unique()).iter_rows())
    assert prob["risk"] == [1.0]
    assert prob["exploration"] == [pytest.approx(2 / 82)]
    # spare slots turned into exploration: 2 draws among the cold port's 4 unpicked shipments
    scores, raw = _hot_and_cold_day()
    out = rank_day(scores, raw, _settings(), texts=TEXTS)
    assert out.filter(pl.col(S.SELECTION) == "exploration")[S.SELECTION_PROBABILITY].to_list() == [0.5, 0.5]


def test_top_risk_gaps_count_what_was_not_examined_and_why():
    from riskpipe.rank import gaps_sentence, top_risk_gaps

    # hot port 4701 (ceiling 3) holds the six highest scores; 2720 (ceiling 3) middling ones;
    # capacity 6 with 1 exploration slot
    rows = [(f"h{i}", "4701", 0.9 - i / 100, None) for i in range(6)] + [
        (f"m{i}", "2720", 0.5 - i / 100, None) for i in range(6)
    ]
    scores, raw = _day(rows)
    settings = _settings(port_capacity={"4701": 3, "2720": 3}, exploration_share=0.2)
    out = rank_day(scores, raw, settings, capacity=5, seed=1, texts=TEXTS)
    assert out.height == 5
    gaps = top_risk_gaps(scores, raw, out, settings, capacity=5)
    # top 5 = h0..h4; the list holds h0..h2 (4701's ceiling: 2 risk + 1 exploration, or 3 risk)
    missed = {"h0", "h1", "h2", "h3", "h4"} - set(out[S.SHIPMENT_ID])
    assert gaps["top_n"] == 5 and gaps["not_examined"] == len(missed) >= 2
    assert gaps["reasons"]["port_ceiling"]["shipments"] == len(missed)
    want_mass = scores.filter(pl.col(S.SHIPMENT_ID).is_in(list(missed)))[S.RISK_SCORE].sum()
    assert gaps["not_examined_risk_mass"] == pytest.approx(want_mass)
    assert gaps["top_risk_mass"] == pytest.approx(0.9 + 0.89 + 0.88 + 0.87 + 0.86)
    assert f"{len(missed)} because their port's ceiling was full of higher-risk picks" in gaps_sentence(gaps)
    # one port, no ceiling binding: what is missed was taken by the exploration slots
    one = [(f"s{i:02d}", "4701", 1.0 - i / 100, None) for i in range(40)]
    scores, raw = _day(one)
    settings = _settings(port_capacity={"4701": 20}, exploration_share=0.1)
    out = rank_day(scores, raw, settings, seed=3, texts=TEXTS)
    gaps = top_risk_gaps(scores, raw, out, settings)
    n_lost = len({f"s{i:02d}" for i in range(20)} - set(out[S.SHIPMENT_ID]))
    assert n_lost > 0 and gaps["reasons"]["exploration"]["shipments"] == n_lost == gaps["not_examined"]
    assert gaps["reasons"]["port_ceiling"]["shipments"] == 0
    # a full port with an exploration pick: its best missed shipment lost its exam to
    # exploration, the rest to the ceiling (4701: 9 risk + 1 exploration of its 20 top shipments)
    rows = [(f"h{i:02d}", "4701", 0.9 - i / 100, None) for i in range(20)] + [
        (f"m{i:02d}", "2720", 0.1, None) for i in range(20)
    ]
    scores, raw = _day(rows)
    settings = _settings(port_capacity={"4701": 10, "2720": 10}, exploration_share=0.1)
    out = rank_day(scores, raw, settings, seed=3, texts=TEXTS)
    gaps = top_risk_gaps(scores, raw, out, settings)
    assert gaps["not_examined"] == 10
    assert (gaps["reasons"]["exploration"]["shipments"], gaps["reasons"]["port_ceiling"]["shipments"]) == (1, 9)


def _top_by_full_sort(frame: pl.DataFrame, n: int) -> pl.DataFrame:
    """The original selection of ``top_risk_gaps``: the whole day sorted, then its head."""
    return frame.sort([S.RISK_SCORE, S.SHIPMENT_ID], descending=[True, False], nulls_last=True).head(n)


@pytest.mark.parametrize("n", [0, 1, 7, 50, 199, 200, 250])
def test_top_by_score_equals_the_full_sort_with_ties_and_nulls(n):
    import numpy as np

    from riskpipe.rank import top_by_score

    rng = np.random.default_rng(n)
    scores = rng.choice([0.1, 0.2, 0.5, 0.9, 0.95], size=200)  # many ties: broken by shipment id
    frame = pl.DataFrame(
        {
            S.SHIPMENT_ID: [f"s{i:04d}" for i in rng.permutation(200)],
            S.RISK_SCORE: pl.Series(scores).scatter(rng.choice(200, 30, replace=False), None),
        }
    )
    assert top_by_score(frame, n).equals(_top_by_full_sort(frame, n))
    with_nan = frame.with_columns(frame[S.RISK_SCORE].scatter([3, 4], float("nan")))
    assert top_by_score(with_nan, n).equals(_top_by_full_sort(with_nan, n))


def test_top_risk_gaps_equal_the_full_sort_version_on_a_tied_day():
    """Old vs new: ``top_risk_gaps`` with the whole-day sort (the original) gives the same dict."""
    import numpy as np

    from riskpipe import rank
    from riskpipe.rank import top_risk_gaps

    rng = np.random.default_rng(5)
    rows = [
        (f"x{i:04d}", str(rng.choice(["4701", "2720", "3001"])), float(rng.choice([0.0, 0.3, 0.6, 0.6, 0.8])), None)
        for i in range(300)
    ]
    scores, raw = _day(rows)
    settings = _settings(port_capacity={"4701": 8, "2720": 5}, other_port_capacity=4, exploration_share=0.2)
    out = rank_day(scores, raw, settings, seed=2, texts=TEXTS)
    new = top_risk_gaps(scores, raw, out, settings)
    original = rank.top_by_score
    try:
        rank.top_by_score = _top_by_full_sort
        old = top_risk_gaps(scores, raw, out, settings)
    finally:
        rank.top_by_score = original
    assert new == old and new["not_examined"] > 0


def _big_day(n: int, seed: int, tied: bool = True) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A day with a hot port holding most of the top scores, null scores and (``tied``) tied
    scores."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ports = rng.choice(["4701", "2720", "3001", "5201"], size=n, p=[0.1, 0.4, 0.4, 0.1])
    base = rng.choice([0.0, 0.05, 0.1, 0.2, 0.3], size=n) if tied else rng.random(n) * 0.3
    score = base + np.where(ports == "4701", 0.6, 0.0)
    rows = [(f"q{i:05d}", str(p), float(s), None) for i, (p, s) in enumerate(zip(ports, score, strict=True))]
    scores, raw = _day(rows)
    scores = scores.with_columns(scores[S.RISK_SCORE].scatter(rng.choice(n, n // 20, replace=False), None))
    return scores.sample(fraction=1.0, shuffle=True, seed=seed), raw


@pytest.mark.parametrize(
    "kw",
    [
        dict(exploration_share=0.0),
        dict(exploration_share=0.2),
        dict(exploration_share=0.2, min_target_risk=0.25),
        dict(exploration_share=0.3, exploration_novelty_share=0.5),
    ],
)
def test_rank_day_sorting_a_prefix_picks_as_the_whole_day_sort(kw):
    """Old vs new: the list is the same whether the whole day is sorted first (the original
    computation, ``first_rows`` past the day) or only a growing prefix of its best scores."""
    scores, raw = _big_day(3000, 4)
    if kw.get("exploration_novelty_share"):
        scores = scores.with_columns((pl.col(S.SHIPMENT_ID).str.slice(1).cast(pl.Int64) % 7 / 7).alias("novelty"))
    settings = _settings(port_capacity={"4701": 40, "2720": 30, "3001": 30}, other_port_capacity=10, **kw)
    whole = rank_day(scores, raw, settings, seed=11, texts=TEXTS, first_rows=10**9)
    assert whole.filter(pl.col(S.PORT_OF_ENTRY) == "4701").height == 40  # the hot port is full
    for first in (None, 1, 50, 400):
        got = rank_day(scores, raw, settings, seed=11, texts=TEXTS, first_rows=first)
        assert got.equals(whole), first


def test_rank_day_equal_random_keys_keep_the_score_order_tie_break(monkeypatch):
    """Exploration breaks a tie of random keys by the day's score order: equal keys (forced
    here) must pick what the whole-day sort picked."""
    from riskpipe import rank

    real = rank._random_keys
    monkeypatch.setattr(rank, "_random_keys", lambda ids, day, seed: (real(ids, day, seed) * 2).floor() / 2)
    # only the hot port is eligible: the prefix stops early and most exploration is drawn
    # from the rows after it
    scores, raw = _big_day(2000, 9, tied=False)
    settings = _settings(port_capacity={"4701": 20, "2720": 30, "3001": 30}, exploration_share=0.5, min_target_risk=0.5)
    whole = rank_day(scores, raw, settings, seed=5, texts=TEXTS, first_rows=10**9)
    got = rank_day(scores, raw, settings, seed=5, texts=TEXTS, first_rows=1)
    assert got.equals(whole) and (got[S.SELECTION] == "exploration").sum() > 50


def _in_pieces(scores: pl.DataFrame, raw: pl.DataFrame, rows: int):
    """The day cut into id ranges of ``rows`` (as the night reads its id-sorted scores file)."""
    day = scores.select(S.SHIPMENT_ID, S.RISK_SCORE, S.NETWORK_ID).join(raw, on=S.SHIPMENT_ID)
    day = day.sort(S.SHIPMENT_ID)
    pieces = [lambda a=a: day.slice(a, rows) for a in range(0, day.height, rows)]
    carried = lambda ids: scores.filter(pl.col(S.SHIPMENT_ID).is_in(ids.implode())).select(  # noqa: E731
        S.SHIPMENT_ID, S.RULE_SCORE, S.REASONS, S.MODEL_VERSION
    )
    return pieces, carried


@pytest.mark.parametrize(
    "kw,capacity",
    [
        (dict(exploration_share=0.0), None),
        (dict(exploration_share=0.2), None),
        (dict(exploration_share=0.2, min_target_risk=0.25), None),  # spare slots become exploration
        (dict(exploration_share=0.1), 37),  # a day-wide budget below the ceilings
        (dict(exploration_share=0.1), 400),  # ceilings scaled up
    ],
)
@pytest.mark.parametrize("rows", [1, 97, 1000, 5000])
def test_rank_pieces_gives_rank_day_s_list_and_top_risk_gaps(kw, capacity, rows):
    """A day ranked in pieces (the night on a cluster) gives exactly the whole-day list: same
    picks, order, probabilities, words; and the same top-risk gaps from the merged top rows."""
    from riskpipe.rank import rank_pieces, top_risk_gaps

    scores, raw = _big_day(3000, 4)
    i = pl.col(S.SHIPMENT_ID).str.slice(1).cast(pl.Int64)
    scores = scores.with_columns(  # networks spanning pieces: three hubs of 60, two cases of 30
        pl.when(i % 50 < 3)
        .then(pl.lit("N") + (i % 3).cast(pl.String))
        .when(i % 50 == 3)
        .then(pl.lit("M") + (i // 50 % 2).cast(pl.String))
        .otherwise(pl.col(S.NETWORK_ID))
        .alias(S.NETWORK_ID)
    )
    settings = _settings(port_capacity={"4701": 40, "2720": 30, "3001": 30}, other_port_capacity=10, **kw)
    whole = rank_day(scores, raw, settings, capacity=capacity, seed=11, texts=TEXTS, max_network_size=40)
    pieces, carried = _in_pieces(scores, raw, rows)
    got = rank_pieces(pieces, carried, settings, capacity=capacity, seed=11, texts=TEXTS, max_network_size=40)
    assert got.targets.equals(whole)
    assert whole.height >= 37 and whole[S.NETWORK_ID].drop_nulls().n_unique() > 1
    if kw["exploration_share"]:
        assert (whole[S.SELECTION] == "exploration").sum() > 0
    gaps = top_risk_gaps(scores, raw, whole, settings, capacity)
    merged = top_risk_gaps(got.top, got.top, got.targets, settings, capacity, port_counts=got.plan.counts)
    assert merged == gaps and gaps["not_examined"] > 0


def test_rank_pieces_refuses_pieces_out_of_id_order():
    from riskpipe.rank import rank_pieces

    scores, raw = _big_day(300, 2)
    pieces, carried = _in_pieces(scores, raw, 100)
    with pytest.raises(ValueError, match="ascending"):
        rank_pieces(pieces[::-1], carried, _settings(), seed=1, texts=TEXTS)


def test_rank_pieces_of_an_empty_day_gives_an_empty_list_and_gaps():
    from riskpipe.rank import rank_pieces, top_risk_gaps

    got = rank_pieces([], lambda ids: pl.DataFrame(), _settings(), seed=1, texts=TEXTS)
    assert got.targets.is_empty() and got.plan is None
    gaps = top_risk_gaps(got.top, got.top, got.targets, _settings(), port_counts={})
    assert gaps["top_n"] == 0 and gaps["not_examined"] == 0
