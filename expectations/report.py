"""The nightly quality report quality officers read, in Vietnamese (English by a setting).

Static files under `quality/`, built for 13,000 facilities (layout in expectations/README.md):
- `<D>/index.html` the national page: silence and volume alerts first, totals, 30-night trends,
  a heat map of checks by province, the provinces, a facility search, the category x status matrix
  (OHDSI DQD style), every check with its explanation, fix and a CSV of ALL its failing rows, the
  failures new, persisting and resolved against the previous night; `index.html` = the latest night;
- `<D>/province/<PP>.html` one page per province: its facilities, sortable and searchable;
- `<D>/facility/<code>.html` one page per facility: its last 30 nights, its rank in its province,
  its charts, tonight's failures with how to fix them, links to its feedback files;
- `<D>/review.html` the identity review queue side by side.
Also `feedback/<D>/<facility>.{xlsx,csv,json}` (expectations/feedback.py) and `runs/<D>/alerts.json`.
Identities are masked everywhere. Pure functions build the pages' data from frames;
`build_report` does the reading and writing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from pathlib import Path

import pandas as pd

from expectations import history
from expectations.checks import load_checks
from expectations.feedback import (
    CSV_COLUMNS,
    names_a_file,
    night_findings,
    read_night_outputs,
    write_facilities_feedback,
    write_night_outputs,
)
from expectations.i18n import texts
from expectations.masking import mask_findings
from expectations.row_checks import VERSION_KEY
from transforms.core.warehouse import Warehouse

log = logging.getLogger(__name__)

CATEGORIES = ("conformance", "completeness", "plausibility", "integrity")
STATUSES = ("passed", "failed", "not_applicable")
# a failure "is the same" across nights when it hits the same encounter, row kind and check;
# the version is left out on purpose: a re-send that still fails is a persisting failure
FAILURE_KEY = ["facility_code", "encounter_id", "dataset", "check_id", "column"]
_NIGHT_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# --- pure parts ---------------------------------------------------------------------------------------


def check_matrix(checks: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Category -> {passed, failed, not_applicable}: one count per check (over its datasets).

    A check failed when it failed on any dataset, passed when it was evaluated somewhere and failed
    nowhere, and is not applicable when no dataset had a row in its scope tonight (errors count as
    failed: a check that could not run did not pass).
    """
    matrix = {cat: dict.fromkeys(STATUSES, 0) for cat in CATEGORIES}
    for (category, _), part in checks.groupby(["category", "check_id"]):
        statuses = set(part["status"])
        if statuses & {"failed", "error"}:
            status = "failed"
        elif "passed" in statuses:
            status = "passed"
        else:
            status = "not_applicable"
        matrix[category][status] += 1
    return matrix


def facility_scorecard(
    received: pd.DataFrame, findings: pd.DataFrame, outcomes: pd.DataFrame | None, check_order: list[str]
) -> pd.DataFrame:
    """One row per facility: received, loaded, quarantined (total and by reason), warning rate.

    `received`: the night's encounter versions (facility_code, encounter_id, version).
    `findings`: ingest and quality findings of the night. `outcomes`: the load stage's outcomes,
    or None before load ran; then "loaded" means "passes ingest and quality" and a version's
    primary reason is its ingest reason, else its first blocking check in configuration order.
    """
    received = received[VERSION_KEY].drop_duplicates()
    if outcomes is not None:
        decided = outcomes[VERSION_KEY + ["outcome", "reason"]]
        # "loaded" as the ledger counts it (transforms.orchestration.ledger.LOADED_MEANS): superseded versions too
        loaded = decided[decided["outcome"].isin(["loaded", "superseded"])].groupby("facility_code").size()
    else:
        blocking = findings[findings["severity"] == "blocking"].copy()
        rank = {c: i for i, c in enumerate(check_order)}
        blocking["_rank"] = [
            (-1 if s == "ingest" else rank.get(c, len(rank)))
            for s, c in zip(blocking["stage"], blocking["check_id"], strict=True)
        ]
        primary = blocking.sort_values("_rank", kind="stable").drop_duplicates(VERSION_KEY)[
            VERSION_KEY + ["reason"]
        ]
        # only the quarantined versions are listed (few); every other received version loads
        decided = primary.merge(received, on=VERSION_KEY).assign(outcome="quarantined")
        loaded = (
            received.groupby("facility_code")
            .size()
            .sub(decided.groupby("facility_code").size(), fill_value=0)
        )
    received_by_facility = received.groupby("facility_code").size()
    quarantined = decided[decided["outcome"] == "quarantined"]
    superseded = decided[decided["outcome"] == "superseded"].groupby("facility_code").size()
    warned = (
        findings[findings["severity"] == "warning"][VERSION_KEY]
        .drop_duplicates()
        .merge(received, on=VERSION_KEY)
        .groupby("facility_code")
        .size()
    )
    rows = []
    for facility in sorted(set(received["facility_code"].dropna()) | set(decided["facility_code"].dropna())):
        got = int(received_by_facility.get(facility, 0))
        mine = quarantined[quarantined["facility_code"] == facility]
        by_reason = mine.groupby("reason").size().sort_values(ascending=False)
        rows.append(
            {
                "facility_code": facility,
                "received": got,
                "loaded": int(loaded.get(facility, 0)),
                "quarantined": len(mine),
                "superseded": int(superseded.get(facility, 0)),
                "quarantined_by_reason": {str(k): int(v) for k, v in by_reason.items()},
                "warning_rate": int(warned.get(facility, 0)) / got if got else 0.0,
            }
        )
    return pd.DataFrame(rows)


