"""The load stage: complete encounter versions of a night into the serving database.

This is the one module that talks to the serving database (any SQLAlchemy URL: PostgreSQL in
production, SQLite as the embedded default). Deciding what loads and shaping the rows is pure and
lives in `transforms/load/assemble.py`; this module reads the warehouse, calls it, and writes.

Bounded memory: night-wide the load keeps only what has one row per version (tonight's keys,
findings, links, pending, outcomes). The staged rows are read load.batch_encounters (a setting) encounters at a time
(the facilities' partitions only, the columns serving needs only), decided, assembled and written;
nothing of a batch stays in Python after it.

Write, audit, publish, all in ONE transaction (`NightWriter`, `load_night` holds the transaction):
  1. write   each batch: give each version its version_id (the one it was published under, else
             the next in publish order), audit its rows (no orphan line item; LoadAuditFailed
             otherwise), delete the rows of any of its versions already published (a re-run
             replaces them by version_id) and COPY its rows straight into the serving tables (SQLite:
             executemany), each append audited against the row count the database reports; then
             the citizens' registry rows in place of their serving rows (delete by key, COPY), a
             chunk at a time. Readers see no change: nothing is committed yet.
  2. audit   every version written tonight has its citizen's registry row,
  3. publish retire the previous current versions, apply the FHIR changes, replace the touched
             citizens' illnesses (tonight's figures, computed per batch while it was written, plus
             one query for their versions published before), write the load_history row, commit. A failure anywhere rolls the night back; the temp tables
             vanish with the connection.
Each row is written once (an earlier design staged into temp tables and moved the rows with
INSERT ... SELECT: every row written twice, 0.8x the throughput on PostgreSQL). On PostgreSQL a
batch's writes run in one background thread while the next batch is read and assembled (the server
does the work; at most one batch waits): 0.74x the load stage's time on the 100k night.
The warehouse files (outcomes, pending list, manifest) are written only after the commit, so a
re-run after a crash redoes the night; a re-run after success rewrites identical rows.

Dialects: `sql/serving/*.sql` is portable (both engines accept the same DDL and statements);
a file under `sql/serving/<dialect>/` with the same name overrides it for that dialect (see
`sql_file`). Statements that repeat per table are built by the small pure `*_sql` functions below.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import queue
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import sqlalchemy as sa
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy.engine import Connection, Engine

from transforms.core import parquet_io
from transforms.core.resources import sql_path
from transforms.core.safe_io import atomic_path, write_text_atomic
from transforms.core.warehouse import Warehouse
from transforms.load import assemble, illness
from transforms.serving import migrations, pg_copy
from transforms.serving.schema import (
    ALLERGIES,
    CITIZENS,
    CLINICAL_COURSE,
    DIAGNOSES,
    DISCHARGE_PAPERS,
    ENCOUNTERS,
    FHIR_TABLES,
    FOLLOW_UPS,
    ILLNESSES,
    IMMUNIZATIONS,
    LAB_RESULTS,
    MEDICATIONS,
    PROCEDURES,
    REFERRALS,
    SUMMARIES,
    VERSION_TABLES,
    ServingTable,
)

SQL_DIR = sql_path("serving")

STAGED_DATASETS = (
    "encounters",
    "drugs",
    "services",
    "lab_results",
    "clinical_course",
    "discharge_papers",
    "summaries",
    "referrals",
    "follow_ups",
)
KEY = assemble.KEY


class ServingDatabaseUnreachable(RuntimeError):
    """The serving database does not answer: the night cannot load (the run exits non-zero)."""


class ServingSchemaOutdated(RuntimeError):
    """The serving database is not at this release's migration revision: the night cannot load into
    it until `healthbook db upgrade` ran."""


class LoadAuditFailed(RuntimeError):
    """What was written to the stage tables is not what was assembled: nothing was published."""


# ---------------------------------------------------------------------------------------------
# SQL: files and the per-table builders


@functools.lru_cache(maxsize=256)
def sql_file(name: str, dialect: str) -> str:
    """The text of `sql/serving/<name>`, or of `sql/serving/<dialect>/<name>` when it exists."""
    override = SQL_DIR / dialect / name
    return (override if override.exists() else SQL_DIR / name).read_text(encoding="utf-8")


def ddl_files() -> list[str]:
    """The DDL files in the order they run (numbered; roles.sql is separate, PostgreSQL only)."""
    return sorted(p.name for p in SQL_DIR.glob("[0-9][0-9]_*.sql"))


def stage_name(table: ServingTable | str) -> str:
    return f"stage_{table if isinstance(table, str) else table.name}"


def create_stage_sql(table: ServingTable) -> str:
    """A temporary table shaped like `table` (no constraints), dropped at the end of the load."""
    return f"create temp table {stage_name(table)} as select * from {table.name} where 1 = 0"


def drop_stage_sql(name: str) -> str:
    return f"drop table if exists {name}"


# replace_keys: the version ids of a batch's versions that are already published (their rows are
# replaced); retire_keys: the published versions that a newer version of tonight makes history
REPLACE_KEYS_DDL = "create temp table replace_keys (version_id bigint)"
RETIRE_KEYS_DDL = "create temp table retire_keys (version_id bigint)"
RETIRE_SQL = (
    "update encounters set is_current = false "
    "where is_current and version_id in (select version_id from retire_keys)"
)


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


def delete_staged_versions_sql(table: ServingTable) -> str:
    """Remove the rows of every encounter version listed in replace_keys (replace by version): one
    probe of the table's version_id key per listed version, whatever the table's size."""
    return f"delete from {table.name} where version_id in (select version_id from replace_keys)"


def insert_from_stage_sql(table: ServingTable) -> str:
    columns = ", ".join(table.column_names)
    return f"insert into {table.name} ({columns}) select {columns} from {stage_name(table)}"


# a chunk of citizens whose registry rows replace their serving rows (delete by key, then COPY:
# the same effect as an upsert, with the rows appended in bulk)
CITIZEN_IDS_DDL = "create temp table stage_citizen_ids (citizen_id text)"
DELETE_STAGED_CITIZENS_SQL = (
    "delete from citizens where citizen_id in (select citizen_id from stage_citizen_ids)"
)


def delete_staged_resources_sql(table: ServingTable) -> str:
    """Remove FHIR resources that tonight upserts or removes (by resource_id)."""
    return (
        f"delete from {table.name} where resource_id in (select resource_id from {stage_name(table)}) "
        f"or resource_id in (select resource_id from {stage_name(table.name + '_removed')})"
    )


# ---------------------------------------------------------------------------------------------
# engine and schema


@functools.lru_cache(maxsize=8)
def serving_engine(url: str) -> Engine:
    """The engine of a serving database URL (one per URL per process: book reads reuse it).

    SQLite gets real transactions (BEGIN emitted by SQLAlchemy, the driver's own implicit
    transaction handling off), so that DDL of temp tables and the publish sit in the same one.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _no_driver_transactions(dbapi_connection, _record):
            dbapi_connection.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("begin")

        return engine
    connect_args = {"connect_timeout": 10} if url.startswith("postgresql") else {}
    return sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)


