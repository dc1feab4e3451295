"""Nightly health-book DAG: wiring only. Every task calls a stage function of transforms/.

The run scheduled at 02:30 Vietnam time (19:30 UTC) processes the night that ended then:
night D = the day before the run's logical date in Asia/Ho_Chi_Minh (a manual run may name the
night in its conf: {"night": "2026-11-26"}). A stage unchanged since it last finished is skipped
(transforms/orchestration/fingerprint.py; an unchanged ingest plans no shard); conf {"force": true} runs every
stage again. Outputs are keyed on the night, never the run id. Settings come from Airflow Variables or the environment at run time
(transforms/orchestration/config.py); nothing is read when the file is parsed. Only small dicts and paths
travel through XCom. The serving database (a URL with a password) comes from the Airflow Connection
`healthbook_serving` (else HEALTHBOOK_SERVING_URL), resolved inside each task: never through XCom.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Asset, dag, get_current_context, task

# Facility shards of the ingest: at most 200 (Airflow maps up to 1,024 tasks by default, and the
# plan's list of shard numbers stays under 1 KB of XCom).
MAX_SHARDS = 200
SNAPSHOT_ASSET = Asset(name="healthbook_snapshot", uri="file:///healthbook/snapshots/latest")
RETRIES = {"retries": 2, "retry_delay": dt.timedelta(minutes=5), "retry_exponential_backoff": True}


def _variable(name: str) -> str | None:
    from airflow.sdk import Variable

    return Variable.get(name, default=None)


def _connection(conn_id: str):
    """The Airflow Connection `conn_id`, or None when it is not defined (the environment then)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import Connection

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def _context(night_context: dict):
    """The task's NightContext: the XCom dict plus the serving database, resolved here."""
    from transforms.orchestration.config import context_from_dict

    return context_from_dict(night_context, _connection)


def _night(context) -> dt.date:
    conf = (context.get("dag_run") and context["dag_run"].conf) or {}
    if conf.get("night"):
        return dt.date.fromisoformat(conf["night"])
    # A manual run may have no logical date in Airflow 3: it then counts from when it was asked for.
    when = context.get("logical_date") or context["dag_run"].run_after
    return pendulum.instance(when).in_timezone("Asia/Ho_Chi_Minh").date() - dt.timedelta(days=1)


def _force(context) -> bool:
    conf = (context.get("dag_run") and context["dag_run"].conf) or {}
    return bool(conf.get("force", False))


def _record_failure(context) -> None:
    from transforms.orchestration.config import context_for_night
    from transforms.orchestration.pipeline import record_failed_stage

    record_failed_stage(context_for_night(_night(context), _variable), context["task_instance"].task_id)


def _notify_failure(context) -> None:
    # imported when a task fails, never when the file is parsed (no pipeline code at parse time)
    from transforms.orchestration.failure_notifier import HealthbookFailureNotifier

    HealthbookFailureNotifier()(context)


def _run_stage(name: str, night_context: dict) -> str:
    from transforms.orchestration.pipeline import run_stage

    manifest, _skipped = run_stage(_context(night_context), name, _force(get_current_context()))
    return str(manifest)


@dag(
    dag_id="health_book_nightly",
    schedule="30 19 * * *",  # 02:30 in Vietnam (UTC+7, no daylight saving)
    # Decision 31/QĐ-BYT (06/01/2026): backfills may reach back to the first night of the legal book.
    start_date=pendulum.datetime(2026, 1, 6, 19, 30, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data-engineering",
        # status.json for the pipeline, and a mail to the operators when HEALTHBOOK_ALERT_EMAIL is set
        "on_failure_callback": [_record_failure, _notify_failure],
        **RETRIES,
    },
    tags=["healthbook", "xml130", "nightly"],
    doc_md=__doc__,
)
def health_book_nightly():
    @task
    def night_context() -> dict:
        from transforms.orchestration.config import context_for_night

        # to_dict leaves the serving URL out: every task resolves it again (_context)
        return context_for_night(_night(get_current_context()), _variable).to_dict()

    @task
    def ingest_plan(ctx: dict) -> list[int]:
        from transforms.orchestration.pipeline import plan_night_ingest

        force = _force(get_current_context())
        return plan_night_ingest(_context(ctx), max_shards=MAX_SHARDS, force=force)

    @task(max_active_tis_per_dagrun=16)
    def ingest_shard(ctx: dict, shard: int) -> str:
        from transforms.orchestration.pipeline import ingest_night_shard

        return str(ingest_night_shard(_context(ctx), shard))

    # An unchanged night plans no shard: the mapped task is then skipped, and so must not skip this.
    @task(trigger_rule="none_failed")
    def ingest(ctx: dict) -> str:
        from transforms.orchestration.pipeline import finalize_night_ingest

        return str(finalize_night_ingest(_context(ctx)))

    @task
    def quality(ctx: dict, _ingested: str) -> str:
        return _run_stage("quality", ctx)

    @task
    def reconcile(ctx: dict, _ingested: str) -> str:
        return _run_stage("reconcile", ctx)

    @task
    def data_docs(ctx: dict, _checked: str) -> str:
        return _run_stage("data_docs", ctx)

    @task
    def feedback(ctx: dict, _checked: str) -> str:
        return _run_stage("feedback", ctx)

    @task
    def load(ctx: dict, _checked: str, _reconciled: str) -> str:
        return _run_stage("load", ctx)

    @task
    def ledger(ctx: dict, _loaded: str) -> str:
        return _run_stage("ledger", ctx)

    @task
    def report(ctx: dict, _ledger: str, _data_docs: str, _feedback: str) -> str:
        import logging

        from transforms.core.context import NightContext
        from transforms.orchestration.pipeline import night_alerts

        manifest = _run_stage("report", ctx)
        # silence and volume alerts: one warning each (README "Alerts" routes them to e-mail/chat)
        for alert in night_alerts(NightContext.from_dict(ctx)):
            logging.getLogger("healthbook.alerts").warning(
                "facility %s: %s (received %s, median of the same weekday %s)",
                alert["facility_code"],
                alert["kind"],
                alert["received"],
                alert["median_same_weekday"],
            )
        return manifest

    @task(outlets=[SNAPSHOT_ASSET])
    def snapshot(ctx: dict, _ledger: str) -> str:
        return _run_stage("snapshot", ctx)

    @task
    def close_night(ctx: dict, _report: str, _snapshot: str) -> None:
        from transforms.orchestration.pipeline import clear_failed_stage

        clear_failed_stage(_context(ctx))  # a failure of an earlier try is now moot

    # The edges are the stages' declarations (transforms/orchestration/stages.py: what each stage
    # reads, and the ledger as the gate of the report and the snapshot), written out because this
    # file imports no pipeline code when parsed; tests/test_dag.py ties the two together.
    ctx = night_context()
    shards = ingest_shard.partial(ctx=ctx).expand(shard=ingest_plan(ctx))
    ingested = ingest(ctx)
    shards >> ingested
    checked = quality(ctx, ingested)
    loaded = load(ctx, checked, reconcile(ctx, ingested))
    balanced = ledger(ctx, loaded)
    reported = report(ctx, balanced, data_docs(ctx, checked), feedback(ctx, checked))
    close_night(ctx, reported, snapshot(ctx, balanced))


health_book_nightly()
