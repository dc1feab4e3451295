"""The serving database's password never reaches Airflow (issue #16 item 4): the DAG takes the
serving database from the Connection `healthbook_serving` (else HEALTHBOOK_SERVING_URL) inside each
task, so a password in its URL is in no XCom value, no rendered field, no task log, and no file the
pipeline writes (manifests, fingerprints, status.json, the ledger)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

DAGS = Path(__file__).parents[1] / "dags"
LOGICAL = dt.datetime(2026, 11, 26, 19, 30, tzinfo=dt.UTC)  # night 26/11


def _airflow_rows(run_id: str) -> tuple[list[dict], list[str]]:
    """The run's XCom rows and rendered fields, as stored in Airflow's metadata database."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = [
            {"task_id": x.task_id, "value": json.dumps(x.value, default=str)}
            for x in session.query(XComModel).filter(XComModel.run_id == run_id)
        ]
        rendered = [
            json.dumps(r.rendered_fields, default=str)
            for r in session.query(RenderedTaskInstanceFields).filter(
                RenderedTaskInstanceFields.run_id == run_id
            )
        ]
    return xcoms, rendered


@pytest.mark.parametrize("source", ["connection", "environment"])
def test_a_serving_password_is_in_no_xcom_rendered_field_log_or_warehouse_file(
    source, airflow_home, golden_night, tmp_path, monkeypatch, pseudonym_key, pg_url, capfd
):
    from airflow.dag_processing.dagbag import DagBag

    password = f"pw{uuid.uuid4().hex}"  # trust authentication: sent to no one, checked by no one
    url = sa.make_url(pg_url).set(password=password)
    warehouse = tmp_path / "warehouse"
    monkeypatch.setenv("HEALTHBOOK_EXTRACTS", str(golden_night / "extracts"))
    monkeypatch.setenv("HEALTHBOOK_REGISTRY", str(golden_night / "registry"))
    monkeypatch.setenv("HEALTHBOOK_WAREHOUSE", str(warehouse))
    if source == "connection":  # an Airflow Connection from its secrets backend (here: the environment)
        monkeypatch.delenv("HEALTHBOOK_SERVING_URL", raising=False)
        monkeypatch.setenv(
            "AIRFLOW_CONN_HEALTHBOOK_SERVING",
            f"postgres://{url.username}:{password}@{url.host}:{url.port}/{url.database}",
        )
    else:
        monkeypatch.delenv("AIRFLOW_CONN_HEALTHBOOK_SERVING", raising=False)
        monkeypatch.setenv("HEALTHBOOK_SERVING_URL", url.render_as_string(hide_password=False))

    dag = DagBag(dag_folder=str(DAGS)).dags["health_book_nightly"]
    run = dag.test(logical_date=LOGICAL)
    assert run.state == "success"

    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:  # the night went to PostgreSQL, not to SQLite in the warehouse
        assert conn.execute(sa.text("select count(*) from encounters")).scalar_one() > 0
    engine.dispose()
    assert not (warehouse / "serving.db").exists()

    xcoms, rendered = _airflow_rows(run.run_id)
    contexts = [json.loads(x["value"]) for x in xcoms if x["task_id"] == "night_context"]
    assert contexts and "serving_url" not in contexts[0]  # what travels names no database
    assert [x for x in xcoms if password in x["value"]] == []
    assert rendered and [r for r in rendered if password in r] == []

    captured = capfd.readouterr()
    logs = [captured.out, captured.err]
    logs += [
        p.read_text(errors="replace")
        for p in Path(airflow_home).rglob("*")
        if p.is_file() and p.suffix != ".db"
    ]
    assert "load" in "".join(logs)  # the logs are the real ones
    assert [text for text in logs if password in text] == []
    metadata = b"".join(p.read_bytes() for p in Path(airflow_home).rglob("*.db*") if p.is_file())
    assert password.encode() not in metadata  # nor anywhere else in Airflow's database

    written = [p for p in warehouse.rglob("*") if p.is_file()]
    assert any(p.name == "load.json" for p in written)
    assert [str(p) for p in written if password.encode() in p.read_bytes()] == []
    load_record = json.loads((warehouse / "runs" / "2026-11-26" / "fingerprints" / "load.json").read_text())
    assert "***" in json.dumps(load_record)  # the load's fingerprint names the database, password hidden


def test_the_serving_url_variable_of_earlier_releases_is_refused_not_silently_ignored(tmp_path):
    from transforms.orchestration.config import resolve_settings

    variables = {
        "healthbook_extracts": str(tmp_path / "extracts"),
        "healthbook_registry": str(tmp_path / "registry"),
        "healthbook_serving_url": "postgresql+psycopg://loader:secret@db/healthbook",
    }
    with pytest.raises(RuntimeError, match="Connection healthbook_serving") as refused:
        resolve_settings(variables.get)
    assert "secret" not in str(refused.value)  # the message does not repeat the password


def test_a_postgres_connection_becomes_the_psycopg_url_of_the_load():
    from airflow.sdk import Connection

    from transforms.orchestration.config import connection_url

    conn = Connection.from_uri(
        "postgres://loader:p%40ss@db-host:5433/healthbook", conn_id="healthbook_serving"
    )
    assert sa.make_url(connection_url(conn)) == sa.make_url(
        "postgresql+psycopg://loader:p%40ss@db-host:5433/healthbook"
    )
