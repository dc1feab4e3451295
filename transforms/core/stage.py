"""The declaration of a stage of the night, written once next to the stage's code.

Each room declares its stage(s) in its package's `__init__.py` (`STAGE = Stage(...)`); the
orchestration's registry (transforms/orchestration/stages.py) lists them in the night's order.
The pipeline runs `run`, the fingerprints read `upstream`, `code`/`sql`/`data`, `inputs` and
`outputs`, and tests tie the DAG's edges to `upstream` and `after`.

This module is imported when the rooms' packages are: it imports nothing but the standard library
(no pandas, no pyarrow), so reading the declarations costs nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

# The folder holding the packages transforms/ and expectations/ (the checkout's root, or
# site-packages of an installed wheel): declared code paths are relative to it.
PROJECT_ROOT = Path(str(files("transforms"))).parent
# What every stage's code key covers besides its own paths: the core (context, warehouse, I/O,
# dataset contracts, reference data) is part of every stage.
CORE_CODE = ("transforms/core",)


@dataclass(frozen=True)
class Stage:
    """One stage of the night.

    name      the stage's name (the pipeline's, the fingerprint record's, the DAG task's)
    upstream  the stages whose outputs this one reads: their output digests are part of its key,
              and it runs after them
    run       "module:function" taking the NightContext, returning the path of the stage's manifest
              (imported on use only)
    code      folders or files (relative to the project root) of the stage's own code: with the
              core, `sql` and `data`, the stage's code key, and nothing else
    sql       folders of the stage's SQL (relative to the project root)
    data      other files the stage reads as code (models, check definitions), if not under `code`
    inputs    the names of the stage's own inputs in its key (beyond upstream outputs and code):
              transforms/orchestration/fingerprint.py computes them
    outputs   what the stage writes for the night, as paths relative to the warehouse: `{night}`
              is the night (YYYY-MM-DD), `{staged}` every staged dataset (core/datasets.py)
    after     stages that must have finished first without being read (a gate: the snapshot is
              published only once the ledger balanced); not part of the key
    warm      "module:function" with no argument that imports what the stage needs before it can
              work (templates, a library's import): `healthbook run` calls it while the earlier
              stages run (transforms/orchestration/workers.py), in this process, which the stage's
              worker forked later inherits
    early     the stage's worker is forked when the night starts and calls the warm-up there (a
              warm-up of seconds, e.g. Great Expectations' import, that would otherwise wait for
              the wave before the stage's)
    """

    name: str
    upstream: tuple[str, ...]
    run: str
    code: tuple[str, ...]
    sql: tuple[str, ...] = ()
    data: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    warm: str = ""
    early: bool = False

    @property
    def code_paths(self) -> tuple[str, ...]:
        """Every path (relative to the project root) whose files make the stage's code key."""
        return tuple(dict.fromkeys((*CORE_CODE, *self.code, *self.sql, *self.data)))

    @property
    def predecessors(self) -> tuple[str, ...]:
        """The stages that must have finished before this one (read or gate)."""
        return tuple(dict.fromkeys((*self.upstream, *self.after)))

    def output_paths(self, root: Path, night: dt.date, staged: tuple[str, ...]) -> list[Path]:
        """The declared outputs of `night` under the warehouse `root`."""
        out: list[Path] = []
        for template in self.outputs:
            datasets = staged if "{staged}" in template else ("",)
            for dataset in datasets:
                out.append(root / template.format(night=night.isoformat(), staged=dataset))
        return out


def code_location(path: str, root: Path = PROJECT_ROOT) -> Path:
    """Where a declared code path is under `root`: sql/ is top-level in a checkout and ships inside
    transforms/ in a wheel (transforms.core.resources)."""
    direct = root / path
    if path.split("/")[0] == "sql" and not direct.exists():
        return root / "transforms" / path
    return direct
