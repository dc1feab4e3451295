"""Migrations of the serving database (Alembic, PostgreSQL and SQLite), driven from code.

A production serving database holds every encounter ever published: a release whose schema
changed cannot ask for a fresh one. Each schema change is a revision under `versions/`; the
database records the one it is at in `alembic_version`.

- `b747057` (the baseline): the schema as of commit b747057, kept verbatim in `b747057/*.sql`
  (frozen: `sql/serving/` moves on, a revision never does).
- `20261207`: what changed since (encounters.main_icd10_source and .incomplete,
  medications.physician_codes, the access log book_access). The head.

Who does what:
- A fresh database (no serving table, no `alembic_version`): the load creates the schema from
  `sql/serving/*.sql` (the one readable definition) and stamps the head (`stamp_head`). It does
  not replay the revisions: the DDL keeps its declared column order and a first night does not
  run history; tests/test_serving_migrations.py proves b747057 + every revision = the DDL.
- Every load checks the revision first (`behind_head`) and refuses a database that is not at
  the head, telling the operator to run `healthbook db upgrade`.
- `healthbook db upgrade` (`upgrade`): a database with an `alembic_version` is upgraded to the
  head. One without it but with serving tables was made by a release before migrations: when each
  baseline table is there with at least its b747057 columns (`unversioned_problem`), it is stamped
  `b747057` and upgraded (the revisions after the baseline add only what is missing, so a database
  of any release between b747057 and the head upgrades too); anything else (older than b747057)
  is refused, naming what is missing.

No alembic.ini: `config()` points Alembic at this package (importlib.resources, so it works from an
installed wheel) and `env.py` takes the caller's connection. A new revision: write
`versions/<id>_<what>.py` by hand after the two here (or `alembic.command.revision(config(),
message=..., rev_id=...)`), change `sql/serving/` and `transforms/serving/schema.py` alike; the
migration test then checks that upgraded and fresh databases agree.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.resources import files

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection, Engine

from transforms.serving.schema import SERVING_TABLES

BASELINE = "b747057"
VERSION_TABLE = "alembic_version"
UPGRADE_HINT = "run `healthbook db upgrade` (with the same --serving-url or --warehouse) before loading"


class SchemaNotMigratable(RuntimeError):
    """The serving database was made by a release older than the baseline: no migration reaches it."""


def config() -> Config:
    """An Alembic configuration without an ini file, pointed at this package's scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(files(__name__)))
    cfg.set_main_option("path_separator", "os")
    return cfg


