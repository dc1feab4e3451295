"""The load stage: complete encounter versions of a night into the serving database.

This is the one module that talks to the serving database (any SQLAlchemy URL: PostgreSQL in
production, SQLite as the embedded default). Deciding what loads and shaping the rows is pure and
lives in `transforms/assemble.py`; this module reads the warehouse, calls it, and writes.

Write, audit, publish, all in ONE transaction per night:
  1. audit   the assembled rows first: no orphan line item, every loaded encounter has its
             citizen's registry row (LoadAuditFailed otherwise; nothing is written),
  2. write   delete the rows of the versions loading tonight (a re-run, a re-send replaces them by
             version key), then append the new rows (PostgreSQL: COPY; SQLite: executemany), each
             append audited against the row count the database reports; upsert citizens
             (insert ... on conflict), retire the previous current versions, apply the FHIR
             changes, recompute the touched citizens' illnesses, write the load_history row,
  3. publish commit. Until then readers see the previous state (one transaction); a failure
             anywhere rolls the whole night back.
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
import os
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

from transforms import assemble, illness, parquet_io
from transforms.serving_schema import (
    ALLERGIES,
    CITIZENS,
    ENCOUNTERS,
    FHIR_TABLES,
    ILLNESSES,
    IMMUNIZATIONS,
    VERSION_TABLES,
    ServingTable,
)
from transforms.warehouse import Warehouse

SQL_DIR = Path(__file__).resolve().parents[1] / "sql" / "serving"

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


def _version_match(alias: str, table: str) -> str:
    return " and ".join(f"{alias}.{c} = {table}.{c}" for c in KEY)


STAGE_KEYS_DDL = "create temp table stage_keys (facility_code text, encounter_id text, version integer)"
# Every per-version statement of the publish probes stage_keys from each serving row. SQLite
# plans those correlated EXISTS as a full scan of stage_keys per row without this index:
# O(serving rows x tonight's versions), 8 s at 10k encounters and hours at 1M.
STAGE_KEYS_INDEX_SQL = "create index stage_keys_version on stage_keys (facility_code, encounter_id, version)"


def delete_staged_versions_sql(table: ServingTable) -> str:
    """Remove the rows of every encounter version listed in stage_keys (replace by version)."""
    return (
        f"delete from {table.name} where exists (select 1 from stage_keys s "
        f"where {_version_match('s', table.name)})"
    )


def insert_from_stage_sql(table: ServingTable) -> str:
    columns = ", ".join(table.column_names)
    return f"insert into {table.name} ({columns}) select {columns} from {stage_name(table)}"


def upsert_from_stage_sql(table: ServingTable) -> str:
    """insert ... on conflict (primary key) do update: PostgreSQL and SQLite (>= 3.24) alike.

    `where true` keeps SQLite from reading `on conflict` as part of the select's join.
    """
    columns = ", ".join(table.column_names)
    updates = ", ".join(f"{c} = excluded.{c}" for c in table.column_names if c not in table.primary_key)
    return (
        f"insert into {table.name} ({columns}) select {columns} from {stage_name(table)} where true "
        f"on conflict ({', '.join(table.primary_key)}) do update set {updates}"
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
    """Create the serving tables and indexes when they do not exist (the DDL is idempotent)."""
    dialect = engine.dialect.name
    with engine.begin() as conn:
        for name in ddl_files():
            conn.exec_driver_sql(sql_file(name, dialect))


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
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("s"),
}


def arrow_rows(frame: pd.DataFrame, table: ServingTable) -> pa.Table:
    """The frame as an Arrow table typed by the serving declaration (column order of the DDL)."""
    arrays = []
    for column, sql_type in table.columns:
        target = _ARROW_TYPES[sql_type]
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


def _sqlite_value(value):
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


COPY_BATCH_ROWS = 50_000
# COPY text format escapes: the backslash first, so that the escapes added after stay single
_NEEDS_ESCAPE = r"[\\\t\n\r]"
_TEXT_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))


def copy_text(batch: pa.RecordBatch) -> bytes:
    """The rows of `batch` in PostgreSQL's COPY text format (tab-separated, \\N for null).

    The server parses text format about 7% faster than CSV (no quote handling); Arrow renders
    every value (timestamps as `YYYY-MM-DD HH:MM:SS`, booleans as t/f), escapes the text and
    joins the fields, all vectorised.
    """
    columns = []
    for column in batch.columns:
        if pa.types.is_boolean(column.type):
            text = pc.if_else(column, "t", "f")
        else:
            text = column.cast(pa.string())
            # one scan tells whether a text column needs escaping at all (codes and most free text
            # do not): four replace passes over every text column cost more than the server saves
            if (
                pa.types.is_string(column.type)
                and pc.any(pc.match_substring_regex(text, _NEEDS_ESCAPE)).as_py()
            ):
                for plain, escaped in _TEXT_ESCAPES:
                    text = pc.replace_substring(text, plain, escaped)
        columns.append(text.fill_null("\\N"))
    # one string per row (fields joined by tabs, a newline appended by joining it with an empty
    # string); the rows are then the bytes of the array's value buffer, in order
    lines = pc.binary_join_element_wise(pc.binary_join_element_wise(*columns, "\t"), "", "\n")
    offsets, values = lines.buffers()[1:3]
    start, end = np.frombuffer(offsets, np.int32)[[lines.offset, lines.offset + len(lines)]]
    return values.slice(int(start), int(end - start)).to_pybytes()


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
            # the next batch is rendered while psycopg's queued writer thread sends the current one
            # (Arrow releases the GIL), so the client stays off the critical path: the server's
            # parsing, heap and key-index maintenance bound the load
            writer = QueuedLibpqWriter(cursor)
            with cursor.copy(f"copy {target} ({columns}) from stdin (format text)", writer=writer) as copy:
                for batch in rows.to_batches(max_chunksize=COPY_BATCH_ROWS):
                    copy.write(copy_text(batch))
            return cursor.rowcount
    marks = ", ".join("?" for _ in rows.column_names)
    columns_py = [[_sqlite_value(v) for v in col.to_pylist()] for col in rows.columns]
    cursor = conn.connection.driver_connection.cursor()
    cursor.executemany(f"insert into {target} ({columns}) values ({marks})", zip(*columns_py, strict=True))
    return cursor.rowcount


# ---------------------------------------------------------------------------------------------
# publish


def version_keys(frame: pd.DataFrame) -> pa.Array:
    """One string per row: its version key (facility_code, encounter_id, version) joined by a unit
    separator, null when a key part is missing."""
    parts = [pa.array(frame[c].astype("str"), pa.string(), from_pandas=True) for c in KEY[:2]]
    version = pa.array(frame["version"].astype("int64")).cast(pa.string())
    return pc.binary_join_element_wise(*parts, version, "\x1f")


def audit_rows(version_rows: dict[str, pd.DataFrame], citizens: pd.DataFrame) -> list[str]:
    """What is wrong with the assembled rows (empty when they may be published).

    Every line item belongs to an encounter version published tonight, every published encounter
    has a citizen, and that citizen's registry row is published with it.
    """
    problems = []
    encounters = version_rows.get("encounters", assemble.empty_rows(ENCOUNTERS))
    published = version_keys(encounters)
    for table in VERSION_TABLES[1:]:
        frame = version_rows.get(table.name)
        if frame is None or frame.empty:
            continue
        # Arrow's hash set: a vectorised membership test instead of a 3-column join (a null key
        # is never matched, so it counts as an orphan)
        matched = pc.is_in(version_keys(frame), value_set=published, skip_nulls=True)
        if orphans := len(matched) - (pc.sum(matched).as_py() or 0):
            problems.append(f"{table.name}: {orphans} rows of a version that is not published tonight")
    citizen_ids = pa.array(encounters["citizen_id"].astype("str"), pa.string(), from_pandas=True)
    registry = pa.array(citizens["citizen_id"].astype("str"), pa.string(), from_pandas=True)
    with_citizen = pc.is_in(citizen_ids, value_set=registry, skip_nulls=True)
    if without := len(with_citizen) - (pc.sum(with_citizen).as_py() or 0):
        problems.append(f"encounters: {without} without their citizen's registry row")
    return problems


def publish(
    engine: Engine,
    night: dt.date,
    version_rows: dict[str, pd.DataFrame],
    citizens: pd.DataFrame,
    fhir_upserts: dict[str, pd.DataFrame],
    fhir_removed: dict[str, list[str]],
    history: dict,
) -> dict[str, int]:
    """Write, audit and publish one night in one transaction; returns rows written per table.

    Readers see the previous state until the commit (one transaction), so the encounter-version
    rows are written straight into their tables; each write is audited against the row count the
    database reports, and any failure rolls everything back.
    """
    if problems := audit_rows(version_rows, citizens):
        raise LoadAuditFailed("; ".join(problems))
    dialect = engine.dialect.name
    written: dict[str, int] = {}
    temp_tables: list[str] = []
    with engine.begin() as conn:
        if dialect == "postgresql":
            # JIT compilation costs more than it saves on the publish's mid-sized joins
            conn.exec_driver_sql("set local jit = off")

        def temp_table(name: str, ddl: str, rows: pa.Table) -> None:
            conn.exec_driver_sql(drop_stage_sql(name))
            conn.exec_driver_sql(ddl)
            temp_tables.append(name)
            bulk_insert(conn, name, rows)
            if dialect == "postgresql":
                # temp tables get no autovacuum statistics; without them the joins plan badly
                conn.exec_driver_sql(f"analyze {name}")

        def write(table: ServingTable, frame: pd.DataFrame, target: str | None = None) -> None:
            target = target or table.name
            expected = len(frame)
            # assemble delivers rows in primary-key order: the key index then grows at its right
            # edge (COPY into an indexed table is about 40% faster than in arrival order)
            if (reported := bulk_insert(conn, target, arrow_rows(frame, table))) != expected:
                raise LoadAuditFailed(f"{target}: the database took {reported} rows of {expected}")
            written[table.name] = written.get(table.name, 0) + expected

        # the versions published tonight replace whatever rows they had (a re-run, a re-send)
        encounters = version_rows.get("encounters", assemble.empty_rows(ENCOUNTERS))
        keys = pa.Table.from_pandas(encounters[KEY].astype({"version": "int64"}), preserve_index=False)
        temp_table("stage_keys", STAGE_KEYS_DDL, keys)
        conn.exec_driver_sql(STAGE_KEYS_INDEX_SQL)
        if conn.exec_driver_sql(sql_file("queries/count_republished_versions.sql", dialect)).scalar_one():
            for table in VERSION_TABLES:
                conn.exec_driver_sql(delete_staged_versions_sql(table))
        newest = pd.DataFrame(
            conn.exec_driver_sql(sql_file("queries/newest_remaining_versions.sql", dialect)).fetchall(),
            columns=[*assemble.ENCOUNTER_KEY, "version"],
        )
        encounters = assemble.mark_current(encounters, newest)
        write(ENCOUNTERS, encounters)
        for table in VERSION_TABLES[1:]:
            write(table, version_rows.get(table.name, assemble.empty_rows(table)))
        conn.exec_driver_sql(sql_file("queries/retire_older_versions.sql", dialect))

        # citizens: upserted from the registry snapshot
        conn.exec_driver_sql(drop_stage_sql(stage_name(CITIZENS)))
        conn.exec_driver_sql(create_stage_sql(CITIZENS))
        temp_tables.append(stage_name(CITIZENS))
        write(CITIZENS, citizens, stage_name(CITIZENS))
        conn.exec_driver_sql(upsert_from_stage_sql(CITIZENS))

        # FHIR: the newest copy of each resource replaces the earlier one; inactive ones go
        for table in FHIR_TABLES:
            removed = pa.table({"resource_id": pa.array(fhir_removed.get(table.name, []), pa.string())})
            temp_table(
                stage_name(table.name + "_removed"),
                f"create temp table {stage_name(table.name + '_removed')} (resource_id text)",
                removed,
            )
            conn.exec_driver_sql(drop_stage_sql(stage_name(table)))
            conn.exec_driver_sql(create_stage_sql(table))
            temp_tables.append(stage_name(table))
            write(table, fhir_upserts.get(table.name, assemble.empty_rows(table)), stage_name(table))
            conn.exec_driver_sql(delete_staged_resources_sql(table))
            conn.exec_driver_sql(insert_from_stage_sql(table))

        # illnesses of every citizen whose encounters changed, recomputed from the current versions
        conn.exec_driver_sql(drop_stage_sql("stage_touched_citizens"))
        conn.exec_driver_sql("create temp table stage_touched_citizens (citizen_id text)")
        temp_tables.append("stage_touched_citizens")
        conn.exec_driver_sql(sql_file("queries/touched_citizens.sql", dialect))
        if dialect == "postgresql":
            conn.exec_driver_sql("analyze stage_touched_citizens")
        cursor = conn.connection.driver_connection.cursor()  # plain tuples: many rows
        try:
            cursor.execute(sql_file("queries/current_diagnoses_of_touched.sql", dialect))
            diagnoses = pd.DataFrame(
                cursor.fetchall(), columns=["citizen_id", "facility_code", "encounter_id", "icd10", "seen_on"]
            )
        finally:
            cursor.close()
        diagnoses["seen_on"] = diagnoses["seen_on"].map(as_date)
        conn.exec_driver_sql(sql_file("queries/delete_illnesses_of_touched.sql", dialect))
        write(ILLNESSES, illness.illnesses_from_diagnoses(diagnoses))

        conn.execute(
            sa.text(sql_file("queries/upsert_load_history.sql", dialect)),
            {"night": night if dialect == "postgresql" else night.isoformat(), **history},
        )
        for name in temp_tables:
            conn.exec_driver_sql(drop_stage_sql(name))
    return written


def as_date(value) -> dt.date | None:
    """A date from what a driver returns for a date or timestamp (SQLite: ISO text)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def newest_published_versions(engine: Engine, candidates: pd.DataFrame) -> pd.DataFrame:
    """The newest published version of each candidate encounter (facility_code, encounter_id,
    version; encounters with no published version are absent). Looks up only the candidates: the
    serving database may hold many millions of encounters."""
    keys = candidates[assemble.ENCOUNTER_KEY].drop_duplicates()
    if keys.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in KEY})
    dialect = engine.dialect.name
    with engine.begin() as conn:
        conn.exec_driver_sql(drop_stage_sql("candidate_keys"))
        conn.exec_driver_sql("create temp table candidate_keys (facility_code text, encounter_id text)")
        bulk_insert(conn, "candidate_keys", pa.Table.from_pandas(keys.astype("str"), preserve_index=False))
        if dialect == "postgresql":
            conn.exec_driver_sql("analyze candidate_keys")
        rows = conn.exec_driver_sql(sql_file("queries/newest_published_versions.sql", dialect)).fetchall()
        conn.exec_driver_sql(drop_stage_sql("candidate_keys"))
    return pd.DataFrame(rows, columns=KEY)


