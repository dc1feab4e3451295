"""Nothing leaked: the analyst role cannot read identities, the book reader cannot write, no log line
of a full run names a citizen of the registry, and the pseudonym key lands in no file and no log."""

from __future__ import annotations

import re

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from reliability.helpers import TEST_KEY
from transforms.load import stage as load


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(
        sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


def _as_role(url: str, role: str, statement: str) -> list[tuple]:
    """Run one statement under `SET ROLE role` in a transaction that is rolled back."""
    with _connect(url) as conn:
        conn.execute(f"set role {role}")
        try:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []
        finally:
            conn.rollback()


@pytest.fixture(scope="module")
def serving_with_roles(clean_run):
    engine = sa.create_engine(clean_run.serving_url)
    try:
        load.apply_roles(engine)
    finally:
        engine.dispose()
    return clean_run.serving_url


@pytest.mark.parametrize(
    "statement",
    [
        "select citizen_id from citizens",
        "select full_name, birth_date from citizens",
        "select citizen_id from encounters",
        "select citizen_id from immunizations",
        "select * from summaries",
    ],
)
def test_the_analyst_role_cannot_select_identities(serving_with_roles, statement):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as_role(serving_with_roles, "analyst", statement)


def test_the_analyst_role_reads_coded_clinical_facts(serving_with_roles):
    rows = _as_role(serving_with_roles, "analyst", "select count(*) from diagnoses where icd10 is not null")
    assert rows[0][0] > 0


@pytest.mark.parametrize(
    "statement",
    [
        "delete from citizens",
        "update encounters set main_icd10 = 'A00'",
        "insert into illnesses select * from illnesses",
        "truncate allergies",
    ],
)
def test_the_book_reader_cannot_write(serving_with_roles, statement):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as_role(serving_with_roles, "book_reader", statement)


def test_the_book_reader_reads_books_and_the_loader_writes(serving_with_roles):
    citizens = _as_role(serving_with_roles, "book_reader", "select count(*) from citizens")[0][0]
    assert citizens > 0
    _as_role(serving_with_roles, "loader", "delete from citizens")  # allowed (rolled back)
    assert _as_role(serving_with_roles, "book_reader", "select count(*) from citizens")[0][0] == citizens


def test_no_log_line_of_a_full_run_names_a_citizen(clean_run, golden_night):
    log = clean_run.result.stdout + clean_run.result.stderr
    assert "ledger" in log  # the log is the real one
    registry = pd.read_parquet(golden_night / "registry")
    numbers = set(re.findall(r"\d+", log))
    for column in ("citizen_id", "old_id_number", "social_insurance_number"):
        leaked = numbers & set(registry[column].dropna())
        assert leaked == set(), column
    names = [n for n in registry["full_name"].dropna() if n in log]
    assert names == []


def test_the_pseudonym_key_lands_in_no_warehouse_file_and_no_log(clean_run):
    needles = [TEST_KEY, TEST_KEY.hex().encode(), TEST_KEY.hex().upper().encode()]
    files = [p for p in clean_run.warehouse.rglob("*") if p.is_file()]
    assert len(files) > 50  # the whole warehouse: staging, runs, quality report, snapshot, serving
    for path in files:
        data = path.read_bytes()
        assert not any(n in data for n in needles), path
    log = (clean_run.result.stdout + clean_run.result.stderr).encode()
    assert not any(n in log for n in needles)


def test_a_table_added_after_the_grants_is_writable_by_the_loader_and_hidden_from_the_analyst(new_database):
    url = new_database()
    engine = sa.create_engine(url)
    try:
        load.ensure_schema(engine)
        load.apply_roles(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("create table later_table (citizen_id text)")
    finally:
        engine.dispose()
    _as_role(url, "loader", "insert into later_table values ('x')")  # no error: the loader writes it
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as_role(url, "analyst", "select citizen_id from later_table")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as_role(url, "book_reader", "select citizen_id from later_table")
