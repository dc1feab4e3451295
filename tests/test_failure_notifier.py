"""A failed task mails the operators: a failing dag.test() run with HealthbookFailureNotifier as
its failure callback delivers one mail to a local SMTP sink (127.0.0.1), configured by the setting."""

from __future__ import annotations

import asyncore
import json
import smtpd
import threading
import warnings

import pytest


class Sink(smtpd.SMTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), None, decode_data=True)
        self.mails: list[tuple[str, list[str], str]] = []

    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        self.mails.append((mailfrom, rcpttos, data))


@pytest.fixture
def sink():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = Sink()
    thread = threading.Thread(target=asyncore.loop, kwargs={"timeout": 0.2}, daemon=True)
    thread.start()
    yield server
    server.close()
    thread.join(timeout=5)


FAILING_DAG = """
import datetime as dt
from airflow.sdk import dag, task
from transforms.orchestration.failure_notifier import HealthbookFailureNotifier

@dag(dag_id="healthbook_failing", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
def failing():
    @task(retries=0, on_failure_callback=[HealthbookFailureNotifier()])
    def boom():
        raise RuntimeError("the ledger does not balance")

    boom()

failing()
"""


def _failing_dag(folder, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    # dag.test() serializes the DAGs of the configured bundles: here, a bundle of this one file
    bundle = {
        "name": "notifier-test",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(folder), "refresh_interval": 0},
    }
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([bundle]))
    (folder / "failing.py").write_text(FAILING_DAG)
    return DagBag(dag_folder=str(folder)).dags["healthbook_failing"]


def test_a_failing_run_mails_the_configured_address(airflow_home, sink, monkeypatch, tmp_path):
    port = sink.socket.getsockname()[1]
    monkeypatch.setenv("HEALTHBOOK_ALERT_EMAIL", "ops@example.vn")
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT", f"smtp://127.0.0.1:{port}?disable_tls=True&disable_ssl=True&timeout=10"
    )
    run = _failing_dag(tmp_path, monkeypatch).test()
    assert run.state == "failed"
    assert len(sink.mails) == 1
    _, to, data = sink.mails[0]
    assert to == ["ops@example.vn"]
    assert "healthbook_failing.boom failed" in data


def test_without_an_address_nothing_is_sent(airflow_home, sink, monkeypatch, tmp_path):
    monkeypatch.delenv("HEALTHBOOK_ALERT_EMAIL", raising=False)
    port = sink.socket.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT", f"smtp://127.0.0.1:{port}?disable_tls=True&disable_ssl=True"
    )
    assert _failing_dag(tmp_path, monkeypatch).test().state == "failed"
    assert sink.mails == []


def test_every_task_of_the_nightly_dag_calls_the_notifier_on_failure(airflow_home):
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag

    dags = Path(__file__).parents[1] / "dags"
    dag = DagBag(dag_folder=str(dags)).dags["health_book_nightly"]
    for task in dag.tasks:
        names = [getattr(c, "__name__", "") for c in task.on_failure_callback]
        assert names == ["_record_failure", "_notify_failure"], task.task_id
