"""A normal install works outside the checkout (issue #17): the wheel carries every file the runtime
reads (SQL, checks, templates, reference tables, the linkage model, the DAG file), and installed
alone into a fresh venv it runs the demo and the nightly DAG from another folder without touching
a file of the checkout (scripts/check_wheel.py; CI runs the same script from .ci/run)."""

from __future__ import annotations

import json
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_the_wheel_installed_alone_runs_the_demo_and_the_dag_outside_the_checkout(tmp_path):
    assert not tmp_path.resolve().is_relative_to(ROOT.resolve())
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_wheel.py"), "--work", str(tmp_path / "work")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["checkout_reads"] == []
    demo = result["demo"]
    assert demo["loaded"] > 0
    assert demo["received"] == demo["loaded"] + demo["quarantined"]
    assert result["dag"] == demo  # the same night through Airflow: the same ledger


def test_every_file_the_runtime_reads_is_package_data():
    """The folders read through transforms.core.resources are those pyproject.toml ships."""
    import tomllib

    from transforms.core import resources

    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    shipped = data["package-data"]
    assert "sql/**/*.sql" in shipped["transforms"] and "dags/*.py" in shipped["transforms"]
    # the checkout reaches the top-level folders through transforms/ too, as the wheel does
    assert resources.sql_path().resolve() == (ROOT / "sql").resolve()
    assert resources.dags_folder().resolve() == (ROOT / "dags").resolve()
    assert (resources.dags_folder() / "health_book_nightly.py").is_file()


def test_no_module_finds_its_data_through_its_own_file():
    """Data is found through importlib.resources (transforms/core/resources.py), never through
    `Path(__file__)`, which names the checkout only when the code runs from it."""
    offenders = [
        str(p.relative_to(ROOT))
        for room in ("transforms", "expectations", "dags")
        for p in sorted((ROOT / room).rglob("*.py"))
        if _uses_own_file(p)
    ]
    assert offenders == []


def _uses_own_file(path: Path) -> bool:
    """Whether the module's code names `__file__` (a comment or a string that mentions it, as
    expectations/gx_import.py's list of what a stand-in module lacks, is not a use)."""
    with path.open("rb") as f:
        return any(t.type == tokenize.NAME and t.string == "__file__" for t in tokenize.tokenize(f.readline))
