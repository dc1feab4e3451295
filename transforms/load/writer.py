"""The load's writer: one night's encounter versions into the serving database, in ONE
transaction that its caller holds (`NightWriter`), and `publish` for a single batch.

Version ids, the audits (no orphan line item, every version with its citizen's registry row, every
append as long as the rows given), the replacement of re-written versions, the retirement of older
ones, the FHIR changes and the illness recompute. The rows themselves are written by
`transforms.serving.writer`.
"""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from transforms.load import assemble, illness
from transforms.serving.db import as_date, sql_file
from transforms.serving.schema import (
    CITIZENS,
    CLINICAL_COURSE,
    DIAGNOSES,
    ENCOUNTERS,
    FHIR_TABLES,
    ILLNESSES,
    MEDICATIONS,
    PROCEDURES,
    REFERRALS,
    VERSION_TABLES,
    ServingTable,
)
from transforms.serving.writer import (
    BatchWrites,
    arrow_rows,
    bulk_insert,
    create_stage_sql,
    drop_stage_sql,
    stage_name,
    stage_rows,
)

KEY = assemble.KEY


class LoadAuditFailed(RuntimeError):
    """What was written to the stage tables is not what was assembled: nothing was published."""


# replace_keys: the version ids of a batch's versions that are already published (their rows are
# replaced); retire_keys: the published versions that a newer version of tonight makes history
REPLACE_KEYS_DDL = "create temp table replace_keys (version_id bigint)"
RETIRE_KEYS_DDL = "create temp table retire_keys (version_id bigint)"
RETIRE_SQL = (
    "update encounters set is_current = false "
    "where is_current and version_id in (select version_id from retire_keys)"
)


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
        self.helper_writes: BatchWrites | None = None
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
            self.helper_writes = BatchWrites(True)
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
        self.writes = BatchWrites(self.dialect == "postgresql" if threaded is None else threaded)

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
