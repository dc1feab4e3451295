"""Arrow rows into the serving database: typed by the serving declaration, appended in bulk
(binary COPY on PostgreSQL, executemany on SQLite), through temp tables when a statement needs a
set of keys, and in a background thread while the caller prepares the next rows (`BatchWrites`).

Statements that repeat per table are built by the small pure `*_sql` functions below.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading

import pandas as pd
import pyarrow as pa
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy.engine import Connection

from transforms.serving import pg_copy
from transforms.serving.schema import ServingTable


def stage_name(table: ServingTable | str) -> str:
    return f"stage_{table if isinstance(table, str) else table.name}"


def create_stage_sql(table: ServingTable) -> str:
    """A temporary table shaped like `table` (no constraints), dropped at the end of the load."""
    return f"create temp table {stage_name(table)} as select * from {table.name} where 1 = 0"


def drop_stage_sql(name: str) -> str:
    return f"drop table if exists {name}"


def stage_rows(conn: Connection, name: str, rows: pa.Table, ddl: str | None = None) -> None:
    """Fill the temp table `name` with `rows`: created afresh from `ddl`, else emptied first; then
    analyzed on PostgreSQL (temp tables get no autovacuum statistics, and without them the joins
    over them plan badly)."""
    if ddl is None:
        conn.exec_driver_sql(f"delete from {name}")
    else:
        conn.exec_driver_sql(drop_stage_sql(name))
        conn.exec_driver_sql(ddl)
    bulk_insert(conn, name, rows)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"analyze {name}")


_ARROW_TYPES = {
    "text": pa.string(),
    "integer": pa.int64(),
    "bigint": pa.int64(),
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("s"),
}


def arrow_rows(
    frame: pd.DataFrame, table: ServingTable, given: dict[str, pa.Array] | None = None
) -> pa.Table:
    """The frame as an Arrow table typed by the serving declaration (column order of the DDL);
    `given` supplies columns the frame lacks (the load's version_id), one value per row."""
    arrays = []
    for column, sql_type in table.columns:
        target = _ARROW_TYPES[sql_type]
        if given and column in given:
            arrays.append(given[column].cast(target))
            continue
        if column not in frame.columns:
            arrays.append(pa.nulls(len(frame), type=target))
            continue
        values = frame[column]
        try:
            # vectorised: pandas' own Arrow conversion, then a cast to the declared type
            array = pa.Array.from_pandas(values)
            if sql_type == "date" and pa.types.is_timestamp(array.type):
                array = array.cast(pa.timestamp("s")).cast(pa.date32())
            arrays.append(array.cast(target, safe=False))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            # mixed Python objects (dates next to NaN, ...): one value at a time
            if sql_type == "date":
                values = values.map(lambda v: v.date() if isinstance(v, dt.datetime | pd.Timestamp) else v)
            values = values.astype("object").where(values.notna(), None)
            arrays.append(pa.array(values.tolist(), type=target, from_pandas=True))
    return pa.Table.from_arrays(arrays, names=list(table.column_names))


# rows per COPY message: small enough that Arrow renders the next slice while the server takes
# this one (psycopg's queued writer sends from its own thread), large enough to stay vectorised
COPY_BATCH_ROWS = 8_192


def _sqlite_column(column: pa.ChunkedArray | pa.Array) -> list:
    """One column as the Python values sqlite3 binds: dates and timestamps rendered as ISO text by
    Arrow (`YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS`, what the driver's adapters wrote), the rest as is."""
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        column = column.cast(pa.string())
    return column.to_pylist()


SQLITE_BATCH_ROWS = 50_000


def bulk_insert(conn: Connection, target: str, rows: pa.Table) -> int:
    """Append rows to a table: COPY on PostgreSQL, executemany on SQLite.

    Returns the number of rows the database reports it took (the load audits it).
    """
    if rows.num_rows == 0:
        return 0
    columns = ", ".join(rows.column_names)
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor:
            types = pg_copy.column_types(cursor, target, rows.column_names)
            # the next batch is rendered while psycopg's queued writer thread sends the current one
            # (Arrow releases the GIL), so the client stays off the critical path: the server's
            # heap and key-index maintenance bound the load
            writer = QueuedLibpqWriter(cursor)
            with cursor.copy(f"copy {target} ({columns}) from stdin (format binary)", writer=writer) as copy:
                copy.write(pg_copy.HEADER)
                for batch in rows.to_batches(max_chunksize=COPY_BATCH_ROWS):
                    copy.write(pg_copy.encode(batch, types))
                copy.write(pg_copy.TRAILER)
            return cursor.rowcount
    marks = ", ".join("?" for _ in rows.column_names)
    sql = f"insert into {target} ({columns}) values ({marks})"
    cursor = conn.connection.driver_connection.cursor()
    taken = 0
    # column-wise conversion in Arrow, then rows as tuples of plain values; a slice at a time so
    # the Python objects of a large table never exist at once
    for batch in rows.to_batches(max_chunksize=SQLITE_BATCH_ROWS):
        cursor.executemany(sql, zip(*(_sqlite_column(c) for c in batch.columns), strict=True))
        taken += cursor.rowcount
    return taken


class BatchWrites:
    """The batch writes of a NightWriter, in one background thread on PostgreSQL: the next batch is
    read, decided and assembled while the server takes this one (at most one batch waits, so two
    batches are held at most). A failed write is raised in the caller at its next `submit` or at
    `drain`; the writes queued after it are skipped. Elsewhere (SQLite) a write runs at once.

    The caller's connection is used by one thread at a time: every use outside the jobs comes
    after `drain`."""

    def __init__(self, threaded: bool) -> None:
        self.error: BaseException | None = None
        self.cancelled = False
        self.jobs: queue.Queue | None = None
        self.thread: threading.Thread | None = None
        if threaded:
            self.jobs = queue.Queue(maxsize=1)
            self.thread = threading.Thread(target=self._run, name="healthbook-load-writer", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        assert self.jobs is not None
        while True:
            job = self.jobs.get()
            try:
                if job is None:
                    return
                if self.error is None and not self.cancelled:
                    job()
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                self.error = e
            finally:
                self.jobs.task_done()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def submit(self, job) -> None:
        self._raise()
        if self.jobs is None:
            job()
        else:
            self.jobs.put(job)

    def drain(self) -> None:
        if self.jobs is not None:
            self.jobs.join()
        self._raise()

    def close(self, cancel: bool = False) -> None:
        """Stop the thread (after the queued writes, or skipping them with `cancel`)."""
        if self.thread is not None and self.jobs is not None:
            self.cancelled = self.cancelled or cancel
            self.jobs.put(None)
            self.thread.join()
            self.thread = None