def check_reachable(engine: Engine) -> None:
    """Raise ServingDatabaseUnreachable (with the URL, password hidden) when the database is down."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("select 1")
    except sa.exc.SQLAlchemyError as e:
        raise ServingDatabaseUnreachable(
            f"the serving database {engine.url.render_as_string(hide_password=True)} is unreachable: "
            f"{e.__class__.__name__}: {str(e).splitlines()[0]}"
        ) from e


def ensure_schema(engine: Engine) -> None:
    """Create the serving tables and indexes when they do not exist (the DDL is idempotent). First
    the database must be at this release's migration revision (transforms/serving/migrations): one
    behind it (or made before migrations) raises ServingSchemaOutdated, telling the operator to run
    `healthbook db upgrade`. A database with no serving table gets the schema and the head stamped."""
    dialect = engine.dialect.name
    with engine.begin() as conn:
        refusal = migrations.behind_head(conn)
        if refusal:
            raise ServingSchemaOutdated(refusal)
        for name in ddl_files():
            conn.exec_driver_sql(sql_file(name, dialect))
        migrations.stamp_head(conn)  # nothing when already at the head


def apply_roles(engine: Engine) -> None:
    """Create the loader / book_reader / analyst roles and their grants (PostgreSQL only)."""
    if engine.dialect.name != "postgresql":
        raise ValueError("roles exist only on PostgreSQL; SQLite has no users")
    with engine.begin() as conn:
        # straight to psycopg without parameters: the DO block's format('%I') is not a placeholder
        conn.connection.driver_connection.execute(sql_file("roles.sql", "postgresql"))


# ---------------------------------------------------------------------------------------------
# bulk writing

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


# ---------------------------------------------------------------------------------------------
# publish


def version_keys(frame: pd.DataFrame) -> pa.Array:
    """One string per row: its version key (facility_code, encounter_id, version) joined by a unit
    separator, null when a key part is missing."""
    parts = [pa.array(frame[c].astype("str"), pa.string(), from_pandas=True) for c in KEY[:2]]
    version = pa.array(frame["version"].astype("int64")).cast(pa.string())
    return pc.binary_join_element_wise(*parts, version, "\x1f")


def text_rows(frame: pd.DataFrame) -> pa.Table:
    """Text columns (encounter keys) as Arrow rows for a keys table, nulls kept."""
    return pa.table(
        {c: pa.array(frame[c].astype("object"), pa.string(), from_pandas=True) for c in frame.columns}
    )


def version_positions(frame: pd.DataFrame, keys: pa.Array) -> pa.Array:
    """For each row of an assembled frame, the position of its version key in `keys`
    (version_keys); null where the row's version is not among them (an orphan)."""
    # Arrow's hash lookup: vectorised, instead of a 3-column join (a null key is never matched)
    return pc.index_in(version_keys(frame), value_set=keys)


# rewritten_keys: the published versions that tonight wrote again (the illness figures of the
# versions published before tonight leave them out: tonight's own figures hold them)
REWRITTEN_KEYS_DDL = "create temp table rewritten_keys (version_id bigint)"
ILLNESS_CATEGORIES_DDL = (
    "create temp table stage_illness_categories (category text, condition text, name text)"
)


class _BatchWrites:
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


def tonight_illnesses(encounters: pa.Table, diagnoses: pa.Table, positions: pa.Array) -> pa.Table:
    """The illness figures (illness.partial_illnesses) of a batch's current versions: `encounters`
    and `diagnoses` as written, `positions` the encounter row of each diagnosis row."""
    current = pc.fill_null(encounters["is_current"].take(positions), False)
    seen_on = pc.coalesce(
        encounters["admitted_at"].cast(pa.date32()), encounters["discharged_at"].cast(pa.date32())
    )
    return illness.partial_illnesses(
        encounters["citizen_id"].take(positions).filter(current),
        diagnoses["version_id"].filter(current),
        seen_on.take(positions).filter(current),
        diagnoses["icd10"].filter(current),
    )


# the line-item tables the helper connection writes (about half the rows of a night)
HELPER_TABLES = (MEDICATIONS, PROCEDURES, CLINICAL_COURSE, REFERRALS)


ILLNESS_TEMP_TABLES = ("stage_touched_citizens", "stage_illness_categories", "rewritten_keys")


def illnesses_before_tonight(
    conn: Connection, touched: pa.Array, rewritten: pa.Array, first_version_id: int
) -> pa.Table:
    """The illness figures (illness.PARTIAL_SCHEMA) of the `touched` citizens' current versions
    published before tonight: a version_id below `first_version_id`, not `rewritten` tonight.
    Leaves the temp tables ILLNESS_TEMP_TABLES (stage_touched_citizens: the touched citizens)."""
    stage_rows(
        conn,
        "stage_touched_citizens",
        pa.table({"citizen_id": touched}),
        "create temp table stage_touched_citizens (citizen_id text)",
    )
    stage_rows(conn, "stage_illness_categories", illness.categories_table(), ILLNESS_CATEGORIES_DDL)
    stage_rows(conn, "rewritten_keys", pa.table({"version_id": rewritten}), REWRITTEN_KEYS_DDL)
    rows = conn.execute(
        sa.text(sql_file("queries/illnesses_before_tonight.sql", conn.dialect.name)),
        {"first_version_id": first_version_id, "trimmed": illness.TRIMMED},
    ).fetchall()
    return pa.table(
        {
            "citizen_id": pa.array([r[0] for r in rows], pa.string()),
            "icd10": pa.array([r[1] for r in rows], pa.string()),
            "first_seen": pa.array([as_date(r[2]) for r in rows], pa.date32()),
            "last_seen": pa.array([as_date(r[3]) for r in rows], pa.date32()),
            "encounter_count": pa.array([r[4] for r in rows], pa.int64()),
        },
        schema=illness.PARTIAL_SCHEMA,
    )


