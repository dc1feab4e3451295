"""The serving DDL (sql/serving/*.sql) agrees with transforms/serving/schema.py, on both engines."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from transforms.load import stage as load
from transforms.serving import db
from transforms.serving.schema import SERVING_TABLES, SQL_TYPES

# What each engine's catalog reports for the declared portable type names.
CATALOG_TYPE = {
    "postgresql": {t: t for t in SQL_TYPES} | {"timestamp": "timestamp without time zone"},
    "sqlite": {t: t for t in SQL_TYPES},  # SQLite keeps the declared type text
}


def declared_types(engine, table: str) -> dict[str, str]:
    """Column -> type as the engine's catalog holds it."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(f"pragma table_info({table})").fetchall()
            return {r[1]: r[2].lower() for r in rows}
        rows = conn.execute(
            sa.text(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = current_schema() and table_name = :t"
            ),
            {"t": table},
        ).fetchall()
        return {r[0]: r[1] for r in rows}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'serving.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    engine = load.serving_engine(url)
    load.ensure_schema(engine)
    yield engine
    engine.dispose()


def test_ddl_columns_types_and_keys_match_the_declared_schema(engine):
    inspector = sa.inspect(engine)
    dialect = engine.dialect.name
    assert set(inspector.get_table_names()) >= {t.name for t in SERVING_TABLES}
    for table in SERVING_TABLES:
        columns = inspector.get_columns(table.name)
        assert [c["name"] for c in columns] == list(table.column_names), table.name
        expected = {c: CATALOG_TYPE[dialect][t] for c, t in table.columns}
        assert declared_types(engine, table.name) == expected, table.name
        assert inspector.get_pk_constraint(table.name)["constrained_columns"] == list(table.primary_key)
        unique = [tuple(u["column_names"]) for u in inspector.get_unique_constraints(table.name)]
        assert unique == ([table.unique] if table.unique else []), table.name


def test_a_book_is_read_through_indexes_on_citizen_id(engine):
    indexed = {
        name: [tuple(i["column_names"]) for i in sa.inspect(engine).get_indexes(name)]
        for name in ("encounters", "immunizations", "allergies")
    }
    assert ("citizen_id", "is_current") in indexed["encounters"]
    assert ("citizen_id",) in indexed["immunizations"]
    assert ("citizen_id",) in indexed["allergies"]


def test_ddl_runs_twice_without_error(engine):
    load.ensure_schema(engine)  # create ... if not exists: the load stage runs it every night


@pytest.mark.postgres
def test_roles_let_the_loader_write_the_reader_read_books_and_keep_analysts_from_identities(pg_url):
    engine = load.serving_engine(pg_url)
    load.ensure_schema(engine)
    load.apply_roles(engine)
    load.apply_roles(engine)  # idempotent

    def can(role: str, table: str, privilege: str) -> bool:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("select has_table_privilege(:role, :table, :privilege)"),
                {"role": role, "table": table, "privilege": privilege},
            ).scalar_one()

    def can_column(role: str, table: str, column: str) -> bool:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("select has_column_privilege(:role, :table, :column, 'select')"),
                {"role": role, "table": table, "column": column},
            ).scalar_one()

    assert can("loader", "encounters", "insert") and can("loader", "citizens", "delete")
    assert can("book_reader", "citizens", "select") and can("book_reader", "immunizations", "select")
    assert not can("book_reader", "citizens", "insert")
    assert not can("analyst", "citizens", "select")
    assert not can("analyst", "allergies", "select")
    assert not can("analyst", "summaries", "select")
    assert can("analyst", "medications", "select")
    assert can_column("analyst", "encounters", "main_icd10")
    assert not can_column("analyst", "encounters", "citizen_id")
    engine.dispose()


def test_a_serving_database_of_an_earlier_release_is_refused_with_a_clear_error(tmp_path):
    engine = load.serving_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:  # the encounters table before version ids
        conn.exec_driver_sql(
            "create table encounters (facility_code text not null, encounter_id text not null, "
            "version integer not null, primary key (facility_code, encounter_id, version))"
        )
    with pytest.raises(db.ServingSchemaOutdated, match="no migration revision.*healthbook db upgrade"):
        load.ensure_schema(engine)


def test_the_demo_starts_afresh_only_a_serving_database_older_than_any_migration_and_keeps_a_current_one(
    tmp_path,
):
    from transforms.orchestration.cli import _demo_serving

    old, current = tmp_path / "old.db", tmp_path / "current.db"
    with load.serving_engine(f"sqlite:///{old}").begin() as conn:  # before the baseline b747057
        conn.exec_driver_sql(
            "create table encounters (facility_code text, encounter_id text, version integer)"
        )
    load.ensure_schema(load.serving_engine(f"sqlite:///{current}"))
    before = current.read_bytes()
    _demo_serving(f"sqlite:///{old}")
    _demo_serving(f"sqlite:///{current}")
    assert not old.exists()
    assert current.read_bytes() == before
