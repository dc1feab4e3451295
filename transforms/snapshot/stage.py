"""The analysts' de-identified DuckDB snapshot of everything served so far.

`snapshot_night(ctx)` builds `<warehouse>/snapshots/<D>.duckdb` from the warehouse Parquet (the
encounter versions the outcomes say are loaded, newest version of each encounter, every night up
to D; the FHIR immunizations and allergies) and the registry snapshot (demographics).

What the file holds, and what it never holds:
- citizens and encounters are keyed by HMAC-SHA256 pseudonyms under `ctx.pseudonym_key()`; the key
  reaches DuckDB only as session variables, never in SQL text, a table, the manifest or a log;
- no names, citizen IDs, social-insurance or card numbers, phones, addresses, MA_LK, free text;
- birth date reduced to the year, and no year at all from age 90 ("90+");
- instants reduced to the day (no time of admission, discharge, order, result or dose);
- residence at province and ward only, and the ward only where at least k citizens share the
  encounter's age group, sex, ward and admission month (k-anonymity, the setting
  snapshot.k_anonymity, default 5; measured in snapshot_info);
- demographics of the reconciled citizen (patient_links), never of the ID the hospital sent.

What it holds (the history promise, docs/snapshot.md): every encounter loaded on any night up to D,
newest loaded version only; lab results with units; the reference tables of transforms/reference/;
the data dictionary as the `columns` table (transforms/snapshot/dictionary.py).

Everything that holds an identifier (the registry, the links, the staged rows) is a temp view or
temp table of an in-memory DuckDB; only the de-identified tables are created in the attached file.
The file is written under a temporary name and renamed, so a crash never leaves a half snapshot.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from transforms.core.resources import sql_path
from transforms.core.safe_io import (
    private_temp_dir,
    publish_temp,
    write_json_atomic,
)
from transforms.core.schema import ARROW_TYPE_BY_KIND, LINEAGE_COLUMNS, LINEAGE_TYPES, TABLES_BY_DATASET
from transforms.core.settings import SnapshotSettings

if TYPE_CHECKING:
    from transforms.core.context import NightContext
    from transforms.core.warehouse import Warehouse

SQL_ROOT = sql_path()

# Executed in this order: temp macros and temp tables first (they may hold identifiers), then the
# snapshot's own tables and views.
TEMP_STATEMENTS = (
    "macro_pseudonym",
    "macro_age_on",
    "macro_age_group",
    "macro_icd10_category",
    "registry_citizens",
    "current_versions",
)
SNAPSHOT_STATEMENTS = (
    "icd10_chapters",
    "reference_tables",
    "citizens",
    "encounters_identified",  # temp: the wards before the k-anonymity coarsening
    "encounters",
    "diagnoses",
    "medications",
    "procedures",
    "lab_results",
    "immunizations",
    "allergies",
    "snapshot_info",
    "encounter_details",
    "vaccination_status",
    "columns",  # last: it reads every other table's column types
)

# The staged XML 130 datasets the snapshot reads.
SNAPSHOT_XML_DATASETS = ("encounters", "drugs", "services", "lab_results")

# Reference tables of transforms/reference/ registered as ref_<name> for reference_tables.sql.
REFERENCE_TABLES = ("icd10_chapters", "icd10_blocks", "provinces", "wards", "service_groups", "facilities")

# Columns of the FHIR staged datasets (ARCHITECTURE.md), for an empty stand-in when none is staged.
FHIR_COLUMNS: dict[str, dict[str, pa.DataType]] = {
    "immunizations": {
        "night": pa.date32(),
        "source_file": pa.string(),
        "line_number": pa.int64(),
        "resource_id": pa.string(),
        "citizen_id": pa.string(),
        "status": pa.string(),
        "vaccine_system": pa.string(),
        "vaccine_code": pa.string(),
        "vaccine_name": pa.string(),
        "occurred_at": pa.timestamp("s"),
        "lot_number": pa.string(),
        "dose_number": pa.int64(),
        "facility_code": pa.string(),
        "is_active": pa.bool_(),
    },
    "allergies": {
        "night": pa.date32(),
        "source_file": pa.string(),
        "line_number": pa.int64(),
        "resource_id": pa.string(),
        "citizen_id": pa.string(),
        "clinical_status": pa.string(),
        "verification_status": pa.string(),
        "substance_system": pa.string(),
        "substance_code": pa.string(),
        "substance_name": pa.string(),
        "reaction_code": pa.string(),
        "reaction_name": pa.string(),
        "severity": pa.string(),
        "criticality": pa.string(),
        "recorded_at": pa.timestamp("s"),
        "is_active": pa.bool_(),
    },
}
OUTCOME_COLUMNS = {
    "facility_code": pa.string(),
    "encounter_id": pa.string(),
    "version": pa.int64(),
    "outcome": pa.string(),
    "reason": pa.string(),
    "run_night": pa.date32(),
    "incomplete": pa.string(),
}
LINK_COLUMNS = {
    "facility_code": pa.string(),
    "encounter_id": pa.string(),
    "version": pa.int64(),
    "outcome": pa.string(),
    "citizen_id": pa.string(),
    "link_night": pa.date32(),
}
REGISTRY_COLUMNS = {
    "citizen_id": pa.string(),
    "birth_date": pa.string(),
    "sex": pa.string(),
    "province_code": pa.string(),
    "ward_code": pa.string(),
    "death_date": pa.string(),
}

# --- pure helpers -------------------------------------------------------------------------------


def read_sql(folder: str, name: str) -> str:
    """The text of `sql/<folder>/<name>.sql`."""
    return (SQL_ROOT / folder / f"{name}.sql").read_text(encoding="utf-8")


def pseudonymize(value: str, key: bytes) -> str:
    """The pseudonym of a citizen ID (or of "facility:MA_LK"): HMAC-SHA256 hex, as the SQL macro computes it."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """The inner and outer padded key blocks of HMAC-SHA256 (RFC 2104) for `key`."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    block = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


