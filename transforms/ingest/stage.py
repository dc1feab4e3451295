"""The ingest stage: a night's XML 130 envelopes and FHIR NDJSON into typed, partitioned Parquet.

The stage is shardable so that the Airflow DAG can map it over facility shards; `ingest_night`
is exactly the same three steps with the shards read in one local process pool:
  1. `plan_ingest(ctx)`: discover `<extracts>/<D>/**/*.xml`, take a facility hint from each
     file's first 64 KB (a byte regex, no parsing), put every file in shard
     hash(facility) mod n_shards (all files of a facility in one shard) and write
     `runs/<D>/ingest_plan.json`; returns the shard numbers;
  2. `ingest_shard(ctx, shard)`: stream the shard's envelopes HOSO by HOSO
     (extract.EnvelopeReader), decode and type rows in batches (at most `batch_hosos` HOSOs
     and `batch_bytes` of payload; normalize.py) into scratch parts under
     `scratch/ingest/<D>/shard-<nnn>/`, and write the shard's small per-file and per-HOSO facts
     (key, content hash, findings) beside them;
  3. `finalize_ingest(ctx)`: read every shard's facts, assign encounter versions
     (state/encounter_versions/<D>.parquet, one file per night), turn the scratch parts into
     `staging/<dataset>/night=<D>/facility_code=<F>/part-0.parquet` (zstd, large row groups),
     dropping rows of rejected files (a file is received whole or not at all); then findings,
     rejected files, FHIR and the manifest `runs/<D>/ingest.json`.

Every received HOSO has exactly one row in `staging/encounters` (a HOSO whose XML1 is missing or
unreadable gets a row with lineage only), so "received" = rows of `staging/encounters` tonight =
HOSOs read from accepted files. Re-running a night replaces its partitions and its versions; the
sharding never changes what is staged (the facility hint only places a file).
"""

from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import current_process, get_context
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from transforms.core import parquet_io, schema
from transforms.core.safe_io import write_json_atomic, write_text_atomic
from transforms.core.warehouse import Warehouse
from transforms.ingest import extract, fhir, late, normalize
from transforms.ingest._cells import Cells
from transforms.orchestration.fingerprint import file_sha256

STAGE = "ingest"
VERSION_COLUMNS = [
    "facility_code",
    "encounter_id",
    "version",
    "night",
    "source_file",
    "hoso_index",
    "content_hash",
]
FINDING_COLUMNS = [
    "night", "facility_code", "encounter_id", "version", "dataset", "row_index",
    "stage", "check_id", "reason", "severity", "column", "value",
]  # fmt: skip
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
XML_DATASETS = tuple(t.dataset for t in schema.TABLES) + ("raw_tables",)
# What a finalize worker buffers across all facilities' files before writing the fullest as a row
# group: bytes, not rows (an encounters row is ten times a drugs row), so that its memory is the
# same whatever the size of the night.
FINALIZE_BUFFER_BYTES = 32 << 20
_UID_SHIFT = 32  # hoso uid = file number << 32 | hoso index: one int64 key per HOSO of the night


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
    max_shards: int = 256  # the plan of ingest_night (the DAG passes its own to plan_ingest)
    # A shard is about this much of the night's extracts (never more shards than facilities):
    # a small night's shard then still fills a 32 MB group, as a large night's does.
    shard_bytes_target: int = 64 << 20
    # fork: workers start at the first submit, before the parent holds any data, and a caller's
    # main module (Airflow's task runner, a script without a __main__ guard) is not re-imported.
    start_method: str = "fork"


@dataclass
class FileResult:
    """What a worker learned about one envelope (small: no rows)."""

    file_no: int
    source_file: str
    facility_code: str | None = None
    created_on: str | None = None
    declared: int | None = None
    rejection: tuple[str, str] | None = None
    # per HOSO, while the worker reads the file: (hoso_index, encounter_id, content_hash,
    # [(reason, loaihoso, detail)]); written to the group's HOSO facts (Parquet) and emptied
    # before the result leaves the worker, so the parent never holds a Python object per HOSO
    hosos: list[tuple[int, str, str, list[tuple[str, str, str]]]] = field(default_factory=list)
    raw_tables: Counter = field(default_factory=Counter)
    hoso_count: int = 0  # HOSOs received (0 for a rejected file)
    signed: bool = False  # a non-empty CHUKYDONVI is present (not verified: see the README)


# --- worker side ---------------------------------------------------------------------------


class _Batch:
    """A worker's buffer of raw rows, typed and written as scratch parts every `batch_hosos`."""

    def __init__(self, scratch: Path, tag: str):
        self.scratch = scratch
        self.tag = tag
        self.seq = 0
        self.hosos = 0
        self.unknown_fields: dict[str, Counter] = defaultdict(Counter)
        self._reset()

    def _reset(self) -> None:
        self.cells: dict[str, Cells] = {}
        # per table, one entry per HOSO (expanded to rows with np.repeat at flush)
        self.lineage: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        self.raw_rows: list[dict] = []
        self.hosos = 0

    def add(self, uid: int, source_file: str, key: str, decoded: extract.DecodedHoso) -> None:
        self.hosos += 1
        cells_by_kind = decoded.cells
        if not (cells_by_kind.get("XML1") and cells_by_kind["XML1"].nrows):
            # received: it keeps one encounters row (lineage only)
            lineage_only = extract.new_cells(schema.TABLES_BY_LOAIHOSO["XML1"])
            lineage_only.add_empty_row()
            cells_by_kind = {**cells_by_kind, "XML1": lineage_only}
        for kind, cells in cells_by_kind.items():
            lineage = self.lineage[kind]
            if kind in self.cells:
                self.cells[kind].extend(cells)
            else:
                self.cells[kind] = cells
            lineage["rows"].append(cells.nrows)
            lineage["hoso_uid"].append(uid)
            lineage["source_file"].append(source_file)
            lineage["encounter_id"].append(key)
            lineage["hoso_index"].append(decoded.index)
            lineage["table_warnings"].append(decoded.table_warnings.get(kind) or None)
        for kind, data in decoded.raw_tables:
            self.raw_rows.append(
                {
                    "hoso_uid": uid,
                    "source_file": source_file,
                    "encounter_id": key,
                    "hoso_index": decoded.index,
                    "loaihoso": kind,
                    "size_bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "payload": data,
                }
            )

    def flush(self) -> None:
        if not self.hosos:
            return
        for kind, cells in self.cells.items():
            table = schema.TABLES_BY_LOAIHOSO[kind]
            columns, unknown = normalize.raw_columns_from_cells(table, cells)
            self.unknown_fields[kind].update(unknown)
            raw = pa.table({**columns, **_lineage_columns(self.lineage[kind], columns["MA_LK"])})
            typed = normalize.normalize_table(table, raw)
            parquet_io.write_scratch(
                typed, self.scratch / table.dataset / f"{self.tag}-{self.seq:05d}{parquet_io.SCRATCH_SUFFIX}"
            )
        if self.raw_rows:
            raw_schema = pa.schema(
                [pa.field("hoso_uid", pa.int64())]
                + [
                    f
                    for f in normalize.RAW_TABLES_SCHEMA
                    if f.name not in ("night", "facility_code", "version")
                ]
            )
            parquet_io.write_scratch(
                pa.Table.from_pylist(self.raw_rows, schema=raw_schema),
                self.scratch / "raw_tables" / f"{self.tag}-{self.seq:05d}{parquet_io.SCRATCH_SUFFIX}",
            )
        self.seq += 1
        self._reset()


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


