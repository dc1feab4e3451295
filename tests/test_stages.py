"""The stages' declarations (transforms/core/stage.py, each room's `__init__.py`, the registry
transforms/orchestration/stages.py): one graph, outputs where the warehouse puts them, code keys
that cover a stage's own code and nothing else."""

from __future__ import annotations

import datetime as dt
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from transforms.core.datasets import STAGED_DATASETS
from transforms.core.stage import PROJECT_ROOT
from transforms.core.warehouse import Warehouse
from transforms.orchestration import fingerprint
from transforms.orchestration.pipeline import STAGES
from transforms.orchestration.stages import BY_NAME, NIGHT

ROOT = Path(__file__).parents[1]
NIGHT_DATE = dt.date(2026, 11, 26)


def ancestors(name: str) -> set[str]:
    """Every stage `name` waits for, directly or not."""
    out: set[str] = set()
    todo = list(BY_NAME[name].predecessors)
    while todo:
        current = todo.pop()
        if current not in out:
            out.add(current)
            todo.extend(BY_NAME[current].predecessors)
    return out


def read_upstream(name: str) -> set[str]:
    """Every stage whose outputs reach `name`'s key, directly or through other stages' outputs."""
    out: set[str] = set()
    todo = list(BY_NAME[name].upstream)
    while todo:
        current = todo.pop()
        if current not in out:
            out.add(current)
            todo.extend(BY_NAME[current].upstream)
    return out


def test_the_registry_is_the_pipeline_and_its_order_follows_the_graph():
    names = [s.name for s in NIGHT]
    assert len(set(names)) == len(names)
    assert list(STAGES) == names
    assert {s.name: s.upstream for s in NIGHT} == fingerprint.UPSTREAM
    for position, stage in enumerate(NIGHT):
        assert set(stage.predecessors) <= set(names[:position]), stage.name
        module, function = stage.run.split(":")
        assert callable(getattr(importlib.import_module(module), function)), stage.run


def test_reading_the_declarations_imports_no_stage_code():
    probe = (
        "import sys; import transforms.orchestration.stages; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pandas', 'pyarrow', 'numpy', 'duckdb', 'sqlalchemy', 'great_expectations', 'splink')"
        " or m.endswith(('.stage', '.runner', '.report')) and not m.startswith('transforms.core')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_declared_outputs_are_the_warehouse_paths_of_the_night():
    wh = Warehouse(Path("/wh"))
    n = NIGHT_DATE
    expected = {
        "ingest": [
            wh.manifest(n, "ingest"),
            wh.run_file(n, "received_files.parquet"),
            *(wh.staging_night(ds, n) for ds in STAGED_DATASETS),
            wh.quarantine("files", n),
            wh.quarantine("fhir", n),
            wh.quarantine("findings", n) / "ingest.parquet",
        ],
        "quality": [
            wh.manifest(n, "quality"),
            wh.quarantine("findings", n) / "quality.parquet",
            wh.verdicts(n),
        ],
        "data_docs": [wh.manifest(n, "data_docs")],
        "feedback": [
            wh.root / "feedback" / n.isoformat(),
            wh.quality / n.isoformat() / "failures",
            wh.manifest(n, "feedback"),
        ],
        "reconcile": [wh.manifest(n, "reconcile"), wh.staging_night("patient_links", n), wh.review(n)],
        "load": [wh.manifest(n, "load"), wh.outcomes(n), wh.retried(n)],
        "ledger": [wh.ledger(n)],
        "report": [wh.quality / n.isoformat(), wh.run_dir(n) / "alerts.json"],
        "snapshot": [wh.manifest(n, "snapshot"), wh.snapshot(n)],
    }
    assert {s.name: s.output_paths(wh.root, n, STAGED_DATASETS) for s in NIGHT} == expected


def test_every_declared_code_path_exists():
    for stage in NIGHT:
        for path in stage.code_paths:
            assert (PROJECT_ROOT / path).exists(), (stage.name, path)


def test_a_stage_s_code_covers_what_its_function_imports():
    """Every project module a stage's function imports (directly or not) is in its declared code,
    or in the code of a stage it reads (that stage then runs again on a change, and this one after
    it): a code change never leaves a stage that depends on it skipped."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("transforms", "expectations", cache_dir=None)

    def path_of(module: str) -> str:
        base = PROJECT_ROOT / module.replace(".", "/")
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        return path.relative_to(PROJECT_ROOT).as_posix()

    def covered(path: str, roots: tuple[str, ...]) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    for stage in NIGHT:
        module = stage.run.split(":")[0]
        roots = tuple(
            p for name in {stage.name, *read_upstream(stage.name)} for p in BY_NAME[name].code_paths
        )
        imported = {module, *graph.find_upstream_modules(module)}
        missing = sorted(p for p in map(path_of, imported) if not covered(p, roots))
        assert missing == [], f"{stage.name}: its key misses {missing}"


@pytest.fixture(scope="module")
def _copied_code(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("code")
    for folder in ("transforms", "expectations", "sql"):
        shutil.copytree(ROOT / folder, out / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return out


@pytest.fixture
def code_copy(_copied_code, monkeypatch) -> Path:
    """A copy of the project's code folders that the fingerprints read instead of the real ones."""
    monkeypatch.setattr(fingerprint, "PROJECT_ROOT", _copied_code)
    fingerprint.code_digest.cache_clear()
    yield _copied_code
    fingerprint.code_digest.cache_clear()


def _edit(root: Path, edited: str, text: str):
    """Append `text` to a copied file; the file's original bytes come back after the test."""
    path = root / edited
    original = path.read_bytes()
    path.write_bytes(original + text.encode())
    return lambda: path.write_bytes(original)


def _keys() -> dict[str, str]:
    fingerprint.code_digest.cache_clear()
    return {s.name: fingerprint.code_digest(s.name) for s in NIGHT}


@pytest.mark.parametrize(
    "edited",
    [
        "transforms/serving/pdf.py",
        "transforms/serving/verify.py",
        "transforms/orchestration/cli.py",
        "transforms/orchestration/pipeline.py",
        "transforms/synth/generate.py",
        "transforms/synth/train_linkage.py",
        "sql/analyst/top_drugs.sql",
    ],
)
def test_editing_code_no_stage_runs_changes_no_stage_s_code_key(code_copy, edited):
    before = _keys()
    restore = _edit(code_copy, edited, "\n-- an edit\n" if edited.endswith(".sql") else "\n# an edit\n")
    try:
        assert _keys() == before
    finally:
        restore()


@pytest.mark.parametrize(
    ("edited", "stages"),
    [
        ("transforms/ingest/extract.py", {"ingest"}),
        ("transforms/reconcile/linkage_model.json", {"reconcile"}),
        ("sql/reconcile/patient_links.sql", {"reconcile"}),
        ("expectations/checks.yaml", {"quality", "data_docs", "feedback", "report"}),
        ("transforms/serving/schema.py", {"load"}),
        ("sql/serving/02_encounters.sql", {"load"}),
        ("transforms/orchestration/ledger.py", {"ledger"}),
        ("sql/snapshot/encounters.sql", {"snapshot"}),
        ("transforms/core/schema.py", {s.name for s in NIGHT}),
    ],
)
def test_editing_a_stage_s_code_changes_its_key_only(code_copy, edited, stages):
    before = _keys()
    restore = _edit(code_copy, edited, "\n")
    try:
        after = _keys()
    finally:
        restore()
    assert {name for name in before if before[name] != after[name]} == stages
