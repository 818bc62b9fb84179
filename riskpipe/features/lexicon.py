"""Shipped reference data of the indicators: precursor lexicon, risky HTS headings, vague texts.

Loaded once per process (small files); every term is normalised like the descriptions it is
matched against, so matching is one Aho-Corasick pass (``str.contains_any``) per lexicon.
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import polars as pl

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "reference"

#: terms shorter than this match whole words only ("npp", "4-ap", "tdp"), longer ones anywhere
WHOLE_WORD_BELOW = 8


def normalise_text(expr: pl.Expr) -> pl.Expr:
    """Lower case, every run of characters other than letters, digits, '-' and '%' -> one space,
    padded with a space at both ends so a padded term matches whole words only."""
    return pl.concat_str(
        pl.lit(" "),
        expr.fill_null("").str.to_lowercase().str.replace_all(r"[^a-z0-9%\-]+", " "),
        pl.lit(" "),
    )


def normalise_term(term: str) -> str:
    """The same normalisation as :func:`normalise_text` for one lexicon term (padded if short)."""
    import re

    core = re.sub(r"[^a-z0-9%\-]+", " ", term.lower()).strip()
    return f" {core} " if len(core) < WHOLE_WORD_BELOW else core


@dataclass(frozen=True)
class Lexicon:
    """Normalised term lists by name, plus the HTS heading table."""

    lists: dict[str, tuple[str, ...]]
    hts: dict[str, tuple[str, str]]  # heading (4 or 6 digits) -> (kind, plain name)

    def terms(self, name: str) -> list[str]:
        return list(self.lists[name])


def _with_cas(chem: dict) -> list[str]:
    cas = chem["cas"]
    return list(chem["terms"]) + [cas, cas.replace("-", "")]


@lru_cache(maxsize=4)
def load_lexicon(reference_dir: Path = REFERENCE_DIR) -> Lexicon:
    """Read ``precursors.toml``, ``vague_descriptions.txt`` and ``hts_headings.csv``."""
    data = tomllib.loads((reference_dir / "precursors.toml").read_text(encoding="utf-8"))
    precursors = [t for chem in data["chemical"] for t in _with_cas(chem)]
    vague = [
        line.strip()
        for line in (reference_dir / "vague_descriptions.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    lists = {
        "precursors": precursors,
        "presses": data["press"]["terms"],
        "misdescriptions": data["misdescription"]["terms"],
        "chemical_words": data["chemical_words"]["terms"],
        "forwarders": data["forwarder"]["terms"],
        "commercial": data["commercial"]["terms"],
        "institutions": data["institution"]["terms"],
    }
    norm = {k: tuple(sorted({normalise_term(t) for t in v})) for k, v in lists.items()}
    # vague descriptions are compared whole (after normalisation), not searched
    norm["vague"] = tuple(sorted({normalise_term(t).strip() for t in vague}))
    with (reference_dir / "hts_headings.csv").open(encoding="utf-8", newline="") as fh:
        hts = {row["heading"]: (row["kind"], row["name"]) for row in csv.DictReader(fh)}
    return Lexicon(lists=norm, hts=hts)


#: names usable as ``@name`` in rule files
LEXICON_NAMES = (
    "precursors",
    "presses",
    "misdescriptions",
    "chemical_words",
    "forwarders",
    "commercial",
    "institutions",
    "vague",
)
