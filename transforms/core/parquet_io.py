"""The Parquet medium: every Parquet read and write of the project goes through here (and the
Arrow IPC scratch parts of ingest, which never leave the stage).

Staged datasets are hive-partitioned `staging/<dataset>/night=<D>/facility_code=<F>/part-<n>.parquet`
(FHIR datasets by night only). The partition columns are also stored inside the files, as strings
and dates, so that any reader (pyarrow, DuckDB with or without hive_partitioning) sees
`facility_code` as text with its leading zeros and never has to guess types from a folder name.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from transforms.core.safe_io import atomic_path, new_temp_file, publish_temp
from transforms.core.warehouse import Warehouse

COMPRESSION = "zstd"
MIN_ROW_GROUP_ROWS = 100_000
MAX_ROW_GROUP_ROWS = 1_000_000
# Scratch files are written once, read once a few minutes later and deleted: Arrow IPC without
# compression, ~5x cheaper to write and read back than lz4 Parquet (10k night: 0.1 vs 0.55 s CPU
# for 48 MB of scratch), at the cost of larger transient files.
SCRATCH_SUFFIX = ".arrow"


class UnsafePartition(ValueError):
    """A partition value that is not a validated facility code (it would name a path)."""


def facility_partition(night_root: Path, facility_code: str) -> Path:
    """The folder `<night_root>/facility_code=<F>` of one facility; the only way a facility
    partition path is built. `facility_code` must have the standard's shape (5 ASCII digits,
    checked again here although ingest rejects any other file): no `/`, `..`, `=` or overlong
    name can ever reach the file system."""
    from transforms.ingest.extract import valid_facility_code

    if not valid_facility_code(facility_code):
        raise UnsafePartition(f"not a facility code, refused as a partition: {str(facility_code)[:40]!r}")
    return night_root / f"facility_code={facility_code}"


def write_table(table: pa.Table, path: Path, compression: str = COMPRESSION) -> Path:
    """Write one Parquet file atomically (a temporary name, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=compression, row_group_size=MAX_ROW_GROUP_ROWS)
    return path


def write_scratch(table: pa.Table, path: Path) -> Path:
    """Write an intermediate part file (read back once by `read_scratch`, then deleted) as an
    uncompressed Arrow IPC file, atomically (a temporary name, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        atomic_path(path) as tmp,
        pa.OSFile(str(tmp), "wb") as sink,
        pa.ipc.new_file(sink, table.schema) as w,
    ):
        w.write_table(table)
    return path


def read_scratch(path: Path) -> pa.Table:
    """An intermediate part file written by `write_scratch`, read whole into memory."""
    with pa.OSFile(str(path), "rb") as source:
        return pa.ipc.open_file(source).read_all()


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file (or a folder of them, not hive-interpreted) as an Arrow table."""
    return pq.read_table(path, columns=columns, partitioning=None)


def replace_partition(path: Path) -> None:
    """Remove a partition folder before it is written again (a re-run replaces the night)."""
    if path.exists():
        shutil.rmtree(path)


class RowGroupWriter:
    """Streams Arrow tables into one Parquet file with row groups of MIN..MAX rows.

    Rows are buffered until MIN_ROW_GROUP_ROWS (or `flush()`), so a partition made of many small
    batches still gets large row groups; memory is bounded by one row group.
    """

    def __init__(self, path: Path, schema: pa.Schema, min_rows: int = MIN_ROW_GROUP_ROWS):
        self.path = path
        self.schema = schema
        self.min_rows = min_rows
        self.buffer: list[pa.Table] = []
        self.buffered_rows = 0
        self.buffered_bytes = 0
        self.rows_written = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None  # created O_EXCL (mkstemp) by the first flush

    def write(self, table: pa.Table) -> None:
        table = table.select(self.schema.names).cast(self.schema)
        self.buffer.append(table)
        self.buffered_rows += table.num_rows
        self.buffered_bytes += table.nbytes
        if self.buffered_rows >= self.min_rows:
            self.flush()

    def flush(self) -> None:
        if not self.buffered_rows:
            return
        if self._writer is None:
            self._tmp = new_temp_file(self.path)
            self._writer = pq.ParquetWriter(self._tmp, self.schema, compression=COMPRESSION)
        self._writer.write_table(pa.concat_tables(self.buffer), row_group_size=MAX_ROW_GROUP_ROWS)
        self.rows_written += self.buffered_rows
        self.buffer, self.buffered_rows, self.buffered_bytes = [], 0, 0

    def close(self) -> int:
        """Finish the file (atomically renamed into place); returns the number of rows written."""
        self.flush()
        if self._writer is not None:
            self._writer.close()
            publish_temp(self._tmp, self.path)
        return self.rows_written


