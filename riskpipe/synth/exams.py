"""The simulated exam policy that produces the labels of past days.

Like a real agency: a small random compliance share, plus a rule-targeted share chosen by simple
keyword / origin / HTS / weight rules an officer might write and by lookouts on the parties of
earlier seizures (shipper, consignee, delivery address). An exam finds what the parcel truly
holds, so labels exist only for examined parcels and are biased toward what the rules look at.
"""

from __future__ import annotations

import numpy as np
import polars as pl

RANDOM_SHARE = 0.01  # compliance exams, not chosen by risk (real programmes sample about 1 %)
TARGETED_SHARE = 0.008  # rule-targeted exams, at most this share of the day's parcels
MIN_RULE_SCORE = 1.5
LOOKOUT_POINTS = 3.0  # a party of an earlier seizure is on the parcel
LOOKOUT_DAYS = 14  # how long a lookout stays on
NEW_ACCOUNT_POINTS = 1.0  # the account on the filing is less than two weeks old
NEW_ACCOUNT_DAYS = 14
KNOWN_LAB_DISCOUNT = 2.0  # a registered lab buying reagents

CHEM_PATTERN = r"(?i)\bcas\b|piperid|anilin|phenethyl|\bnpp\b|\banpp\b|\b4-ap\b|fentanyl|intermediate|chemical|reagent"
PRESS_PATTERN = r"(?i)press|\bdies?\b|punch|mou?ld|stamping"
VAGUE_PATTERN = r"(?i)^(gifts?|samples?|parts|goods|daily necessities|accessories|personal items|present)$"
RISKY_HTS = ("2933", "2942", "8479", "8207", "8422")


def description_flags(descriptions: pl.Series) -> dict[str, np.ndarray]:
    """Keyword flags of every description text (computed once on the small description table)."""
    return {
        "chem": descriptions.str.contains(CHEM_PATTERN).to_numpy(),
        "press": descriptions.str.contains(PRESS_PATTERN).to_numpy(),
        "vague": descriptions.str.contains(VAGUE_PATTERN).to_numpy(),
    }


def hts_flags(hts: pl.Series) -> np.ndarray:
    return hts.str.slice(0, 4).is_in(list(RISKY_HTS)).to_numpy()


def rule_score(
    desc: np.ndarray,
    hts: np.ndarray,
    origin_cn_hk: np.ndarray,
    mx_truck_untrusted: np.ndarray,
    value_usd: np.ndarray,
    weight_kg: np.ndarray,
    dflags: dict[str, np.ndarray],
    risky_hts: np.ndarray,
    parcels_to_address: np.ndarray | None = None,
    partner_status: np.ndarray | None = None,
    lookout: np.ndarray | None = None,
    new_account: np.ndarray | None = None,
    known_lab: np.ndarray | None = None,
) -> np.ndarray:
    """Points of simple targeting rules per parcel (vectorised).

    ``parcels_to_address``: parcels of the day to the same address (split shipments);
    ``partner_status``: 0 not Mexican, 1 partner export matches, 2 missing, 3 differs;
    ``lookout``: a party of the parcel was on an earlier seizure; ``new_account``: the filed
    account is less than two weeks old; ``known_lab``: the consignee is a registered university
    lab (officers know who buys reagents legally)."""
    heavy_cheap = (weight_kg > 20) & (value_usd < 150)
    risky = np.where(hts >= 0, risky_hts[np.clip(hts, 0, None)], False)
    score = (
        2.0 * dflags["chem"][desc]
        + 1.5 * dflags["press"][desc]
        + 1.0 * (dflags["press"][desc] & (weight_kg > 10))
        + 1.0 * (dflags["vague"][desc] & origin_cn_hk)
        + 1.5 * risky
        + 1.5 * mx_truck_untrusted
        + 1.0 * heavy_cheap
    )
    if parcels_to_address is not None:
        score = score + 1.0 * (parcels_to_address >= 3) + 0.5 * (parcels_to_address >= 5)
    if partner_status is not None:
        score = score + 1.0 * (partner_status == 2) + 1.0 * (partner_status == 3)
    if lookout is not None:
        score = score + LOOKOUT_POINTS * lookout
    if new_account is not None:
        score = score + NEW_ACCOUNT_POINTS * new_account
    if known_lab is not None:
        score = score - KNOWN_LAB_DISCOUNT * known_lab
    return score


def select_exams(
    score: np.ndarray,
    eligible: np.ndarray,
    rng: np.random.Generator,
    random_share: float = RANDOM_SHARE,
    targeted_share: float = TARGETED_SHARE,
) -> np.ndarray:
    """Exam reason per parcel: 0 none, 1 targeted, 2 random (vectorised)."""
    n = len(score)
    reason = np.zeros(n, dtype=np.int8)
    noisy = score + rng.random(n) * 0.5
    # the compliance draw is made first and independently of risk, so random exams are a uniform
    # sample of the day (drawn after targeting, they would skip the parcels the rules caught)
    rand = eligible & (rng.random(n) < random_share)
    reason[rand] = 2
    candidates = np.flatnonzero(eligible & ~rand & (score >= MIN_RULE_SCORE))
    k = min(len(candidates), int(round(targeted_share * n)))
    if k:
        top = candidates[np.argsort(-noisy[candidates], kind="stable")[:k]]
        reason[top] = 1
    return reason
