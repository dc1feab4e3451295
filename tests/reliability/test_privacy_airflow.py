"""The Airflow side of "no log names a citizen": a whole night run by `airflow dags test` (the
operator's command) writes no registry identifier, name or the pseudonym key into its console
output or into any task log file under AIRFLOW_HOME/logs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from reliability.helpers import TEST_KEY

DAGS = Path(__file__).parents[2] / "dags"


def test_no_airflow_log_of_a_full_dag_run_names_a_citizen_or_the_key(airflow_home, golden_night, tmp_path):
    warehouse = tmp_path / "warehouse"
    env = os.environ | {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "HEALTHBOOK_EXTRACTS": str(golden_night / "extracts"),
        "HEALTHBOOK_REGISTRY": str(golden_night / "registry"),
        "HEALTHBOOK_WAREHOUSE": str(warehouse),
        "HEALTHBOOK_PSEUDONYM_KEY": TEST_KEY.hex(),
    }
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow), "dags", "test", "health_book_nightly", "2026-11-26T19:30:00+00:00"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    logs = [result.stdout, result.stderr]
    logs += [p.read_text(errors="replace") for p in Path(airflow_home).rglob("*.log") if p.is_file()]
    logs += [p.read_text(errors="replace") for p in Path(airflow_home, "logs").rglob("*") if p.is_file()]
    text = "\n".join(logs)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (warehouse / "runs" / "2026-11-26" / "ledger.json").exists()  # the night really ran
    assert "ingest_shard" in text and "snapshot" in text  # the logs are the real ones

    registry = pd.read_parquet(golden_night / "registry")
    numbers = set(re.findall(r"\d+", text))
    for column in ("citizen_id", "old_id_number", "social_insurance_number"):
        assert numbers & set(registry[column].dropna()) == set(), column
    assert [n for n in registry["full_name"].dropna() if n in text] == []
    assert TEST_KEY.hex() not in text.lower()
