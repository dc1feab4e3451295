"""benchmarks/compare_night.py: the same night twice dumps identically; an altered dump is reported."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--encounters", "60", "--facilities", "3", "--citizens", "600", "--seed", "11"]

pytestmark = pytest.mark.slow


def _tool():
    spec = importlib.util.spec_from_file_location("compare_night", ROOT / "benchmarks" / "compare_night.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool():
    return _tool()


@pytest.fixture(scope="module")
def two_dumps(tool, tmp_path_factory):
    """The same tiny night run and dumped twice (each run in its own temporary folder)."""
    base = tmp_path_factory.mktemp("compare_night")
    dumps = []
    for name in ("a", "b"):
        assert tool.main(["run", "--out", str(base / name), "--tmp", str(base), *SMALL]) == 0
        dumps.append(base / name)
    return dumps


def test_same_night_dumps_identically(tool, two_dumps, capsys):
    a, b = two_dumps
    manifest = json.loads((a / "manifest.json").read_text())
    entries = manifest["entries"]
    # the three things issue #17 names are all there, with rows
    assert entries["serving/encounters.csv"]["rows"] > 0
    assert entries["snapshot/encounters.csv"]["rows"] > 0
    assert "warehouse/runs/2026-11-26/ledger.json" in entries
    assert entries["warehouse/quarantine/findings/night=2026-11-26/quality.parquet.csv"]["rows"] > 0
    # volatile values are normalized out, not kept: no temporary path, no stage timing
    ledger_side = (a / "warehouse/runs/2026-11-26/load.json").read_text()
    assert "<WORK>" in ledger_side and str(a.parent) not in ledger_side
    assert '"seconds": "<normalized>"' in (a / "warehouse/runs/2026-11-26/reconcile.json").read_text()

    assert tool.main(["diff", str(a), str(b)]) == 0
    assert "0 differing" in capsys.readouterr().out


def test_altered_dump_is_reported(tool, two_dumps, tmp_path, capsys):
    a, b = two_dumps
    altered = tmp_path / "altered"
    shutil.copytree(b, altered)
    table = altered / "serving" / "encounters.csv"
    lines = table.read_text(encoding="utf-8").splitlines(keepends=True)
    table.write_text("".join(lines[:-1]), encoding="utf-8")  # one encounter fewer
    ledger = altered / "warehouse/runs/2026-11-26/ledger.json"
    ledger.write_text(ledger.read_text().replace('"date": "2026-11-26"', '"date": "2026-11-27"'))

    assert tool.main(["diff", str(a), str(altered)]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS: serving/encounters.csv" in out
    assert f"rows {len(lines) - 1} -> {len(lines) - 2}" in out
    assert "rows only in 1: 1; only in 2: 0" in out
    assert "DIFFERS: warehouse/runs/2026-11-26/ledger.json" in out
    assert "2 differing" in out


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["transforms/cli.py"], "transforms.cli"),  # before issue #17
        (["transforms/cli.py", "transforms/orchestration/cli.py"], "transforms.orchestration.cli"),
        (["transforms/orchestration/cli.py"], "transforms.orchestration.cli"),  # after
    ],
)
def test_cli_module_of_either_layout(tool, tmp_path, files, expected):
    """The CLI module is looked up in the checkout named, new layout first, never lent by another
    checkout's editable install in the same venv."""
    for name in files:
        for folder in Path(name).parents:
            if folder != Path("."):
                (tmp_path / folder).mkdir(parents=True, exist_ok=True)
                (tmp_path / folder / "__init__.py").touch()
        (tmp_path / name).write_text("")
    assert tool.resolve_cli(sys.executable, tmp_path) == expected
