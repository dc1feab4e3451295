"""Staging writers: a dataset's scratch parts into its night partition (one Parquet file per
facility), and the night's FHIR NDJSON."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa

from transforms.core import parquet_io
from transforms.core.warehouse import Warehouse
from transforms.ingest import extract, fhir
from transforms.ingest.common import (
    FINALIZE_BUFFER_BYTES,
    FileResult,
    _hand_back_memory,
)
from transforms.ingest.discovery import discover_fhir


def finalize_dataset(
    dataset: str,
    scratch: str,
    out_night: str,
    night: dt.date,
    uids: np.ndarray,
    versions: np.ndarray,
    facility_of: np.ndarray,
    facilities: list[str | None],
    last_shard: dict[str | None, int],
    watch: np.ndarray | None = None,
) -> tuple[dict[str, int], np.ndarray]:
    """Worker: scratch parts of one dataset -> its night partition; returns the rows per facility
    and which of the HOSOs in `watch` (sorted uids) have rows in it (so that the late step knows
    what a partial re-send carried without reading the staged files back).

    `uids` (sorted) lists every HOSO received tonight with its version and the position of its
    facility code in `facilities`; a scratch row whose HOSO is not listed belongs to a rejected
    file and is dropped. Parts are read in shard order and a facility's file is finished once the
    last shard holding its files (`last_shard`) is read, so only the current shard's facilities
    have a Parquet writer open (each holds per-column state: 20 open ones doubled the memory).
    """
    out_schema = parquet_io.known_schema(dataset)
    parts = sorted(Path(scratch).glob(f"shard-*/{dataset}/*{parquet_io.SCRATCH_SUFFIX}"))
    codes = pa.array(facilities, pa.string())
    night_days = (night - dt.date(1970, 1, 1)).days
    writers: dict[str, parquet_io.RowGroupWriter] = {}
    rows_written: dict[str, int] = {}
    watch = np.empty(0, dtype=np.int64) if watch is None else watch
    watched: list[np.ndarray] = []

    def finish_before(shard: float) -> None:
        for code in [c for c in writers if last_shard[c] < shard]:
            rows_written[code] = writers.pop(code).close()

    for part in parts:
        finish_before(int(part.parent.parent.name.removeprefix("shard-")))
        table = parquet_io.read_scratch(part)
        uid = table.column("hoso_uid").to_numpy()
        pos = np.searchsorted(uids, uid).clip(0, max(len(uids) - 1, 0))
        keep = (uids[pos] == uid) if len(uids) else np.zeros(len(uid), dtype=bool)
        if not keep.all():
            table, pos = table.filter(pa.array(keep)), pos[keep]
        if not table.num_rows:
            continue
        if len(watch):  # watched HOSOs were received tonight: none of them is dropped above
            at = np.searchsorted(watch, uid).clip(0, len(watch) - 1)
            watched.append(uid[watch[at] == uid])
        # One stable sort by facility, then a slice per facility: a part's rows keep their order
        # within a facility, as a filter per facility would (integer codes: no string compares).
        fac = facility_of[pos]
        if (np.diff(fac) < 0).any():
            order = np.argsort(fac, kind="stable")
            table, pos, fac = table.take(pa.array(order)), pos[order], fac[order]
        table = table.append_column("version", pa.array(versions[pos], pa.int64()))
        table = table.append_column("facility_code", codes.take(pa.array(fac)))
        table = table.append_column(
            "night", pa.array(np.full(table.num_rows, night_days, dtype=np.int32)).cast(pa.date32())
        )
        starts = np.flatnonzero(np.r_[True, fac[1:] != fac[:-1]])
        for start, stop in zip(starts, np.r_[starts[1:], len(fac)], strict=True):
            code = facilities[fac[start]]
            if code not in writers:
                if code in rows_written:  # cannot happen: last_shard is the facility's last shard
                    raise RuntimeError(f"finalize {dataset}: rows of {code} after its last shard")
                path = parquet_io.facility_partition(Path(out_night), code) / "part-0.parquet"
                writers[code] = parquet_io.RowGroupWriter(path, out_schema)
            writers[code].write(table.slice(start, stop - start))
        # Many facilities each buffering towards a large row group would make memory grow with
        # the night: past the cap, the fullest buffer is written as a (smaller) row group.
        while sum(w.buffered_bytes for w in writers.values()) > FINALIZE_BUFFER_BYTES:
            max(writers.values(), key=lambda w: w.buffered_bytes).flush()
    finish_before(float("inf"))
    _hand_back_memory()
    seen = np.unique(np.concatenate(watched)) if watched else np.empty(0, dtype=np.int64)
    return dict(sorted(rows_written.items())), seen


def ingest_fhir(
    night_dir: Path, night: dt.date, warehouse: Warehouse, limits: extract.ReadLimits = extract.DEFAULT_LIMITS
) -> tuple[dict[str, dict], list[FileResult]]:
    """Stage the night's FHIR NDJSON; returns the per-resourceType counts for the manifest and
    the NDJSON files rejected whole (a symlink leaving the night's folder, a file over
    `limits.max_ndjson_bytes`), never read, as FileResults for the rejected-files list."""
    counts = fhir.FhirCounts()
    rejected: list[FileResult] = []
    for dataset in fhir.DATASETS.values():
        parquet_io.replace_partition(warehouse.staging_night(dataset, night))
    quarantine_dir = warehouse.quarantine("fhir", night)
    parquet_io.replace_partition(quarantine_dir)
    quarantined = []
    part = Counter()
    for path in discover_fhir(night_dir):
        source_file = path.relative_to(night_dir).as_posix()
        if extract.outside_night(path, night_dir):
            detail = "the path leaves the night's folder (not read)"
            rejected.append(FileResult(-1, source_file, rejection=("symlink_outside_night", detail)))
            continue
        # one part per (file, dataset); lines are typed in small batches and buffered as Arrow
        # (a tenth of the Python rows' size) into row groups of MIN_ROW_GROUP_ROWS
        writers: dict[str, parquet_io.RowGroupWriter] = {}
        try:
            for kind, table in fhir.read_ndjson(
                path, source_file, night, counts, max_file_bytes=limits.max_ndjson_bytes
            ):
                if kind == "quarantine":
                    quarantined.append(table)
                    continue
                dataset = fhir.DATASETS[kind]
                if dataset not in writers:
                    out = warehouse.staging_night(dataset, night) / f"part-{part[dataset]}.parquet"
                    writers[dataset] = parquet_io.RowGroupWriter(out, table.schema)
                    part[dataset] += 1
                writers[dataset].write(table)
        except fhir.FileRejected as e:  # raised before the first line is read
            rejected.append(FileResult(-1, source_file, rejection=(e.reason, e.detail)))
        except OSError as e:
            if writers:  # lines already counted and staged: a failure part-way must not be hidden
                raise
            detail = f"{type(e).__name__}: {e.strerror or e}"[:300]
            rejected.append(FileResult(-1, source_file, rejection=("file_unreadable", detail)))
        for writer in writers.values():
            writer.close()
    table = pa.concat_tables(quarantined) if quarantined else fhir.QUARANTINE_SCHEMA.empty_table()
    parquet_io.write_table(table, quarantine_dir / "part-0.parquet")
    return counts.as_dict(), rejected
