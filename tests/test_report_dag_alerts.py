"""The DAG's report task logs a warning for each silence or volume alert (README "Alerts")."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

from transforms.synth.report_history import synthesise

DAGS = Path(__file__).parents[1] / "dags"
LOGICAL = dt.datetime(2026, 11, 26, 19, 30, tzinfo=dt.UTC)  # night 2026-11-26
NIGHT = dt.date(2026, 11, 26)
SILENT = "01999"  # sent every night of the last 4 weeks, nothing tonight


def test_the_report_task_logs_a_warning_per_alert(
    airflow_home, golden_night, tmp_path, monkeypatch, pseudonym_key, caplog, capsys
):
    from airflow.dag_processing.dagbag import DagBag

    from transforms.core.warehouse import Warehouse

    warehouse = tmp_path / "warehouse"
    monkeypatch.setenv("HEALTHBOOK_EXTRACTS", str(golden_night / "extracts"))
    monkeypatch.setenv("HEALTHBOOK_REGISTRY", str(golden_night / "registry"))
    monkeypatch.setenv("HEALTHBOOK_WAREHOUSE", str(warehouse))
    # the 28 nights before: only SILENT sent (the golden night's facilities have no history: no alert)
    synthesise(Warehouse(warehouse), NIGHT - dt.timedelta(days=1), 28, [SILENT])
    dag = DagBag(dag_folder=str(DAGS)).dags["health_book_nightly"]
    with caplog.at_level(logging.WARNING, logger="healthbook.alerts"):
        run = dag.test(logical_date=LOGICAL)
    assert run.state == "success"
    alerts = json.loads((warehouse / "runs" / NIGHT.isoformat() / "alerts.json").read_text())["alerts"]
    assert [(a["facility_code"], a["kind"]) for a in alerts] == [(SILENT, "silent")]
    logged = caplog.text + capsys.readouterr().out
    assert f"facility {SILENT}: silent" in logged