def _normalize_types(table: pa.Table) -> pa.Table:
    """Undo Parquet's storage types: instants come back as timestamp[s] (minute precision)."""
    fields = []
    for f in table.schema:
        if pa.types.is_timestamp(f.type) and f.type.unit != "s":
            fields.append(pa.field(f.name, pa.timestamp("s")))
        else:
            fields.append(f)
    target = pa.schema(fields)
    return table if target == table.schema else table.cast(target)


def read_staged_table(
    warehouse: Warehouse,
    dataset: str,
    night: dt.date,
    columns: list[str] | None = None,
    schema: pa.Schema | None = None,
) -> pa.Table:
    """Every staged row of one dataset for one night (all facilities), as an Arrow table.

    An absent night gives an empty table with `schema` (the declared schema of the dataset when
    it is known and `schema` is not given).
    """
    schema = schema or known_schema(dataset)
    files = staged_files(warehouse, dataset, night)
    if not files:
        if schema is None:
            return pa.table({})
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    dataset_ = ds.dataset([str(p) for p in files], format="parquet", schema=schema)
    return _normalize_types(dataset_.to_table(columns=columns))


def staged_files(warehouse: Warehouse, dataset: str, night: dt.date) -> list[Path]:
    """The Parquet files of one staged dataset for one night, in the order readers concatenate them
    (sorted paths: facility partition by facility partition)."""
    root = warehouse.staging_night(dataset, night)
    return sorted(root.rglob("*.parquet")) if root.exists() else []


def parquet_rows(path: Path) -> int:
    """The number of rows of one Parquet file, from its footer (no data read)."""
    return pq.read_metadata(path).num_rows


def iter_staged_file(path: Path, dataset: str, columns: list[str], batch_rows: int) -> Iterator[pa.Table]:
    """One staged file's rows in order, in tables of at most `batch_rows` rows, only `columns` (those
    the dataset declares; a declared column the file lacks comes back null), typed as
    `read_staged_table` types them. Memory: one Parquet row group of the projected columns."""
    schema = known_schema(dataset)
    source = pq.ParquetFile(path)
    present = set(source.schema_arrow.names)
    wanted = [c for c in columns if c in present or (schema is not None and c in schema.names)]
    for batch in source.iter_batches(batch_size=batch_rows, columns=[c for c in wanted if c in present]):
        table = pa.Table.from_batches([batch])
        if schema is not None:
            declared = set(schema.names)
            table = pa.table(
                {
                    c: (table[c] if c not in declared else table[c].cast(schema.field(c).type))
                    if c in present
                    else pa.nulls(table.num_rows, schema.field(c).type)
                    for c in wanted
                }
            )
        yield _normalize_types(table)


def read_staged(
    warehouse: Warehouse, dataset: str, night: dt.date, columns: list[str] | None = None
) -> pd.DataFrame:
    """Every staged row of one dataset for one night as a pandas DataFrame (grain: the dataset's)."""
    return read_staged_table(warehouse, dataset, night, columns).to_pandas()


def known_schema(dataset: str) -> pa.Schema | None:
    """The Arrow schema of a staged dataset written by ingest, None for any other name."""
    from transforms.core import schema
    from transforms.ingest import fhir, normalize

    if dataset in schema.TABLES_BY_DATASET:
        return normalize.arrow_schema(schema.TABLES_BY_DATASET[dataset])
    return {
        "raw_tables": normalize.RAW_TABLES_SCHEMA,
        "immunizations": fhir.IMMUNIZATIONS_SCHEMA,
        "allergies": fhir.ALLERGIES_SCHEMA,
    }.get(dataset)
