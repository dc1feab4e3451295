"""The serving database: its engine, its schema (created, checked), its roles, its SQL files.

Every module that opens the serving database (the load, the book, the access log, the load
fingerprints) opens it here: any SQLAlchemy URL, PostgreSQL in production, SQLite as the embedded
default.

Dialects: `sql/serving/*.sql` is portable (both engines accept the same DDL and statements);
a file under `sql/serving/<dialect>/` with the same name overrides it for that dialect (see
`sql_file`).
"""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from transforms.core.resources import sql_path
from transforms.serving import migrations

SQL_DIR = sql_path("serving")


class ServingDatabaseUnreachable(RuntimeError):
    """The serving database does not answer: the night cannot load (the run exits non-zero)."""


class ServingSchemaOutdated(RuntimeError):
    """The serving database is not at this release's migration revision: the night cannot load into
    it until `healthbook db upgrade` ran."""


@functools.lru_cache(maxsize=256)
def sql_file(name: str, dialect: str) -> str:
    """The text of `sql/serving/<name>`, or of `sql/serving/<dialect>/<name>` when it exists."""
    override = SQL_DIR / dialect / name
    return (override if override.exists() else SQL_DIR / name).read_text(encoding="utf-8")


def ddl_files() -> list[str]:
    """The DDL files in the order they run (numbered; roles.sql is separate, PostgreSQL only)."""
    return sorted(p.name for p in SQL_DIR.glob("[0-9][0-9]_*.sql"))


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
    """Create the serving tables and indexes when they do not exist (the DDL is idempotent), after
    `check_schema_current` made sure the database is at this release's migration revision; a
    database with no serving table gets the schema and the head stamped."""
    dialect = engine.dialect.name
    with engine.begin() as conn:
        check_schema_current(conn)
        for name in ddl_files():
            conn.exec_driver_sql(sql_file(name, dialect))
        migrations.stamp_head(conn)  # nothing when already at the head


def check_schema_current(conn: Connection) -> None:
    """The database must be at this release's migration revision (transforms/serving/migrations):
    one behind it (or made before migrations) raises ServingSchemaOutdated, telling the operator to
    run `healthbook db upgrade`. The one place the load refuses an older schema."""
    refusal = migrations.behind_head(conn)
    if refusal:
        raise ServingSchemaOutdated(refusal)


def apply_roles(engine: Engine) -> None:
    """Create the loader / book_reader / analyst roles and their grants (PostgreSQL only)."""
    if engine.dialect.name != "postgresql":
        raise ValueError("roles exist only on PostgreSQL; SQLite has no users")
    with engine.begin() as conn:
        # straight to psycopg without parameters: the DO block's format('%I') is not a placeholder
        conn.connection.driver_connection.execute(sql_file("roles.sql", "postgresql"))


def as_date(value) -> dt.date | None:
    """A date from what a driver returns for a date or timestamp (SQLite: ISO text)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])
