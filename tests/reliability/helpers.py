"""What the reliability tests share: running `healthbook run` as a real process, and fingerprints of
a night's final state (serving tables, staged Parquet, the ledger) that two runs can be compared by.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

# the night of the `golden_night` fixture (tests/conftest.py) and the same admin URL
NIGHT = dt.date(2026, 11, 26)
PG_ADMIN_URL = os.environ.get("HEALTHBOOK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
# A pseudonym key only the tests use; set in every `healthbook run` environment.
TEST_KEY = bytes.fromhex("5eed" * 16)
# Generous hang guard for one run of a small night (a run takes ~15 s); never a timing assertion.
RUN_TIMEOUT_S = 600


# --- PostgreSQL databases ------------------------------------------------------------------------


def create_database() -> str:
    """A fresh, empty PostgreSQL database; its SQLAlchemy URL. Fails (never skips) without PostgreSQL."""
    name = f"hb_rel_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.fail(f"PostgreSQL is not answering at {PG_ADMIN_URL}: {e}")
    with admin:
        admin.execute(f'create database "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def database_name(url: str) -> str:
    return sa.make_url(url).database


def drop_database(url: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'drop database if exists "{database_name(url)}" with (force)')


def writing_backends(url: str) -> list[int]:
    """Backends of the database inside a transaction that has written something (has an xid)."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        rows = admin.execute(
            "select pid from pg_stat_activity where datname = %s and backend_xid is not null",
            (database_name(url),),
        ).fetchall()
    return [r[0] for r in rows]


def terminate_backends(url: str) -> int:
    """Terminate every connection to the database (the server stays up); how many were ended."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        rows = admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()",
            (database_name(url),),
        ).fetchall()
    return sum(1 for r in rows if r[0])


# --- running a night -----------------------------------------------------------------------------


@dataclass
class NightRun:
    """Where one run of the night reads and writes."""

    source: Path  # generated night: extracts/, registry/, truth/
    warehouse: Path
    serving_url: str

    def args(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "transforms.orchestration.cli",
            "run",
            "--date",
            NIGHT.isoformat(),
            "--extracts",
            str(self.source / "extracts"),
            "--registry",
            str(self.source / "registry"),
            "--warehouse",
            str(self.warehouse),
            "--serving-url",
            self.serving_url,
        ]

    @property
    def run_dir(self) -> Path:
        return self.warehouse / "runs" / NIGHT.isoformat()

    def ledger(self) -> dict:
        return json.loads((self.run_dir / "ledger.json").read_text())

    def start(self, **popen) -> subprocess.Popen:
        return subprocess.Popen(
            self.args(),
            cwd=Path(__file__).parents[2],
            env=run_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: a kill reaches the ingest workers too
            **popen,
        )

    def run(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.args(),
            cwd=Path(__file__).parents[2],
            env=run_environment(),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )


def run_environment() -> dict[str, str]:
    env = os.environ.copy()
    env["HEALTHBOOK_PSEUDONYM_KEY"] = TEST_KEY.hex()
    env.pop("HEALTHBOOK_PSEUDONYM_KEY_FILE", None)
    env["COLUMNS"] = "120"  # Rich tables at a fixed width: logs comparable between runs
    return env


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    )


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], what: str) -> None:
    """SIGKILL the run's whole process group (the CLI and its ingest workers, like `kill -9` of a
    scheduler's task) as soon as `ready()` holds (polled); fail if the run ended first."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}\n{err[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"hang guard: {what} never happened")
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


# --- fingerprints of the final state -------------------------------------------------------------


def _digest_rows(rows: list[str]) -> str:
    h = hashlib.sha256()
    for row in sorted(rows):
        h.update(row.encode())
        h.update(b"\n")
    return h.hexdigest()


def serving_checksums(url: str) -> dict[str, tuple[int, str]]:
    """Every serving table -> (row count, SHA-256 of its rows sorted): equal iff equal contents.

    Not the pipeline's record of its last load (transforms/orchestration/fingerprint.py): it says when, not what."""
    from transforms.orchestration.fingerprint import LOAD_FINGERPRINTS_TABLE

    engine = sa.create_engine(url)
    try:
        out = {}
        with engine.connect() as conn:
            for table in sorted(set(sa.inspect(conn).get_table_names()) - {LOAD_FINGERPRINTS_TABLE}):
                result = conn.execute(sa.text(f'select * from "{table}"'))
                rows = [json.dumps(list(r), default=str, ensure_ascii=False) for r in result]
                out[table] = (len(rows), _digest_rows(rows))
        return out
    finally:
        engine.dispose()


def parquet_contents(warehouse: Path) -> dict[str, tuple[int, str]]:
    """Every folder of Parquet in the warehouse (scratch excluded) -> (rows, digest of the rows of
    all its files together, as JSON by column name). File bytes may differ (Parquet metadata), and
    so may Arrow's physical types (string / large_string, an all-null column typed null): contents
    may not. A stale or duplicated part shows as extra rows."""
    by_folder: dict[str, list[str]] = {}
    for path in sorted(warehouse.rglob("*.parquet")):
        rel = path.relative_to(warehouse)
        if rel.parts[0] == "scratch":
            continue
        rows = by_folder.setdefault(str(rel.parent), [])
        rows.extend(
            json.dumps(row, default=str, sort_keys=True, ensure_ascii=False)
            for row in pq.read_table(path).to_pylist()
        )
    return {folder: (len(rows), _digest_rows(rows)) for folder, rows in by_folder.items()}


def snapshot_contents(path: Path) -> dict[str, tuple[int, str]]:
    """Every table of a DuckDB snapshot -> (rows, digest of its rows sorted)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for (table,) in con.execute("select table_name from information_schema.tables order by 1").fetchall():
            rows = [
                json.dumps(list(r), default=str, ensure_ascii=False)
                for r in con.execute(f'select * from "{table}"').fetchall()
            ]
            out[table] = (len(rows), _digest_rows(rows))
        return out
    finally:
        con.close()


@dataclass
class FinalState:
    """What must be the same after any two runs of the same night."""

    serving: dict[str, tuple[int, str]]
    parquet: dict[str, tuple[int, str]]
    ledger: dict
    snapshot: dict[str, tuple[int, str]]


def final_state(run: NightRun) -> FinalState:
    ledger = run.ledger()
    return FinalState(
        serving=serving_checksums(run.serving_url),
        parquet=parquet_contents(run.warehouse),
        ledger=ledger,
        snapshot=snapshot_contents(run.warehouse / "snapshots" / f"{NIGHT.isoformat()}.duckdb"),
    )


def assert_same_state(actual: FinalState, expected: FinalState) -> None:
    assert actual.ledger == expected.ledger
    assert actual.serving == expected.serving
    assert sorted(actual.parquet) == sorted(expected.parquet)
    differing = [k for k in expected.parquet if actual.parquet[k] != expected.parquet[k]]
    assert differing == [], f"Parquet contents differ in {differing}"
    assert actual.snapshot == expected.snapshot
