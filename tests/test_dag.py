"""The nightly DAG: parses cleanly, is configured for operations, does no work at parse time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
DAG_FILE = ROOT / "dags" / "health_book_nightly.py"
HEAVY_MODULES = ("transforms", "expectations", "pandas", "pyarrow", "duckdb", "great_expectations", "splink")


def test_dag_file_has_no_import_errors_and_is_configured_for_operations(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["health_book_nightly"]
    assert dag.tags and {"healthbook", "nightly"} <= set(dag.tags)
    for task in dag.tasks:
        assert task.retries >= 2, task.task_id
        assert task.owner == "data-engineering", task.task_id
    expected = {
        "night_context",
        "ingest_plan",
        "ingest_shard",
        "ingest",
        "quality",
        "reconcile",
        "data_docs",
        "feedback",
        "load",
        "ledger",
        "report",
        "snapshot",
        "close_night",
    }
    assert expected <= {t.task_id.split(".")[-1] for t in dag.tasks}


def test_parsing_the_dag_file_reads_no_file_opens_no_socket_and_imports_no_pipeline_code(airflow_home):
    probe = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "dag_parse_probe.py"), str(DAG_FILE)],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    python_roots = tuple({sys.prefix, sys.base_prefix})
    foreign = [
        e
        for e in report["events"]
        if not (
            e[0] == "open"
            and (e[1].startswith(python_roots) or e[1].endswith((".py", ".pyc")) or os.path.isdir(e[1]))
        )
    ]
    assert foreign == [], f"the DAG file does I/O when parsed: {foreign[:5]}"
    heavy = [m for m in report["new_modules"] if m.split(".")[0] in HEAVY_MODULES]
    assert heavy == [], f"the DAG file imports pipeline code when parsed: {heavy[:5]}"


def test_the_failure_callback_records_the_failed_stage_in_the_ledger(airflow_home, tmp_path, monkeypatch):
    import importlib.util
    from types import SimpleNamespace

    import pendulum

    spec = importlib.util.spec_from_file_location("health_book_nightly_callback", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "_variable", lambda name: None)  # no Airflow Variables: the environment
    monkeypatch.setenv("HEALTHBOOK_EXTRACTS", str(tmp_path / "extracts"))
    monkeypatch.setenv("HEALTHBOOK_REGISTRY", str(tmp_path / "registry"))
    monkeypatch.setenv("HEALTHBOOK_WAREHOUSE", str(tmp_path / "warehouse"))
    context = {
        # 02:30 on 27/11 in Vietnam: the run of night 26/11
        "logical_date": pendulum.datetime(2026, 11, 26, 19, 30, tz="UTC"),
        "dag_run": SimpleNamespace(conf={}),
        "task_instance": SimpleNamespace(task_id="load"),
    }
    module._record_failure(context)
    run_dir = tmp_path / "warehouse" / "runs" / "2026-11-26"
    ledger = json.loads((run_dir / "ledger.json").read_text())
    assert ledger["run"]["status"] == "failed"
    assert ledger["run"]["failed_stage"] == "load"
    assert json.loads((run_dir / "status.json").read_text())["failed_stage"] == "load"


def test_the_dag_s_stage_edges_are_the_declared_ones(airflow_home):
    """Each stage task waits for exactly the stages its declaration names (read upstream or gate),
    less those another of them already waits for: the DAG and the declarations are one graph."""
    from airflow.dag_processing.dagbag import DagBag

    from transforms.orchestration.stages import BY_NAME, NIGHT

    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["health_book_nightly"]
    # the ingest is three tasks (plan, mapped shards, finalize): the finalize is the stage
    stage_of = {"ingest_plan": "ingest", "ingest_shard": "ingest"} | {s.name: s.name for s in NIGHT}

    def dag_parents(task_id: str) -> set[str]:
        parents = {stage_of.get(t) for t in dag.get_task(task_id).upstream_task_ids} - {None}
        return parents - {stage_of[task_id]}

    def waits_for(name: str) -> set[str]:
        out, todo = set(), list(BY_NAME[name].predecessors)
        while todo:
            current = todo.pop()
            if current not in out:
                out.add(current)
                todo.extend(BY_NAME[current].predecessors)
        return out

    for stage in NIGHT:
        declared = set(stage.predecessors)
        reduced = {p for p in declared if not any(p in waits_for(q) for q in declared - {p})}
        assert dag_parents(stage.name) == reduced, stage.name
    # the shards run between the plan and the finalize; the night closes after the last stages
    assert dag.get_task("ingest_shard").upstream_task_ids >= {"ingest_plan"}
    assert {"ingest_shard"} <= dag.get_task("ingest").upstream_task_ids
    last = {s.name for s in NIGHT} - {p for s in NIGHT for p in s.predecessors}
    assert {stage_of.get(t) for t in dag.get_task("close_night").upstream_task_ids} - {None} == last
