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

from dataclasses import dataclass, field

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


_CN = {"CN": 0.72, "HK": 0.14, "VN": 0.05, "TW": 0.03, "IN": 0.03, "TR": 0.03}
_CN_ONLY = {"CN": 0.85, "HK": 0.15}
_EU = {"GB": 0.3, "DE": 0.25, "FR": 0.15, "IT": 0.15, "NL": 0.08, "ES": 0.07}
_ASIA = {"JP": 0.35, "KR": 0.35, "TW": 0.15, "TH": 0.15}
_MX = {"MX": 1.0}
_TRUCK = {"truck": 0.7, "express": 0.3}

KINDS: tuple[Kind, ...] = (
    Kind(
        "dress",
        ("6204444010", "6104430010"),
        ("Women's dress", "ladies summer dress", "polyester dress", "cotton dress women", "Dress"),
        18,
        0.35,
        {**_CN, "GB": 0.02},
        6,
    ),
    Kind(
        "tshirt",
        ("6109100012", "6109902007"),
        ("T-shirt", "men's cotton t-shirt", "tee shirt", "graphic tee", "T SHIRT"),
        9,
        0.2,
        _CN,
        6,
    ),
    Kind(
        "shoes",
        ("6404199060", "6402993165"),
        ("sneakers", "women's shoes", "running shoes", "sandals", "canvas shoes"),
        25,
        0.9,
        {**_CN, "VN": 0.3},
        4,
    ),
    Kind(
        "phone_case",
        ("3926909985",),
        ("phone case", "silicone phone case", "mobile phone cover", "TPU case"),
        4,
        0.08,
        _CN_ONLY,
        5,
    ),
    Kind("cables", ("8544429090",), ("USB cable", "charging cable", "data cable", "type-c cable"), 5, 0.1, _CN_ONLY, 4),
    Kind(
        "headphones",
        ("8518300000",),
        ("wireless earbuds", "bluetooth headphones", "earphones", "headset"),
        22,
        0.2,
        _CN,
        3,
    ),
    Kind(
        "led",
        ("9405420000", "8539520000"),
        ("LED strip light", "LED lamp", "night light", "LED bulbs"),
        14,
        0.4,
        _CN_ONLY,
        3,
    ),
    Kind(
        "toys",
        ("9503000090", "9503000071"),
        ("plush toy", "toys", "kids toy", "building blocks", "toy car"),
        12,
        0.4,
        _CN,
        4,
    ),
    Kind(
        "lipstick",
        ("3304100000",),
        ("lipstick", "lip gloss", "cosmetics lip", "makeup"),
        11,
        0.1,
        {**_CN, **{"KR": 0.2, "FR": 0.1}},
        3,
    ),
    Kind(
        "skincare",
        ("3304990000", "3304995000"),
        ("face cream", "skin care serum", "cosmetics", "moisturizer", "cosmetic sample"),
        16,
        0.15,
        {"KR": 0.35, "CN": 0.3, "JP": 0.15, "FR": 0.1, "US": 0.0, "GB": 0.1},
        4,
    ),
    Kind(
        "hair_dye",
        ("3305900000",),
        ("hair dye", "hair color cream", "hair coloring powder", "henna powder", "cosmetic materials"),
        13,
        0.3,
        {"CN": 0.4, "IN": 0.3, "KR": 0.15, "GB": 0.15},
        2,
    ),
    Kind("nail", ("3304300000",), ("nail polish", "gel nail polish", "nail art kit"), 8, 0.15, _CN_ONLY, 2),
    Kind(
        "jewelry",
        ("7117190000", "7113110000"),
        ("fashion jewelry", "necklace", "earrings", "bracelet", "ring"),
        10,
        0.05,
        _CN,
        4,
    ),
    Kind(
        "watch",
        ("9102110000",),
        ("wrist watch", "quartz watch", "smart watch band"),
        30,
        0.15,
        {**_CN, "CH": 0.05, "JP": 0.05},
        2,
    ),
    Kind("handbag", ("4202229000", "4202221500"), ("handbag", "women's bag", "tote bag", "backpack"), 28, 0.6, _CN, 3),
    Kind(
        "kitchen",
        ("3924100000", "8215990000"),
        ("kitchen utensils", "silicone spatula", "kitchen tools", "food storage container"),
        12,
        0.5,
        _CN_ONLY,
        3,
    ),
    Kind(
        "decor",
        ("6307909891", "7013991000"),
        ("home decor", "cushion cover", "wall art", "artificial flowers"),
        15,
        0.5,
        _CN,
        3,
    ),
    Kind(
        "books",
        ("4901990093",),
        ("books", "printed books", "magazine"),
        20,
        0.6,
        {"GB": 0.4, "DE": 0.1, "JP": 0.2, "CN": 0.2, "IN": 0.1},
        2,
    ),
    Kind(
        "craft_punch",
        ("8203200000", "8205595560"),
        ("craft punch set", "paper punch die set", "embossing die", "scrapbook hole punch", "cutting dies for crafts"),
        14,
        0.4,
        _CN_ONLY,
        1.5,
    ),
    Kind(
        "auto_parts",
        ("8708999990", "8708295000"),
        ("auto parts", "car parts", "brake pads", "parts", "headlight assembly"),
        45,
        2.0,
        {**_CN_ONLY, "MX": 0.1, "DE": 0.05},
        3,
        weight_sigma=0.9,
    ),
    Kind("bike_parts", ("8714990000",), ("bicycle parts", "bike chain", "bicycle accessories"), 25, 0.8, _CN, 1.5),
    Kind(
        "machine_parts",
        ("8487900080", "8483908000", "8466940000"),
        ("machine parts", "spare parts", "metal parts", "bearing", "gear parts", "mold parts"),
        90,
        6.0,
        {**_CN_ONLY, "DE": 0.1, "JP": 0.1, "IT": 0.05},
        2,
        value_sigma=0.9,
        weight_sigma=1.0,
    ),
    Kind(
        "hardware",
        ("7318158000", "7318160085", "7326908688"),
        ("hardware", "hardware nuts", "screws", "bolts and nuts", "snap hooks", "carabiner"),
        12,
        1.2,
        _CN_ONLY,
        2.5,
        weight_sigma=0.9,
    ),
    Kind(
        "tools",
        ("8205590000", "8204110000"),
        ("hand tools", "wrench set", "screwdriver set", "tool kit"),
        20,
        1.5,
        _CN,
        2,
    ),
    Kind(
        "pet_food",
        ("2309100010", "2309100090"),
        ("dog food", "cat food", "pet treats", "dog treats", "pet food sample"),
        25,
        2.5,
        {"CN": 0.3, "CA": 0.2, "GB": 0.15, "TH": 0.2, "MX": 0.15},
        2.5,
    ),
    Kind(
        "pet_supplies",
        ("4201003000", "9603908050"),
        ("pet collar", "dog leash", "pet supplies", "cat toy"),
        9,
        0.3,
        _CN_ONLY,
        2.5,
    ),
    Kind(
        "tablet_candy",
        ("1704909000", "1704905000"),
        ("tablet candy", "pressed candy tablets", "mint tablets", "candy", "vitamin c chewable candy"),
        10,
        0.4,
        {"CN": 0.3, "JP": 0.3, "MX": 0.2, "KR": 0.2},
        2,
    ),
    Kind(
        "supplements",
        ("2106909998", "2936270000"),
        (
            "vitamin tablets",
            "health supplement",
            "dietary supplement capsules",
            "herbal supplement",
            "kidney bean extract",
        ),
        24,
        0.4,
        {"CN": 0.25, "CA": 0.15, "IN": 0.15, "KR": 0.15, "JP": 0.15, "MX": 0.15},
        3,
    ),
    Kind(
        "tea",
        ("0902100000", "0902300000"),
        ("tea", "green tea", "oolong tea", "tea leaves"),
        18,
        0.4,
        {"CN": 0.6, "HK": 0.1, "JP": 0.15, "IN": 0.15},
        2,
    ),
    Kind(
        "coffee",
        ("0901210000",),
        ("coffee beans", "roasted coffee", "ground coffee"),
        22,
        0.6,
        {"MX": 0.3, "GB": 0.1, "IT": 0.2, "VN": 0.2, "DE": 0.2},
        1.5,
    ),
    Kind(
        "snacks",
        ("1905909090", "2106909997"),
        ("snacks", "biscuits", "dried fruit", "instant noodles"),
        15,
        0.8,
        {"CN": 0.3, "KR": 0.25, "JP": 0.25, "MX": 0.2},
        2,
    ),
    Kind(
        "sports",
        ("9506990000", "9506910030"),
        ("sporting goods", "yoga mat", "fitness equipment", "resistance bands", "fishing lure"),
        20,
        1.0,
        _CN,
        3,
    ),
    Kind(
        "smart_devices",
        ("8517620090", "8471607000"),
        ("smart watch", "bluetooth speaker", "electronic accessories", "wireless mouse", "keyboard"),
        35,
        0.4,
        _CN,
        4,
    ),
    Kind(
        "components",
        ("8542390000", "8541100080"),
        ("electronic components", "integrated circuits", "resistors", "PCB board"),
        30,
        0.2,
        {"CN": 0.6, "HK": 0.15, "TW": 0.15, "KR": 0.1},
        2,
    ),
    Kind(
        "gift",
        ("9505900000", "6307909891"),
        ("gift", "gifts", "present", "birthday gift", "GIFT"),
        15,
        0.5,
        {**_CN, "GB": 0.05, "MX": 0.05},
        2,
        vague=True,
    ),
    Kind(
        "sample",
        ("4911998000", "3926909985"),
        ("sample", "samples", "free sample", "sample no commercial value", "SAMPLE"),
        3,
        0.3,
        _CN,
        1.5,
        vague=True,
    ),
    Kind(
        "parts",
        ("8473305100", "8708999990", "8487900080"),
        ("parts", "spare parts", "accessories", "goods", "daily necessities"),
        12,
        0.6,
        _CN_ONLY,
        2,
        vague=True,
    ),
    Kind("documents", ("4911998000",), ("documents", "printed matter", "catalogue"), 1, 0.2, {**_EU, "CN": 0.2}, 1.5),
    Kind(
        "lab_reagent",
        ("2933599590", "2921420000", "2906290000", "2915900000", "2811198000"),
        (
            "Aniline CAS 62-53-3 reagent grade",
            "4-Hydroxypiperidine CAS 5382-16-1",
            "N-Boc-piperazine CAS 57260-71-6",
            "Phenethyl alcohol CAS 60-12-8",
            "Benzaldehyde CAS 100-52-7 AR",
            "Piperidine-4-carboxylic acid CAS 498-94-2",
            "4-Methoxybenzoic acid CAS 100-09-4",
            "laboratory reagent",
            "research chemical for laboratory use",
            "Silica gel 60 CAS 112926-00-8",
            "organic intermediate for research",
        ),
        60,
        0.8,
        {"CN": 0.55, "DE": 0.15, "IN": 0.15, "GB": 0.1, "JP": 0.05},
        1.2,
        special=(  # registered labs import listed chemicals and reference standards legally
            "4-Piperidone hydrochloride CAS 41661-47-6",
            "4-Piperidone monohydrate hydrochloride 98%",
            "1-Boc-4-piperidone CAS 79099-07-3",
            "N-Boc-4-piperidone 97% for synthesis",
            "tert-Butyl 4-oxopiperidine-1-carboxylate",
            "Norfentanyl analytical reference standard",
            "4-ANPP reference standard 1 mg",
            "Fentanyl-D5 certified reference material",
            "NPP analytical standard 10 mg",
            "4-Anilinopiperidine CAS 23056-29-3 reference material",
        ),
        special_hts=("2933399100", "2933370000", "2942000000", "3822190080"),
        special_share=0.07,
        to_lab=0.7,
    ),
    Kind(
        "coatings",
        ("3910000000", "3208909000", "3824999397"),
        ("silicone resin", "nano hydrophobic coating", "water purification tablets", "coating agent", "resin"),
        35,
        2.0,
        _CN_ONLY,
        1,
    ),
    Kind(
        "cosmetic_raw",
        ("3913900000", "2922491000", "3301299000"),
        (
            "cosmetic materials",
            "hyaluronic acid powder CAS 9004-61-9",
            "niacinamide CAS 98-92-0",
            "cosmetic raw material",
            "essential oil",
        ),
        30,
        0.5,
        {"CN": 0.6, "KR": 0.2, "IN": 0.2},
        1,
    ),
    Kind(
        "molds",
        ("3926909985", "8480710000"),
        ("silicone mold", "resin mold", "candy mold", "soap mold"),
        10,
        0.4,
        _CN_ONLY,
        1.2,
    ),
    Kind(
        "capsules",
        ("9602001040",),
        ("empty gelatin capsules", "capsule shells", "vegetable capsules"),
        20,
        0.6,
        {"CN": 0.7, "IN": 0.3},
        0.6,
        to_business=0.3,
    ),
    Kind(
        "wood_crafts",
        ("4420100000", "4420907000"),
        ("wood crafts art", "handmade wooden picture", "wooden craft", "wooden decor"),
        18,
        0.8,
        {"CN": 0.5, "MX": 0.3, "VN": 0.2},
        1.5,
    ),
    Kind(
        "shapewear",
        ("6212300000", "6212200020"),
        ("corsets", "shapewear", "waist trainer", "bra"),
        14,
        0.3,
        {"CN": 0.7, "MX": 0.15, "CO": 0.15},
        2,
    ),
    Kind(
        "plastic_sheet",
        ("3920100000", "3921905050"),
        ("plastic sheet samples", "acrylic sheet", "PVC film"),
        15,
        1.5,
        _CN_ONLY,
        1,
    ),
    # look-alikes with chemical and machinery words, bought by hobbyists, workshops and makers
    Kind(
        "pharma_equipment",
        ("8479899499", "8422300000", "8207300090"),
        (
            "tablet press machine",
            "single punch tablet press TDP-5",
            "capsule filling machine",
            "manual capsule filler 100 holes",
            "tablet press punch and die set",
            "rotary tablet press dies",
            "pill press for candy tablets",
        ),
        380,
        22.0,
        {"CN": 0.85, "IN": 0.1, "HK": 0.05},
        0.12,
        value_sigma=1.0,
        weight_sigma=1.0,
        to_business=0.6,
    ),
    Kind(
        "small_machinery",
        ("8422300000", "8479899499", "8422400000", "8438100090"),
        (
            "vacuum sealer machine",
            "heat sealing machine",
            "bottle filling machine",
            "label printer",
            "candy making machine",
            "cotton candy machine",
        ),
        60,
        6.0,
        {"CN": 0.8, "HK": 0.1, "TW": 0.1},
        1.2,
        value_sigma=0.9,
        weight_sigma=0.9,
        to_business=0.3,
    ),
    Kind(
        "metal_punch",
        ("8203200000", "8205590000", "8207300090"),
        (
            "letter punch set",
            "metal stamping punch set",
            "hole punch set",
            "leather punch tool",
            "center punch",
            "punch and die set",
        ),
        18,
        0.8,
        _CN,
        1.2,
    ),
    Kind(
        "dyes",
        ("3204160000", "3204120000", "3206190000", "3212900050"),
        (
            "reactive dye powder",
            "acid dyes for wool",
            "fabric dye",
            "pigment powder",
            "mica powder for resin",
            "tie dye kit",
        ),
        12,
        0.4,
        {"CN": 0.6, "IN": 0.3, "GB": 0.1},
        1.5,
    ),
    Kind(
        "resin_craft",
        ("3907300000", "3907290000"),
        (
            "epoxy resin kit",
            "UV resin",
            "casting resin",
            "resin pigment",
            "art resin crystal clear",
        ),
        25,
        1.2,
        _CN_ONLY,
        1.5,
    ),
    Kind(
        "soap_candle",
        ("3401300000", "3404900000", "3302909000"),
        (
            "soap making kit",
            "melt and pour soap base",
            "candle wax",
            "fragrance oil",
            "essential oil set",
        ),
        15,
        0.8,
        {"CN": 0.6, "IN": 0.2, "GB": 0.1, "TR": 0.1},
        1.5,
    ),
    Kind(
        "industrial_chem",
        ("2836300000", "2918140000", "2905450000", "2905122000", "3802100000"),
        (
            "sodium bicarbonate food grade",
            "citric acid anhydrous",
            "glycerin 99%",
            "isopropyl alcohol 99%",
            "activated carbon powder",
            "calcium carbonate powder",
            "chemical raw material",
        ),
        25,
        3.0,
        {"CN": 0.6, "IN": 0.3, "DE": 0.1},
        1.0,
        weight_sigma=0.9,
        to_business=0.4,
    ),
    Kind(
        "mx_handicraft",
        ("6912004400", "4602190800"),
        ("handicrafts", "ceramic pottery", "talavera", "woven basket", "artesanias"),
        35,
        2.0,
        _MX,
        1.2,
        modes=_TRUCK,
    ),
    Kind(
        "mx_apparel",
        ("6403919045", "6203424011"),
        ("leather boots", "jeans", "western boots", "clothing"),
        45,
        1.5,
        _MX,
        1.2,
        modes=_TRUCK,
    ),
    Kind(
        "mx_food",
        ("0804400010", "2005995000", "1704909000"),
        ("avocados", "salsa", "mexican candy", "tamarind candy", "dried chiles"),
        40,
        8.0,
        _MX,
        1.0,
        modes=_TRUCK,
        weight_sigma=0.9,
    ),
    Kind(
        "mx_auto",
        ("8708999990", "8544300000"),
        ("auto parts", "wire harness", "machine parts", "parts"),
        120,
        15.0,
        _MX,
        0.8,
        modes=_TRUCK,
        weight_sigma=1.0,
    ),
    Kind(
        "eu_fashion",
        ("6202930511", "4203100000"),
        ("jacket", "leather jacket", "wool coat", "scarf"),
        90,
        0.9,
        _EU,
        1.5,
    ),
    Kind(
        "asia_beauty",
        ("3304990000", "3401300000"),
        ("sheet masks", "sunscreen", "cleansing foam", "cosmetics"),
        20,
        0.4,
        _ASIA,
        2,
    ),
    Kind(
        "ca_goods",
        ("6110202079", "2309100090", "9506990000"),
        ("hoodie", "maple syrup", "hockey stick", "pet treats"),
        40,
        1.2,
        {"CA": 1.0},
        1.2,
        modes={"truck": 0.3, "express": 0.5, "postal": 0.2},
    ),
)

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

    def ids(f, items) -> np.ndarray:
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
