"""The quality stage (runner.validate_night) and the quality report (report.report_night)."""

from transforms.core.stage import Stage

_CODE = ("expectations",)

QUALITY = Stage(
    name="quality",
    upstream=("ingest",),
    run="expectations.runner:validate_night",
    code=_CODE,  # with checks.yaml, the templates and the translations
    outputs=("runs/{night}/quality.json", "quarantine/findings/night={night}/quality.parquet"),
    warm="expectations.runner:start_great_expectations",
)

REPORT = Stage(
    name="report",
    upstream=("quality", "load"),
    after=("ledger",),  # runs once the night's ledger balanced (a failed ledger stops the night)
    run="expectations.report:report_night",
    code=_CODE,
    inputs=("previous_findings", "history", "decisions", "language"),
    # not quality/index.html: every night rewrites it
    outputs=("quality/{night}", "feedback/{night}", "runs/{night}/alerts.json"),
    warm="expectations.pages:warm_up_report",
)
