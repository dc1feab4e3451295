"""The quality stage (runner.validate_night), Great Expectations' validation and Data Docs
(runner.data_docs_night) and the quality report (report.report_night)."""

from transforms.core.stage import Stage

_CODE = ("expectations",)

QUALITY = Stage(
    name="quality",
    upstream=("ingest",),
    run="expectations.runner:validate_night",
    code=_CODE,  # with checks.yaml, the templates and the translations
    outputs=(
        "runs/{night}/quality.json",
        "quarantine/findings/night={night}/quality.parquet",
        "state/verdicts/night={night}",
    ),
)

# GX validates the verdicts the quality stage wrote, beside the load: the findings the load acts on
# are the vectorised rules', so GX's import, validation and Data Docs no longer hold the books back
DATA_DOCS = Stage(
    name="data_docs",
    upstream=("quality",),
    run="expectations.runner:data_docs_night",
    code=_CODE,
    # not quality/data_docs: the GX site holds every night's validations
    outputs=("runs/{night}/data_docs.json",),
    warm="expectations.runner:import_great_expectations",
    early=True,
)

REPORT = Stage(
    name="report",
    upstream=("quality", "load", "data_docs"),
    after=("ledger",),  # runs once the night's ledger balanced (a failed ledger stops the night)
    run="expectations.report:report_night",
    code=_CODE,
    inputs=("previous_findings", "history", "decisions", "language"),
    # not quality/index.html: every night rewrites it
    outputs=("quality/{night}", "feedback/{night}", "runs/{night}/alerts.json"),
    warm="expectations.pages:warm_up_report",
)
