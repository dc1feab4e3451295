"""Every path of the warehouse, in one place (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import contextlib
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

    @property
    def staging_root(self) -> Path:
        """Root of every staged dataset."""
        return self.root / "staging"

    def staging(self, dataset: str) -> Path:
        """Root of one staged dataset (hive-partitioned by night and facility_code)."""
        return self.staging_root / dataset

    def staging_night(self, dataset: str, night: dt.date) -> Path:
        return self.staging(dataset) / f"night={night.isoformat()}"

    def staged_nights(self, dataset: str) -> list[tuple[dt.date, Path]]:
        """The night partitions of a staged dataset as (night, folder), oldest first (a folder that
        is not `night=<date>` is no partition)."""
        root = self.staging(dataset)
        out = []
        for folder in root.glob("night=*") if root.is_dir() else []:
            try:
                out.append((dt.date.fromisoformat(folder.name.split("=", 1)[1]), folder))
            except ValueError:
                continue
        return sorted(out)

    def quarantine_root(self, kind: str) -> Path:
        """Root of one kind of quarantine (files, findings, fhir), every night."""
        return self.root / "quarantine" / kind

    def quarantine(self, kind: str, night: dt.date) -> Path:
        """Folder of one kind of quarantine (files, findings, fhir) for one night."""
        return self.quarantine_root(kind) / f"night={night.isoformat()}"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def verdicts(self, night: dt.date) -> Path:
        """The quality stage's verdict frames of one night (a boolean per row and check), which
        the data_docs stage validates with Great Expectations."""
        return self.state / "verdicts" / f"night={night.isoformat()}"

    def scratch(self, stage: str, night: dt.date) -> Path:
        """A stage's intermediate files for one night (deleted when the stage ends)."""
        return self.root / "scratch" / stage / night.isoformat()

    def cache(self, name: str) -> Path:
        """Intermediate files a stage keeps from one night to the next (private, like scratch/;
        each cache says what its entries are keyed on)."""
        return self.root / "scratch" / "cache" / name

    def extracts_digest_memo(self, night: dt.date) -> Path:
        """The night's extracts' SHA-256 by file with their stat (core.digest.DigestMemo): ingest
        fills it as it reads them, the ingest fingerprint reads it instead of the files."""
        return self.cache("extracts_digest") / f"{night.isoformat()}.sqlite"

    def review(self, night: dt.date) -> Path:
        return self.root / "review" / f"night={night.isoformat()}"

    @property
    def review_decisions(self) -> Path:
        """The reviewers' decisions on identity links (read by reconcile, written by the review)."""
        return self.root / "review" / "decisions"

    def feedback(self, night: dt.date) -> Path:
        """The night's feedback files for the facilities (quality stage)."""
        return self.root / "feedback" / night.isoformat()

    @property
    def runs(self) -> Path:
        """The run folders of every night."""
        return self.root / "runs"

    def run_dir(self, night: dt.date) -> Path:
        return self.runs / night.isoformat()

    def run_file(self, night: dt.date, name: str) -> Path:
        """A file of the night's run folder (plans, alerts, status, a stage's side files)."""
        return self.run_dir(night) / name

    def manifest(self, night: dt.date, stage: str) -> Path:
        return self.run_file(night, f"{stage}.json")

    def ledger(self, night: dt.date) -> Path:
        return self.run_file(night, "ledger.json")

    def alerts(self, night: dt.date) -> Path:
        """The quality alerts of the night (`runs/<D>/alerts.json`)."""
        return self.run_file(night, "alerts.json")

    def status(self, night: dt.date) -> Path:
        """The night's run status (`runs/<D>/status.json`, orchestration)."""
        return self.run_file(night, "status.json")

    def outcomes(self, night: dt.date) -> Path:
        return self.run_file(night, "outcomes.parquet")

    def retried(self, night: dt.date) -> Path:
        """Outcomes of the pending versions of earlier nights retried tonight (load stage)."""
        return self.run_file(night, "retried.parquet")

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
        # a stage running beside this one (transforms/orchestration/workers.py) may rename or
        # remove its temporary files meanwhile: one gone since it was listed is not an error
        for target in targets:
            if target.is_symlink() or not target.exists():
                continue
            if target.is_file():
                _chmod_if_there(target, 0o666 & ~umask)
                continue
            for folder, _dirs, files in os.walk(target):
                _chmod_if_there(folder, 0o777 & ~umask)
                for name in files:
                    path = os.path.join(folder, name)
                    if not os.path.islink(path):
                        _chmod_if_there(path, 0o666 & ~umask)


def _chmod_if_there(path, mode: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, mode)


def _other_night(name: str, night: dt.date) -> bool:
    """True for a folder name that is a night's date other than `night`."""
    try:
        return dt.date.fromisoformat(name) != night
    except ValueError:
        return False
