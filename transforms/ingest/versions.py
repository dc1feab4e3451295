"""The encounter version registry (`state/encounter_versions/<D>.parquet`, one file per night) and
the versions of tonight's HOSOs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from transforms.core import parquet_io
from transforms.core.digest import file_sha256
from transforms.core.safe_io import write_text_atomic
from transforms.core.warehouse import Warehouse

VERSION_COLUMNS = [
    "facility_code",
    "encounter_id",
    "version",
    "night",
    "source_file",
    "hoso_index",
    "content_hash",
]


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