class NightWriter:
    """Writes one night into the serving database inside ONE transaction that its caller holds.

    Write: every batch of encounter versions is audited (no orphan line item), its `is_current`
    decided against the newest published version of each of its encounters, the rows of any of its
    versions already published (a re-run, a re-loaded history version) deleted for replacement, and
    the rows COPied straight into the serving tables (executemany on SQLite), each append audited
    against the row count the database reports. Each row is written once: no stage-table round trip.
    What the publish needs of a batch is kept in Python, a value or two per version: tonight's
    citizens, the published versions a newer one retires, the citizens of every published version
    of tonight's encounters. The citizens' registry rows go to the temp table stage_citizens.
    Audit and publish (`publish`, same transaction): every version of tonight has its citizen's
    registry row, the previous current versions are retired, citizens upserted, FHIR changes
    applied, illnesses recomputed, load_history written. Readers see nothing until the caller
    commits; a failure anywhere (or a crash) rolls the whole night back, and the temp tables vanish
    with the connection.
    """

    def __init__(self, conn: Connection, threaded: bool | None = None) -> None:
        if not conn.in_transaction():
            raise RuntimeError("NightWriter needs its caller's transaction (engine.connect() + conn.begin())")
        self.conn = conn
        self.dialect = conn.dialect.name
        self.staged = {table.name: 0 for table in (*VERSION_TABLES, CITIZENS)}
        self.temp_tables: list[str] = []
        if self.dialect == "postgresql":
            # JIT compilation costs more than it saves on the load's mid-sized joins; the set-based
            # statements (illness recompute, retire) sort and hash in memory, not in temp files
            conn.exec_driver_sql("set local jit = off")
            conn.exec_driver_sql("set local work_mem = '64MB'")
            # the load analyzes only its temp tables (row counts and rough distributions are all
            # their joins need): a small sample instead of 30,000 rows each
            conn.exec_driver_sql("set local default_statistics_target = 10")
            # one load at a time allocates version ids (readers are not blocked: they take ACCESS
            # SHARE); a second load waits here until this one commits or rolls back. On SQLite a
            # second load cannot write before this one ends either (one writer per database).
            conn.exec_driver_sql("lock table encounters in share row exclusive mode")
        # version ids are allocated in publish order after the highest one published; a version
        # written again (a re-run, a re-load) keeps its id (`newest_published` looks them up)
        self.next_version_id = int(
            conn.exec_driver_sql("select coalesce(max(version_id), 0) + 1 from encounters").scalar_one()
        )
        self.first_version_id = self.next_version_id
        # a helper connection writes line items of new versions in parallel (a second server
        # process: 0.8x the COPY time at 50k encounters) in its own transaction, committed just
        # before the caller commits this one. Those rows are reachable only through their
        # encounters rows, which this transaction writes: a failure before the commits rolls both
        # back; a crash between the two commits leaves line items of an id no encounter has, which
        # the next load deletes here, under the lock, before it allocates that id again.
        self.helper: Connection | None = None
        self.helper_writes: _BatchWrites | None = None
        if self.dialect == "postgresql" and (threaded is None or threaded):
            self.helper = conn.engine.connect()
            # the clean-up commits on its own, before any write reuses the ids (the lock keeps
            # other loads out): a delete left open would make a write of the same key wait for it
            with self.helper.begin():
                for table in HELPER_TABLES:
                    self.helper.execute(
                        sa.text(f"delete from {table.name} where version_id >= :first"),
                        {"first": self.first_version_id},
                    )
            self.helper.begin()
            # the helper never waits for another transaction: were it to, the load would fail
            # instead of waiting for itself forever (this transaction waits for the helper)
            self.helper.exec_driver_sql("set local lock_timeout = '30s'")
            self.helper_writes = _BatchWrites(True)
        # every published version of tonight's candidate encounters (`newest_published`)
        self.published = pd.DataFrame(
            {c: pd.Series(dtype="object") for c in (*KEY, "version_id", "citizen_id")}
        )
        self.published_keys = pa.array([], pa.string())
        self.published_ids = pa.array([], pa.int64())
        # night-wide, per version: tonight's citizens (audited against stage_citizens), the
        # versions to retire, the citizens whose illnesses are recomputed
        self.tonight_citizens: list[pa.Array] = []
        self.retire_ids: list[pa.Array] = []
        self.touched: list[pa.Array] = []
        self.staged_citizens: list[pa.Array] = []
        # the published versions written again tonight, and the illness figures of tonight's
        # current versions (illness.partial_illnesses), a table per batch
        self.rewritten_ids: list[pa.Array] = []
        self.illness_parts: list[pa.Table] = []
        self._temp_table("stage_citizen_ids", CITIZEN_IDS_DDL)
        self._temp_table("replace_keys", REPLACE_KEYS_DDL)
        # batch writes overlap the next batch's assembly on PostgreSQL (a server process does the
        # work); SQLite writes in this thread (its connection belongs to the thread that made it)
        self.writes = _BatchWrites(self.dialect == "postgresql" if threaded is None else threaded)

    def close(self, cancel: bool = False) -> None:
        """Stop the background writes (`cancel`: skip the queued ones, the night is failing) and
        end the helper connection (its transaction rolls back unless `publish` committed it)."""
        self.writes.close(cancel)
        if self.helper_writes is not None:
            self.helper_writes.close(cancel)
        if self.helper is not None:
            self.helper.close()
            self.helper = None

    def _drain(self) -> None:
        """Wait for every queued write (raising the first failure)."""
        self.writes.drain()
        if self.helper_writes is not None:
            self.helper_writes.drain()

    def _temp_table(self, name: str, ddl: str) -> None:
        self.conn.exec_driver_sql(drop_stage_sql(name))
        self.conn.exec_driver_sql(ddl)
        self.temp_tables.append(name)

    def _append(self, table: ServingTable, frame: pd.DataFrame, target: str) -> int:
        return self._append_rows(arrow_rows(frame, table), target)

    def _append_rows(self, rows: pa.Table, target: str, conn: Connection | None = None) -> int:
        expected = rows.num_rows
        if (reported := bulk_insert(conn or self.conn, target, rows)) != expected:
            raise LoadAuditFailed(f"{target}: the database took {reported} rows of {expected}")
        return expected

    def newest_published(self, candidates: pd.DataFrame) -> pd.DataFrame:
        """The newest published version of each candidate encounter (facility_code, encounter_id,
        version; encounters with no published version are absent). Looks up only the candidates:
        the serving database may hold many millions of encounters. Remembers the version_id of
        every published version of the candidates (`stage_versions` writes them again under it).
        Called once, before any batch is written."""
        keys = candidates[assemble.ENCOUNTER_KEY].drop_duplicates()
        if keys.empty:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in KEY})
        self.writes.drain()
        conn = self.conn
        stage_rows(
            conn,
            "candidate_keys",
            text_rows(keys),
            "create temp table candidate_keys (facility_code text, encounter_id text)",
        )
        rows = conn.exec_driver_sql(sql_file("queries/published_versions.sql", self.dialect)).fetchall()
        conn.exec_driver_sql(drop_stage_sql("candidate_keys"))
        published = pd.DataFrame(rows, columns=[*KEY, "version_id", "citizen_id"])
        published["version"] = published["version"].astype("int64")
        self.published = published
        self.published_keys = version_keys(published)
        self.published_ids = pa.array(published["version_id"].to_numpy(dtype="int64"))
        newest = published.groupby(assemble.ENCOUNTER_KEY, sort=False, as_index=False)["version"].max()
        return newest[KEY]

    def stage_versions(self, version_rows: dict[str, pd.DataFrame], newest_published: pd.DataFrame) -> None:
        """Audit one batch of assembled encounter-version rows and write it to the serving tables.

        A batch holds every version of its encounters; `newest_published` (from `newest_published`,
        looked up before this batch's writes) holds the newest published version of each of them.
        A version is current when it is the newest among tonight's and the published ones.

        Each version gets its version_id: the one it was published under (its rows are replaced),
        else the next one. Every line item must belong to a version of the batch (audited: an
        orphan refuses the night).
        """
        encounters = version_rows.get("encounters", assemble.empty_rows(ENCOUNTERS))
        encounters = assemble.mark_current(encounters, newest_published)
        keys = version_keys(encounters)
        existing = self.published_ids.take(pc.index_in(keys, value_set=self.published_keys))
        is_new = existing.is_null().to_numpy(zero_copy_only=False)
        ids = existing.fill_null(0).to_numpy(zero_copy_only=False).astype("int64", copy=True)
        ids[is_new] = np.arange(self.next_version_id, self.next_version_id + int(is_new.sum()))
        self.next_version_id += int(is_new.sum())
        version_ids = pa.array(ids)
        self._remember(encounters)
        replace_keys = pa.table({"version_id": version_ids.filter(pa.array(~is_new))})
        self.rewritten_ids.append(replace_keys["version_id"].combine_chunks())

        # assemble delivers rows in key order, batches follow each other in key order and new ids
        # are allocated in that order: each (version_id, ...) key index grows at its right edge
        def replace() -> None:
            stage_rows(self.conn, "replace_keys", replace_keys)
            for table in VERSION_TABLES:
                self.conn.exec_driver_sql(delete_staged_versions_sql(table))

        if replace_keys.num_rows:
            self.writes.submit(replace)
        # table by table: the server takes one table's rows while the next one is typed here (an
        # orphan found in a later table still refuses the night: the transaction rolls back)
        encounter_rows = None
        for table in VERSION_TABLES:
            frame = encounters if table is ENCOUNTERS else version_rows.get(table.name)
            if frame is None or frame.empty:
                continue
            positions = None if table is ENCOUNTERS else version_positions(frame, keys)
            of_rows = version_ids if positions is None else version_ids.take(positions)
            if orphans := of_rows.null_count:
                raise LoadAuditFailed(
                    f"{table.name}: {orphans} rows of a version that is not published tonight"
                )
            table_rows = arrow_rows(frame, table, {"version_id": of_rows})
            if table is ENCOUNTERS:
                encounter_rows = table_rows
            elif table is DIAGNOSES and encounter_rows is not None:
                self.illness_parts.append(tonight_illnesses(encounter_rows, table_rows, positions))
            self.staged[table.name] += table_rows.num_rows
            # the helper takes line items of new versions only: a batch that rewrites published
            # versions deletes and writes them in this transaction
            if self.helper_writes is not None and table in HELPER_TABLES and not replace_keys.num_rows:
                self.helper_writes.submit(
                    functools.partial(self._append_rows, table_rows, table.name, self.helper)
                )
            else:
                self.writes.submit(functools.partial(self._append_rows, table_rows, table.name))

    def _remember(self, encounters: pd.DataFrame) -> None:
        """What the publish needs of a batch's versions (`encounters`: tonight's rows of every
        version of the batch's encounters): their citizens; the published versions of the same
        encounters, whose citizens are touched (a re-send may move an encounter to another citizen)
        and which are retired when tonight holds a newer version of their encounter."""
        self.tonight_citizens.append(
            pa.array(encounters["citizen_id"].astype("object"), pa.string(), from_pandas=True)
        )
        if self.published.empty or encounters.empty:
            return
        newest = encounters.groupby(assemble.ENCOUNTER_KEY, sort=False, as_index=False)["version"].max()
        earlier = self.published.merge(
            newest.rename(columns={"version": "tonight"}), on=assemble.ENCOUNTER_KEY, how="inner"
        )
        self.touched.append(pa.array(earlier["citizen_id"].astype("object"), pa.string(), from_pandas=True))
        older = earlier["version"].to_numpy("int64") < earlier["tonight"].to_numpy("int64")
        self.retire_ids.append(pa.array(earlier.loc[older, "version_id"].to_numpy("int64")))

    def stage_citizens(self, citizens: pd.DataFrame) -> None:
        """Write registry rows (citizen_rows; each citizen once over the night) in place of the
        citizens' serving rows (in the background on PostgreSQL, like a batch)."""
        if citizens.empty:
            return
        rows = arrow_rows(citizens, CITIZENS)
        ids = pa.table({"citizen_id": rows["citizen_id"]})
        self.staged[CITIZENS.name] += rows.num_rows
        self.staged_citizens.append(rows["citizen_id"].combine_chunks())

        def write() -> None:
            stage_rows(self.conn, "stage_citizen_ids", ids)
            self.conn.exec_driver_sql(DELETE_STAGED_CITIZENS_SQL)
            self._append_rows(rows, CITIZENS.name)

        self.writes.submit(write)

    @property
    def rows_staged(self) -> int:
        return sum(self.staged[table.name] for table in VERSION_TABLES)

    def publish(
        self,
        night: dt.date,
        fhir_upserts: dict[str, pd.DataFrame],
        fhir_removed: dict[str, list[str]],
        history: dict,
    ) -> dict[str, int]:
        """Audit and publish what was written, with tonight's FHIR changes (the caller commits);
        returns the rows written per table."""
        self._drain()
        conn, dialect = self.conn, self.dialect
        written: dict[str, int] = {table.name: self.staged[table.name] for table in VERSION_TABLES}

        def write(table: ServingTable, frame: pd.DataFrame, target: str) -> None:
            written[table.name] = written.get(table.name, 0) + self._append(table, frame, target)

        # the audit: every version of tonight has a citizen whose registry row is staged with it
        tonight = pa.chunked_array(self.tonight_citizens, pa.string())
        staged_citizens = pa.chunked_array(self.staged_citizens, pa.string()).combine_chunks()
        with_registry = pc.is_in(tonight, value_set=staged_citizens, skip_nulls=True)
        if without := len(with_registry) - (pc.sum(with_registry).as_py() or 0):
            raise LoadAuditFailed(f"encounters: {without} without their citizen's registry row")
        retire = pa.table({"version_id": pa.chunked_array(self.retire_ids, pa.int64())})
        if retire.num_rows:
            self._stage("retire_keys", retire, RETIRE_KEYS_DDL)
            conn.exec_driver_sql(RETIRE_SQL)

        # citizens: their registry rows were written in place of the earlier ones (stage_citizens)
        written[CITIZENS.name] = self.staged[CITIZENS.name]

        # FHIR: the newest copy of each resource replaces the earlier one; inactive ones go
        for table in FHIR_TABLES:
            removed = pa.table({"resource_id": pa.array(fhir_removed.get(table.name, []), pa.string())})
            name = stage_name(table.name + "_removed")
            self._stage(name, removed, f"create temp table {name} (resource_id text)")
            self._temp_table(stage_name(table), create_stage_sql(table))
            write(table, fhir_upserts.get(table.name, assemble.empty_rows(table)), stage_name(table))
            conn.exec_driver_sql(delete_staged_resources_sql(table))
            conn.exec_driver_sql(insert_from_stage_sql(table))

        touched = pa.chunked_array([*self.tonight_citizens, *self.touched, staged_citizens], pa.string())
        written[ILLNESSES.name] = self._recompute_illnesses(pc.unique(touched.combine_chunks().drop_null()))
        conn.execute(
            sa.text(sql_file("queries/upsert_load_history.sql", dialect)),
            {"night": night if dialect == "postgresql" else night.isoformat(), **history},
        )
        for name in self.temp_tables:
            conn.exec_driver_sql(drop_stage_sql(name))
        self.temp_tables = []
        if self.helper is not None:
            # the helper's line items first: the caller's commit then makes them reachable
            self.helper.commit()
        return written

    def _recompute_illnesses(self, touched: pa.Array) -> int:
        """The illness history of the touched citizens (every citizen of a version of an encounter
        published tonight, and every citizen whose registry row is published tonight), replaced as
        a whole: tonight's current versions' figures (kept per batch while the rows were written)
        plus those of the touched citizens' current versions published before tonight (one
        set-based query); returns the rows written."""
        rewritten = pa.chunked_array(self.rewritten_ids, pa.int64()).combine_chunks()
        earlier = illnesses_before_tonight(self.conn, touched, rewritten, self.first_version_id)
        self.temp_tables.extend(ILLNESS_TEMP_TABLES)
        self.conn.exec_driver_sql(sql_file("queries/delete_illnesses_of_touched.sql", self.dialect))
        rows = illness.combine_illnesses([*self.illness_parts, earlier])
        return self._append_rows(rows, ILLNESSES.name)

    def _stage(self, name: str, rows: pa.Table, ddl: str) -> None:
        """A temp table of this load filled with `rows` (dropped when the load publishes)."""
        stage_rows(self.conn, name, rows, ddl)
        self.temp_tables.append(name)


