"""The reconcile stage's DuckDB connection and inputs: the fixed SQL of sql/reconcile/, a
connection sized by the settings with the identity macros installed, and the sources (frames or
Parquet) exposed under fixed view names."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd

from transforms.core.resources import sql_path
from transforms.reconcile.identity import identity_macros_sql

if TYPE_CHECKING:
    from transforms.reconcile.stage import ReconcileSettings

SQL_DIR = sql_path("reconcile")


def read_sql(name: str) -> str:
    """The text of one fixed statement of sql/reconcile/."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def connect(settings: ReconcileSettings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection sized by the settings, with the identity macros installed."""
    config: dict[str, Any] = {"memory_limit": settings.memory_limit, "threads": settings.threads}
    if settings.temp_directory is not None:
        config["temp_directory"] = str(settings.temp_directory)
    con = duckdb.connect(config=config)
    for statement in identity_macros_sql():
        con.execute(statement)
    return con


def parquet_files(path: Path) -> list[str]:
    """One Parquet file, or every Parquet file under a folder (sorted, so runs are repeatable)."""
    path = Path(path)
    if path.is_file():
        return [str(path)]
    files = sorted(str(p) for p in path.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet file under {path}")
    return files


def register_source(con: duckdb.DuckDBPyConnection, view: str, data: pd.DataFrame | Path | str) -> None:
    """Expose a frame or Parquet file(s) to the SQL under a fixed view name."""
    if isinstance(data, pd.DataFrame):
        con.register(view, data)
    else:
        con.read_parquet(parquet_files(Path(data)), union_by_name=True, hive_partitioning=False).create_view(
            view, replace=True
        )


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        con.execute("select count(*) from duckdb_views() where view_name = ?", [name]).fetchall()[0][0]
    )


def key_match(a: str, b: str) -> str:
    return " and ".join(f"{a}.{c} = {b}.{c}" for c in ("facility_code", "encounter_id", "version"))
