"""The goods catalog of the synthetic world: legitimate kinds, look-alikes and illicit cover texts.

Every description the world can write is a row of one flat description table (``desc_id`` ->
text) so that rows carry small integers until the files are written. Look-alikes share words
with the illicit texts on purpose ("dog food", "machine parts", "punch die", CAS numbers,
"piperidine"...): no keyword separates the classes alone.
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


_CN = {"CN": 0.72, "HK": 0.14, "VN": 0.05, "TW": 0.03, "IN": 0.03, "TR": 0.03}
_CN_ONLY = {"CN": 0.85, "HK": 0.15}
_EU = {"GB": 0.3, "DE": 0.25, "FR": 0.15, "IT": 0.15, "NL": 0.08, "ES": 0.07}
_ASIA = {"JP": 0.35, "KR": 0.35, "TW": 0.15, "TH": 0.15}
_MX = {"MX": 1.0}
_TRUCK = {"truck": 0.7, "express": 0.3}

KINDS: tuple[Kind, ...] = (
    Kind("dress", ("6204444010", "6104430010"), ("Women's dress", "ladies summer dress", "polyester dress", "cotton dress women", "Dress"), 18, 0.35, {**_CN, "GB": 0.02}, 6),
    Kind("tshirt", ("6109100012", "6109902007"), ("T-shirt", "men's cotton t-shirt", "tee shirt", "graphic tee", "T SHIRT"), 9, 0.2, _CN, 6),
    Kind("shoes", ("6404199060", "6402993165"), ("sneakers", "women's shoes", "running shoes", "sandals", "canvas shoes"), 25, 0.9, {**_CN, "VN": 0.3}, 4),
    Kind("phone_case", ("3926909985",), ("phone case", "silicone phone case", "mobile phone cover", "TPU case"), 4, 0.08, _CN_ONLY, 5),
    Kind("cables", ("8544429090",), ("USB cable", "charging cable", "data cable", "type-c cable"), 5, 0.1, _CN_ONLY, 4),
    Kind("headphones", ("8518300000",), ("wireless earbuds", "bluetooth headphones", "earphones", "headset"), 22, 0.2, _CN, 3),
    Kind("led", ("9405420000", "8539520000"), ("LED strip light", "LED lamp", "night light", "LED bulbs"), 14, 0.4, _CN_ONLY, 3),
    Kind("toys", ("9503000090", "9503000071"), ("plush toy", "toys", "kids toy", "building blocks", "toy car"), 12, 0.4, _CN, 4),
    Kind("lipstick", ("3304100000",), ("lipstick", "lip gloss", "cosmetics lip", "makeup"), 11, 0.1, {**_CN, **{"KR": 0.2, "FR": 0.1}}, 3),
    Kind("skincare", ("3304990000", "3304995000"), ("face cream", "skin care serum", "cosmetics", "moisturizer", "cosmetic sample"), 16, 0.15, {"KR": 0.35, "CN": 0.3, "JP": 0.15, "FR": 0.1, "US": 0.0, "GB": 0.1}, 4),
    Kind("hair_dye", ("3305900000",), ("hair dye", "hair color cream", "hair coloring powder", "henna powder", "cosmetic materials"), 13, 0.3, {"CN": 0.4, "IN": 0.3, "KR": 0.15, "GB": 0.15}, 2),
    Kind("nail", ("3304300000",), ("nail polish", "gel nail polish", "nail art kit"), 8, 0.15, _CN_ONLY, 2),
    Kind("jewelry", ("7117190000", "7113110000"), ("fashion jewelry", "necklace", "earrings", "bracelet", "ring"), 10, 0.05, _CN, 4),
    Kind("watch", ("9102110000",), ("wrist watch", "quartz watch", "smart watch band"), 30, 0.15, {**_CN, "CH": 0.05, "JP": 0.05}, 2),
    Kind("handbag", ("4202229000", "4202221500"), ("handbag", "women's bag", "tote bag", "backpack"), 28, 0.6, _CN, 3),
    Kind("kitchen", ("3924100000", "8215990000"), ("kitchen utensils", "silicone spatula", "kitchen tools", "food storage container"), 12, 0.5, _CN_ONLY, 3),
    Kind("decor", ("6307909891", "7013991000"), ("home decor", "cushion cover", "wall art", "artificial flowers"), 15, 0.5, _CN, 3),
    Kind("books", ("4901990093",), ("books", "printed books", "magazine"), 20, 0.6, {"GB": 0.4, "DE": 0.1, "JP": 0.2, "CN": 0.2, "IN": 0.1}, 2),
    Kind("craft_punch", ("8203200000", "8205595560"), ("craft punch set", "paper punch die set", "embossing die", "scrapbook hole punch", "cutting dies for crafts"), 14, 0.4, _CN_ONLY, 1.5),
    Kind("auto_parts", ("8708999990", "8708295000"), ("auto parts", "car parts", "brake pads", "parts", "headlight assembly"), 45, 2.0, {**_CN_ONLY, "MX": 0.1, "DE": 0.05}, 3, weight_sigma=0.9),
    Kind("bike_parts", ("8714990000",), ("bicycle parts", "bike chain", "bicycle accessories"), 25, 0.8, _CN, 1.5),
    Kind("machine_parts", ("8487900080", "8483908000", "8466940000"), ("machine parts", "spare parts", "metal parts", "bearing", "gear parts", "mold parts"), 90, 6.0, {**_CN_ONLY, "DE": 0.1, "JP": 0.1, "IT": 0.05}, 2, value_sigma=0.9, weight_sigma=1.0),
    Kind("hardware", ("7318158000", "7318160085", "7326908688"), ("hardware", "hardware nuts", "screws", "bolts and nuts", "snap hooks", "carabiner"), 12, 1.2, _CN_ONLY, 2.5, weight_sigma=0.9),
    Kind("tools", ("8205590000", "8204110000"), ("hand tools", "wrench set", "screwdriver set", "tool kit"), 20, 1.5, _CN, 2),
    Kind("pet_food", ("2309100010", "2309100090"), ("dog food", "cat food", "pet treats", "dog treats", "pet food sample"), 25, 2.5, {"CN": 0.3, "CA": 0.2, "GB": 0.15, "TH": 0.2, "MX": 0.15}, 2.5),
    Kind("pet_supplies", ("4201003000", "9603908050"), ("pet collar", "dog leash", "pet supplies", "cat toy"), 9, 0.3, _CN_ONLY, 2.5),
    Kind("tablet_candy", ("1704909000", "1704905000"), ("tablet candy", "pressed candy tablets", "mint tablets", "candy", "vitamin c chewable candy"), 10, 0.4, {"CN": 0.3, "JP": 0.3, "MX": 0.2, "KR": 0.2}, 2),
    Kind("supplements", ("2106909998", "2936270000"), ("vitamin tablets", "health supplement", "dietary supplement capsules", "herbal supplement", "kidney bean extract"), 24, 0.4, {"CN": 0.25, "CA": 0.15, "IN": 0.15, "KR": 0.15, "JP": 0.15, "MX": 0.15}, 3),
    Kind("tea", ("0902100000", "0902300000"), ("tea", "green tea", "oolong tea", "tea leaves"), 18, 0.4, {"CN": 0.6, "HK": 0.1, "JP": 0.15, "IN": 0.15}, 2),
    Kind("coffee", ("0901210000",), ("coffee beans", "roasted coffee", "ground coffee"), 22, 0.6, {"MX": 0.3, "GB": 0.1, "IT": 0.2, "VN": 0.2, "DE": 0.2}, 1.5),
    Kind("snacks", ("1905909090", "2106909997"), ("snacks", "biscuits", "dried fruit", "instant noodles"), 15, 0.8, {"CN": 0.3, "KR": 0.25, "JP": 0.25, "MX": 0.2}, 2),
    Kind("sports", ("9506990000", "9506910030"), ("sporting goods", "yoga mat", "fitness equipment", "resistance bands", "fishing lure"), 20, 1.0, _CN, 3),
    Kind("smart_devices", ("8517620090", "8471607000"), ("smart watch", "bluetooth speaker", "electronic accessories", "wireless mouse", "keyboard"), 35, 0.4, _CN, 4),
    Kind("components", ("8542390000", "8541100080"), ("electronic components", "integrated circuits", "resistors", "PCB board"), 30, 0.2, {"CN": 0.6, "HK": 0.15, "TW": 0.15, "KR": 0.1}, 2),
    Kind("gift", ("9505900000", "6307909891"), ("gift", "gifts", "present", "birthday gift", "GIFT"), 15, 0.5, {**_CN, "GB": 0.05, "MX": 0.05}, 2, vague=True),
    Kind("sample", ("4911998000", "3926909985"), ("sample", "samples", "free sample", "sample no commercial value", "SAMPLE"), 3, 0.3, _CN, 1.5, vague=True),
    Kind("parts", ("8473305100", "8708999990", "8487900080"), ("parts", "spare parts", "accessories", "goods", "daily necessities"), 12, 0.6, _CN_ONLY, 2, vague=True),
    Kind("documents", ("4911998000",), ("documents", "printed matter", "catalogue"), 1, 0.2, {**_EU, "CN": 0.2}, 1.5),
    Kind("lab_reagent", ("2933599590", "2921420000", "2906290000", "2915900000", "2811198000"), (
        "Aniline CAS 62-53-3 reagent grade", "4-Hydroxypiperidine CAS 5382-16-1", "N-Boc-piperazine CAS 57260-71-6",
        "Phenethyl alcohol CAS 60-12-8", "Benzaldehyde CAS 100-52-7 AR", "Piperidine-4-carboxylic acid CAS 498-94-2",
        "4-Methoxybenzoic acid CAS 100-09-4", "laboratory reagent", "research chemical for laboratory use",
        "Silica gel 60 CAS 112926-00-8", "organic intermediate for research",
    ), 60, 0.8, {"CN": 0.55, "DE": 0.15, "IN": 0.15, "GB": 0.1, "JP": 0.05}, 1.2),
    Kind("coatings", ("3910000000", "3208909000", "3824999397"), ("silicone resin", "nano hydrophobic coating", "water purification tablets", "coating agent", "resin"), 35, 2.0, _CN_ONLY, 1),
    Kind("cosmetic_raw", ("3913900000", "2922491000", "3301299000"), ("cosmetic materials", "hyaluronic acid powder CAS 9004-61-9", "niacinamide CAS 98-92-0", "cosmetic raw material", "essential oil"), 30, 0.5, {"CN": 0.6, "KR": 0.2, "IN": 0.2}, 1),
    Kind("molds", ("3926909985", "8480710000"), ("silicone mold", "resin mold", "candy mold", "soap mold"), 10, 0.4, _CN_ONLY, 1.2),
    Kind("capsules", ("9602001040",), ("empty gelatin capsules", "capsule shells", "vegetable capsules"), 20, 0.6, {"CN": 0.7, "IN": 0.3}, 0.6),
    Kind("wood_crafts", ("4420100000", "4420907000"), ("wood crafts art", "handmade wooden picture", "wooden craft", "wooden decor"), 18, 0.8, {"CN": 0.5, "MX": 0.3, "VN": 0.2}, 1.5),
    Kind("shapewear", ("6212300000", "6212200020"), ("corsets", "shapewear", "waist trainer", "bra"), 14, 0.3, {"CN": 0.7, "MX": 0.15, "CO": 0.15}, 2),
    Kind("plastic_sheet", ("3920100000", "3921905050"), ("plastic sheet samples", "acrylic sheet", "PVC film"), 15, 1.5, _CN_ONLY, 1),
    Kind("mx_handicraft", ("6912004400", "4602190800"), ("handicrafts", "ceramic pottery", "talavera", "woven basket", "artesanias"), 35, 2.0, _MX, 1.2, modes=_TRUCK),
    Kind("mx_apparel", ("6403919045", "6203424011"), ("leather boots", "jeans", "western boots", "clothing"), 45, 1.5, _MX, 1.2, modes=_TRUCK),
    Kind("mx_food", ("0804400010", "2005995000", "1704909000"), ("avocados", "salsa", "mexican candy", "tamarind candy", "dried chiles"), 40, 8.0, _MX, 1.0, modes=_TRUCK, weight_sigma=0.9),
    Kind("mx_auto", ("8708999990", "8544300000"), ("auto parts", "wire harness", "machine parts", "parts"), 120, 15.0, _MX, 0.8, modes=_TRUCK, weight_sigma=1.0),
    Kind("eu_fashion", ("6202930511", "4203100000"), ("jacket", "leather jacket", "wool coat", "scarf"), 90, 0.9, _EU, 1.5),
    Kind("asia_beauty", ("3304990000", "3401300000"), ("sheet masks", "sunscreen", "cleansing foam", "cosmetics"), 20, 0.4, _ASIA, 2),
    Kind("ca_goods", ("6110202079", "2309100090", "9506990000"), ("hoodie", "maple syrup", "hockey stick", "pet treats"), 40, 1.2, {"CA": 1.0}, 1.2, modes={"truck": 0.3, "express": 0.5, "postal": 0.2}),
)

# ---------------------------------------------------------------------------------------------
# illicit texts (domain.md: explicit names with CAS numbers, or misdescriptions seen in cases)
# ---------------------------------------------------------------------------------------------
PRECURSOR_EXPLICIT = (
    "N-phenethyl-4-piperidone CAS 39742-60-4", "NPP", "4-AP CAS 23056-29-3", "N-phenylpiperidin-4-amine",
    "1-boc-4-piperidone CAS 79099-07-3", "tert-butyl 4-oxopiperidine-1-carboxylate", "1-boc-4-AP CAS 125541-22-2",
    "4-piperidone hydrochloride CAS 41661-47-6", "4-anilinopiperidine", "ANPP CAS 21409-26-7",
    "norfentanyl CAS 1609-66-1", "pharmaceutical intermediate CAS 79099-07-3", "piperidone derivative",
)
PRECURSOR_COVER = (
    "dog food", "cosmetic materials", "silicon resin", "nano-hydrophobic coating", "water purification agent",
    "plastic sheet samples", "chemical raw material", "organic intermediate", "hardware nuts", "snap hooks",
    "cosmetic raw material", "pet food sample", "resin",
)
PRESS_EXPLICIT = ("tablet press TDP-5", "single punch tablet press", "pill press machine", "rotary tablet press dies")
PRESS_COVER = (
    "machine parts", "hardware", "metal parts", "mold parts", "punch die set", "stamping die", "candy making machine",
    "tool parts", "motor parts", "spare parts", "steel die", "candy mold",
)
PILLS_COVER = (
    "corsets", "wood crafts art", "handmade wooden picture gifts", "kidney bean health supplement", "vitamins",
    "handicrafts", "auto parts", "clothing", "mexican candy", "gift", "shapewear", "dietary supplement",
)
RESHIP_COVER = (
    "gift", "sample", "parts", "goods", "daily necessities", "clothes", "toys", "accessories", "gifts", "personal items",
)

SCHEME_TEXTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # scheme -> (explicit texts, cover texts)
    "precursor": (PRECURSOR_EXPLICIT, PRECURSOR_COVER),
    "pill_press": (PRESS_EXPLICIT, PRESS_COVER),
    "pills_mx": ((), PILLS_COVER),
    "reshipper": ((), RESHIP_COVER),
}

# HTS codes an illicit filer writes: honest heading, a cover heading, or nothing (-1 later)
SCHEME_HTS: dict[str, tuple[str, ...]] = {
    "precursor": ("2933399100", "2933370000", "2942000000", "2309100010", "3910000000", "3304990000", "3824999397"),
    "pill_press": ("8479899499", "8207300090", "8487900080", "8480710000", "7326908688", "8422300000"),
    "pills_mx": ("6212300000", "4420100000", "2106909998", "1704909000", "8708999990", "6109100012"),
    "reshipper": ("9505900000", "4911998000", "8473305100", "6109100012", "9503000090"),
}


@dataclass(frozen=True)
class Catalog:
    """Flat tables the vectorised generator indexes into."""

    kinds: tuple[Kind, ...]
    descriptions: pl.Series  # desc_id -> text
    hts: pl.Series  # hts_id -> 10-digit code
    kind_desc: list[np.ndarray]  # kind index -> desc ids
    kind_hts: list[np.ndarray]  # kind index -> hts ids
    scheme_explicit: dict[str, np.ndarray]  # scheme -> desc ids
    scheme_cover: dict[str, np.ndarray]
    scheme_hts: dict[str, np.ndarray]

    def pick(self, table: list[np.ndarray], kinds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One entry per row from each row's kind list (``kind_desc`` or ``kind_hts``), vectorised."""
        lengths = np.array([len(t) for t in table])
        padded = np.zeros((len(table), lengths.max()), dtype=np.int32)
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

    kind_desc = [np.array([tid(t) for t in k.descriptions], dtype=np.int32) for k in kinds]
    kind_hts = [np.array([cid(c) for c in k.hts], dtype=np.int32) for k in kinds]
    explicit = {s: np.array([tid(t) for t in ex], dtype=np.int32) for s, (ex, _) in SCHEME_TEXTS.items()}
    cover = {s: np.array([tid(t) for t in cv], dtype=np.int32) for s, (_, cv) in SCHEME_TEXTS.items()}
    s_hts = {s: np.array([cid(c) for c in cs], dtype=np.int32) for s, cs in SCHEME_HTS.items()}
    return Catalog(
        kinds=kinds,
        descriptions=pl.Series("description", texts, dtype=pl.String),
        hts=pl.Series("hts_code", codes, dtype=pl.String),
        kind_desc=kind_desc,
        kind_hts=kind_hts,
        scheme_explicit=explicit,
        scheme_cover=cover,
        scheme_hts=s_hts,
    )
