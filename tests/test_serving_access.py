"""Who may read what in the serving database (issue #16, operations): every load on PostgreSQL
applies the roles with default privileges (a table made later reaches no reader), every book read
through `healthbook book` is written to the access log `book_access`, and the analyst role reads
neither that log nor any identity."""

from __future__ import annotations

import getpass
import json

import psycopg
import pytest
import sqlalchemy as sa
from serving_fixtures import NIGHT1, context, drug, outpatient, write_links, write_staged
from typer.testing import CliRunner

from transforms.load import stage as load
from transforms.serving.schema import CITIZENS, SERVING_TABLES

AN = "079090001234"  # in the registry, with one visit (serving_fixtures.REGISTRY)
NOBODY = "001175999999"  # not in the registry: no book


def _load_one_night(tmp_path, url: str) -> None:
    ctx = context(tmp_path, NIGHT1, url)
    write_staged(ctx.warehouse, "encounters", NIGHT1, [outpatient("LK1")])
    write_staged(ctx.warehouse, "drugs", NIGHT1, [drug("LK1")])
    write_links(ctx.warehouse, NIGHT1, [{"encounter_id": "LK1", "outcome": "match", "citizen_id": AN}])
    load.load_night(ctx)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def loaded(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'warehouse' / 'serving.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    _load_one_night(tmp_path, url)
    return url


def _book(url: str, *args: str):
    from transforms.orchestration.cli import app

    return CliRunner().invoke(app, ["book", "--serving-url", url, *args])


def _access_rows(url: str) -> list[dict]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("select * from book_access order by read_at, read_id, position")
        ).mappings()
        out = [dict(r) for r in rows]
    engine.dispose()
    return out


def test_every_book_read_is_logged_with_the_citizen_time_users_and_purpose(loaded):
    result = _book(loaded, "--citizen", AN, NOBODY, "--purpose", "khám bệnh ngày 27/11")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["found"] for line in result.stdout.splitlines()] == [True, False]
    # INTERFACES.md's command line, as written (no --purpose), still works and is logged too
    assert _book(loaded, "--citizen", AN).exit_code == 0

    rows = _access_rows(loaded)
    assert [(r["citizen_id"], r["found"], r["position"], r["purpose"]) for r in rows] == [
        (AN, True, 0, "khám bệnh ngày 27/11"),
        (NOBODY, False, 1, "khám bệnh ngày 27/11"),
        (AN, True, 0, "unstated"),
    ]
    assert {r["os_user"] for r in rows} == {getpass.getuser()}
    assert rows[0]["read_id"] == rows[1]["read_id"] != rows[2]["read_id"]  # one id per command
    assert all(r["read_at"] is not None and not r["pdf"] for r in rows)
    expected_db_user = "postgres" if loaded.startswith("postgresql") else None  # SQLite has no users
    assert {r["db_user"] for r in rows} == {expected_db_user}


def test_a_serving_database_without_the_access_log_prints_no_book(tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse' / 'serving.db'}"
    _load_one_night(tmp_path, url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # as a database of the release before the access log
        conn.exec_driver_sql("drop table book_access")
    engine.dispose()
    result = _book(url, "--citizen", AN)
    assert result.exit_code == 1
    assert "refused" in result.stderr and "book_access" in result.stderr
    assert result.stdout == ""  # an unlogged read discloses nothing


def _has(url: str, sql: str, **params) -> bool:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(sa.text(sql), params).scalar_one()
    engine.dispose()
    return value


def _as_role(url: str, role: str, statement: str) -> None:
    libpq = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as conn:
        conn.execute(f"set role {role}")
        try:
            conn.execute(statement)
        finally:
            conn.rollback()


@pytest.mark.postgres
def test_a_load_applies_the_roles_and_a_table_created_later_follows_the_default_privileges(tmp_path, pg_url):
    _load_one_night(tmp_path, pg_url)  # the load alone: apply_roles is not called by the test
    table_privilege = "select has_table_privilege(:role, :table, :privilege)"
    assert not _has(pg_url, table_privilege, role="analyst", table="citizens", privilege="select")
    assert _has(pg_url, table_privilege, role="book_reader", table="citizens", privilege="select")

    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:  # a table added after the load by the owner (a migration, say)
        conn.exec_driver_sql("create table added_later (citizen_id text, note text)")
    engine.dispose()
    # the defaults chosen in roles.sql: the loader writes it, no reader sees it until granted by name
    for privilege in ("select", "insert", "update", "delete"):
        assert _has(pg_url, table_privilege, role="loader", table="added_later", privilege=privilege)
    for role in ("analyst", "book_reader", "auditor"):
        assert not _has(pg_url, table_privilege, role=role, table="added_later", privilege="select"), role
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as_role(pg_url, "analyst", "select * from added_later")


@pytest.mark.postgres
def test_the_analyst_role_reads_neither_the_access_log_nor_any_identity(tmp_path, pg_url):
    _load_one_night(tmp_path, pg_url)
    assert _book(pg_url, "--citizen", AN, "--purpose", "audit test").exit_code == 0

    for statement in (
        "select * from book_access",
        "select citizen_id from book_access",
        "select * from citizens",
        "select citizen_id from encounters",
        "select citizen_id from immunizations",
        "select citizen_id from allergies",
        "select citizen_id from illnesses",
        "select * from summaries",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as_role(pg_url, "analyst", statement)
    # every identity column of every serving table (the citizen's ID and the citizens table)
    column_privilege = "select has_column_privilege('analyst', :table, :column, 'select')"
    identity = [
        (t.name, c)
        for t in SERVING_TABLES
        for c in t.column_names
        if c == "citizen_id" or t.name in (CITIZENS.name, "book_access")
    ]
    readable = [(t, c) for t, c in identity if _has(pg_url, column_privilege, table=t, column=c)]
    assert readable == []
    # the access log: book readers append without reading it, auditors read it, the loader cannot erase it
    table_privilege = "select has_table_privilege(:role, 'book_access', :privilege)"
    assert _has(pg_url, table_privilege, role="book_reader", privilege="insert")
    assert not _has(pg_url, table_privilege, role="book_reader", privilege="select")
    assert _has(pg_url, table_privilege, role="auditor", privilege="select")
    assert not _has(pg_url, table_privilege, role="loader", privilege="delete")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as_role(pg_url, "book_reader", "select * from book_access")