def _lineage_columns(lineage: dict[str, list], ma_lk: pa.Array) -> dict[str, pa.Array]:
    """Per-row lineage from per-HOSO lists; flags rows whose MA_LK is not the HOSO's key."""
    counts = np.asarray(lineage["rows"], dtype=np.int64)
    take = pa.array(np.repeat(np.arange(len(counts)), counts))
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    encounter_id = pa.array(lineage["encounter_id"], pa.string()).take(take)
    inherited = pa.array(lineage["table_warnings"], pa.list_(pa.string())).take(take)
    own_ma_lk = pc.utf8_trim_whitespace(ma_lk)
    mismatch = pc.fill_null(
        pc.and_(pc.not_equal(own_ma_lk, ""), pc.not_equal(own_ma_lk, encounter_id)), False
    )
    flags = pa.array(
        np.where(mismatch.to_numpy(zero_copy_only=False), "encounter_id_mismatch", None), pa.string()
    )
    flag_lists = pc.if_else(
        mismatch,
        pa.ListArray.from_arrays(pa.array(np.arange(len(flags) + 1, dtype=np.int32)), flags),
        pa.scalar(None, pa.list_(pa.string())),
    )
    return {
        "hoso_uid": pa.array(lineage["hoso_uid"], pa.int64()).take(take),
        "source_file": pa.array(lineage["source_file"], pa.string()).take(take),
        "encounter_id": encounter_id,
        "hoso_index": pa.array(lineage["hoso_index"], pa.int64()).take(take),
        "row_index": pa.array(np.arange(int(counts.sum())) - starts, pa.int64()),
        "table_warnings": inherited,
        "mismatch_warnings": flag_lists,
    }


def read_envelope_group(
    group_no: int,
    files: list[tuple[int, str, str]],
    scratch: str,
    settings: IngestSettings,
    night_dir: str | None = None,
) -> tuple[list[FileResult], dict[str, Counter]]:
    """Worker: read a group of envelopes into scratch parts; returns per-file facts only.

    With `night_dir`, a file whose path leaves it (a symlink) is rejected unread, and a file
    under a facility's folder (extract.folder_facility) must carry that facility's MACSKCB."""
    batch = _Batch(Path(scratch), f"g{group_no:06d}")
    results = []
    held = 0  # payload characters in the batch
    for file_no, source_file, path in files:
        reader = extract.EnvelopeReader(
            Path(path),
            settings.limits,
            expected_facility=extract.folder_facility(source_file),
            night_dir=Path(night_dir) if night_dir is not None else None,
        )
        result = FileResult(file_no, source_file)
        for hoso in reader:
            decoded = extract.decode_hoso(hoso, settings.limits)
            key = decoded.encounter_id or f"hoso:{source_file}#{hoso.index}"
            batch.add(file_no << _UID_SHIFT | hoso.index, source_file, key, decoded)
            result.hosos.append((hoso.index, key, decoded.content_hash, decoded.findings))
            result.raw_tables.update(kind for kind, _ in decoded.raw_tables)
            held += sum(len(payload) for _, payload in hoso.files)
            if batch.hosos >= settings.batch_hosos or held >= settings.batch_bytes:
                batch.flush()
                held = 0
        header = reader.header
        result.facility_code, result.created_on, result.declared = (
            header.facility_code,
            header.created_on,
            header.declared,
        )
        result.rejection = reader.rejection
        result.signed = header.signed
        if result.rejection:
            result.hosos, result.raw_tables = [], Counter()  # its rows are dropped at finalize
        result.hoso_count = len(result.hosos)
        results.append(result)
    batch.flush()
    _write_hoso_facts(Path(scratch) / _HOSO_FACTS_DIR / f"g{group_no:06d}.parquet", results)
    for result in results:
        result.hosos = []
    _hand_back_memory()
    return results, dict(batch.unknown_fields)


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
) -> dict[str, int]:
    """Worker: scratch parts of one dataset -> its night partition; rows per facility.

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
    return dict(sorted(rows_written.items()))


# --- parent side ---------------------------------------------------------------------------


def tonight_versions(earlier: pa.Table, received: pa.Table, arrival: np.ndarray | None = None) -> np.ndarray:
    """The version of each HOSO received tonight, aligned with the rows of `received`.

    `received` has one row per HOSO received tonight (facility_code, encounter_id, created_on,
    source_file, hoso_index); `earlier` the registry rows (facility_code, encounter_id, version)
    of the nights before. Tonight's versions of a key follow its highest earlier version, in
    order of (NGAYLAP, source_file, hoso_index). Every receipt is a new version, even an
    identical re-send (same content_hash): the ledger counts receipts one for one, and "newest
    version wins" stays a plain max(version). Arrow and numpy only: no Python object per HOSO.
    `arrival`, when given, is an integer per row that sorts as that order does (the stage's, from
    per-file ranks); else the order is sorted from the text columns.
    """
    n = received.num_rows
    if not n:
        return np.zeros(0, dtype=np.int64)
    keys = pc.dictionary_encode(_version_key(received))
    key_of = keys.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    base = np.zeros(len(keys.dictionary), dtype=np.int64)
    if earlier.num_rows:
        pos = pc.fill_null(pc.index_in(_version_key(earlier), value_set=keys.dictionary), -1).to_numpy()
        found = pos >= 0
        np.maximum.at(base, pos[found], earlier.column("version").to_numpy()[found])
    if arrival is None:
        order = pc.sort_indices(
            pa.table(
                {
                    "created_on": pc.fill_null(_strings(received.column("created_on")), ""),
                    "source_file": _strings(received.column("source_file")),
                    "hoso_index": received.column("hoso_index"),
                }
            ),
            sort_keys=[
                ("created_on", "ascending"),
                ("source_file", "ascending"),
                ("hoso_index", "ascending"),
            ],
        ).to_numpy()
        arrival = np.empty(n, dtype=np.int64)
        arrival[order] = np.arange(n)
    by_key = np.lexsort((arrival, key_of))  # by key, then in order of arrival
    sorted_keys = key_of[by_key]
    first = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    rank = np.arange(n) - np.maximum.accumulate(np.where(first, np.arange(n), 0)) + 1
    versions = np.empty(n, dtype=np.int64)
    versions[by_key] = base[sorted_keys] + rank
    return versions


def _version_key(table: pa.Table) -> pa.Array:
    """facility_code and encounter_id joined into one string per row (a null reads as "")."""
    facility, encounter = (_strings(table.column(c)) for c in ("facility_code", "encounter_id"))
    key = pc.binary_join_element_wise(pc.fill_null(facility, ""), pc.fill_null(encounter, ""), "\x1f")
    return key.combine_chunks() if isinstance(key, pa.ChunkedArray) else key


def _strings(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A text column as plain `string` (from dictionary, large_string or string)."""
    return column if column.type == pa.string() else pc.cast(column, pa.string())


