"""Shared fixtures: real services, a generated golden night, an Airflow home. No mocks of them."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import great_expectations  # noqa: F401  (see below)
import pytest

# Imported once per test process: every night a test runs forks the data_docs stage's worker from
# it (transforms/orchestration/workers.py, Stage.early), which then inherits GX instead of importing
# it again (4-6 s a night).

PG_ADMIN_URL = os.environ.get("HEALTHBOOK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
GOLDEN_NIGHT = dt.date(2026, 11, 26)
# the golden night's generator arguments (test_generate.py judges the generator on this night)
GOLDEN_SIZE = {"facilities": 3, "encounters": 400, "citizens": 3000, "seed": 7}


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
    generate_night(out, GOLDEN_NIGHT, **GOLDEN_SIZE)
    return out


# The pseudonym key of the shared golden run (the snapshot stage needs one); the same hex as the
# `pseudonym_key` fixture, so a test holding that fixture reads the run's pseudonyms with its key.
GOLDEN_RUN_KEY = bytes(range(32))


class GoldenRun:
    """The golden night run once through every stage (SQLite serving inside the warehouse), with
    copies of its warehouse taken after ingest, quality and reconcile.

    The warehouses are shared by the whole session: read them, never write into them. A test that
    writes (a load into another database, a rerun, a batch-size variant) works on `copy(...)`.
    """

    STEPS = (
        ("ingest",),
        ("quality",),
        ("reconcile",),
        ("data_docs", "feedback", "load", "ledger", "report", "snapshot"),
    )

    def __init__(self, night_dir: Path, root: Path):
        from transforms.orchestration.pipeline import STAGES, run_night

        assert [s for step in self.STEPS for s in step] == list(STAGES)  # every stage, in order
        self.night_dir = night_dir
        self.root = root
        self.after: dict[str, Path] = {}
        ctx = self.context(root / "full")
        mp = pytest.MonkeyPatch()
        mp.setenv("HEALTHBOOK_PSEUDONYM_KEY", GOLDEN_RUN_KEY.hex())
        try:
            for step in self.STEPS:
                self.summary = run_night(ctx, stages=list(step))
                if step[-1] != "snapshot":
                    self.after[step[-1]] = root / f"after_{step[-1]}"
                    shutil.copytree(ctx.warehouse.root, self.after[step[-1]])
        finally:
            mp.undo()
        self.after["snapshot"] = ctx.warehouse.root
        self.ctx = ctx  # the full run: ledger, report and snapshot written, books served from SQLite

    def context(self, warehouse: Path, serving_url: str | None = None):
        from transforms.core.context import make_context

        return make_context(
            GOLDEN_NIGHT, self.night_dir / "extracts", self.night_dir / "registry", warehouse, serving_url
        )

    def copy(self, stage: str, to: Path, serving_url: str | None = None):
        """A private copy of the warehouse as it was after `stage`; its context (SQLite serving
        inside the copy unless `serving_url`)."""
        shutil.copytree(self.after[stage], to)
        return self.context(to, serving_url)


@pytest.fixture(scope="session")
def golden_run(golden_night, tmp_path_factory) -> GoldenRun:
    """The golden night through every stage once per session (see GoldenRun): shared by the tests
    that judge the stages' outputs on it instead of each running the pipeline again."""
    return GoldenRun(golden_night, tmp_path_factory.mktemp("golden_run"))


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
