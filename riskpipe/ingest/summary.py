"""What one ingest run or labels import did: counts only (no row data, no personal data)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class FileResult:
    """What happened to one input file (no row data, no personal data)."""

    file: str
    kind: str  # manifest | partner | labels
    status: str  # ingested | skipped | quarantined | refused (not a regular file: never read)
    sha256: str = ""
    rows_in: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    reason: str | None = None


@dataclass
class IngestSummary:
    """Counts of one ingest run. Identity: rows_in == rows_ingested + rows_amended + rows_quarantined."""

    run_id: str
    files_seen: int = 0
    files_ingested: int = 0
    files_skipped: int = 0
    files_quarantined: int = 0
    files_refused: int = 0  # symbolic links and special files: left in place, never read
    rows_in: int = 0
    rows_ingested: int = 0
    rows_amended: int = 0
    rows_quarantined: int = 0
    rows_replaced_existing: int = 0  # rows already in the store superseded by this run
    partner_rows_in: int = 0
    partner_rows_ingested: int = 0
    days_written: list[str] = field(default_factory=list)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def check(self) -> None:
        """Assert the accounting identity (nothing lost)."""
        total = self.rows_ingested + self.rows_amended + self.rows_quarantined
        if self.rows_in != total:
            raise AssertionError(
                f"ingest accounting broken: rows_in={self.rows_in} != ingested {self.rows_ingested} "
                f"+ amended {self.rows_amended} + quarantined {self.rows_quarantined}"
            )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class LabelImportSummary:
    """Counts of one labels import. Identity: rows_in == rows_valid + rows_quarantined."""

    run_id: str
    files_seen: int = 0
    files_imported: int = 0
    files_skipped: int = 0
    files_quarantined: int = 0
    files_refused: int = 0
    rows_in: int = 0
    rows_valid: int = 0
    rows_recorded: int = 0
    rows_quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    files: list[FileResult] = field(default_factory=list)

    def check(self) -> None:
        if self.rows_in != self.rows_valid + self.rows_quarantined:
            raise AssertionError(
                f"labels accounting broken: rows_in={self.rows_in} != valid {self.rows_valid} "
                f"+ quarantined {self.rows_quarantined}"
            )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