# ---------------------------------------------------------------------------------------------
# warehouse reading (Parquet)


def _read_parquet_files(files: list[Path], columns: list[str] | None = None) -> pd.DataFrame | None:
    tables = []
    for f in files:
        table = pq.read_table(f)
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


PENDING_COLUMNS = [*KEY, "night", "reason"]


def read_pending(warehouse: Warehouse) -> pd.DataFrame:
    """The quarantined versions waiting for a later night (one row per version)."""
    path = pending_path(warehouse)
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="object") for c in PENDING_COLUMNS})
    return pd.read_parquet(path)


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
    ]
)
PENDING_SCHEMA = pa.schema(
    [
        ("facility_code", pa.string()),
        ("encounter_id", pa.string()),
        ("version", pa.int64()),
        ("night", pa.date32()),
        ("reason", pa.string()),
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
    tmp = path.with_name(path.name + ".tmp")
    if schema is None:
        frame.to_parquet(tmp, index=False)
    else:
        pq.write_table(arrow_table(frame, schema), tmp)
    os.replace(tmp, path)
    return path


def write_json_atomic(data: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    os.replace(tmp, path)
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


def load_night(ctx) -> Path:
    """Load the night's complete encounter versions; write outcomes, the pending list, the manifest.

    ctx: transforms.pipeline.NightContext. Returns the manifest path `runs/<D>/load.json`.
    Raises ServingDatabaseUnreachable when the serving database does not answer.
    """
    wh: Warehouse = ctx.warehouse
    night: dt.date = ctx.night
    engine = serving_engine(ctx.serving_url)
    check_reachable(engine)
    ensure_schema(engine)

    staged_tonight = {d: read_staged_night(wh, d, night) for d in STAGED_DATASETS}
    findings_by_night = {night: read_findings(wh, night)}
    received = _received_tonight(staged_tonight["encounters"], findings_by_night[night]).assign(
        night=night, is_retry=False
    )

    # Pending versions of earlier nights are tried again (a registry update, a resolved review).
    pending = read_pending(wh)
    retry = pending[pd.to_datetime(pending["night"]).dt.date < night] if not pending.empty else pending
    retry = retry.merge(received[KEY], on=KEY, how="left", indicator=True)
    retry = retry[retry["_merge"] == "left_only"].drop(columns="_merge")
    retry = retry.assign(night=pd.to_datetime(retry["night"]).dt.date, is_retry=True)[
        [*KEY, "night", "is_retry"]
    ]
    links = read_links(wh, min([night, *retry["night"]]), night)
    candidates = pd.concat([received, retry], ignore_index=True)
    candidates["version"] = candidates["version"].astype("int64")

    staged: dict[str, pd.DataFrame] = {}
    for dataset in STAGED_DATASETS:
        frames = [_filter_keys(staged_tonight[dataset], candidates)]
        for retry_night in sorted(set(retry["night"])):
            frames.append(_filter_keys(read_staged_night(wh, dataset, retry_night), candidates))
        frames = [f for f in frames if f is not None and not f.empty]
        if frames:
            staged[dataset] = pd.concat(frames, ignore_index=True)
    for retry_night in sorted(set(retry["night"])):
        findings_by_night[retry_night] = read_findings(wh, retry_night)
    findings = pd.concat(findings_by_night.values(), ignore_index=True)

    known = pd.concat(
        [
            candidates[KEY],
            pending[KEY],
            newest_published_versions(engine, candidates),
        ],
        ignore_index=True,
    )
    known["version"] = known["version"].astype("int64")
    outcomes = assemble.decide_outcomes(candidates, _presence(staged), findings, links, known)

    published = outcomes[outcomes["is_published"]][KEY].merge(
        links[[*KEY, "citizen_id", "tier", "match_weight"]].rename(columns={"tier": "link_tier"}),
        on=KEY,
        how="left",
    )
    version_rows = assemble.serving_rows(staged, published)

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
        fhir_upserts[table.name], fhir_removed[table.name], fhir_counts[table.name] = assemble.fhir_changes(
            fhir_staged[table.name], in_registry, table, fhir_others[table.name]
        )

    people = set(published["citizen_id"].dropna())
    for frame in fhir_upserts.values():
        people |= set(frame["citizen_id"].dropna())
    citizens = assemble.citizen_rows(read_registry(ctx.registry_path, people), night) if people else None
    if citizens is None:
        citizens = assemble.empty_rows(CITIZENS)

    tonight = outcomes[~outcomes["is_retry"]]
    retried = outcomes[outcomes["is_retry"]]
    history = {
        "versions_received": len(tonight),
        "versions_retried": len(retried),
        "versions_loaded": int((outcomes["outcome"] == "loaded").sum()),
        "versions_quarantined": int((outcomes["outcome"] == "quarantined").sum()),
        "versions_superseded": int((outcomes["outcome"] == "superseded").sum()),
        "rows_published": int(sum(len(f) for f in version_rows.values())),
        "fhir_upserted": sum(c["upserted"] for c in fhir_counts.values()),
        "fhir_removed": sum(c["removed"] for c in fhir_counts.values()),
    }
    written = publish(engine, night, version_rows, citizens, fhir_upserts, fhir_removed, history)

    # After the commit: the warehouse files of the night (a crash before this point re-runs cleanly).
    write_parquet_atomic(tonight.reset_index(drop=True), wh.outcomes(night), OUTCOMES_SCHEMA)
    write_parquet_atomic(retried.reset_index(drop=True), retried_path(wh, night), OUTCOMES_SCHEMA)
    still_pending = outcomes[outcomes["outcome"] == "quarantined"][[*KEY, "night", "reason"]]
    decided = outcomes[KEY]
    untouched = pending.merge(decided, on=KEY, how="left", indicator=True)
    untouched = untouched[untouched["_merge"] == "left_only"].drop(columns="_merge")
    new_pending = pd.concat([untouched[PENDING_COLUMNS], still_pending], ignore_index=True)
    new_pending["night"] = pd.to_datetime(new_pending["night"]).dt.date
    write_parquet_atomic(
        new_pending.sort_values(KEY).reset_index(drop=True), pending_path(wh), PENDING_SCHEMA
    )

    manifest = {
        "night": night.isoformat(),
        "serving": engine.url.render_as_string(hide_password=True),
        "versions": {
            "received": len(tonight),
            "loaded": int((tonight["outcome"] == "loaded").sum()),
            "quarantined": int((tonight["outcome"] == "quarantined").sum()),
            "superseded": int((tonight["outcome"] == "superseded").sum()),
            "quarantined_by_reason": tonight[tonight["outcome"] == "quarantined"]["reason"]
            .value_counts()
            .sort_index()
            .to_dict(),
        },
        "retried": {
            "versions": len(retried),
            "loaded": int((retried["outcome"] == "loaded").sum()),
            "superseded": int((retried["outcome"] == "superseded").sum()),
            "still_pending": int((retried["outcome"] == "quarantined").sum()),
        },
        "pending": len(new_pending),
        "rows": written,
        "fhir": _fhir_ledger(wh, night, fhir_counts),
    }
    return write_json_atomic(manifest, wh.manifest(night, "load"))


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
    return out