def assign_versions(previous: pd.DataFrame, received: pd.DataFrame, night: dt.date) -> pd.DataFrame:
    """The version registry after tonight as a frame (earlier nights kept, tonight's entries
    re-assigned by `tonight_versions`); `received` also carries content_hash. For tests and the
    version-registry benchmark: the stage itself calls `tonight_versions` on Arrow tables."""
    kept = previous[previous["night"] != night] if len(previous) else previous
    earlier = kept[kept["night"] < night] if len(kept) else kept
    versions = tonight_versions(
        pa.table(
            {
                "facility_code": pa.array(earlier.get("facility_code", []), pa.string()),
                "encounter_id": pa.array(earlier.get("encounter_id", []), pa.string()),
                "version": pa.array(earlier.get("version", []), pa.int64()),
            }
        ),
        pa.table(
            {
                "facility_code": pa.array(received["facility_code"], pa.string()),
                "encounter_id": pa.array(received["encounter_id"], pa.string()),
                "created_on": pa.array(received["created_on"], pa.string()),
                "source_file": pa.array(received["source_file"], pa.string()),
                "hoso_index": pa.array(received["hoso_index"], pa.int64()),
            }
        ),
    )
    tonight = received.assign(version=versions, night=night)[VERSION_COLUMNS]
    out = pd.concat([kept[VERSION_COLUMNS], tonight], ignore_index=True) if len(kept) else tonight
    return out.sort_values(["facility_code", "encounter_id", "version"], kind="stable").reset_index(drop=True)


def versions_dir(warehouse: Warehouse) -> Path:
    """The encounter version registry: `<D>.parquet` per night (VERSION_COLUMNS, one row per
    version received that night) and `_<D>.sha256`, the digest of that file (re-run fingerprints).

    One file per night, never rewritten by a later night: a night reads only the earlier rows of
    its own encounters and writes only its own file, so its cost does not grow with the history
    kept (a single file of every version ever received would be read and rewritten whole)."""
    return warehouse.state / "encounter_versions"


def versions_file(warehouse: Warehouse, night: dt.date) -> Path:
    return versions_dir(warehouse) / f"{night.isoformat()}.parquet"


def versions_digest_file(warehouse: Warehouse, night: dt.date) -> Path:
    return versions_dir(warehouse) / f"_{night.isoformat()}.sha256"


def version_nights(warehouse: Warehouse) -> list[dt.date]:
    """The nights that have a version file, in order (the single file of older warehouses is
    split into per-night files first)."""
    _split_legacy_versions(warehouse)
    folder = versions_dir(warehouse)
    nights = []
    for path in folder.glob("*.parquet") if folder.is_dir() else []:
        try:
            nights.append(dt.date.fromisoformat(path.stem))
        except ValueError:
            continue
    return sorted(nights)


def _split_legacy_versions(warehouse: Warehouse) -> None:
    legacy = warehouse.state / "encounter_versions.parquet"
    try:
        table = parquet_io.read_table(legacy)
    except FileNotFoundError:  # none, or another night's run split it a moment ago
        return
    for night in pc.unique(table.column("night")).to_pylist():
        if not versions_file(warehouse, night).exists():
            _write_versions(warehouse, night, [table.filter(pc.equal(table.column("night"), night))])
    legacy.unlink(missing_ok=True)


def _write_versions(warehouse: Warehouse, night: dt.date, chunks: Iterable[pa.Table]) -> Path:
    """Write a night's registry file from its rows (in order, streamed), then its digest."""
    path = versions_file(warehouse, night)
    writer = parquet_io.RowGroupWriter(path, _VERSIONS_SCHEMA)
    for chunk in chunks:
        writer.write(chunk)
    if not writer.close():  # a night without a version still has its (empty) file
        parquet_io.write_table(_VERSIONS_SCHEMA.empty_table(), path)
    digest = versions_digest_file(warehouse, night)
    write_text_atomic(digest, file_sha256(path) + "\n")
    return path


