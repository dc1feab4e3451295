"""What every part of the ingest stage shares: its settings, the per-file facts a worker hands back,
the stage's constants and the process pool."""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import os
from collections import Counter
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import current_process, get_context
from pathlib import Path

import pyarrow as pa

from transforms.core.datasets import XML_STAGED_DATASETS
from transforms.core.safe_io import write_text_atomic
from transforms.core.settings import Settings
from transforms.core.warehouse import Warehouse
from transforms.ingest import extract

STAGE = "ingest"
FINDING_COLUMNS = [
    "night",
    "facility_code",
    "encounter_id",
    "version",
    "dataset",
    "row_index",
    "stage",
    "check_id",
    "reason",
    "severity",
    "column",
    "value",
]
REJECTED_FILE_SCHEMA = pa.schema(
    [
        ("night", pa.date32()),
        ("file", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("facility_code", pa.string()),
        ("declared", pa.int64()),
    ]
)
# Every dataset a worker can write, in finalize order.
XML_DATASETS = XML_STAGED_DATASETS  # the XML tables and raw_tables (core/datasets.py)
# What a finalize worker buffers across all facilities' files before writing the fullest as a row
# group: bytes, not rows (an encounters row is ten times a drugs row), so that its memory is the
# same whatever the size of the night.
FINALIZE_BUFFER_BYTES = 32 << 20
_UID_SHIFT = 32  # hoso uid = file number << 32 | hoso index: one int64 key per HOSO of the night


# the operator's settings' defaults (core/settings.py), written once
_DEFAULTS = Settings().ingest


@dataclass(frozen=True)
class IngestSettings:
    workers: int = max(1, os.cpu_count() or 1)
    batch_hosos: int = 5_000  # HOSOs a worker holds before writing its scratch parts, at most
    # ... and payload (base64 characters of the HOSOs' FILEHOSOs) it holds, at most, so that one
    # group of very large HOSOs cannot hold more (8 MB cost ~30% more CPU per HOSO at 100k)
    batch_bytes: int = 32 << 20
    # A shard's files are handed to workers in groups of about this size. A group is also the
    # largest batch a worker types at once: 32 MB rather than 16 halves the per-call overhead of
    # typing (~10% less CPU per HOSO) for ~70 MB more per worker (64 MB gained nothing more).
    group_bytes: int = 32 << 20
    limits: extract.ReadLimits = extract.DEFAULT_LIMITS
    max_shards: int = _DEFAULTS.max_shards  # the plan of ingest_night (the DAG passes its own to plan_ingest)
    # A shard is about this much of the night's extracts (never more shards than facilities):
    # a small night's shard then still fills a 32 MB group, as a large night's does.
    shard_bytes_target: int = _DEFAULTS.shard_bytes_target
    # fork: workers start at the first submit, before the parent holds any data, and a caller's
    # main module (Airflow's task runner, a script without a __main__ guard) is not re-imported.
    start_method: str = "fork"


@dataclass(slots=True)
class FileResult:
    """What a worker learned about one envelope (small: no rows). It travels from the worker to
    the parent and to the shard's results file as `row()`, a tuple of plain values: a million
    dataclass objects with a Counter each took seconds to pickle and load in the parent."""

    file_no: int
    source_file: str
    facility_code: str | None = None
    created_on: str | None = None
    declared: int | None = None
    rejection: tuple[str, str] | None = None
    # per HOSO, while the worker reads the file: (hoso_index, encounter_id, content_hash,
    # [(reason, loaihoso, detail)]); written to the group's HOSO facts (Parquet) and not part of
    # `row()`, so the parent never holds a Python object per HOSO
    hosos: list[tuple[int, str, str, list[tuple[str, str, str]]]] = field(default_factory=list)
    raw_tables: Counter = field(default_factory=Counter)
    hoso_count: int = 0  # HOSOs received (0 for a rejected file)
    signed: bool = False  # a non-empty CHUKYDONVI is present (not verified: see the README)
    # the file's stat and SHA-256 as read (extract.EnvelopeReader.content_digest), for the
    # extracts' digest memo; None when it was not read to its end
    content: tuple | None = None

    ROW = (
        "file_no",
        "source_file",
        "facility_code",
        "created_on",
        "declared",
        "rejection",
        "raw_tables",
        "hoso_count",
        "signed",
        "content",
    )

    def row(self) -> tuple:
        """The per-file facts as plain values, in the order of `ROW` (without `hosos`)."""
        rejection = list(self.rejection) if self.rejection else None
        raw_tables = dict(sorted(self.raw_tables.items())) if self.raw_tables else None
        return (
            self.file_no,
            self.source_file,
            self.facility_code,
            self.created_on,
            self.declared,
            rejection,
            raw_tables,
            self.hoso_count,
            self.signed,
            list(self.content) if self.content else None,
        )

    @classmethod
    def from_row(cls, row) -> FileResult:
        (
            no,
            source_file,
            facility_code,
            created_on,
            declared,
            rejection,
            raw_tables,
            hoso_count,
            signed,
            content,
        ) = row
        return cls(
            no,
            source_file,
            facility_code,
            created_on,
            declared,
            tuple(rejection) if rejection else None,
            [],
            Counter(raw_tables) if raw_tables else Counter(),
            hoso_count,
            bool(signed),
            tuple(content) if content else None,
        )


try:
    _LIBC = ctypes.CDLL("libc.so.6")  # glibc (Linux); elsewhere the step is skipped
except OSError:
    _LIBC = None


def _hand_back_memory() -> None:
    """A pool worker between tasks: free memory goes back to the system (Arrow's pool, then the C
    library's heap, where libxml2's documents and Python's large objects were), so that what a
    worker holds is what its task needs, not the high-water mark of every task before it."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


@dataclass(frozen=True)
class NightInput:
    """The part of transforms.core.context.NightContext that ingest reads (any object with these)."""

    night: dt.date
    night_dir: Path
    warehouse: Warehouse
    settings: Settings = field(default_factory=Settings)  # the run's; the defaults for a bare ingest


def _write_json(path: Path, payload: dict, compact: bool = False) -> Path:
    """`compact`: one line, written by json's C encoder (indenting runs the pure-Python one, a
    second per ~100k entries): for the stage's own files (plan, shard results), not its manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(
        payload, ensure_ascii=False, separators=(",", ":") if compact else None, indent=None if compact else 2
    )
    write_text_atomic(path, text + "\n")
    return path


def _pool(settings: IngestSettings, workers: int) -> Executor:
    """A process pool, or threads inside a daemonic process (a Celery prefork worker's task),
    where Python forbids child processes: slower, same results."""
    if current_process().daemon:
        return ThreadPoolExecutor(max_workers=workers)
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context(settings.start_method))
