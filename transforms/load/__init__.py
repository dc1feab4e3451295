"""The load stage: assembles complete encounters and writes them into the serving database."""

from transforms.core.stage import Stage

STAGE = Stage(
    name="load",
    upstream=("ingest", "quality", "reconcile"),
    run="transforms.load.stage:load_night",
    # the serving code the load writes with (its tables, the PostgreSQL COPY writer), not the
    # serving code that reads the database (book, PDF, verify)
    code=(
        "transforms/load",
        "transforms/serving/__init__.py",
        "transforms/serving/schema.py",
        "transforms/serving/pg_copy.py",
        "transforms/serving/db.py",
        "transforms/serving/writer.py",
        "transforms/serving/migrations",
    ),
    sql=("sql/serving",),
    inputs=("registry", "serving"),  # and the setting load.grace_nights (core/settings.py OUTPUT_SETTINGS)
    outputs=("runs/{night}/load.json", "runs/{night}/outcomes.parquet", "runs/{night}/retried.parquet"),
)