def earlier_versions_table(warehouse: Warehouse, night: dt.date, received: pa.Table) -> pa.Table:
    """The version registry rows (VERSION_COLUMNS) of nights before `night` of tonight's
    encounters only (`received`: facility_code, encounter_id): read with a filter on
    encounter_id, never the whole history, then kept when (facility_code, encounter_id) matches."""
    nights = [n for n in version_nights(warehouse) if n < night]
    if not nights or not received.num_rows:
        return _VERSIONS_SCHEMA.empty_table()
    dataset = pads.dataset([str(versions_file(warehouse, n)) for n in nights], format="parquet")
    ids = pc.unique(pc.drop_null(received.column("encounter_id")))
    table = dataset.to_table(filter=pads.field("encounter_id").isin(ids))
    if not table.num_rows:
        return _VERSIONS_SCHEMA.empty_table()
    table = table.select(VERSION_COLUMNS).cast(_VERSIONS_SCHEMA)  # older files: large_string
    keep = pc.is_in(_version_key(table), value_set=pc.unique(_version_key(received)))
    return table.filter(keep)


def earlier_versions(warehouse: Warehouse, night: dt.date, keys: pd.DataFrame) -> pd.DataFrame:
    """`earlier_versions_table` as a frame (`keys`: facility_code, encounter_id), `night` as dates."""
    received = pa.table(
        {
            "facility_code": pa.array(keys["facility_code"], pa.string()),
            "encounter_id": pa.array(keys["encounter_id"], pa.string()),
        }
    )
    df = earlier_versions_table(warehouse, night, received).to_pandas()
    df["night"] = pd.to_datetime(df["night"]).dt.date
    return df[VERSION_COLUMNS]


_VERSIONS_SCHEMA = pa.schema(
    [
        ("facility_code", pa.string()),
        ("encounter_id", pa.string()),
        ("version", pa.int64()),
        ("night", pa.date32()),
        ("source_file", pa.string()),
        ("hoso_index", pa.int64()),
        ("content_hash", pa.string()),
    ]
)


def _tonight_versions_chunks(
    received: pa.Table, versions: np.ndarray, night: dt.date, rows: int = parquet_io.MIN_ROW_GROUP_ROWS
) -> Iterator[pa.Table]:
    """Tonight's registry rows (one per version received tonight) by key then version, in
    slices of `rows`: the sorted file is written without a sorted copy of the whole night."""
    facility = _strings(received.column("facility_code"))
    order = pc.sort_indices(
        pa.table({"f": facility, "e": received.column("encounter_id"), "v": pa.array(versions, pa.int64())}),
        sort_keys=[("f", "ascending"), ("e", "ascending"), ("v", "ascending")],
    )
    night_days = (night - dt.date(1970, 1, 1)).days
    for start in range(0, len(order), rows):
        take = order.slice(start, rows)
        yield pa.table(
            {
                "facility_code": facility.take(take),
                "encounter_id": received.column("encounter_id").take(take),
                "version": pa.array(versions[take.to_numpy()], pa.int64()),
                "night": pa.array(np.full(len(take), night_days, dtype=np.int32)).cast(pa.date32()),
                "source_file": _strings(received.column("source_file").take(take)),
                "hoso_index": received.column("hoso_index").take(take),
                "content_hash": received.column("content_hash").take(take),
            }
        ).cast(_VERSIONS_SCHEMA)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # unreadable: the reader rejects it with file_unreadable


@dataclass(frozen=True)
class NightInput:
    """The part of transforms.core.context.NightContext that ingest reads (any object with these)."""

    night: dt.date
    night_dir: Path
    warehouse: Warehouse


# --- the plan: which shard reads which files -------------------------------------------------

PLAN_FILE = "ingest_plan.json"
FACILITY_HINT_BYTES = 64 << 10
# A byte regex on a bounded prefix: no parser ever sees the file here, so a hostile file cannot
# expand anything; the hint only places the file, the facility itself is read by the parser.
_FACILITY_HINT = re.compile(rb"<MACSKCB>\s*([0-9A-Za-z._-]{1,32})\s*</MACSKCB>")


def facility_hint(path: Path) -> str | None:
    """MACSKCB as found in the first 64 KB of an envelope (bytes, no XML parsing), or None."""
    try:
        with path.open("rb") as f:
            head = f.read(FACILITY_HINT_BYTES)
    except OSError:
        return None
    found = _FACILITY_HINT.search(head)
    return found.group(1).decode("ascii") if found else None