@functools.lru_cache(maxsize=1)
def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    """The newest revision: the schema of this release (one head, never branches)."""
    return script().get_current_head()


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at; None when it has no `alembic_version` (or it is empty)."""
    return MigrationContext.configure(conn).get_current_revision()


def baseline_statements() -> list[str]:
    """The b747057 DDL, one statement per file, in the order it ran."""
    folder = files(__name__) / BASELINE
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(folder / name).read_text(encoding="utf-8") for name in names]


@functools.lru_cache(maxsize=1)
def baseline_columns() -> dict[str, frozenset[str]]:
    """Table -> its columns at b747057 (the frozen DDL run in an in-memory SQLite and read back)."""
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        for statement in baseline_statements():
            conn.exec_driver_sql(statement)
        inspector = sa.inspect(conn)
        out = {t: frozenset(c["name"] for c in inspector.get_columns(t)) for t in inspector.get_table_names()}
    engine.dispose()
    return out


def serving_tables(conn: Connection) -> set[str]:
    """The tables of the baseline that the database has."""
    return set(sa.inspect(conn).get_table_names()) & set(baseline_columns())


def _where(conn: Connection) -> str:
    return f"the serving database {conn.engine.url.render_as_string(hide_password=True)}"


def behind_head(conn: Connection) -> str | None:
    """Why the load must not write into this database, or None: it is at the head, or it has no
    serving table yet (the load creates the schema and stamps the head)."""
    current, newest = current_revision(conn), head()
    if current == newest:
        return None
    if current is None:
        if not serving_tables(conn):
            return None
        return (
            f"{_where(conn)} has no migration revision (a release before migrations made it) and this "
            f"release writes revision {newest}: {UPGRADE_HINT}"
        )
    if _unknown(current):
        return (
            f"{_where(conn)} is at revision {current}, which this release does not know (a newer "
            "release upgraded it): load it with that release"
        )
    return (
        f"{_where(conn)} is at revision {current} and this release writes revision {newest}: {UPGRADE_HINT}"
    )


def _unknown(revision: str) -> bool:
    try:
        return script().get_revision(revision) is None
    except CommandError:  # an id with no script here
        return True


def stamp_head(conn: Connection) -> None:
    """Record the head in the database (in the caller's transaction); nothing when already there."""
    MigrationContext.configure(conn).stamp(script(), "head")


def unversioned_problem(conn: Connection) -> str | None:
    """For a database with serving tables and no revision: None when every baseline table is there
    with at least its b747057 columns (the baseline can be stamped), else what is missing."""
    inspector = sa.inspect(conn)
    present = set(inspector.get_table_names())
    missing = []
    for table, columns in sorted(baseline_columns().items()):
        if table not in present:
            missing.append(f"table {table}")
            continue
        lacking = columns - {c["name"] for c in inspector.get_columns(table)}
        missing += [f"{table}.{c}" for c in sorted(lacking)]
    if not missing:
        return None
    return (
        f"{_where(conn)} has no migration revision and is not the schema of b747057 or later (it lacks "
        f"{', '.join(missing)}): a release older than b747057 made it, and no migration reaches it"
    )


def schema_differences(conn: Connection) -> list[str]:
    """What differs between the database's columns and this release's declared tables (order aside):
    empty once upgraded."""
    inspector = sa.inspect(conn)
    present = set(inspector.get_table_names())
    out = []
    for table in SERVING_TABLES:
        if table.name not in present:
            out.append(f"no table {table.name}")
            continue
        found = {c["name"] for c in inspector.get_columns(table.name)}
        declared = set(table.column_names)
        out += [f"{table.name} lacks {c}" for c in sorted(declared - found)]
        out += [f"{table.name} has an undeclared {c}" for c in sorted(found - declared)]
    return out


@dataclass(frozen=True)
class Upgrade:
    before: str | None  # the revision found (None: no alembic_version)
    after: str | None  # the revision now (None: the database has no serving table, nothing done)
    stamped_baseline: bool  # made before migrations: stamped b747057 first


def upgrade(engine: Engine) -> Upgrade:
    """Bring the serving database to the head (see the module docstring). An empty database is left
    alone (after None): the caller creates the schema at the head (the load's DDL).

    `engine` must give SQLite real transactions (the load's serving_engine does): each revision runs
    in its own transaction, DDL included, and is recorded in it."""
    with engine.begin() as conn:
        before = current_revision(conn)
        stamped = False
        if before is None:
            if not serving_tables(conn):
                return Upgrade(before=None, after=None, stamped_baseline=False)
            problem = unversioned_problem(conn)
            if problem:
                raise SchemaNotMigratable(problem)
            MigrationContext.configure(conn).stamp(script(), BASELINE)
            stamped = True
        elif _unknown(before):
            raise SchemaNotMigratable(
                f"{_where(conn)} is at revision {before}, which this release does not know "
                "(a newer release upgraded it): nothing to upgrade"
            )
    cfg = config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()
    with engine.connect() as conn:
        after = current_revision(conn)
        differences = schema_differences(conn)
    if differences:
        raise SchemaNotMigratable(
            f"{_where(conn)} is at revision {after} but its tables are not this release's: "
            + "; ".join(differences)
        )
    return Upgrade(before=before, after=after, stamped_baseline=stamped)
