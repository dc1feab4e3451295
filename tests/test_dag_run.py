"""The nightly DAG runs a generated night end to end with dag.test(), a re-run skips every stage and
changes nothing, and conf {"force": true} runs them all again."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from transforms.orchestration.stages import NIGHT as STAGES

DAGS = Path(__file__).parents[1] / "dags"
LOGICAL = dt.datetime(2026, 11, 26, 19, 30, tzinfo=dt.UTC)  # 02:30 on 27/11 in Vietnam -> night 26/11


def _serving_checksums(url: str) -> dict[str, str]:
    """One checksum per serving table: every row, sorted, hashed (the table's content, not its order).
    Not the pipeline's record of its last load: it says when, not what."""
    from transforms.orchestration.fingerprint import LOAD_FINGERPRINTS_TABLE

    engine = sa.create_engine(url)
    out = {}
    with engine.connect() as conn:
        for table in set(sa.inspect(conn).get_table_names()) - {LOAD_FINGERPRINTS_TABLE}:
            rows = sorted(
                json.dumps(list(r), default=str) for r in conn.execute(sa.text(f'select * from "{table}"'))
            )
            out[table] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    engine.dispose()
    return out


@pytest.fixture
def dag_settings(golden_night, tmp_path, monkeypatch, pseudonym_key):
    warehouse = tmp_path / "warehouse"
    monkeypatch.setenv("HEALTHBOOK_EXTRACTS", str(golden_night / "extracts"))
    monkeypatch.setenv("HEALTHBOOK_REGISTRY", str(golden_night / "registry"))
    monkeypatch.setenv("HEALTHBOOK_WAREHOUSE", str(warehouse))
    return warehouse


def test_dag_test_runs_the_generated_night_and_a_rerun_leaves_serving_unchanged(airflow_home, dag_settings):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS)).dags["health_book_nightly"]
    run = dag.test(logical_date=LOGICAL)
    assert run.state == "success"
    warehouse = dag_settings
    ledger = json.loads((warehouse / "runs" / "2026-11-26" / "ledger.json").read_text())
    totals = ledger["totals"]
    assert totals["received"] == totals["loaded"] + totals["quarantined"] > 0
    assert (warehouse / "snapshots" / "2026-11-26.duckdb").exists()
    assert (warehouse / "quality" / "index.html").exists()
    assert (warehouse / "quality" / "data_docs" / "index.html").exists()  # the data_docs task, beside load
    assert json.loads((warehouse / "runs" / "2026-11-26" / "data_docs.json").read_text())["errors"] == []
    url = f"sqlite:///{warehouse / 'serving.db'}"
    first = _serving_checksums(url)

    records = warehouse / "runs" / "2026-11-26" / "fingerprints"
    recorded = {p.name: p.read_text() for p in records.glob("*.json")}
    assert len(recorded) == len(STAGES)  # every stage finished and was recorded

    rerun = dag.test(logical_date=LOGICAL)
    assert rerun.state == "success"
    assert _serving_checksums(url) == first
    assert json.loads((warehouse / "runs" / "2026-11-26" / "ledger.json").read_text()) == ledger
    # the unchanged night planned no shard (the mapped task had no instance) and re-ran no stage
    states = {ti.task_id: ti.state for ti in rerun.get_task_instances()}
    assert states["ingest_shard"] in ("skipped", None) and states["ingest"] == "success"
    assert {p.name: p.read_text() for p in records.glob("*.json")} == recorded

    forced = dag.test(logical_date=LOGICAL, run_conf={"force": True})
    assert forced.state == "success"
    assert _serving_checksums(url) == first
    rewritten = {p.name: p.read_text() for p in records.glob("*.json")}
    assert sorted(rewritten) == sorted(recorded)
    assert all(rewritten[name] != recorded[name] for name in recorded)  # every stage ran again
