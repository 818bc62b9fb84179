"""The goods catalog of the synthetic world: legitimate kinds, look-alikes and what illicit cells write.

Every description the world can write is a row of one flat description table (``desc_id`` ->
text) so that rows carry small integers until the files are written.

Illicit cells hide in legitimate trade: their cover descriptions and HTS codes are drawn from the
legitimate kinds of :data:`COVER_KINDS` (so every cover text also travels on honest parcels), and
the few parcels that name what they carry (a precursor's name and CAS number, a tablet press)
use texts that registered labs and manufacturers also write on legal imports (reference
standards, List I chemicals for research, encapsulators for supplement makers). Legitimate
look-alikes use chemical and machinery words on purpose (reagents, dyes, resin, moulds, punch
sets): no keyword separates the classes alone.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl


@dataclass(frozen=True)
class Kind:
    """A kind of legitimate goods: how it is described, classified, valued and where it comes from."""

    key: str
    hts: tuple[str, ...]
    descriptions: tuple[str, ...]
    value_usd: float  # median declared value
    weight_kg: float  # median gross weight
    origins: dict[str, float]
    popularity: float = 1.0
    value_sigma: float = 0.7
    weight_sigma: float = 0.6
    vague: bool = False  # a generic description ("gift", "parts"): a weak flag, mostly legitimate
    modes: dict[str, float] = field(default_factory=dict)  # override of the default channel mix
    # a share of the kind's parcels with other texts and codes (a lab's listed chemicals)
    special: tuple[str, ...] = ()
    special_hts: tuple[str, ...] = ()
    special_share: float = 0.0
    # where the kind goes besides homes: share of parcels to university labs / to businesses
    to_lab: float = 0.0
    to_business: float = 0.0


#: the legitimate kinds, one ``[[kind]]`` table each, in the order the generator indexes them
KINDS_FILE = Path(__file__).resolve().parent.parent / "reference" / "synth" / "kinds.toml"
_TUPLE_FIELDS = ("hts", "descriptions", "special", "special_hts")


def load_kinds(path: Path = KINDS_FILE) -> tuple[Kind, ...]:
    """The kinds of goods of a data file (a table of ~60 kinds is data, not code); the file keeps
    the kinds' and their origins' order, so the same seed still makes the same world."""
    with path.open("rb") as fh:
        entries = tomllib.load(fh)["kind"]
    return tuple(_kind(entry) for entry in entries)


def _kind(entry: dict[str, Any]) -> Kind:
    fields: dict[str, Any] = {name: tuple(v) if name in _TUPLE_FIELDS else v for name, v in entry.items()}
    return Kind(**fields)


KINDS: tuple[Kind, ...] = load_kinds()


# ---------------------------------------------------------------------------------------------
# what illicit cells write
# ---------------------------------------------------------------------------------------------
#: a parcel that names its precursor: texts a registered lab also writes (shared with the
#: lab_reagent kind's listed chemicals) and the cells' own spellings
PRECURSOR_EXPLICIT = (
    "4-Piperidone hydrochloride CAS 41661-47-6",
    "1-Boc-4-piperidone CAS 79099-07-3",
    "tert-Butyl 4-oxopiperidine-1-carboxylate",
    "4-Piperidone monohydrate hydrochloride 98%",
    "N-Boc-4-piperidone 97% for synthesis",
    "NPP CAS 39742-60-4",
    "N-phenethyl-4-piperidone 99%",
    "4-AP CAS 23056-29-3",
    "1-boc-4-AP CAS 125541-22-2",
    "ANPP CAS 21409-26-7",
    "pharmaceutical intermediate CAS 79099-07-3",
    "4-anilinopiperidine dihydrochloride",
)
#: a parcel that names its press or dies: what tablet-press sellers write on every sale
PRESS_EXPLICIT = (
    "tablet press machine",
    "single punch tablet press TDP-5",
    "tablet press punch and die set",
    "rotary tablet press dies",
    "pill press for candy tablets",
    "capsule filling machine",
)
SCHEME_EXPLICIT: dict[str, tuple[str, ...]] = {"precursor": PRECURSOR_EXPLICIT, "pill_press": PRESS_EXPLICIT}
#: the HTS codes of a named parcel are those of the legitimate kind that writes the same texts
SCHEME_EXPLICIT_KIND = {"precursor": "lab_reagent", "pill_press": "pharma_equipment"}

#: legitimate kinds whose texts and codes a cell's cover parcels borrow (a cell uses two or
#: three of its scheme's kinds at a time and changes them after a seizure)
COVER_KINDS: dict[str, tuple[str, ...]] = {
    "precursor": (
        "cosmetic_raw",
        "coatings",
        "pet_food",
        "hair_dye",
        "plastic_sheet",
        "hardware",
        "supplements",
        "skincare",
        "lab_reagent",
        "dyes",
        "resin_craft",
        "soap_candle",
        "industrial_chem",
        "kitchen",
        "tea",
    ),
    "pill_press": (
        "machine_parts",
        "hardware",
        "tools",
        "molds",
        "auto_parts",
        "kitchen",
        "craft_punch",
        "metal_punch",
        "small_machinery",
        "sports",
        "bike_parts",
    ),
    "pills_mx": (
        "wood_crafts",
        "shapewear",
        "supplements",
        "mx_handicraft",
        "mx_apparel",
        "tablet_candy",
        "mx_food",
        "mx_auto",
        "toys",
        "snacks",
        "coffee",
    ),
    "reshipper": (
        "gift",
        "toys",
        "dress",
        "parts",
        "sample",
        "tshirt",
        "phone_case",
        "jewelry",
        "smart_devices",
        "lipstick",
        "shoes",
        "handbag",
        "decor",
        "headphones",
        "cables",
    ),
    # the scheme that appears mid-run: precursors from India by mail and air cargo, as everyday goods
    "precursor_in": (
        "books",
        "tea",
        "skincare",
        "supplements",
        "hair_dye",
        "asia_beauty",
        "decor",
        "jewelry",
        "documents",
        "dyes",
    ),
}


def cover_descriptions(kinds: tuple[Kind, ...] | None = None) -> list[str]:
    """Every text an illicit cell may write as a cover (the descriptions of its cover kinds)."""
    by_key = {k.key: k for k in (kinds or KINDS)}
    return sorted({t for keys in COVER_KINDS.values() for key in keys for t in by_key[key].descriptions})


@dataclass(frozen=True)
class Catalog:
    """Flat tables the vectorised generator indexes into."""

    kinds: tuple[Kind, ...]
    descriptions: pl.Series  # desc_id -> text
    hts: pl.Series  # hts_id -> 10-digit code
    kind_desc: list[np.ndarray]  # kind index -> desc ids
    kind_hts: list[np.ndarray]  # kind index -> hts ids
    kind_special: list[np.ndarray]  # kind index -> desc ids of its special texts (may be empty)
    kind_special_hts: list[np.ndarray]
    special_share: np.ndarray  # kind index -> share of its parcels with a special text
    to_lab: np.ndarray  # kind index -> share of its parcels to university labs
    to_business: np.ndarray  # kind index -> share of its parcels to businesses
    scheme_explicit: dict[str, np.ndarray]  # scheme -> desc ids of parcels that name their goods
    scheme_explicit_hts: dict[str, np.ndarray]  # scheme -> hts ids of those parcels
    cover_kinds: dict[str, np.ndarray]  # scheme -> kind indices its covers borrow

    def index(self, key: str) -> int:
        return [k.key for k in self.kinds].index(key)

    def pick(self, table: list[np.ndarray], kinds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One entry per row from each row's kind list (``kind_desc``, ``kind_hts``, ...), vectorised
        (a kind with an empty list gives entry 0: pick only rows whose kind has entries)."""
        lengths = np.array([len(t) for t in table])
        padded = np.zeros((len(table), max(1, lengths.max())), dtype=np.int32)
        for i, t in enumerate(table):
            padded[i, : len(t)] = t
        col = (rng.random(len(kinds)) * lengths[kinds]).astype(np.int64)
        return padded[kinds, col]

    def desc_ids(self, texts: tuple[str, ...]) -> np.ndarray:
        index = {t: i for i, t in enumerate(self.descriptions.to_list())}
        return np.array([index[t] for t in texts], dtype=np.int32)


