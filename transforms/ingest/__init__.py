"""The ingest stage: discovers the night's XML 130 and FHIR files, parses and normalizes them into staged Parquet."""

from transforms.core.stage import Stage

STAGE = Stage(
    name="ingest",
    upstream=(),
    run="transforms.ingest.stage:ingest_night",
    code=("transforms/ingest",),
    inputs=("extracts", "earlier_versions"),
    outputs=(
        "runs/{night}/ingest.json",
        "runs/{night}/received_files.parquet",
        "staging/{staged}/night={night}",
        "quarantine/files/night={night}",
        "quarantine/fhir/night={night}",
        "quarantine/findings/night={night}/ingest.parquet",
    ),
)