def staged_arrow_schema(dataset: str) -> pa.Schema:
    """The Arrow schema of a staged XML 130 dataset, derived from its declaration in schema.py."""
    table = TABLES_BY_DATASET[dataset]
    fields = {name: LINEAGE_TYPES[name] for name in LINEAGE_COLUMNS}
    for column in table.columns:
        fields.setdefault(column.name, ARROW_TYPE_BY_KIND[column.kind])
    return pa.schema(list(fields.items()))


def reference_sources() -> pa.Table:
    """One row per reference table: its file name, source and version (the file's header comment)."""
    from transforms.core import reference

    rows = []
    for name in REFERENCE_TABLES:
        meta = reference.source(name)
        rows.append(
            {
                "table_name": name,
                "file": reference.reference_path(name).name,
                "is_packaged": reference.reference_path(name).parent == reference.REFERENCE_DIR,
                "source": meta.get("source"),
                "version": meta.get("version"),
            }
        )
    return pa.Table.from_pylist(rows)


def _empty(columns: dict[str, pa.DataType] | pa.Schema) -> pa.Table:
    schema = columns if isinstance(columns, pa.Schema) else pa.schema(list(columns.items()))
    return schema.empty_table()


def _night_of(name: str, prefix: str = "") -> dt.date | None:
    if not name.startswith(prefix):
        return None
    try:
        return dt.date.fromisoformat(name[len(prefix) :])
    except ValueError:
        return None


# --- finding the inputs (every night up to the snapshot's) ---------------------------------------


def staged_files(warehouse: Warehouse, dataset: str, night: dt.date) -> list[str]:
    """Parquet files of a staged dataset for every night up to and including `night`, sorted."""
    files = []
    for part_night, part in warehouse.staged_nights(dataset):
        if part_night <= night:
            files.extend(str(p) for p in part.rglob("*.parquet"))
    return sorted(files)


def outcome_files(warehouse: Warehouse, night: dt.date) -> list[str]:
    """Outcome files of every run up to and including `night`, sorted.

    The load stage writes the versions received on a night to `runs/<D>/outcomes.parquet` and the
    pending versions it retried that night to `runs/<D>/retried.parquet`; both decide what is loaded.
    """
    runs = warehouse.runs
    if not runs.is_dir():
        return []
    files = []
    for run in runs.iterdir():
        run_night = _night_of(run.name)
        if run_night is not None and run_night <= night:
            paths = (warehouse.outcomes(run_night), warehouse.retried(run_night))
            files.extend(str(p) for p in paths if p.exists())
    return sorted(files)


