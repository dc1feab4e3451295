"""Mail on a failed task of the nightly DAG (Airflow 3's notifier interface).

Configured at run time, never at parse time: the address from the Airflow Variable
`healthbook_alert_email` or the environment HEALTHBOOK_ALERT_EMAIL (comma-separated for several);
the SMTP server from the Airflow Connection named by `healthbook_smtp_conn_id` /
HEALTHBOOK_SMTP_CONN_ID (default `smtp_default`, e.g. AIRFLOW_CONN_SMTP_DEFAULT=
'smtp://mail.example:25?disable_tls=True&disable_ssl=True&from_email=healthbook@example'). Without an
address the notifier does nothing: the failure is still recorded in runs/<D>/status.json.
"""

from __future__ import annotations

import os

from airflow.sdk import BaseNotifier


def _setting(variable: str, env: str, default: str | None = None) -> str | None:
    try:
        from airflow.sdk import Variable

        value = Variable.get(variable, default=None)
    except Exception:  # no metadata database or API server reachable: the environment still counts
        value = None
    return value or os.environ.get(env) or default


class HealthbookFailureNotifier(BaseNotifier):
    """Sends one mail per failed task instance: DAG, task, try, run, night's log URL."""

    template_fields = ()

    def notify(self, context) -> None:
        to = _setting("healthbook_alert_email", "HEALTHBOOK_ALERT_EMAIL")
        if not to:
            return
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        ti = context["task_instance"]
        run = context.get("dag_run")
        subject = f"[healthbook] {ti.dag_id}.{ti.task_id} failed ({getattr(run, 'run_id', '?')})"
        body = (
            f"<p>Task <b>{ti.task_id}</b> of DAG <b>{ti.dag_id}</b> failed on try {ti.try_number}.</p>"
            f"<p>Run: {getattr(run, 'run_id', '?')}<br>Error: {context.get('exception')!s:.500}</p>"
            "<p>The failed stage is also recorded in runs/&lt;night&gt;/status.json.</p>"
        )
        SmtpNotifier(
            to=[a.strip() for a in to.split(",") if a.strip()],
            from_email=_setting("healthbook_alert_from", "HEALTHBOOK_ALERT_FROM", "healthbook@localhost"),
            subject=subject,
            html_content=body,
            smtp_conn_id=_setting("healthbook_smtp_conn_id", "HEALTHBOOK_SMTP_CONN_ID", "smtp_default"),
        ).notify(context)
