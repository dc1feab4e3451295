"""The identity review queue as a page: each queued encounter with its candidates side by side.

Reads `review/night=<D>/review_queue.parquet` (one row per queued encounter version and candidate
citizen, the hospital's record_* fields next to the registry's citizen_* fields, weight_* columns;
`deciding_field` and `margin` when the identity stage provides them) and the reviewers' decision
files `review/decisions/*.csv` (header facility_code,encounter_id,decision,citizen_id,reviewer,
decided_at; decision `link` or `reject`), to which the page links. Identities are masked as in the
rest of the report; a field whose candidates disagree is marked: it is what separates them.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pandas as pd

from expectations.masking import mask_value
from transforms.core.warehouse import Warehouse

DECISION_HEADER = ["facility_code", "encounter_id", "decision", "citizen_id", "reviewer", "decided_at"]
DECISIONS = ("link", "reject")
# (label msgid, record column, citizen column, masking column)
FIELD_PAIRS = [
    ("Name", "record_name", "citizen_name", "patient_name"),
    ("Citizen ID", "record_citizen_id", "citizen_id", "citizen_id"),
    ("Birth date", "record_birth_ymd", "citizen_birth_ymd", None),
    ("Sex", "record_sex", "citizen_sex", None),
    ("Province", "record_province_code", "citizen_province_code", None),
    ("Ward", "record_ward_code", "citizen_ward_code", None),
    (
        "Insurance / social-insurance number",
        "record_insurance_card",
        "citizen_social_insurance_number",
        "insurance_card",
    ),
]
SHOWN_ENCOUNTERS = 500


def decisions_dir(warehouse: Warehouse) -> Path:
    return warehouse.review_decisions


def read_decisions(warehouse: Warehouse) -> tuple[dict[tuple[str, str], dict], list[dict]]:
    """(facility, encounter) -> the latest valid decision; and one entry per decision file
    (name, rows, invalid rows). A row with a wrong decision word or missing key is counted as
    invalid, never guessed."""
    decided: dict[tuple[str, str], dict] = {}
    files = []
    folder = decisions_dir(warehouse)
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        if path.is_symlink() or not path.is_file():
            continue
        good = bad = 0
        with path.open(encoding="utf-8", errors="replace", newline="") as fh:
            reader = csv.DictReader(fh)
            header_ok = reader.fieldnames is not None and set(DECISION_HEADER) <= set(reader.fieldnames)
            for row in reader if header_ok else []:
                key = ((row.get("facility_code") or "").strip(), (row.get("encounter_id") or "").strip())
                if not all(key) or (row.get("decision") or "").strip() not in DECISIONS:
                    bad += 1
                    continue
                good += 1
                previous = decided.get(key)
                if previous is None or (row.get("decided_at") or "") >= (previous.get("decided_at") or ""):
                    decided[key] = {k: (row.get(k) or "").strip() for k in DECISION_HEADER}
        files.append({"name": path.name, "rows": good, "invalid": bad, "header_ok": header_ok})
    return decided, files


def _show(column: str | None, value) -> str:
    if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)):
        return ""
    text = str(value)
    return mask_value(column, text) if column else text


def review_groups(queue: pd.DataFrame, decided: dict) -> list[dict]:
    """One entry per queued encounter version, its candidates in rank order."""
    groups = []
    keys = ["facility_code", "encounter_id", "version"]
    weight_columns = [c for c in queue.columns if c.startswith("weight_")]
    for (facility, encounter, version), part in queue.groupby(keys, sort=True):
        part = part.sort_values("candidate_rank") if "candidate_rank" in part else part
        first = part.iloc[0]
        fields = []
        for label, record_col, citizen_col, mask_col in FIELD_PAIRS:
            if record_col not in part.columns and citizen_col not in part.columns:
                continue
            raw = list(part[citizen_col]) if citizen_col in part.columns else [None] * len(part)
            shown = [_show(mask_col, v) for v in raw]
            distinct = {str(v) for v in raw if v is not None and not pd.isna(v)}
            fields.append(
                {
                    "label": label,
                    "record": _show(mask_col, first.get(record_col)) if record_col in part else "",
                    "candidates": shown,
                    # compared on the raw values: two different IDs can mask alike
                    "differs": len(distinct) > 1,
                }
            )
        candidates = []
        for _, row in part.iterrows():
            candidates.append(
                {
                    "rank": None if pd.isna(row.get("candidate_rank")) else int(row.get("candidate_rank")),
                    "match_weight": None if pd.isna(row.get("match_weight")) else float(row["match_weight"]),
                    "weights": {
                        c.removeprefix("weight_"): (None if pd.isna(row[c]) else float(row[c]))
                        for c in weight_columns
                    },
                }
            )
        groups.append(
            {
                "facility_code": str(facility),
                "encounter_id": str(encounter),
                "version": int(version),
                "outcome": str(first.get("outcome", "")),
                "tier": str(first.get("tier", "")),
                "deciding_field": None
                if "deciding_field" not in part or pd.isna(first.get("deciding_field"))
                else str(first["deciding_field"]),
                "margin": None
                if "margin" not in part or pd.isna(first.get("margin"))
                else float(first["margin"]),
                "decision": decided.get((str(facility), str(encounter))),
                "fields": fields,
                "candidates": candidates,
                "weight_names": [c.removeprefix("weight_") for c in weight_columns],
            }
        )
    return groups


def review_page_context(warehouse: Warehouse, night: dt.date) -> dict:
    path = warehouse.review(night) / "review_queue.parquet"
    queue = pd.read_parquet(path) if path.exists() else pd.DataFrame()
    decided, files = read_decisions(warehouse)
    groups = review_groups(queue, decided) if len(queue) else []
    return {
        "review_groups": groups[:SHOWN_ENCOUNTERS],
        "review_total": len(groups),
        "review_has_deciding": "deciding_field" in queue.columns,
        "review_has_margin": "margin" in queue.columns,
        "decision_files": files,
        "decision_header": ",".join(DECISION_HEADER),
        "review_csv": f"../../review/night={night.isoformat()}/review_queue.csv",
        "review_csv_exists": (warehouse.review(night) / "review_queue.csv").exists(),
    }
