"""Temporary files no one can redirect (issue #16 item 11) and the warehouse's private parts
(item 12): a symlink planted at the predictable temporary name of an earlier release is never
followed, and a night run under umask 022 leaves quarantine/, review/, snapshots/, staging/,
state/ and the SQLite serving file 0700 / 0600 while the quality report and runs/ stay readable."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

NIGHT = dt.date(2026, 11, 26)
VICTIM_TEXT = "the file an attacker wants overwritten\n"


def _pdf(target: Path) -> None:
    from test_pdf import BOOK

    from transforms.serving.pdf import encounter_pdf_name, write_encounter_pdfs

    write_encounter_pdfs({**BOOK, "encounters": BOOK["encounters"][:1]}, target.parent)
    name = encounter_pdf_name(BOOK["citizen"]["citizen_id"], BOOK["encounters"][0])
    assert name == target.name


def _pdf_target(folder: Path) -> Path:
    from test_pdf import BOOK

    from transforms.serving.pdf import encounter_pdf_name

    return folder / encounter_pdf_name(BOOK["citizen"]["citizen_id"], BOOK["encounters"][0])


# writer -> (how it writes `target`, the temporary name it used before: path -> planted path)
WRITERS = {
    "ledger": (
        lambda p: __import__("transforms.orchestration.ledger", fromlist=["x"]).write_ledger(
            p, {"date": "2026-11-26"}
        ),
        lambda p: p.with_suffix(".json.tmp"),
    ),
    "json": (
        lambda p: __import__("transforms.core.safe_io", fromlist=["x"]).write_json_atomic(p, {"a": 1}),
        lambda p: p.with_name(p.name + ".tmp"),
    ),
    "load parquet": (
        lambda p: __import__("transforms.load.files", fromlist=["x"]).write_parquet_atomic(
            pd.DataFrame({"a": [1]}), p
        ),
        lambda p: p.with_name(p.name + ".tmp"),
    ),
    "arrow table": (
        lambda p: __import__("transforms.core.safe_io", fromlist=["x"]).write_table_atomic(
            p, pa.table({"a": [1]})
        ),
        lambda p: p.with_name(p.name + ".tmp"),
    ),
    "ingest manifest": (
        lambda p: __import__("transforms.ingest.stage", fromlist=["x"])._write_json(p, {"a": 1}),
        lambda p: p.with_name(f".{p.name}.tmp"),
    ),
    "pdf": (_pdf, lambda p: p.with_name(p.name + ".tmp")),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_symlink_planted_at_the_old_temporary_name_is_not_followed(tmp_path, writer):
    write, old_tmp = WRITERS[writer]
    folder = tmp_path / "out"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM_TEXT)
    target = _pdf_target(folder) if writer == "pdf" else folder / "target.json"
    planted = old_tmp(target)
    planted.symlink_to(victim)

    write(target)

    assert victim.read_text() == VICTIM_TEXT  # the write did not go through the link
    assert target.is_file() and not target.is_symlink() and target.stat().st_size > 0
    assert planted.is_symlink()  # left alone, and nothing else left behind
    assert sorted(p.name for p in folder.iterdir()) == sorted([target.name, planted.name])


def test_an_atomic_write_that_fails_leaves_neither_a_temporary_file_nor_the_target(tmp_path):
    from transforms.core.safe_io import atomic_path

    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer died")
    assert list(tmp_path.iterdir()) == []


def _modes(root: Path) -> dict[str, int]:
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder, name)
            out[str(path.relative_to(root.parent))] = stat.S_IMODE(path.lstat().st_mode)
    return out


def test_a_night_under_umask_022_keeps_the_private_parts_0700_0600_and_the_report_readable(
    tmp_path, pseudonym_key
):
    from transforms.core.context import make_context
    from transforms.orchestration.pipeline import run_night
    from transforms.synth.generate import generate_night

    generate_night(tmp_path, NIGHT, facilities=2, encounters=40, citizens=300, seed=5)
    warehouse = tmp_path / "warehouse"
    # an earlier release made the staging folder world-readable: it is tightened, not trusted
    (warehouse / "staging").mkdir(parents=True)
    os.chmod(warehouse / "staging", 0o755)
    ctx = make_context(NIGHT, tmp_path / "extracts", tmp_path / "registry", warehouse)
    old = os.umask(0o022)
    try:
        run_night(ctx)
        assert os.umask(0o022) == 0o022  # the run gave the caller's umask back
    finally:
        os.umask(old)

    for name in ("quarantine", "review", "snapshots", "staging", "state"):
        top = warehouse / name
        assert stat.S_IMODE(top.stat().st_mode) == 0o700, name
        inside = _modes(top)
        assert inside, name  # the night wrote there
        wrong = {
            p: oct(m)
            for p, m in inside.items()
            if m != (0o700 if Path(tmp_path, "warehouse", p).is_dir() else 0o600)
        }
        assert wrong == {}, name
    assert stat.S_IMODE((warehouse / "serving.db").stat().st_mode) == 0o600
    assert (warehouse / "snapshots" / f"{NIGHT}.duckdb").exists()

    # readable by decision (README "Operating"): the masked quality report and the run folder
    readable = {**_modes(warehouse / "quality"), **_modes(warehouse / "runs")}
    assert readable
    wrong = {p: oct(m) for p, m in readable.items() if m not in (0o755, 0o644)}
    assert wrong == {}
    assert json.loads((warehouse / "runs" / str(NIGHT) / "ledger.json").read_text())["totals"]["received"] > 0