def registry_files(registry_path: Path) -> list[str]:
    """The registry snapshot's Parquet files (one file, or every file under a folder)."""
    if registry_path.is_dir():
        return sorted(str(p) for p in registry_path.rglob("*.parquet"))
    return [str(registry_path)]


# --- the build ----------------------------------------------------------------------------------


def snapshot_night(ctx: NightContext) -> Path:
    """Build `snapshots/<D>.duckdb`, point `snapshots/latest.json` at it, write the manifest; its path."""
    warehouse = ctx.warehouse
    counts = build_snapshot(
        warehouse,
        ctx.night,
        ctx.registry_path,
        ctx.pseudonym_key(),
        warehouse.snapshot(ctx.night),
        ctx.settings.snapshot,
    )
    publish_latest(warehouse, ctx.night)
    manifest = {
        "night": ctx.night.isoformat(),
        "snapshot": str(warehouse.snapshot(ctx.night).relative_to(warehouse.root)),
        **counts,
    }
    path = warehouse.manifest(ctx.night, "snapshot")
    write_json_atomic(path, manifest, sort_keys=True)
    return path


def build_snapshot(
    warehouse: Warehouse,
    night: dt.date,
    registry_path: Path,
    key: bytes,
    out_path: Path,
    settings: SnapshotSettings | None = None,
) -> dict[str, Any]:
    """Write the de-identified snapshot of `night` to `out_path` (atomically); counts for the manifest.
    `settings`: k-anonymity and DuckDB's sizing (the run's ctx.settings.snapshot; default: the defaults)."""
    settings = settings or SnapshotSettings()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # DuckDB names its own files (the database, its .wal): they go in a new private folder (mkdtemp)
    # next to the snapshot, so no planted name is followed, and the rename stays on one file system.
    # A build killed earlier left its folder: this night's (named after it; the night's lock keeps
    # a second build of it out) are swept first, another night's in-progress build is left alone.
    prefix = f".tmp-{out_path.stem}-"
    for stale in out_path.parent.glob(f"{prefix}*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    tmp_dir = private_temp_dir(out_path.parent, prefix)
    tmp_path = tmp_dir / out_path.name

    # bounded: DuckDB's default is 80% of the machine's memory; beyond the limit it spills to the
    # night's scratch folder in the warehouse (never the working folder)
    spill = warehouse.scratch("snapshot", night)
    spill.mkdir(parents=True, exist_ok=True)  # DuckDB creates only the last folder, on first spill
    con = duckdb.connect(
        config={
            "memory_limit": settings.memory_limit,
            "threads": settings.threads,
            "temp_directory": str(spill),
        }
    )
    try:
        inner_pad, outer_pad = hmac_pads(key)
        con.execute("set variable hmac_inner_pad = $pad", {"pad": inner_pad})
        con.execute("set variable hmac_outer_pad = $pad", {"pad": outer_pad})
        con.execute("set variable snapshot_night = $night", {"night": night})
        con.execute("set variable k_threshold = $k", {"k": settings.k_anonymity})
        _register_inputs(con, warehouse, night, registry_path)
        for name in TEMP_STATEMENTS:
            con.execute(read_sql("snapshot", name))

        escaped = str(tmp_path).replace("'", "''")
        con.execute(f"attach '{escaped}' as snapshot")
        con.execute("use snapshot")
        # new tables go to the file; the input views (memory.main) are still found by name
        con.execute("set search_path = 'snapshot.main,memory.main'")
        for name in SNAPSHOT_STATEMENTS:
            con.execute(read_sql("snapshot", name))
        counts = _snapshot_counts(con, night)
        con.execute("use memory")
        con.execute("detach snapshot")
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)  # a failed build leaves no half snapshot
        raise
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    try:
        publish_temp(tmp_path, out_path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return counts


def _register_inputs(
    con: duckdb.DuckDBPyConnection, warehouse: Warehouse, night: dt.date, registry: Path
) -> None:
    """Temp views over the input Parquet (or empty stand-ins with the declared columns)."""

    def view(name: str, sql_name: str, files: list[str], empty: pa.Table) -> None:
        if files:
            con.sql(read_sql("snapshot", sql_name), params={"files": files}).to_view(name)
        else:
            con.register(name, empty)

    for dataset in SNAPSHOT_XML_DATASETS:
        files = staged_files(warehouse, dataset, night)
        view(f"staged_{dataset}", "read_staged", files, _empty(staged_arrow_schema(dataset)))
    for dataset, columns in FHIR_COLUMNS.items():
        files = staged_files(warehouse, dataset, night)
        view(f"staged_{dataset}", "read_staged_fhir", files, _empty(columns))
    outcomes = outcome_files(warehouse, night)
    if outcomes:
        rows = con.sql(read_sql("snapshot", "read_outcomes"), params={"files": outcomes})
        if "incomplete" not in rows.columns:  # outcomes written before late tables were marked
            rows = rows.select("*, cast(null as varchar) as incomplete")
        rows.to_view("outcome_rows")
    else:
        con.register("outcome_rows", _empty(OUTCOME_COLUMNS))
    links = staged_files(warehouse, "patient_links", night)
    view("patient_link_rows", "read_patient_links", links, _empty(LINK_COLUMNS))
    view("registry_rows", "read_registry", registry_files(registry), _empty(REGISTRY_COLUMNS))
    from transforms.core import reference
    from transforms.snapshot.dictionary import columns_table

    for name in REFERENCE_TABLES:
        con.register(f"ref_{name}", getattr(reference, name)())
    con.register("ref_sources", reference_sources())
    con.register("ref_columns", columns_table())


def _snapshot_counts(con: duckdb.DuckDBPyConnection, night: dt.date) -> dict[str, Any]:
    tables = {
        name: con.execute(f'select count(*) from snapshot.main."{name}"').fetchone()[0]
        for (name,) in con.execute(
            "select table_name from duckdb_tables() where database_name = 'snapshot' order by table_name"
        ).fetchall()
    }
    current = con.execute("select count(*) from temp.main.current_versions").fetchone()[0]
    without_citizen = con.execute(
        "select count(*) from snapshot.main.encounters where citizen_key is null"
    ).fetchone()[0]
    return {
        "tables": tables,
        "current_versions": current,
        # loaded versions whose staged XML1 row was not found (should be 0; reported, never hidden)
        "current_versions_without_staged_row": current - tables["encounters"],
        "encounters_without_citizen": without_citizen,
    }


def publish_latest(warehouse: Warehouse, night: dt.date) -> Path:
    """Point `snapshots/latest.json` at the night's snapshot, unless a later night is already published."""
    pointer = warehouse.snapshot(night).with_name("latest.json")
    if pointer.exists():
        try:
            current = dt.date.fromisoformat(json.loads(pointer.read_text())["night"])
        except (ValueError, KeyError, TypeError):
            current = None
        if current is not None and current > night:
            return pointer
    write_json_atomic(
        pointer, {"night": night.isoformat(), "snapshot": warehouse.snapshot(night).name}, sort_keys=True
    )
    return pointer


# --- analyst queries ----------------------------------------------------------------------------


def analyst_query_names() -> list[str]:
    """Names of the example queries under sql/analyst/."""
    return sorted(p.stem for p in (SQL_ROOT / "analyst").glob("*.sql"))


def analyst_query_parameters(name: str) -> list[str]:
    """The parameters a query reads: DuckDB variables (`getvariable('x')`), unset = the default its
    header documents, so that every file runs as shipped (`duckdb -readonly FILE < query.sql`)."""
    import re

    return sorted(set(re.findall(r"getvariable\('([a-z_]+)'\)", read_sql("analyst", name))))


def run_analyst_query(snapshot: Path, name: str, params: dict[str, Any] | None = None) -> pa.Table:
    """The result of `sql/analyst/<name>.sql` on a snapshot, opened read-only; `params` set the
    query's variables (a parameter left out keeps its documented default)."""
    params = params or {}
    unknown = set(params) - set(analyst_query_parameters(name))
    if unknown:
        raise ValueError(f"{name} has no parameter {sorted(unknown)}")
    with duckdb.connect(str(snapshot), read_only=True) as con:
        for variable, value in params.items():
            if value is not None:  # an unset variable reads as NULL: the documented default
                con.execute(f"set variable {variable} = $value", {"value": value})
        return con.sql(read_sql("analyst", name)).to_arrow_table()
