"""The night's stages in order: the one registry the pipeline, the fingerprints and the DAG's test
read. Each stage is declared next to its code (its room's `__init__.py`, core/stage.py's `Stage`);
the ledger, the orchestration's own stage, is declared here beside its code (ledger.py).

Importing this module imports the rooms' packages only, never their stage modules (no pandas).
"""

from __future__ import annotations

from expectations import DATA_DOCS, FEEDBACK, QUALITY, REPORT
from transforms.core.stage import Stage
from transforms.ingest import STAGE as INGEST
from transforms.load import STAGE as LOAD
from transforms.reconcile import STAGE as RECONCILE
from transforms.snapshot import STAGE as SNAPSHOT

LEDGER = Stage(
    name="ledger",
    upstream=("ingest", "load"),
    run="transforms.orchestration.ledger:ledger_night",
    code=("transforms/orchestration/ledger.py",),
    outputs=("runs/{night}/ledger.json",),
)

# The order of a night: every stage after the stages it reads or waits for.
NIGHT: tuple[Stage, ...] = (INGEST, QUALITY, RECONCILE, DATA_DOCS, FEEDBACK, LOAD, LEDGER, REPORT, SNAPSHOT)
BY_NAME: dict[str, Stage] = {stage.name: stage for stage in NIGHT}


def stage(name: str) -> Stage:
    """The declaration of stage `name` (KeyError for an unknown stage)."""
    return BY_NAME[name]