def _stable_hash(key: str) -> int:
    """A hash that is the same in every process and on every run (unlike Python's hash())."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


def shard_count(night_bytes: int, n_placement_keys: int, max_shards: int, shard_bytes_target: int) -> int:
    """How many shards a night gets: enough for ~`shard_bytes_target` bytes of extracts each,
    never more than the placement keys (a facility is never split, so extra shards would stay
    empty), never more than `max_shards`, at least 1."""
    by_size = -(-night_bytes // max(1, shard_bytes_target))
    return max(1, min(max_shards, n_placement_keys, by_size))


def plan_ingest(
    ctx, max_shards: int = 256, shard_bytes_target: int = IngestSettings.shard_bytes_target
) -> list[int]:
    """Plan the night's ingest in shards; writes `runs/<D>/ingest_plan.json`, returns the shard numbers.

    Every envelope goes to shard `hash(facility hint) mod n_shards` (all files of a facility in one
    shard; a file without a hint by the hash of its path), with n_shards from `shard_count`.
    Files are numbered in path order over the whole night (that number keys their HOSOs). The
    returned list holds the shards that received files ([0] for an empty night), in order; the
    file lists stay in the plan file. Re-planning clears the night's ingest scratch.
    """
    warehouse, night, night_dir = ctx.warehouse, ctx.night, ctx.night_dir
    envelopes = extract.discover_envelopes(night_dir)
    # a symlink leaving the night's folder is never opened, not even for its hint (ingest rejects it)
    escapes = [extract.outside_night(p, night_dir) for p in envelopes]
    hints = [None if out else facility_hint(p) for p, out in zip(envelopes, escapes, strict=True)]
    keys = [
        h if h else f"path:{p.relative_to(night_dir).as_posix()}"
        for h, p in zip(hints, envelopes, strict=True)
    ]
    sizes = [0 if out else _size(p) for p, out in zip(envelopes, escapes, strict=True)]
    n_shards = shard_count(sum(sizes), len(set(keys)), max_shards, shard_bytes_target)
    files = [
        {
            "file_no": file_no,
            "source_file": path.relative_to(night_dir).as_posix(),
            "facility_hint": hint,
            "bytes": size,
            "shard": _stable_hash(key) % n_shards,
        }
        for file_no, (path, hint, key, size) in enumerate(zip(envelopes, hints, keys, sizes, strict=True))
    ]
    shards = sorted({f["shard"] for f in files}) or [0]
    plan = {
        "night": night.isoformat(),
        "max_shards": max_shards,
        "shard_bytes_target": shard_bytes_target,
        "n_shards": n_shards,
        "shards": shards,
        "files": files,
    }
    scratch = warehouse.scratch(STAGE, night)
    parquet_io.replace_partition(scratch)  # shards of an earlier plan must not be finalized
    scratch.mkdir(parents=True)
    _write_json(warehouse.run_file(night, PLAN_FILE), plan)
    return shards


def _read_plan(ctx) -> dict:
    path = ctx.warehouse.run_file(ctx.night, PLAN_FILE)
    if not path.exists():
        raise FileNotFoundError(f"no ingest plan for {ctx.night}: run plan_ingest first ({path})")
    return json.loads(path.read_text())


def _shard_dir(ctx, shard: int) -> Path:
    return ctx.warehouse.scratch(STAGE, ctx.night) / f"shard-{shard:03d}"


def _shard_groups(
    ctx, plan: dict, shard: int, group_bytes: int
) -> list[tuple[int, list[tuple[int, str, str]]]]:
    """The shard's files in groups of about `group_bytes` (a worker task each), numbered by
    their first file. Depends on the plan only, so every way of running a shard writes the same
    scratch parts."""
    groups: list[tuple[int, list[tuple[int, str, str]]]] = []
    size = 0
    for f in plan["files"]:
        if f["shard"] != shard:
            continue
        if not groups or (groups[-1][1] and size + f["bytes"] > group_bytes):
            groups.append((f["file_no"], []))
            size = 0
        groups[-1][1].append((f["file_no"], f["source_file"], str(ctx.night_dir / f["source_file"])))
        size += f["bytes"]
    return groups


# --- shard results: the small per-file facts a shard hands to finalize -----------------------

_SHARD_RESULTS = "results.json"
_HOSO_FACTS_DIR = "hoso_facts"  # per group: hoso_facts/g<nnnnnn>.parquet
_HOSO_FACTS_SCHEMA = pa.schema(
    [
        ("file_no", pa.int64()),
        ("hoso_index", pa.int64()),
        ("encounter_id", pa.string()),
        ("content_hash", pa.string()),
        (
            "findings",
            pa.list_(
                pa.struct([("reason", pa.string()), ("loaihoso", pa.string()), ("detail", pa.string())])
            ),
        ),
    ]
)


def _write_hoso_facts(path: Path, results: list[FileResult]) -> Path:
    """The per-HOSO facts of a group's files (key, content hash, findings) as one Parquet file."""
    hosos = [
        (
            r.file_no,
            index,
            key,
            digest,
            [dict(zip(("reason", "loaihoso", "detail"), f, strict=True)) for f in fs],
        )
        for r in results
        for index, key, digest, fs in r.hosos
    ]
    columns = list(zip(*hosos, strict=True)) if hosos else [[] for _ in _HOSO_FACTS_SCHEMA]
    table = pa.table(
        {f.name: pa.array(list(c), f.type) for f, c in zip(_HOSO_FACTS_SCHEMA, columns, strict=True)},
        schema=_HOSO_FACTS_SCHEMA,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    parquet_io.write_table(table, path)
    return path


def _write_shard_results(
    shard_dir: Path, shard: int, results: list[FileResult], unknown: dict[str, Counter]
) -> Path:
    """Per-file facts as JSON (the workers wrote the per-HOSO facts as Parquet beside it); the
    JSON is written last (it marks the shard as done)."""
    files = [
        {
            "file_no": r.file_no,
            "source_file": r.source_file,
            "facility_code": r.facility_code,
            "created_on": r.created_on,
            "declared": r.declared,
            "rejection": list(r.rejection) if r.rejection else None,
            "raw_tables": dict(sorted(r.raw_tables.items())),
            "hosos": r.hoso_count,
            "signed": r.signed,
        }
        for r in results
    ]
    payload = {
        "shard": shard,
        "files": files,
        "unknown_fields": {k: dict(sorted(v.items())) for k, v in sorted(unknown.items())},
    }
    return _write_json(shard_dir / _SHARD_RESULTS, payload)


def _read_shard_results(shard_dir: Path) -> tuple[list[FileResult], pa.Table, dict[str, Counter]]:
    """A shard's per-file facts, its per-HOSO facts (Arrow, one row per HOSO) and unknown fields."""
    payload = json.loads((shard_dir / _SHARD_RESULTS).read_text())
    results = [
        FileResult(
            f["file_no"],
            f["source_file"],
            f["facility_code"],
            f["created_on"],
            f["declared"],
            tuple(f["rejection"]) if f["rejection"] else None,
            [],
            Counter(f["raw_tables"]),
            f["hosos"],
            bool(f.get("signed", False)),
        )
        for f in payload["files"]
    ]
    parts = sorted((shard_dir / _HOSO_FACTS_DIR).glob("*.parquet"))
    facts = (
        pa.concat_tables([parquet_io.read_table(p) for p in parts])
        if parts
        else _HOSO_FACTS_SCHEMA.empty_table()
    )
    unknown = {k: Counter(v) for k, v in payload["unknown_fields"].items()}
    return results, facts, unknown


def _write_json(path: Path, payload: dict) -> Path:
    return write_json_atomic(path, payload, ensure_ascii=False)


# --- the stage: plan, shards, finalize -------------------------------------------------------


def _pool(settings: IngestSettings, workers: int) -> Executor:
    """A process pool, or threads inside a daemonic process (a Celery prefork worker's task),
    where Python forbids child processes: slower, same results."""
    if current_process().daemon:
        return ThreadPoolExecutor(max_workers=workers)
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context(settings.start_method))


