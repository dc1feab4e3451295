"""Every path of the warehouse, in one place (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

# Issue #16 item 12: what holds identities, clinical rows or the pseudonymised snapshot is private
# to the pipeline's user (folders 0700, files 0600, whatever the umask). What stays readable under
# the operator's umask: quality/ (the report masks identities) and runs/ (counts, reasons, manifests,
# fingerprints: no identity, no password). README "Operating" says so.
PRIVATE_FOLDERS = ("quarantine", "review", "scratch", "snapshots", "staging", "state")
READABLE_FOLDERS = ("quality", "runs")
SERVING_FILE = "serving.db"


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
        return f"sqlite:///{(self.root / SERVING_FILE).resolve()}"

    def secure(self) -> None:
        """Create the private folders 0700 and tighten the private parts an earlier release (or
        another umask) left open: the folders, the SQLite serving file and its journals -> 0600."""
        from transforms.core.safe_io import make_private

        self.root.mkdir(parents=True, exist_ok=True)
        for name in PRIVATE_FOLDERS:
            make_private(self.root / name, folder=True)
        for suffix in ("", "-journal", "-wal", "-shm"):
            make_private(self.root / (SERVING_FILE + suffix), folder=False)

    def share_readable(self, night: dt.date, umask: int) -> None:
        """Give the night's readable parts (its run folder, its quality pages, the report's index)
        the modes the operator's `umask` gives: a stage writes them under the private umask."""
        targets = [self.run_dir(night)]
        for top in READABLE_FOLDERS:
            folder = self.root / top
            if folder.is_dir() and not folder.is_symlink():
                os.chmod(folder, 0o777 & ~umask)
                # everything in it but the folders of other nights (shared by them: data docs, index)
                targets += [p for p in folder.iterdir() if top != "runs" and not _other_night(p.name, night)]
        for target in targets:
            if target.is_symlink() or not target.exists():
                continue
            if target.is_file():
                os.chmod(target, 0o666 & ~umask)
                continue
            for folder, _dirs, files in os.walk(target):
                os.chmod(folder, 0o777 & ~umask)
                for name in files:
                    path = os.path.join(folder, name)
                    if not os.path.islink(path):
                        os.chmod(path, 0o666 & ~umask)


def _other_night(name: str, night: dt.date) -> bool:
    """True for a folder name that is a night's date other than `night`."""
    try:
        return dt.date.fromisoformat(name) != night
    except ValueError:
        return False
