"""Reviewers' decisions (README "Review decisions"): the small CSV files of review/decisions/,
read as hostile text, kept in the warehouse so they bind every later night, and the night's
record of what it did with each one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from transforms.core import parquet_io

# A reviewer's decision file: <warehouse>/review/decisions/*.csv with this header (README
# "Review decisions"); decision is `link` (citizen_id required) or `reject`.
DECISION_COLUMNS = ("facility_code", "encounter_id", "decision", "citizen_id", "reviewer", "decided_at")


def decisions_folder(warehouse) -> Path:
    return warehouse.review_decisions


def decisions_state_path(warehouse) -> Path:
    """Every valid decision ever read, kept in the warehouse even if its CSV is removed."""
    return warehouse.state / "review_decisions.parquet"


def empty_decisions() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="str") for c in DECISION_COLUMNS})
    frame["decided_at"] = pd.Series(dtype="datetime64[us]")
    return frame


def read_review_decisions(warehouse) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(valid, invalid) reviewer decisions: the CSV files of review/decisions/ and the decisions
    kept from earlier nights. Every row is hostile text: a row is valid when its decision is
    `link` with a 12-digit citizen ID or `reject`, and it names the facility, the encounter, the
    reviewer and an ISO date-time. Invalid rows are returned with a `problem` (never dropped
    silently: the night's record lists them). Valid: the newest decision per encounter."""
    rows, invalid = [], []
    folder = decisions_folder(warehouse)
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        frame.columns = [str(c).strip() for c in frame.columns]
        if set(DECISION_COLUMNS) - set(frame.columns):
            invalid.append(pd.DataFrame({"source_file": [path.name], "problem": ["bad_header"]}))
            continue
        frame = frame[list(DECISION_COLUMNS)].apply(lambda c: c.str.strip())
        frame["source_file"] = path.name
        frame["decision"] = frame["decision"].str.lower()
        decided_at = pd.to_datetime(frame["decided_at"], errors="coerce", format="ISO8601", utc=True)
        problem = pd.Series(None, index=frame.index, dtype="object")
        checks = [
            (frame["facility_code"].eq("") | frame["encounter_id"].eq(""), "missing_encounter"),
            (~frame["decision"].isin(["link", "reject"]), "unknown_decision"),
            (
                frame["decision"].eq("link") & ~frame["citizen_id"].str.fullmatch(r"[0-9]{12}"),
                "invalid_citizen_id",
            ),
            (frame["reviewer"].eq(""), "missing_reviewer"),
            (decided_at.isna(), "invalid_decided_at"),
        ]
        for failed, name in reversed(checks):  # the first failing check names the problem
            problem[failed] = name
        frame["decided_at"] = decided_at.dt.tz_localize(None).astype("datetime64[us]")
        frame.loc[frame["decision"].eq("reject"), "citizen_id"] = None
        invalid.append(frame[problem.notna()].assign(problem=problem[problem.notna()]))
        rows.append(frame[problem.isna()][list(DECISION_COLUMNS)])
    state = decisions_state_path(warehouse)
    if state.exists():
        rows.append(pd.read_parquet(state)[list(DECISION_COLUMNS)])
    valid = pd.concat([empty_decisions(), *rows], ignore_index=True) if rows else empty_decisions()
    valid["decided_at"] = valid["decided_at"].astype("datetime64[us]")
    valid = valid.drop_duplicates().sort_values(["decided_at", "reviewer"], kind="stable")
    invalid_frame = pd.concat(invalid, ignore_index=True) if invalid else pd.DataFrame(columns=["problem"])
    return valid.reset_index(drop=True), invalid_frame


def newest_decisions(valid: pd.DataFrame) -> pd.DataFrame:
    """The decision in force for each encounter: the newest (a reviewer may change their mind)."""
    return valid.drop_duplicates(["facility_code", "encounter_id"], keep="last").reset_index(drop=True)


def record_decisions(
    con: duckdb.DuckDBPyConnection,
    warehouse,
    night,
    decisions: pd.DataFrame,
    in_force: pd.DataFrame,
    invalid: pd.DataFrame,
) -> dict[str, Any]:
    """Keep every valid decision in the warehouse (state/review_decisions.parquet, so a decision
    outlives its CSV file and binds every later night), write what the night did with each one
    (runs/<D>/review_decisions.parquet: applied, waiting, citizen_not_in_registry, superseded,
    or the problem of an invalid row) and return the counts for the manifest."""
    state = decisions_state_path(warehouse)
    state.parent.mkdir(parents=True, exist_ok=True)
    parquet_io.write_table(pa.Table.from_pandas(decisions, preserve_index=False), state)
    applied = con.execute(
        "select facility_code, encounter_id, count(*) from patient_links where tier = 'reviewer' group by all"
    ).fetchall()
    applied_keys = {(f, e) for f, e, _ in applied}
    (versions,) = con.execute("select count(*) from patient_links where tier = 'reviewer'").fetchall()[0]
    known = con.execute(
        "select citizen_id from registry_identities semi join review_decisions using (citizen_id)"
    ).fetchall()
    known_ids = {c for (c,) in known}
    newest = {
        (r.facility_code, r.encounter_id): (r.decided_at, r.reviewer, r.decision)
        for r in in_force.itertuples(index=False)
    }
    status = []
    for r in decisions.itertuples(index=False):
        key = (r.facility_code, r.encounter_id)
        if newest.get(key) != (r.decided_at, r.reviewer, r.decision):
            status.append("superseded")
        elif key in applied_keys:
            status.append("applied")
        elif r.decision == "link" and r.citizen_id not in known_ids:
            status.append("citizen_not_in_registry")
        else:
            status.append("waiting")  # the encounter was not reconciled tonight
    record = decisions.assign(status=status)
    if len(invalid):
        record = pd.concat([record, invalid.rename(columns={"problem": "status"})], ignore_index=True)
    record = record.reindex(columns=[*DECISION_COLUMNS, "status"]).astype({"decided_at": "datetime64[us]"})
    record = record.astype({c: "str" for c in DECISION_COLUMNS if c != "decided_at"}).replace(
        {"None": None, "nan": None}
    )
    parquet_io.write_table(
        pa.Table.from_pandas(record, preserve_index=False),
        warehouse.run_file(night, "review_decisions.parquet"),
    )
    return {
        "read": len(decisions) + len(invalid),
        "versions_decided": int(versions),
        "status": {k: int(v) for k, v in record["status"].value_counts().sort_index().items()},
    }