def _read_shards(ctx, plan: dict, shards: list[int], settings: IngestSettings, pool) -> list[Path]:
    """Read every group of `shards` (in `pool`, largest groups first, or inline when None) and
    write each shard's results; returns the results paths in the order of `shards`."""
    tasks = []
    planned_bytes = {f["file_no"]: f["bytes"] for f in plan["files"]}  # never stat a symlink's target
    for shard in shards:
        shard_dir = _shard_dir(ctx, shard)
        parquet_io.replace_partition(shard_dir)  # a re-run replaces the shard's scratch
        shard_dir.mkdir(parents=True)
        for group_no, files in _shard_groups(ctx, plan, shard, settings.group_bytes):
            tasks.append((shard, group_no, files, sum(planned_bytes[n] for n, _, _ in files)))
    tasks.sort(key=lambda t: -t[3])
    if pool is None:
        outputs = [
            read_envelope_group(g, files, str(_shard_dir(ctx, s)), settings, str(ctx.night_dir))
            for s, g, files, _ in tasks
        ]
    else:
        futures = [
            pool.submit(read_envelope_group, g, files, str(_shard_dir(ctx, s)), settings, str(ctx.night_dir))
            for s, g, files, _ in tasks
        ]
        outputs = [f.result() for f in futures]
    by_shard: dict[int, tuple[list[FileResult], dict[str, Counter]]] = {
        s: ([], defaultdict(Counter)) for s in shards
    }
    for (shard, *_), (file_results, unknown) in zip(tasks, outputs, strict=True):
        by_shard[shard][0].extend(file_results)
        for kind, counts in unknown.items():
            by_shard[shard][1][kind].update(counts)
    paths = []
    for shard in shards:
        results, unknown = by_shard[shard]
        results.sort(key=lambda r: r.file_no)
        paths.append(_write_shard_results(_shard_dir(ctx, shard), shard, results, unknown))
    return paths


def ingest_shard(ctx, shard: int, workers: int = 1, settings: IngestSettings | None = None) -> Path:
    """Read one planned shard into its scratch (`scratch/ingest/<D>/shard-<nnn>/`); returns the
    path of its results file. Idempotent: a re-run replaces the shard's scratch. One process by
    default (an Airflow task); `workers` > 1 reads its file groups in a local process pool."""
    settings = settings or IngestSettings()
    plan = _read_plan(ctx)
    if shard not in plan["shards"]:
        raise ValueError(f"shard {shard} is not in the ingest plan of {ctx.night} (shards {plan['shards']})")
    if workers <= 1:
        return _read_shards(ctx, plan, [shard], settings, None)[0]
    with _pool(settings, workers) as pool:
        return _read_shards(ctx, plan, [shard], settings, pool)[0]


def finalize_ingest(ctx, settings: IngestSettings | None = None) -> Path:
    """Versions, staged datasets, findings, rejected files, FHIR and `ingest.json` from every
    planned shard's results; returns the manifest path. Raises when a planned shard has no
    results (its ingest_shard did not run or did not finish)."""
    settings = settings or IngestSettings()
    with _pool(settings, max(1, settings.workers)) as pool:
        return _finalize(ctx, settings, pool)


def ingest_night(ctx, settings: IngestSettings | None = None) -> Path:
    """The ingest stage of one night (ctx: transforms.core.context.NightContext); returns ingest.json.

    Exactly plan_ingest + ingest_shard of every shard + finalize_ingest, the shards' file groups
    read in one process pool.
    """
    settings = settings or IngestSettings()
    shards = plan_ingest(ctx, settings.max_shards, settings.shard_bytes_target)
    plan = _read_plan(ctx)
    with _pool(settings, max(1, settings.workers)) as pool:
        _read_shards(ctx, plan, shards, settings, pool)
        return _finalize(ctx, settings, pool)


def ingest_extracts(
    night_dir: Path, night: dt.date, warehouse: Warehouse, settings: IngestSettings | None = None
) -> Path:
    """Ingest one night's extracts folder into the warehouse; returns the manifest path."""
    return ingest_night(NightInput(night, night_dir, warehouse), settings)


