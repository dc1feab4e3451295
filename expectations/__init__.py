"""The quality stage (runner.validate_night), Great Expectations' validation and Data Docs
(runner.data_docs_night), the hospitals' feedback files and the failing rows' CSVs
(feedback.feedback_night) and the quality report (report.report_night)."""

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

# The night's findings written out for people (the hospitals' feedback files, the failing rows'
# CSVs the report links to): they need the findings only, so they are written beside the load; at
# national scale (a million failing rows) they were most of the report's time.
FEEDBACK = Stage(
    name="feedback",
    upstream=("ingest", "quality"),
    run="expectations.feedback:feedback_night",
    code=_CODE,
    outputs=("feedback/{night}", "quality/{night}/failures", "runs/{night}/feedback.json"),
    warm="expectations.feedback:warm_up_feedback",
)

REPORT = Stage(
    name="report",
    upstream=("quality", "load", "data_docs", "feedback"),
    after=("ledger",),  # runs once the night's ledger balanced (a failed ledger stops the night)
    run="expectations.report:report_night",
    code=_CODE,
    inputs=("previous_findings", "history", "decisions", "language"),
    # not quality/index.html: every night rewrites it; quality/{night} holds the feedback stage's
    # failures/ (written before the report starts, so listed the same at its end)
    outputs=("quality/{night}", "runs/{night}/alerts.json"),
    warm="expectations.pages:warm_up_report",
)