def build_catalog(kinds: tuple[Kind, ...] = KINDS) -> Catalog:
    """Index every text and code once (a few hundred strings: a Python loop is fine here)."""
    texts: list[str] = []
    codes: list[str] = []
    text_id: dict[str, int] = {}
    code_id: dict[str, int] = {}

    def tid(t: str) -> int:
        if t not in text_id:
            text_id[t] = len(texts)
            texts.append(t)
        return text_id[t]

    def cid(c: str) -> int:
        if c not in code_id:
            code_id[c] = len(codes)
            codes.append(c)
        return code_id[c]

    def ids(f: Callable[[str], int], items: Iterable[str]) -> np.ndarray:
        return np.array([f(x) for x in items], dtype=np.int32)

    by_key = {k.key: i for i, k in enumerate(kinds)}
    kind_desc = [ids(tid, k.descriptions) for k in kinds]
    kind_hts = [ids(cid, k.hts) for k in kinds]
    kind_special = [ids(tid, k.special) for k in kinds]
    kind_special_hts = [ids(cid, k.special_hts) for k in kinds]
    explicit = {s: ids(tid, texts_) for s, texts_ in SCHEME_EXPLICIT.items()}
    explicit_hts = {
        s: ids(cid, kinds[by_key[key]].hts + kinds[by_key[key]].special_hts) for s, key in SCHEME_EXPLICIT_KIND.items()
    }
    cover = {s: np.array([by_key[k] for k in keys], dtype=np.int64) for s, keys in COVER_KINDS.items()}
    return Catalog(
        kinds=kinds,
        descriptions=pl.Series("description", texts, dtype=pl.String),
        hts=pl.Series("hts_code", codes, dtype=pl.String),
        kind_desc=kind_desc,
        kind_hts=kind_hts,
        kind_special=kind_special,
        kind_special_hts=kind_special_hts,
        special_share=np.array([k.special_share for k in kinds]),
        to_lab=np.array([k.to_lab for k in kinds]),
        to_business=np.array([k.to_business for k in kinds]),
        scheme_explicit=explicit,
        scheme_explicit_hts=explicit_hts,
        cover_kinds=cover,
    )