def _finalize(ctx, settings: IngestSettings, pool: Executor) -> Path:
    night, warehouse, night_dir = ctx.night, ctx.warehouse, ctx.night_dir
    plan = _read_plan(ctx)
    scratch = warehouse.scratch(STAGE, night)
    missing = [s for s in plan["shards"] if not (_shard_dir(ctx, s) / _SHARD_RESULTS).exists()]
    if missing:
        raise RuntimeError(
            f"ingest of {night} cannot finalize: planned shard(s) {missing} have no results "
            f"under {scratch} (ingest_shard did not run or did not finish)"
        )
    results: list[FileResult] = []
    fact_parts: list[pa.Table] = []
    unknown_fields: dict[str, Counter] = defaultdict(Counter)
    for shard in plan["shards"]:
        shard_results, shard_facts, unknown = _read_shard_results(_shard_dir(ctx, shard))
        results.extend(shard_results)
        rejected = [r.file_no for r in shard_results if r.rejection]
        if rejected:  # drop a rejected file's HOSOs shard by shard (never a copy of the night's)
            keep = pc.invert(pc.is_in(shard_facts.column("file_no"), pa.array(rejected, pa.int64())))
            shard_facts = shard_facts.filter(keep)
        fact_parts.append(shard_facts)
        for kind, counts in unknown.items():
            unknown_fields[kind].update(counts)
    results.sort(key=lambda r: r.file_no)
    facts = _accepted_facts(
        results, pa.concat_tables(fact_parts) if fact_parts else _HOSO_FACTS_SCHEMA.empty_table()
    )
    del fact_parts

    received = _received_table(results, facts)
    # arrival order: files by (NGAYLAP, path), then HOSO position (integers, no string sort)
    by_arrival = sorted(
        range(len(results)), key=lambda i: (results[i].created_on or "", results[i].source_file)
    )
    file_rank = np.empty(len(results), dtype=np.int64)
    file_rank[by_arrival] = np.arange(len(results))
    arrival = (
        file_rank[facts.column("file_pos").to_numpy()] << _UID_SHIFT | facts.column("hoso_index").to_numpy()
    )
    versions = tonight_versions(earlier_versions_table(warehouse, night, received), received, arrival)
    codes = sorted({r.facility_code for r in results if not r.rejection and r.facility_code is not None})
    facilities = [*codes, None]  # a file without a facility code takes the last entry
    position = {code: i for i, code in enumerate(codes)}
    code_of_file = np.array([position.get(r.facility_code, len(codes)) for r in results], dtype=np.int64)
    # every HOSO received tonight by uid (sorted), with its version and facility
    uids = received.column("hoso_uid").to_numpy()
    by_uid = np.argsort(uids, kind="stable")
    uids, version_values = uids[by_uid], versions[by_uid]
    facility_of = code_of_file[facts.column("file_pos").to_numpy()][by_uid]

    # Tonight's registry file and findings now, so that the per-HOSO tables are gone while the
    # pool writes the datasets (the manifest, written last, still marks the stage as done).
    _write_versions(warehouse, night, _tonight_versions_chunks(received, versions, night))
    findings = _findings_table(results, facts, uids, version_values, night)
    findings_dir = warehouse.quarantine("findings", night)
    findings_dir.mkdir(parents=True, exist_ok=True)
    parquet_io.write_table(findings, findings_dir / "ingest.parquet")
    n_received = received.num_rows
    del received, facts
    pa.default_memory_pool().release_unused()

    shard_of_file = {f["file_no"]: f["shard"] for f in plan["files"]}
    last_shard: dict[str | None, int] = {}
    for r in results:
        if not r.rejection:
            last_shard[r.facility_code] = max(last_shard.get(r.facility_code, -1), shard_of_file[r.file_no])
    for dataset in XML_DATASETS:
        parquet_io.replace_partition(warehouse.staging_night(dataset, night))
    # FHIR is independent of the XML datasets: read it in the pool beside them, not after them.
    fhir_future = pool.submit(ingest_fhir, night_dir, night, warehouse, settings.limits)
    futures = {
        ds: pool.submit(
            finalize_dataset,
            ds,
            str(scratch),
            str(warehouse.staging_night(ds, night)),
            night,
            uids,
            version_values,
            facility_of,
            facilities,
            last_shard,
        )
        for ds in XML_DATASETS
    }
    dataset_rows = {ds: f.result() for ds, f in futures.items()}
    fhir_counts, fhir_rejected = fhir_future.result()

    rejected = _rejected_files_table([*results, *fhir_rejected], night)
    parquet_io.replace_partition(warehouse.quarantine("files", night))
    parquet_io.write_table(rejected, warehouse.quarantine("files", night) / "part-0.parquet")
    shutil.rmtree(scratch, ignore_errors=True)
    # Partial re-sends (XML7/XML8 alone for a known stay) become complete versions (transforms/ingest/late.py).
    findings, completed = late.complete_partial_resends(warehouse, night, findings)
    if completed:
        parquet_io.write_table(findings, findings_dir / "ingest.parquet")

    manifest = build_manifest(
        night, results, n_received, findings, dataset_rows, unknown_fields, fhir_counts, fhir_rejected
    )
    manifest["partial_resends_completed"] = completed
    return _write_json(warehouse.manifest(night, STAGE), manifest)


def _accepted_facts(results: list[FileResult], facts: pa.Table) -> pa.Table:
    """The per-HOSO facts of the accepted files (in shard order: not sorted, which would copy
    them), with `hoso_uid` and the position of each HOSO's file in `results` (`file_pos`)."""
    file_nos = np.array([r.file_no for r in results], dtype=np.int64)  # sorted
    accepted = np.array([not r.rejection for r in results], dtype=bool)
    file_no = facts.column("file_no").to_numpy()
    pos = np.searchsorted(file_nos, file_no)
    keep = accepted[pos] if len(pos) else np.zeros(0, dtype=bool)
    if not keep.all():
        facts, pos, file_no = facts.filter(pa.array(keep)), pos[keep], file_no[keep]
    uid = file_no << _UID_SHIFT | facts.column("hoso_index").to_numpy()
    return facts.append_column("hoso_uid", pa.array(uid, pa.int64())).append_column(
        "file_pos", pa.array(pos, pa.int64())
    )


def _per_file(results: list[FileResult], attribute: str, file_pos) -> pa.DictionaryArray:
    """A per-file text attribute for each position in `results` (a `file_pos` column), as a
    dictionary column: an index per HOSO, not a copy of the text per HOSO."""
    values = pa.array([getattr(r, attribute) for r in results], pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(file_pos), pa.int32()), values)


def _received_table(results: list[FileResult], facts: pa.Table) -> pa.Table:
    """One row per HOSO received tonight (accepted files only), in (file, HOSO) order."""
    file_pos = facts.column("file_pos")

    def per_file(attribute: str) -> pa.DictionaryArray:
        return _per_file(results, attribute, file_pos)

    return pa.table(
        {
            "hoso_uid": facts.column("hoso_uid"),
            "facility_code": per_file("facility_code"),
            "encounter_id": facts.column("encounter_id"),
            "created_on": per_file("created_on"),
            "source_file": per_file("source_file"),
            "hoso_index": facts.column("hoso_index"),
            "content_hash": facts.column("content_hash"),
        }
    )


