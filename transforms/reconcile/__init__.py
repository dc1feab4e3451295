"""The reconcile stage: links each encounter's patient to the national identity registry."""

from transforms.core.stage import Stage

STAGE = Stage(
    name="reconcile",
    upstream=("ingest",),
    run="transforms.reconcile.stage:reconcile_night",
    code=("transforms/reconcile",),  # with the linkage model, linkage_model.json
    sql=("sql/reconcile",),
    inputs=("registry", "retry"),
    outputs=(
        "runs/{night}/reconcile.json",
        "staging/patient_links/night={night}",
        "review/night={night}",
    ),
)
