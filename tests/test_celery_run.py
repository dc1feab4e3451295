"""Scale-out: the nightly DAG runs through the scheduler on a CeleryExecutor worker.

Real components only: PostgreSQL as Airflow's metadata database and Celery result backend, the local
Redis as the broker, and the project's own DAG file. The scheduler creates the run itself (catchup
off: the latest 02:30 tick), a Celery worker executes every task, and the test checks the run
succeeded and the night's ledger balances. Every process the test started is stopped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).parents[1]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
REDIS_URL = os.environ.get("HEALTHBOOK_TEST_REDIS", "redis://127.0.0.1:6379/7")
RUN_TIMEOUT_S = 900


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _latest_tick(now: dt.datetime) -> dt.datetime:
    """The latest 19:30 UTC tick at or before `now` (the DAG's schedule)."""
    tick = now.replace(hour=19, minute=30, second=0, microsecond=0)
    return tick if tick <= now else tick - dt.timedelta(days=1)


def _night_of(tick: dt.datetime) -> dt.date:
    return (tick + dt.timedelta(hours=7)).date() - dt.timedelta(days=1)


@pytest.fixture
def celery_deployment(tmp_path, pg_url, pseudonym_key):
    """Environment of a one-machine Celery deployment; yields (env, start) and stops everything."""
    from transforms.synth.generate import generate_night

    night = _night_of(_latest_tick(dt.datetime.now(dt.UTC)))
    data = tmp_path / "data"
    generate_night(data, night, facilities=2, encounters=300, citizens=2000, seed=11)
    api_port, log_port = _free_port(), _free_port()
    metadata_url = pg_url  # postgresql+psycopg://.../hb_test_xxx
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata_url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        # a queue of this test's own, so a stray worker elsewhere can never take its tasks
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": f"healthbook-test-{uuid.uuid4().hex[:8]}",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex * 2,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "HEALTHBOOK_EXTRACTS": str(data / "extracts"),
        "HEALTHBOOK_REGISTRY": str(data / "registry"),
        "HEALTHBOOK_WAREHOUSE": str(tmp_path / "warehouse"),
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True)
    processes: list[subprocess.Popen] = []
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(name: str, *args: str) -> None:
        out = open(logs / f"{name}.log", "wb")  # noqa: SIM115  closed with the process group
        processes.append(
            subprocess.Popen(
                [AIRFLOW, *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    start("api-server", "api-server", "--port", str(api_port))
    start("scheduler", "scheduler")
    start("dag-processor", "dag-processor")
    start(
        "worker",
        "celery",
        "worker",
        "--concurrency",
        "2",
        "--queues",
        env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"],
    )
    try:
        yield env, night, logs
    finally:
        for p in processes:  # Celery renames its children: stop the whole process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for p in processes:
            try:
                p.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        leftovers = [p.pid for p in processes if p.poll() is None]
        assert leftovers == []


def _metadata(metadata_url: str, sql: str):
    """One row of Airflow's metadata database (or None)."""
    with psycopg.connect(metadata_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return conn.execute(sql).fetchone()


def test_the_scheduler_runs_a_night_on_a_celery_worker_and_the_ledger_balances(celery_deployment):
    env, night, logs = celery_deployment
    started = time.monotonic()
    metadata_url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    # The DAG exists (paused) once the dag-processor has parsed it; unpausing lets the scheduler
    # create the latest scheduled run (catchup is off).
    deadline = time.monotonic() + 180
    while not _metadata(metadata_url, "select 1 from dag where dag_id = 'health_book_nightly'"):
        assert time.monotonic() < deadline, (logs / "dag-processor.log").read_text()[-3000:]
        time.sleep(2)
    subprocess.run(
        [AIRFLOW, "dags", "unpause", "health_book_nightly"], env=env, check=True, capture_output=True
    )
    assert _metadata(metadata_url, "select is_paused from dag where dag_id = 'health_book_nightly'") == (
        False,
    )
    state = None
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while state not in ("success", "failed") and time.monotonic() < deadline:
        time.sleep(5)
        row = _metadata(
            metadata_url, "select state from dag_run where dag_id = 'health_book_nightly' order by id desc"
        )
        state = row[0] if row else None
    wall = time.monotonic() - started
    print(f"celery run of night {night}: {state} in {wall:.0f} s")
    assert state == "success", (logs / "worker.log").read_text()[-5000:]
    ledger = json.loads(
        (Path(env["HEALTHBOOK_WAREHOUSE"]) / "runs" / night.isoformat() / "ledger.json").read_text()
    )
    totals = ledger["totals"]
    assert totals["received"] > 0
    assert totals["received"] == totals["loaded"] + totals["quarantined"]
    for code, f in ledger["facilities"].items():
        assert f["received"] == f["loaded"] + sum(f["quarantined"].values()), code