def compare_nights(
    tonight: pd.DataFrame, previous: pd.DataFrame | None, received: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Failures new tonight, persisting from the previous night, and resolved since.

    Resolved needs evidence: the previous failure's encounter was received again tonight and no
    longer fails (an encounter that was not re-sent is not "resolved", it is simply not re-checked).
    """
    now = tonight.drop_duplicates(FAILURE_KEY)
    if previous is None or previous.empty:
        return {"new": now, "persisting": now.iloc[0:0], "resolved": now.iloc[0:0]}
    before = previous.drop_duplicates(FAILURE_KEY)
    flagged = now.merge(before[FAILURE_KEY], on=FAILURE_KEY, how="left", indicator=True)
    new = now[(flagged["_merge"] == "left_only").to_numpy()]
    persisting = now[(flagged["_merge"] == "both").to_numpy()]
    resent = received[["facility_code", "encounter_id"]].drop_duplicates()
    gone = before.merge(now[FAILURE_KEY], on=FAILURE_KEY, how="left", indicator=True)
    gone = before[(gone["_merge"] == "left_only").to_numpy()]
    resolved = gone.merge(resent, on=["facility_code", "encounter_id"])
    return {"new": new, "persisting": persisting, "resolved": resolved}


def check_deltas(tonight: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """Per (facility, check): failing rows the previous night and tonight, and the trend."""
    keys = ["facility_code", "check_id"]

    def count(f, name):
        if f is None or f.empty:
            return pd.DataFrame(columns=[*keys, name])
        return f.groupby(keys).size().rename(name).reset_index()

    both = count(previous, "previous").merge(count(tonight, "tonight"), on=keys, how="outer")
    both[["previous", "tonight"]] = both[["previous", "tonight"]].fillna(0).astype("int64")
    both["trend"] = [
        "new"
        if p == 0
        else ("resolved" if t == 0 else ("worse" if t > p else ("better" if t < p else "same")))
        for p, t in zip(both["previous"], both["tonight"], strict=True)
    ]
    return both.sort_values(["facility_code", "check_id"]).reset_index(drop=True)


# --- reading and writing -------------------------------------------------------------------------------


def _read_parquet(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.exists() else None


def previous_findings_night(warehouse: Warehouse, night: dt.date) -> dt.date | None:
    """The latest night before `night` that has quality findings."""
    root = warehouse.quarantine_root("findings")
    nights = []
    for folder in root.glob("night=*"):
        day = dt.date.fromisoformat(folder.name.removeprefix("night="))
        if day < night and (folder / "quality.parquet").exists():
            nights.append(day)
    return max(nights) if nights else None


def report_nights(warehouse: Warehouse) -> list[dt.date]:
    """Every night that has a report page, newest first."""
    root = warehouse.quality
    if not root.exists():
        return []
    days = [
        dt.date.fromisoformat(p.name)
        for p in root.iterdir()
        if _NIGHT_DIR.match(p.name) and (p / "index.html").exists()
    ]
    return sorted(days, reverse=True)


def _received(warehouse: Warehouse, night: dt.date) -> pd.DataFrame:
    from transforms.core.parquet_io import read_staged

    return read_staged(warehouse, "encounters", night, columns=VERSION_KEY)


def _records(frame: pd.DataFrame, limit: int | None = None) -> list[dict]:
    part = frame if limit is None else frame.head(limit)
    return (
        mask_findings(part).astype(object).where(part.notna(), None).to_dict("records") if len(part) else []
    )


def _ledger_tonight(ledger: dict | None, scorecard: pd.DataFrame, night: dt.date):
    """(volumes, reasons) of tonight: the ledger's when load has run, else the scorecard's."""
    if ledger is not None:
        return history.ledger_frames(ledger, night)
    volumes = pd.DataFrame(
        {
            "night": night,
            "facility_code": scorecard.get("facility_code", pd.Series(dtype=str)),
            "received": scorecard.get("received", pd.Series(dtype="int64")),
            "loaded": scorecard.get("loaded", pd.Series(dtype="int64")),
            "quarantined": scorecard.get("quarantined", pd.Series(dtype="int64")),
        }
    )
    reasons = [
        {"night": night, "facility_code": row["facility_code"], "reason": r, "n": n}
        for row in scorecard.to_dict("records")
        for r, n in row["quarantined_by_reason"].items()
    ]
    return volumes, pd.DataFrame(reasons, columns=["night", "facility_code", "reason", "n"])


def _waiting(warehouse: Warehouse) -> pd.DataFrame:
    """Versions per facility kept in state/pending.parquet for a later night (after tonight's load)."""
    path = warehouse.pending
    if not path.exists():
        return pd.DataFrame(columns=["facility_code", "waiting"])
    pending = pd.read_parquet(path, columns=["facility_code"])
    return pending.groupby("facility_code").size().rename("waiting").reset_index()


def _checks_table(checks: pd.DataFrame, config, t) -> list[dict]:
    rows = []
    for c in checks.to_dict("records"):
        check = config.checks.get(c["check_id"])
        description = check.description if check else ""
        rows.append(
            {
                **c,
                "name": t.check(c["check_id"], "name", description),
                "explain": t.check(c["check_id"], "explain", description),
                "fix": t.check(c["check_id"], "fix", ""),
            }
        )
    return rows


def report_night(ctx) -> Path:
    """The report stage (transforms/orchestration/stages.py): rebuild the night's report once its
    outcomes are known; returns `quality/index.html`. `ctx` is the night's NightContext."""
    return build_report(ctx.warehouse, ctx.night, language=ctx.settings.quality.report_language)


def with_gx_errors(checks: pd.DataFrame, data_docs_manifest: Path) -> pd.DataFrame:
    """The quality manifest's checks with status "error" where Great Expectations could not
    validate a check's verdicts (the data_docs stage's manifest lists them; absent: none)."""
    if not data_docs_manifest.exists() or checks.empty:
        return checks
    errors = json.loads(data_docs_manifest.read_text()).get("errors") or []
    if errors:
        log.error("checks Great Expectations could not validate: %s", errors)
    for e in errors:
        checks.loc[(checks["check_id"] == e["check_id"]) & (checks["dataset"] == e["dataset"]), "status"] = (
            "error"
        )
    return checks


def build_report(
    warehouse: Warehouse,
    night: dt.date,
    language: str | None = None,
    only_facilities: tuple[str, ...] | None = None,
) -> Path:
    """Write the night's pages, charts and alerts; returns `quality/index.html`.

    The feedback files and the failing rows' CSVs are the feedback stage's (expectations/feedback.py,
    beside the load): the report links to what it wrote, and writes them itself only when the
    stage has not run for the night (a report built on its own), or the feedback files of a
    facility of the ledger the stage did not name.

    `only_facilities`: build the pages and charts (and the feedback files, when the report writes
    them) of these facilities only (None: every facility; () : none, for example to rebuild and
    measure the national and province pages alone).
    """
    t = texts(language)
    config = load_checks()
    descriptions = {c.id: c.description for c in config.checks.values()}
    manifest_path = warehouse.manifest(night, "quality")
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"checks": []}
    checks = pd.DataFrame(manifest["checks"])
    if checks.empty:
        checks = pd.DataFrame(
            columns=[
                "check_id",
                "dataset",
                "category",
                "severity",
                "status",
                "failed_rows",
                "failed_encounters",
                "failure_rate",
                "threshold",
                "evaluated",
            ]
        )
    checks = with_gx_errors(checks, warehouse.manifest(night, "data_docs"))
    all_findings, quality = night_findings(warehouse, night)
    outcomes = _read_parquet(warehouse.outcomes(night))
    received = _received(warehouse, night)
    scorecard = facility_scorecard(received, all_findings, outcomes, list(config.checks))

    previous_night = previous_findings_night(warehouse, night)
    previous = (
        _read_parquet(warehouse.quarantine("findings", previous_night) / "quality.parquet")
        if previous_night
        else None
    )
    delta = compare_nights(quality, previous, received)
    trends = check_deltas(quality, previous)

    # --- tonight per facility, the 30 nights, ranks, alerts --------------------------------------
    ledger = history.read_ledger(warehouse, night)
    tonight_volumes, tonight_reasons = _ledger_tonight(ledger, scorecard, night)
    waiting = _waiting(warehouse)
    tonight_volumes = tonight_volumes.merge(waiting, on="facility_code", how="left")
    tonight_volumes["waiting"] = tonight_volumes["waiting"].fillna(0).astype("int64")
    finding_columns = [*history.FINDING_KEY, "check_id", "severity"]
    past = history.load_history(
        warehouse,
        night,
        (tonight_volumes, tonight_reasons),
        tonight_findings=all_findings[finding_columns] if len(all_findings) else None,
    )
    alerts = history.volume_alerts(past, night)
    history.write_alerts(warehouse, night, alerts)

    data = history.data_dir(warehouse, night)
    data.mkdir(parents=True, exist_ok=True)
    tonight = past.volumes[past.volumes["night"] == night]
    tonight[["facility_code", "received", "loaded", "quarantined", "warned", "waiting"]].to_parquet(
        data / "facilities.parquet", index=False
    )

    # --- feedback files and the failing rows' CSVs (the feedback stage's, beside the load) ---------
    outputs = read_night_outputs(warehouse, night)
    facilities = sorted(tonight["facility_code"])
    if outputs is None:  # the report built on its own (no feedback stage ran for the night)
        outputs = write_night_outputs(warehouse, night, all_findings, quality, facilities, only_facilities)
    elif missing := [f for f in facilities if f not in outputs["feedback_rows"] and names_a_file(f)]:
        # a facility of the ledger the ingest did not name: it gets its files all the same
        outputs["feedback_rows"].update(write_facilities_feedback(warehouse, night, all_findings, missing))
    written, csv_links = outputs["feedback_rows"], outputs["failures"]

    context = {
        "night": night.isoformat(),
        "language": t.language,
        "previous_night": previous_night.isoformat() if previous_night else None,
        "checks_version": manifest.get("checks_version", config.version),
        "matrix": check_matrix(checks),
        "categories": CATEGORIES,
        "statuses": STATUSES,
        "checks": _checks_table(checks, config, t),
        "csv_links": csv_links,
        "scorecard_source": "ledger"
        if ledger is not None
        else ("outcomes" if outcomes is not None else "quality"),
        "delta_counts": {k: len(v) for k, v in delta.items()},
        "delta": {
            k: _records(v[CSV_COLUMNS] if set(CSV_COLUMNS) <= set(v.columns) else v, 200)
            for k, v in delta.items()
        },
        "late_tables": late_tables_counts(warehouse, night),
        "totals": {
            "findings": len(quality),
            "blocking": int((quality["severity"] == "blocking").sum()) if len(quality) else 0,
            "warning": int((quality["severity"] == "warning").sum()) if len(quality) else 0,
            "received": int(tonight["received"].sum()),
            "loaded": int(tonight["loaded"].sum()),
            "quarantined": int(tonight["quarantined"].sum()),
            "waiting": int(tonight["waiting"].sum()),
            "facilities": int((tonight["received"] > 0).sum()),
        },
        "alerts": alerts,
        "feedback_rows": sum(written.values()),
    }
    from expectations import pages

    pages.write_night(warehouse, night, t, context, past, trends, all_findings, descriptions, only_facilities)
    return warehouse.quality / "index.html"


def late_tables_counts(warehouse: Warehouse, night: dt.date) -> dict | None:
    """Stays waiting for XML7/XML8 and stays published marked incomplete tonight (issue #15), from
    the load manifest; None before the load ran."""
    path = warehouse.manifest(night, "load")
    if not path.exists():
        return None
    figures = json.loads(path.read_text()).get("late_tables") or {}
    return {
        "grace_nights": figures.get("grace_nights"),
        "waiting": int(figures.get("waiting_received_tonight", 0)) + int(figures.get("waiting_retried", 0)),
        "published_incomplete": int(figures.get("published_incomplete_received_tonight", 0))
        + int(figures.get("published_incomplete_retried", 0)),
    }