def publish(
    engine: Engine,
    night: dt.date,
    version_rows: dict[str, pd.DataFrame],
    citizens: pd.DataFrame,
    fhir_upserts: dict[str, pd.DataFrame],
    fhir_removed: dict[str, list[str]],
    history: dict,
) -> dict[str, int]:
    """Write, audit and publish one night's assembled rows (a single batch) in one transaction;
    returns rows written per table. `load_night` stages many batches through `NightWriter`."""
    with engine.connect() as conn, conn.begin():
        writer = NightWriter(conn)
        try:
            encounters = version_rows.get("encounters", assemble.empty_rows(ENCOUNTERS))
            newest = writer.newest_published(encounters)
            # the citizens are written while the versions are typed
            writer.stage_citizens(citizens)
            writer.stage_versions(version_rows, newest)
            return writer.publish(night, fhir_upserts, fhir_removed, history)
        finally:
            writer.close(cancel=True)


def as_date(value) -> dt.date | None:
    """A date from what a driver returns for a date or timestamp (SQLite: ISO text)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


# ---------------------------------------------------------------------------------------------
# warehouse reading (Parquet)


def _read_parquet_files(files: list[Path], columns: list[str] | None = None) -> pd.DataFrame | None:
    tables = []
    for f in files:
        # only the wanted columns are decoded (findings carry values, links their differences)
        wanted = None if columns is None else [c for c in columns if c in pq.read_schema(f).names]
        table = pq.read_table(f, columns=wanted)
        if "facility_code" not in table.column_names:
            # hive partition folder facility_code=<F> when the file itself omits the column
            for part in f.parts:
                if part.startswith("facility_code="):
                    table = table.append_column(
                        "facility_code", pa.array([part.split("=", 1)[1]] * table.num_rows, pa.string())
                    )
        if columns is not None:
            table = table.select([c for c in columns if c in table.column_names])
        tables.append(table)
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


def read_staged_night(warehouse: Warehouse, dataset: str, night: dt.date) -> pd.DataFrame | None:
    """The staged rows of one dataset for one night (all facilities), or None when there are none."""
    table = parquet_io.read_staged_table(warehouse, dataset, night)
    return table.to_pandas() if table.num_rows else None


def read_findings(warehouse: Warehouse, night: dt.date) -> pd.DataFrame:
    """The night's findings of every stage (ingest, quality, ...), key + stage, reason, severity."""
    folder = warehouse.quarantine("findings", night)
    columns = [*KEY, "stage", "reason", "severity"]
    frame = _read_parquet_files(sorted(folder.glob("*.parquet")), columns) if folder.exists() else None
    if frame is None or frame.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    frame = frame[frame["encounter_id"].notna() & frame["version"].notna()].copy()
    frame["version"] = frame["version"].astype("int64")
    return frame[columns]


