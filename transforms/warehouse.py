"""Every path of the warehouse, in one place (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Warehouse:
    root: Path

    def staging(self, dataset: str) -> Path:
        """Root of one staged dataset (hive-partitioned by night and facility_code)."""
        return self.root / "staging" / dataset

    def staging_night(self, dataset: str, night: dt.date) -> Path:
        return self.staging(dataset) / f"night={night.isoformat()}"

    def quarantine(self, kind: str, night: dt.date) -> Path:
        """Folder of one kind of quarantine (files, findings, fhir) for one night."""
        return self.root / "quarantine" / kind / f"night={night.isoformat()}"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def scratch(self, stage: str, night: dt.date) -> Path:
        """A stage's intermediate files for one night (deleted when the stage ends)."""
        return self.root / "scratch" / stage / night.isoformat()

    def review(self, night: dt.date) -> Path:
        return self.root / "review" / f"night={night.isoformat()}"

    def run_dir(self, night: dt.date) -> Path:
        return self.root / "runs" / night.isoformat()

    def manifest(self, night: dt.date, stage: str) -> Path:
        return self.run_dir(night) / f"{stage}.json"

    def ledger(self, night: dt.date) -> Path:
        return self.run_dir(night) / "ledger.json"

    def outcomes(self, night: dt.date) -> Path:
        return self.run_dir(night) / "outcomes.parquet"

    def retried(self, night: dt.date) -> Path:
        """Outcomes of the pending versions of earlier nights retried tonight (load stage)."""
        return self.run_dir(night) / "retried.parquet"

    @property
    def pending(self) -> Path:
        """The quarantined encounter versions waiting for a later night (load stage)."""
        return self.state / "pending.parquet"

    @property
    def quality(self) -> Path:
        return self.root / "quality"

    def snapshot(self, night: dt.date) -> Path:
        return self.root / "snapshots" / f"{night.isoformat()}.duckdb"

    @property
    def default_serving_url(self) -> str:
        return f"sqlite:///{(self.root / 'serving.db').resolve()}"
