"""The README documents every reason code the pipeline can emit."""

from __future__ import annotations

from pathlib import Path

from transforms.core import reasons

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_reason_code_is_documented_in_the_readme():
    codes = {
        *reasons.FILE_REASONS,
        *reasons.ENCOUNTER_REASONS,
        *reasons.WARNING_REASONS,
        *reasons.FHIR_REASONS,
    }
    missing = sorted(code for code in codes if f"`{code}`" not in README)
    assert missing == []


def test_the_readme_names_the_two_quick_start_commands_that_exist():
    root = Path(__file__).parents[1]
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert f"bash {script}" in README
        assert (root / script).exists()


def test_every_command_the_readme_names_is_a_command_of_the_cli():
    from typer.testing import CliRunner

    from transforms.orchestration.cli import app

    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert {"generate", "run", "book", "verify", "demo"} <= names
    for name in ("generate", "run", "book", "verify", "demo"):
        assert f"healthbook {name}" in README
        result = CliRunner().invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output