def _night_folders(root: Path, until: dt.date) -> list[tuple[dt.date, Path]]:
    out = []
    for folder in root.glob("night=*") if root.exists() else []:
        try:
            night = dt.date.fromisoformat(folder.name.split("=", 1)[1])
        except ValueError:
            continue
        if night <= until:
            out.append((night, folder))
    return sorted(out)


def read_links(warehouse: Warehouse, since: dt.date, until: dt.date) -> pd.DataFrame:
    """The newest patient link of every version over the nights from `since` to `until`
    (a pending version of night N may have been linked again on any night after N)."""
    columns = [*KEY, "outcome", "citizen_id", "tier", "match_weight"]
    frames = []
    for night, folder in _night_folders(warehouse.staging("patient_links"), until):
        if night < since:
            continue
        frame = _read_parquet_files(sorted(folder.rglob("*.parquet")), columns)
        if frame is not None:
            frames.append(frame.assign(link_night=night))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    links = pd.concat(frames, ignore_index=True)
    links["version"] = links["version"].astype("int64")
    links = links.sort_values("link_night", kind="stable").drop_duplicates(KEY, keep="last")
    for c in columns:
        if c not in links:
            links[c] = None
    return links[columns].reset_index(drop=True)


def read_registry(path: Path, citizen_ids: set[str]) -> pd.DataFrame:
    """The registry snapshot rows of the given citizens only (the snapshot can be national)."""
    dataset = pads.dataset(path, format="parquet")
    ids = pa.array(sorted(citizen_ids), pa.string())
    return dataset.to_table(filter=pads.field("citizen_id").isin(ids)).to_pandas()


def registry_ids(path: Path, citizen_ids: set[str]) -> set[str]:
    dataset = pads.dataset(path, format="parquet")
    ids = pa.array(sorted(citizen_ids), pa.string())
    table = dataset.to_table(columns=["citizen_id"], filter=pads.field("citizen_id").isin(ids))
    return set(table.column("citizen_id").to_pylist())


def pending_path(warehouse: Warehouse) -> Path:
    return warehouse.pending


def retried_path(warehouse: Warehouse, night: dt.date) -> Path:
    return warehouse.retried(night)


PENDING_COLUMNS = [*KEY, "night", "reason", "waiting_since"]


def read_pending(warehouse: Warehouse) -> pd.DataFrame:
    """The quarantined versions waiting for a later night (one row per version)."""
    path = pending_path(warehouse)
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="object") for c in PENDING_COLUMNS})
    frame = pd.read_parquet(path)
    if "waiting_since" not in frame.columns:  # a pending list written before late tables waited
        frame["waiting_since"] = frame["night"]
    frame["waiting_since"] = frame["waiting_since"].fillna(frame["night"])
    return frame


# The load's warehouse files have one Arrow schema whatever the night holds: pandas alone would
# write `string` or `large_string` depending on how a column was built, and `null` for a column
# with no value (an empty retried.parquet), so readers concatenating nights would fail.
OUTCOMES_SCHEMA = pa.schema(
    [
        ("facility_code", pa.string()),
        ("encounter_id", pa.string()),
        ("version", pa.int64()),
        ("night", pa.date32()),
        ("outcome", pa.string()),
        ("reason", pa.string()),
        ("citizen_id", pa.string()),
        ("is_retry", pa.bool_()),
        ("is_published", pa.bool_()),
        # a version published after the grace period without its late tables: what it lacks
        ("incomplete", pa.string()),
        # when its encounter started waiting (the grace period counts from it)
        ("waiting_since", pa.date32()),
    ]
)
PENDING_SCHEMA = pa.schema(
    [
        ("facility_code", pa.string()),
        ("encounter_id", pa.string()),
        ("version", pa.int64()),
        ("night", pa.date32()),
        ("reason", pa.string()),
        ("waiting_since", pa.date32()),
    ]
)


