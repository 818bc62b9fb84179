"""Names beside codes for people: Schedule D ports and HTS codes, from the shipped reference
tables. Used by the report and the workbench (a low module: both read it)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"


@dataclass(frozen=True)
class ReferenceNames:
    """Names beside codes: Schedule D ports (``ports.csv``) and HTS codes (the risky headings of
    ``hts_headings.csv`` first, else the HS chapter of ``hs_chapters.csv``)."""

    ports: dict[str, str]
    headings: dict[str, str]
    chapters: dict[str, str]

    @classmethod
    def load(cls, reference_dir: Path = REFERENCE_DIR) -> ReferenceNames:
        def read(name: str, key: str) -> dict[str, str]:
            path = reference_dir / name
            if not path.exists():
                return {}
            with path.open(encoding="utf-8", newline="") as fh:
                return {r[key].strip(): r["name"].strip() for r in csv.DictReader(fh) if r.get(key)}

        return cls(read("ports.csv", "code"), read("hts_headings.csv", "heading"), read("hs_chapters.csv", "chapter"))

    def port(self, code: Any) -> str:
        return self.ports.get(str(code or ""), "")

    def hts(self, code: Any) -> str:
        digits = "".join(ch for ch in str(code or "") if ch.isdigit())
        for n in (6, 4):
            if len(digits) >= n and digits[:n] in self.headings:
                return self.headings[digits[:n]]
        return self.chapters.get(digits[:2], "") if len(digits) >= 2 else ""
