"""Shared fixtures: real services, a generated golden night, an Airflow home. No mocks of them."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get("HEALTHBOOK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
GOLDEN_NIGHT = dt.date(2026, 11, 26)


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for one test (SQLAlchemy URL); dropped afterwards.

    Fails (never skips) when PostgreSQL is not answering: CI must notice a missing service.
    """
    import psycopg

    name = f"hb_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.fail(f"PostgreSQL is not answering at {PG_ADMIN_URL}: {e}")
    with admin:
        admin.execute(f'create database "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="session")
def golden_night(tmp_path_factory) -> Path:
    """One small generated night (every defect class and noise kind), made once per session."""
    from transforms.synth.generate import generate_night

    out = tmp_path_factory.mktemp("golden")
    # the real-night shape (REAL_EXPORTS.md): one encounter per file, late tables, xmlns quirks,
    # totals drift, fifth-character and retired codes, XML7-sourced main codes
    generate_night(out, GOLDEN_NIGHT, facilities=3, encounters=400, citizens=3000, seed=7)
    return out


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    """An initialised Airflow home (SQLite metadata database) for DagBag and dag.test()."""
    home = tmp_path_factory.mktemp("airflow_home")
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).parents[1] / "dags")
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return home


@pytest.fixture
def pseudonym_key(monkeypatch) -> bytes:
    key = bytes(range(32))
    monkeypatch.setenv("HEALTHBOOK_PSEUDONYM_KEY", key.hex())
    return key