def _findings_table(
    results: list[FileResult], facts: pa.Table, uids: np.ndarray, versions: np.ndarray, night: dt.date
) -> pa.Table:
    """Encounter-level findings of ingest: one row per (HOSO, reason, table), severity blocking.

    `uids` (sorted) and `versions`: the version of every HOSO received tonight."""
    lists = facts.column("findings").combine_chunks()
    flat = pc.list_flatten(lists)
    if not len(flat):
        return schema.FINDINGS_SCHEMA.empty_table()
    parent = pa.array(pc.list_parent_indices(lists).to_numpy().astype(np.int64))
    reason, kind, detail = (flat.field(name) for name in ("reason", "loaihoso", "detail"))
    kinds = pc.unique(kind).to_pylist()
    dataset_of = {k: (t.dataset if (t := schema.TABLES_BY_LOAIHOSO.get(k)) else "raw_tables") for k in kinds}
    dataset = pa.array([dataset_of[k] for k in kinds], pa.string()).take(
        pc.index_in(kind, pa.array(kinds, pa.string()))
    )
    uid = facts.column("hoso_uid").take(parent).to_numpy()
    n = len(flat)
    columns = {
        "night": pa.array(np.full(n, (night - dt.date(1970, 1, 1)).days, dtype=np.int32)).cast(pa.date32()),
        "facility_code": _per_file(results, "facility_code", facts.column("file_pos").take(parent)),
        "encounter_id": facts.column("encounter_id").take(parent),
        "version": pa.array(versions[np.searchsorted(uids, uid)], pa.int64()),
        "dataset": dataset,
        "row_index": pa.nulls(n, pa.int64()),
        "stage": pa.array(np.full(n, STAGE, dtype=object), pa.string()),
        "check_id": pc.binary_join_element_wise("ingest.", reason, ""),
        "reason": reason,
        "severity": pa.array(np.full(n, "blocking", dtype=object), pa.string()),
        "column": pa.array(np.full(n, "LOAIHOSO", dtype=object), pa.string()),
        "value": pc.utf8_slice_codeunits(
            pc.binary_join_element_wise(kind, detail, ": ", null_handling="replace", null_replacement="None"),
            0,
            500,
        ),
    }
    return pa.table(
        {f.name: columns[f.name].cast(f.type) for f in schema.FINDINGS_SCHEMA}, schema=schema.FINDINGS_SCHEMA
    )


def _rejected_files_table(results: list[FileResult], night: dt.date) -> pa.Table:
    rows = [
        {
            "night": night,
            "file": r.source_file,
            "reason": r.rejection[0],
            "detail": r.rejection[1],
            "facility_code": r.facility_code,
            "declared": r.declared,
        }
        for r in results
        if r.rejection
    ]
    return pa.Table.from_pylist(rows, schema=REJECTED_FILE_SCHEMA)


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
    for path in extract.discover_fhir(night_dir):
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


def build_manifest(
    night: dt.date,
    results: list[FileResult],
    n_received: int,
    findings: pa.Table,
    dataset_rows: dict[str, dict[str, int]],
    unknown_fields: dict[str, Counter],
    fhir_counts: dict[str, dict],
    fhir_rejected: list[FileResult] = (),
) -> dict:
    """The ingest figures of the ledger (small: counts only). See ARCHITECTURE.md "Ingest".

    `received_files` lists every accepted envelope with its facility and whether it carries a
    non-empty CHUKYDONVI (`signed`, not verified); `rejected_files` also lists the NDJSON files
    refused whole (they hold no encounter: no facility counts them)."""
    facilities: dict[str, dict] = {}

    def entry(code: str | None) -> dict:
        return facilities.setdefault(
            code or "unknown",
            {
                "files": 0,
                "files_rejected": 0,
                "files_signed": 0,
                "declared": 0,
                "received": 0,
                "quarantined_at_ingest": {},
            },
        )

    mismatches = []
    raw_tables: Counter = Counter()
    for r in results:
        e = entry(r.facility_code)
        e["files"] += 1
        e["declared"] += r.declared or 0
        if r.rejection:
            e["files_rejected"] += 1
            continue
        e["files_signed"] += int(r.signed)
        e["received"] += r.hoso_count
        raw_tables.update(r.raw_tables)
        if r.declared != r.hoso_count:
            mismatches.append(
                {
                    "file": r.source_file,
                    "facility_code": r.facility_code,
                    "declared": r.declared,
                    "received": r.hoso_count,
                }
            )
    by_reason: dict[str, Counter] = defaultdict(Counter)
    seen = set()
    for fac, key, version, reason in zip(
        findings.column("facility_code").to_pylist(),
        findings.column("encounter_id").to_pylist(),
        findings.column("version").to_pylist(),
        findings.column("reason").to_pylist(),
        strict=True,
    ):
        if (fac, key, version) not in seen:  # count each version once, under its first reason
            seen.add((fac, key, version))
            by_reason[fac][reason] += 1
    for fac, counts in by_reason.items():
        entry(fac)["quarantined_at_ingest"] = dict(sorted(counts.items()))
    totals = {
        k: sum(f[k] for f in facilities.values()) for k in ("files", "files_rejected", "declared", "received")
    }
    return {
        "night": night.isoformat(),
        "stage": STAGE,
        "facilities": dict(sorted(facilities.items())),
        "totals": totals,
        "rejected_files": [
            {
                "file": r.source_file,
                "reason": r.rejection[0],
                "detail": r.rejection[1],
                "declared": r.declared,
            }
            for r in [*results, *fhir_rejected]
            if r.rejection
        ],
        "received_files": [
            {"file": r.source_file, "facility_code": r.facility_code, "signed": r.signed}
            for r in results
            if not r.rejection
        ],
        "declared_vs_received": mismatches,
        "encounter_versions": n_received,
        "raw_tables": dict(sorted(raw_tables.items())),
        "unknown_fields": {k: dict(sorted(v.items())) for k, v in sorted(unknown_fields.items()) if v},
        "datasets": {ds: sum(rows.values()) for ds, rows in dataset_rows.items()},
        "fhir": fhir_counts,
    }
