"""The snapshot stage: the analysts' de-identified DuckDB snapshot and its data dictionary."""

from transforms.core.stage import Stage

STAGE = Stage(
    name="snapshot",
    upstream=("load",),
    after=("ledger",),  # published only once the night's ledger balanced
    run="transforms.snapshot.stage:snapshot_night",
    code=("transforms/snapshot",),
    sql=("sql/snapshot",),
    inputs=("registry", "key_check", "staged", "outcomes"),
    # not snapshots/latest.json: shared by the nights, a later night's run rewrites it
    outputs=("runs/{night}/snapshot.json", "snapshots/{night}.duckdb"),
)