def arrow_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """The frame's columns of `schema`, typed exactly as declared (a missing column is all null)."""
    arrays = []
    for field in schema:
        if field.name not in frame.columns:
            arrays.append(pa.nulls(len(frame), field.type))
            continue
        values = frame[field.name]
        if pa.types.is_date(field.type) and pd.api.types.is_datetime64_any_dtype(values):
            values = values.dt.date
        if pa.types.is_string(field.type):
            values = values.astype("object").where(values.notna(), None)
        array = pa.array(values, from_pandas=True)
        arrays.append(array if array.type == field.type else array.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def write_parquet_atomic(frame: pd.DataFrame, path: Path, schema: pa.Schema | None = None) -> Path:
    """Write the frame to `path` (a temp file renamed over it); with `schema`, exactly that schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if schema is None:
            frame.to_parquet(tmp, index=False)
        else:
            pq.write_table(arrow_table(frame, schema), tmp)
    return path


def write_json_atomic(data: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# the stage


def _received_tonight(staged_encounters: pd.DataFrame | None, findings: pd.DataFrame) -> pd.DataFrame:
    """Every encounter version received tonight: its staged XML1 row or its ingest findings.

    (Patient links are not receipts: a link of tonight for an earlier night's version is a retry.)
    """
    frames = [findings[KEY]]
    if staged_encounters is not None:
        frames.append(staged_encounters[KEY])
    keys = pd.concat(frames, ignore_index=True).dropna().drop_duplicates()
    keys["version"] = keys["version"].astype("int64")
    return keys.sort_values(KEY).reset_index(drop=True)


def _presence(staged: dict[str, pd.DataFrame]) -> pd.DataFrame:
    parts = []
    for dataset, frame in staged.items():
        if frame is None or frame.empty:
            continue
        part = frame[KEY].drop_duplicates().assign(dataset=dataset)
        if dataset == "encounters" and "visit_type" in frame.columns:
            visit = frame.drop_duplicates(KEY)[[*KEY, "visit_type"]]
            part = part.merge(visit, on=KEY, how="left")
        else:
            part["visit_type"] = None
        parts.append(part)
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in [*KEY, "dataset", "visit_type"]})
    return pd.concat(parts, ignore_index=True)


def _filter_keys(frame: pd.DataFrame | None, keys: pd.DataFrame) -> pd.DataFrame | None:
    if frame is None:
        return None
    frame = frame.copy()
    frame["version"] = frame["version"].astype("int64")
    return frame.merge(keys[KEY], on=KEY, how="inner")


def _read_fhir_night(warehouse: Warehouse, dataset: str, night: dt.date) -> pd.DataFrame:
    frame = read_staged_night(warehouse, dataset, night)
    return (
        frame if frame is not None else pd.DataFrame({"resource_id": [], "citizen_id": [], "is_active": []})
    )


def _read_fhir_other_nights(warehouse: Warehouse, dataset: str, night: dt.date, resource_ids: set[str]):
    """The copies of some FHIR resources staged on every other night (None when there are none)."""
    files = [
        f
        for folder in warehouse.staging(dataset).glob("night=*")
        if folder.name != f"night={night.isoformat()}"
        for f in sorted(folder.rglob("*.parquet"))
    ]
    if not files or not resource_ids:
        return None
    dataset_ = pads.dataset(
        [str(f) for f in files], format="parquet", schema=parquet_io.known_schema(dataset)
    )
    ids = pa.array(sorted(resource_ids), pa.string())
    table = dataset_.to_table(filter=pads.field("resource_id").isin(ids))
    return table.to_pandas() if table.num_rows else None


# Encounters per batch: the setting load.batch_encounters (transforms/core/settings.py). The load
# holds the staged rows, decisions and serving rows of one batch at a time (all versions of an
# encounter are in the same batch), so its memory follows that number, not the size of the night;
# each batch also has a fixed cost (~1 s of pandas calls).
# Registry rows turned into citizen rows (Python per-row date parsing) at a time.
CITIZEN_CHUNK_ROWS = 10_000

# The staged columns serving needs besides the serving tables' own (everything else, the *_source
# text and the other XML130 fields, is never read by the load).
EXTRA_STAGED_COLUMNS = {
    "encounters": ("row_index", "reserve", "secondary_icd10", "discharge_diagnosis", "main_icd10"),
    "services": ("row_index", "service_code", "procedure_icd9"),
    "lab_results": ("row_index", "indicator_code", "unit", "value"),
    # XML7's code: the main diagnosis when XML1's is empty or malformed (assemble.with_main_diagnosis)
    "discharge_papers": ("main_icd10",),
}
DATASET_TABLES = {
    "encounters": ENCOUNTERS,
    "drugs": MEDICATIONS,
    "services": PROCEDURES,
    "lab_results": LAB_RESULTS,
    "clinical_course": CLINICAL_COURSE,
    "discharge_papers": DISCHARGE_PAPERS,
    "summaries": SUMMARIES,
    "referrals": REFERRALS,
    "follow_ups": FOLLOW_UPS,
}


@functools.cache
def staged_columns(dataset: str) -> tuple[str, ...]:
    """The columns of a staged dataset the load reads (in the staged schema's order)."""
    wanted = {
        *KEY,
        "row_index",
        *DATASET_TABLES[dataset].column_names,
        *EXTRA_STAGED_COLUMNS.get(dataset, ()),
    }
    return tuple(name for name in parquet_io.known_schema(dataset).names if name in wanted)


def read_staged_batch(
    warehouse: Warehouse, dataset: str, night: dt.date, encounters: dict[str, pa.Array]
) -> pd.DataFrame | None:
    """The staged rows of some encounters (facility_code -> encounter_ids) on one night, only the
    columns the load needs (None when there are none). Reads those facilities' partitions only;
    the encounter filter is applied while scanning, so other encounters' rows are never
    materialised."""
    root = warehouse.staging_night(dataset, night)
    if not root.exists():
        return None
    partitioned = any(root.glob("facility_code=*"))
    schema = parquet_io.known_schema(dataset)
    tables = []
    for facility, ids in encounters.items():
        folder = parquet_io.facility_partition(root, facility) if partitioned else root
        if partitioned:
            files = sorted(folder.rglob("*.parquet")) if folder.exists() else []
        else:
            files = sorted(root.rglob("*.parquet"))  # not partitioned by facility: the filter does it
        if not files:
            continue
        scanned = pads.dataset([str(f) for f in files], format="parquet", schema=schema)
        rows = (pads.field("facility_code") == facility) & pads.field("encounter_id").isin(ids)
        table = scanned.to_table(columns=list(staged_columns(dataset)), filter=rows)
        if table.num_rows:
            tables.append(table)
    if not tables:
        return None
    return parquet_io._normalize_types(pa.concat_tables(tables)).to_pandas()


def read_staged_keys(warehouse: Warehouse, dataset: str, night: dt.date) -> pd.DataFrame | None:
    """The version keys (facility_code, encounter_id, version) of a staged dataset's rows of a night."""
    table = parquet_io.read_staged_table(warehouse, dataset, night, columns=KEY)
    if not table.num_rows:
        return None
    return table.group_by(KEY, use_threads=False).aggregate([]).to_pandas()


def encounter_batches(candidates: pd.DataFrame, size: int) -> pd.DataFrame:
    """Every candidate encounter (facility_code, encounter_id) with its batch number: at most
    `size` encounters per batch, in key order (small facilities share a batch, a large one is
    split); every version of an encounter falls in the same batch."""
    encounters = candidates[assemble.ENCOUNTER_KEY].drop_duplicates()
    encounters = encounters.sort_values(assemble.ENCOUNTER_KEY).reset_index(drop=True)
    return encounters.assign(batch=np.arange(len(encounters)) // size)


def split_by_batch(frame: pd.DataFrame, batches: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """The rows of a frame keyed by encounter, per batch number (rows of no batch are dropped)."""
    joined = frame.merge(batches, on=assemble.ENCOUNTER_KEY, how="inner")
    return {int(n): group.drop(columns="batch") for n, group in joined.groupby("batch", sort=True)}


def _load_batch(
    ctx,
    writer: NightWriter,
    newest: pd.DataFrame,
    encounters: dict[str, pa.Array],
    batch: pd.DataFrame,
    findings: pd.DataFrame,
    links: pd.DataFrame,
    pending: pd.DataFrame,
):
    """Decide, assemble and stage one batch: `encounters` (facility_code -> encounter_ids) and
    its candidate versions, findings, links and pending versions; `newest`: the newest published
    version of every candidate encounter of the night. Returns (outcomes, published)."""
    wh, night = ctx.warehouse, ctx.night
    nights = sorted({night, *batch.loc[batch["is_retry"].astype(bool), "night"]})
    staged: dict[str, pd.DataFrame] = {}
    for dataset in STAGED_DATASETS:
        frames = [_filter_keys(read_staged_batch(wh, dataset, n, encounters), batch) for n in nights]
        frames = [f for f in frames if f is not None and not f.empty]
        if frames:
            staged[dataset] = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    newest_published = newest.merge(
        batch[assemble.ENCOUNTER_KEY].drop_duplicates(), on=assemble.ENCOUNTER_KEY
    )
    known = pd.concat([batch[KEY], pending[KEY], newest_published], ignore_index=True)
    known["version"] = known["version"].astype("int64")
    outcomes = assemble.decide_outcomes(
        batch,
        _presence(staged),
        findings,
        links,
        known,
        tonight=night,
        grace_nights=ctx.settings.load.grace_nights,
        published_encounters=newest_published,
    )
    published = outcomes[outcomes["is_published"]][[*KEY, "incomplete"]].merge(
        links[[*KEY, "citizen_id", "tier", "match_weight"]].rename(columns={"tier": "link_tier"}),
        on=KEY,
        how="left",
    )
    writer.stage_versions(assemble.serving_rows(staged, published), newest_published)
    return outcomes, published


def stage_citizens(writer: NightWriter, registry_path: Path, citizen_ids: pa.Array, night: dt.date) -> None:
    """The registry rows of the given citizens, staged a chunk at a time (each citizen once: its
    first registry row, in citizen_id order)."""
    if not len(citizen_ids):
        writer.stage_citizens(assemble.empty_rows(CITIZENS))
        return
    registry = pads.dataset(registry_path, format="parquet")
    # a national registry: scanned a record batch at a time without read-ahead, so only the
    # matching rows are ever held, not the decoded row groups
    scanner = registry.scanner(
        filter=pads.field("citizen_id").isin(citizen_ids), batch_readahead=0, fragment_readahead=0
    )
    rows = pa.Table.from_batches(scanner.to_batches(), schema=scanner.projected_schema)
    first = pc.index_in(pc.unique(rows["citizen_id"]), value_set=rows["citizen_id"])
    rows = rows.take(first).sort_by("citizen_id")
    for start in range(0, rows.num_rows, CITIZEN_CHUNK_ROWS):
        chunk = rows.slice(start, CITIZEN_CHUNK_ROWS).to_pandas()
        writer.stage_citizens(assemble.citizen_rows(chunk, night))


def load_night(ctx) -> Path:
    """Load the night's complete encounter versions; write outcomes, the pending list, the manifest.

    ctx: transforms.core.context.NightContext. Returns the manifest path `runs/<D>/load.json`.
    Raises ServingDatabaseUnreachable when the serving database does not answer.

    Night-wide only what has one row per version (tonight's keys, findings, links, pending,
    outcomes); the staged rows are read, decided, assembled and staged in the database
    ctx.settings.load.batch_encounters encounters at a time, then published in one transaction (NightWriter).
    """
    wh: Warehouse = ctx.warehouse
    night: dt.date = ctx.night
    engine = serving_engine(ctx.serving_url)
    check_reachable(engine)
    ensure_schema(engine)
    if engine.dialect.name == "postgresql":
        # every load (re)applies the grants, and the default privileges that cover tables made later
        apply_roles(engine)

    findings_by_night = {night: read_findings(wh, night)}
    received = _received_tonight(read_staged_keys(wh, "encounters", night), findings_by_night[night]).assign(
        night=night, is_retry=False
    )

    # Pending versions of earlier nights are tried again (a registry update, a resolved review).
    pending = read_pending(wh)
    retry = pending[pd.to_datetime(pending["night"]).dt.date < night] if not pending.empty else pending
    retry = retry.merge(received[KEY], on=KEY, how="left", indicator=True)
    retry = retry[retry["_merge"] == "left_only"].drop(columns="_merge")
    retry = retry.assign(
        night=pd.to_datetime(retry["night"]).dt.date,
        waiting_since=pd.to_datetime(retry["waiting_since"]).dt.date,
        is_retry=True,
    )[[*KEY, "night", "is_retry", "waiting_since"]]
    # tonight's versions of an encounter already waiting keep its start (a re-send does not
    # restart the grace period)
    received["waiting_since"] = received["night"]
    links = read_links(wh, min([night, *retry["night"]]), night)
    candidates = pd.concat([received, retry], ignore_index=True)
    candidates["version"] = candidates["version"].astype("int64")
    for retry_night in sorted(set(retry["night"])):
        findings_by_night[retry_night] = read_findings(wh, retry_night)
    findings = pd.concat(findings_by_night.values(), ignore_index=True)
    batches = encounter_batches(candidates, ctx.settings.load.batch_encounters)
    per_batch = {
        name: (split_by_batch(frame, batches), list(frame.columns))
        for name, frame in (
            ("candidates", candidates),
            ("findings", findings),
            ("links", links),
            ("pending", pending),
        )
    }
    del findings, links

    def of_batch(name: str, number: int) -> pd.DataFrame:
        parts, columns = per_batch[name]
        return parts.get(number, pd.DataFrame({c: pd.Series(dtype="object") for c in columns}))

    outcome_parts: list[pa.Table] = []
    people: list[pa.Array] = []
    with engine.connect() as conn, conn.begin():  # the whole night: one transaction
        writer = NightWriter(conn)
        newest = writer.newest_published(candidates)  # before any write: batches never share an encounter
        try:
            for number, members in batches.groupby("batch", sort=True):
                encounters = {
                    facility: pa.array(group["encounter_id"].to_numpy(), pa.string())
                    for facility, group in members.groupby("facility_code", sort=True)
                }
                outcomes, published = _load_batch(
                    ctx,
                    writer,
                    newest,
                    encounters,
                    *(of_batch(name, number) for name in ("candidates", "findings", "links", "pending")),
                )
                outcome_parts.append(arrow_table(outcomes, OUTCOMES_SCHEMA))
                people.append(
                    pa.array(published["citizen_id"].astype("object"), pa.string(), from_pandas=True)
                )
                del outcomes, published
                pa.default_memory_pool().release_unused()  # the batch's Arrow buffers back to the OS
            per_batch.clear()  # the per-batch frames are not needed past here

            fhir_staged = {
                IMMUNIZATIONS.name: _read_fhir_night(wh, "immunizations", night),
                ALLERGIES.name: _read_fhir_night(wh, "allergies", night),
            }
            fhir_others = {
                table.name: _read_fhir_other_nights(
                    wh, table.name, night, set(fhir_staged[table.name]["resource_id"].dropna())
                )
                for table in FHIR_TABLES
            }
            fhir_people = set()
            for frame in [*fhir_staged.values(), *(f for f in fhir_others.values() if f is not None)]:
                fhir_people |= set(frame["citizen_id"].dropna())
            in_registry = registry_ids(ctx.registry_path, fhir_people) if fhir_people else set()
            fhir_upserts, fhir_removed, fhir_counts = {}, {}, {}
            for table in FHIR_TABLES:
                fhir_upserts[table.name], fhir_removed[table.name], fhir_counts[table.name] = (
                    assemble.fhir_changes(
                        fhir_staged[table.name], in_registry, table, fhir_others[table.name]
                    )
                )
            for frame in fhir_upserts.values():
                people.append(pa.array(frame["citizen_id"].astype("object"), pa.string(), from_pandas=True))
            people_ids = pc.unique(pa.chunked_array(people, pa.string()).combine_chunks().drop_null())
            stage_citizens(writer, ctx.registry_path, people_ids, night)

            outcomes = (
                pa.concat_tables(outcome_parts) if outcome_parts else OUTCOMES_SCHEMA.empty_table()
            ).sort_by([(c, "ascending") for c in KEY])
            del outcome_parts
            is_retry = outcomes["is_retry"]
            tonight = outcomes.filter(pc.invert(is_retry))
            retried = outcomes.filter(is_retry)
            outcome_counts = _count(outcomes["outcome"])
            history = {
                "versions_received": tonight.num_rows,
                "versions_retried": retried.num_rows,
                "versions_loaded": outcome_counts.get("loaded", 0),
                "versions_quarantined": outcome_counts.get("quarantined", 0),
                "versions_superseded": outcome_counts.get("superseded", 0),
                "rows_published": writer.rows_staged,
                "fhir_upserted": sum(c["upserted"] for c in fhir_counts.values()),
                "fhir_removed": sum(c["removed"] for c in fhir_counts.values()),
            }
            written = writer.publish(night, fhir_upserts, fhir_removed, history)
        except BaseException:
            writer.close(cancel=True)  # the queued writes are skipped; the transaction rolls back
            raise
        writer.close()

    # After the commit: the warehouse files of the night (a crash before this point re-runs cleanly).
    write_table_atomic(tonight, wh.outcomes(night))
    write_table_atomic(retried, retried_path(wh, night))
    quarantined = outcomes.filter(pc.equal(outcomes["outcome"], "quarantined"))
    still_pending = quarantined.select(PENDING_COLUMNS).to_pandas()
    late_figures = _late_tables(tonight, retried, quarantined, ctx.settings.load.grace_nights)
    untouched = pending.merge(outcomes.select(KEY).to_pandas(), on=KEY, how="left", indicator=True)
    untouched = untouched[untouched["_merge"] == "left_only"].drop(columns="_merge")
    new_pending = pd.concat([untouched[PENDING_COLUMNS], still_pending], ignore_index=True)
    new_pending["night"] = pd.to_datetime(new_pending["night"]).dt.date
    new_pending["waiting_since"] = pd.to_datetime(new_pending["waiting_since"]).dt.date
    write_parquet_atomic(
        new_pending.sort_values(KEY).reset_index(drop=True), pending_path(wh), PENDING_SCHEMA
    )

    tonight_counts, retried_counts = _count(tonight["outcome"]), _count(retried["outcome"])
    quarantined_tonight = tonight.filter(pc.equal(tonight["outcome"], "quarantined"))
    manifest = {
        "night": night.isoformat(),
        "serving": engine.url.render_as_string(hide_password=True),
        "versions": {
            "received": tonight.num_rows,
            "loaded": tonight_counts.get("loaded", 0),
            "quarantined": tonight_counts.get("quarantined", 0),
            "superseded": tonight_counts.get("superseded", 0),
            "quarantined_by_reason": dict(sorted(_count(quarantined_tonight["reason"]).items())),
        },
        "retried": {
            "versions": retried.num_rows,
            "loaded": retried_counts.get("loaded", 0),
            "superseded": retried_counts.get("superseded", 0),
            "still_pending": retried_counts.get("quarantined", 0),
        },
        "pending": len(new_pending),
        "late_tables": late_figures,
        "rows": written,
        "fhir": _fhir_ledger(wh, night, fhir_counts),
    }
    return write_json_atomic(manifest, wh.manifest(night, "load"))


def _late_tables(tonight: pa.Table, retried: pa.Table, quarantined: pa.Table, grace_nights: int) -> dict:
    """The late-table figures of the night (manifest and ledger): stays waiting for XML7/XML8
    (pending, tonight's receipts and all), and stays published marked incomplete tonight."""
    late_reasons = pa.array(list(assemble.LATE_REASONS), pa.string())

    def waiting(table: pa.Table) -> pa.Table:
        return table.filter(
            pc.and_(pc.equal(table["outcome"], "quarantined"), pc.is_in(table["reason"], late_reasons))
        )

    def incomplete(table: pa.Table) -> pa.Table:
        return table.filter(pc.and_(table["is_published"], pc.is_valid(table["incomplete"])))

    return {
        "grace_nights": grace_nights,
        "waiting_received_tonight": waiting(tonight).num_rows,
        "waiting_retried": waiting(retried).num_rows,
        "published_incomplete_received_tonight": incomplete(tonight).num_rows,
        "published_incomplete_retried": incomplete(retried).num_rows,
        "by_facility": _late_by_facility(waiting(tonight), incomplete(tonight)),
    }


def _late_by_facility(waiting: pa.Table, incomplete: pa.Table) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for key, table in (("waiting_late_tables", waiting), ("published_incomplete", incomplete)):
        for code, n in _count(table["facility_code"]).items():
            out.setdefault(code, {"waiting_late_tables": 0, "published_incomplete": 0})[key] = n
    return dict(sorted(out.items()))


def _count(values: pa.ChunkedArray) -> dict[str, int]:
    """How many times each non-null value occurs."""
    counts = pc.value_counts(values.combine_chunks() if values.num_chunks else pa.array([], values.type))
    return {
        v: n
        for v, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
        if v is not None
    }


def write_table_atomic(table: pa.Table, path: Path) -> Path:
    """Write an Arrow table to `path` (a temp file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


FHIR_KINDS = {IMMUNIZATIONS.name: "Immunization", ALLERGIES.name: "AllergyIntolerance"}


def _fhir_ledger(wh: Warehouse, night: dt.date, counts: dict[str, dict]) -> dict:
    """The ledger's FHIR figures: ingest's (received, its quarantine, skipped) completed by the load.

    A staged line counts as loaded when it was applied (upserted, removed as entered-in-error or
    refuted) or replaced by a later copy of the same resource; an active line whose citizen is not
    in the registry is quarantined `patient_not_in_registry`.
    """
    ingest_path = wh.manifest(night, "ingest")
    ingest = json.loads(ingest_path.read_text()).get("fhir", {}) if ingest_path.exists() else {}
    out = {}
    for table, kind in FHIR_KINDS.items():
        c = counts[table]
        from_ingest = ingest.get(kind, {}) if isinstance(ingest.get(kind), dict) else {}
        quarantined = dict(from_ingest.get("quarantined", {}) or {})
        for reason, n in c["quarantined"].items():
            quarantined[reason] = quarantined.get(reason, 0) + n
        staged_quarantined = sum((from_ingest.get("quarantined") or {}).values())
        out[kind] = {
            "received": int(from_ingest.get("received", c["received"] + staged_quarantined)),
            "loaded": c["upserted"] + c["removed"] + c["replaced"],
            "quarantined": quarantined,
            "skipped": int(from_ingest.get("skipped", 0)),
            "upserted": c["upserted"],
            "removed": c["removed"],
            "replaced": c["replaced"],
        }
    # Every other line ingest counted stays in the ledger, so that received = loaded +
    # quarantined + skipped holds for the whole of the FHIR input: "unknown" (lines that are not
    # a FHIR resource: json_invalid, line_too_large...) and the resource types skipped.
    for kind, figures in sorted(ingest.items()):
        if kind in out or not isinstance(figures, dict):
            continue
        out[kind] = {
            "received": int(figures.get("received", 0)),
            "loaded": int(figures.get("loaded", 0)),
            "quarantined": dict(figures.get("quarantined", {}) or {}),
            "skipped": int(figures.get("skipped", 0)),
        }
    return out
