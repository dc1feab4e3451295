"""The README and docs/ stand on their own: every link resolves inside the clone, nothing points
outside it, "loaded" is defined as the ledger defines it, and the Airflow commands of the runbook
exist with the flags the README gives them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from transforms.orchestration.ledger import LOADED_MEANS

ROOT = Path(__file__).parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_markdown_link_resolves_inside_the_clone():
    broken = []
    for doc in DOCUMENTS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            resolved = (doc.parent / target).resolve()
            if not resolved.exists() or ROOT.resolve() not in resolved.parents:
                broken.append((doc.name, target))
    assert broken == []


def test_no_document_points_outside_the_clone():
    outside = [
        (doc.name, hit)
        for doc in DOCUMENTS
        for hit in re.findall(r"\.\./shared|/work/\S+|shared/spec", doc.read_text(encoding="utf-8"))
    ]
    assert outside == []


def test_the_readme_interface_documents_exist_under_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("INTERFACES.md", "XML130.md", "snapshot.md"):
        assert (ROOT / "docs" / name).is_file()
        assert f"(docs/{name})" in readme


def test_the_readme_defines_loaded_as_the_ledger_does():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert LOADED_MEANS in readme


@pytest.mark.slow
def test_the_runbooks_airflow_commands_take_the_flags_the_readme_gives(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    commands = [shlex.split(line) for line in re.findall(r"^scripts/airflow\.sh (.+)$", readme, re.M)]
    assert ["standalone"] in commands
    assert any(c[:2] == ["backfill", "create"] for c in commands)
    assert any(c[:2] == ["dags", "test"] and '{"force": true}' in c for c in commands)
    # the unpause step a backfill needs on a scheduler started otherwise
    assert "`scripts/airflow.sh dags unpause health_book_nightly`" in readme
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    helptexts: dict[tuple[str, ...], str] = {}  # one airflow start per subcommand, however often used
    for command in commands:
        if command == ["standalone"]:
            continue  # tests/test_airflow_script.py runs it
        words = [w for w in command if not w.startswith("-") and not w.startswith(("{", "2026"))]
        sub = tuple(words[:2])
        if sub not in helptexts:
            helptexts[sub] = subprocess.run(
                ["bash", str(ROOT / "scripts" / "airflow.sh"), *sub, "--help"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=300,
            ).stdout
        helptext = helptexts[sub]
        for flag in (w for w in command if w.startswith("--")):
            assert flag in helptext, (sub, flag)
