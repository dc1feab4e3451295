"""The conservation ledger of one night: every encounter received ends loaded or quarantined.

Shape and rules: INTERFACES.md "Outputs of one night". Built from the ingest manifest (files,
declared, received, rejected files, FHIR counts) and the load stage's outcomes (one row per
encounter version received tonight with its final outcome and primary reason).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd

from transforms.core.safe_io import write_json_atomic

# What "loaded" means: one sentence, the same in ledger.json, the quality report and the README.
LOADED_MEANS = (
    "loaded = encounter versions received this night and accepted: the newest version of each "
    "encounter (now served) plus any earlier version of it received the same night and superseded "
    "by it (kept in history; counted again as superseded); received = loaded + quarantined"
)


class LedgerImbalance(RuntimeError):
    """The night's ledger does not balance: the run must fail."""


def build_ledger(
    night: str,
    ingest: dict,
    outcomes: pd.DataFrame,
    fhir: dict | None = None,
    late_tables: dict | None = None,
) -> dict:
    """The ledger dict for one night (one entry per facility, totals, rejected files, FHIR).

    `fhir` is the per-resourceType figures (received, loaded, quarantined by reason, skipped),
    completed by the load stage; without it the ingest manifest's figures are used.
    `outcomes` holds one row per encounter version received tonight: facility_code, outcome
    ("loaded" | "quarantined" | "superseded"), reason. A superseded version (a later copy of the
    same encounter arrived the same night) counts as loaded: it was accepted and stays in history.

    `late_tables` (the load manifest's figures, transforms/load/stage.py `_late_tables`) adds, per
    facility, `waiting_late_tables` (tonight's stays quarantined while they wait for XML7/XML8:
    part of `quarantined`, pending) and `published_incomplete` (tonight's stays published marked
    incomplete: part of `loaded`), and a `late_tables` section with the retried stays published
    after their grace period. Additions only: the balance rule is unchanged.
    """
    facilities: dict[str, dict] = {}
    for code, figures in sorted(ingest.get("facilities", {}).items()):
        facilities[code] = {
            "files": int(figures.get("files", 0)),
            "declared": int(figures.get("declared", 0)),
            "received": int(figures.get("received", 0)),
            "loaded": 0,
            "quarantined": {},
        }
    quarantined: dict[str, Counter] = defaultdict(Counter)
    for row in outcomes.itertuples(index=False):
        entry = facilities.setdefault(
            row.facility_code,
            {"files": 0, "declared": 0, "received": 0, "loaded": 0, "quarantined": {}},
        )
        if row.outcome in ("loaded", "superseded"):
            entry["loaded"] += 1
        else:
            quarantined[row.facility_code][row.reason] += 1
    for code, counts in quarantined.items():
        facilities[code]["quarantined"] = dict(sorted(counts.items()))
    if late_tables is not None:
        by_facility = late_tables.get("by_facility", {})
        for code, entry in facilities.items():
            figures = by_facility.get(code, {})
            entry["waiting_late_tables"] = int(figures.get("waiting_late_tables", 0))
            entry["published_incomplete"] = int(figures.get("published_incomplete", 0))

    totals = {
        "files": sum(f["files"] for f in facilities.values()),
        "declared": sum(f["declared"] for f in facilities.values()),
        "received": sum(f["received"] for f in facilities.values()),
        "loaded": sum(f["loaded"] for f in facilities.values()),
        "quarantined": sum(sum(f["quarantined"].values()) for f in facilities.values()),
        "superseded": int(sum(1 for row in outcomes.itertuples(index=False) if row.outcome == "superseded")),
    }
    ledger = {
        "date": night,
        "definitions": {"loaded": LOADED_MEANS},
        "facilities": facilities,
        "totals": totals,
        "files": {"rejected": list(ingest.get("rejected_files", []))},
        "fhir": fhir if fhir is not None else ingest.get("fhir", {}),
    }
    if late_tables is not None:
        totals["waiting_late_tables"] = sum(f.get("waiting_late_tables", 0) for f in facilities.values())
        totals["published_incomplete"] = sum(f.get("published_incomplete", 0) for f in facilities.values())
        ledger["late_tables"] = {
            "grace_nights": late_tables.get("grace_nights"),
            "waiting_received_tonight": int(late_tables.get("waiting_received_tonight", 0)),
            "waiting_retried": int(late_tables.get("waiting_retried", 0)),
            "published_incomplete_received_tonight": int(
                late_tables.get("published_incomplete_received_tonight", 0)
            ),
            "published_incomplete_retried": int(late_tables.get("published_incomplete_retried", 0)),
            "partial_resends_completed": int(ingest.get("partial_resends_completed", 0)),
        }
    return ledger


def imbalances(ledger: dict) -> list[str]:
    """Human-readable reasons why the ledger does not balance; empty when it does."""
    problems = []
    for code, f in ledger["facilities"].items():
        accounted = f["loaded"] + sum(f["quarantined"].values())
        if f["received"] != accounted:
            problems.append(
                f"facility {code}: received {f['received']} != loaded {f['loaded']} "
                f"+ quarantined {sum(f['quarantined'].values())}"
            )
    t = ledger["totals"]
    if t["received"] != t["loaded"] + t["quarantined"]:
        problems.append(
            f"totals: received {t['received']} != loaded {t['loaded']} + quarantined {t['quarantined']}"
        )
    for kind, f in ledger.get("fhir", {}).items():
        if not f:
            continue
        accounted = f.get("loaded", 0) + sum(f.get("quarantined", {}).values()) + f.get("skipped", 0)
        if f.get("received", 0) != accounted:
            problems.append(f"fhir {kind}: received {f.get('received', 0)} != accounted {accounted}")
    return problems


def write_ledger(path: Path, ledger: dict) -> Path:
    """Write the ledger atomically (temp file, then rename)."""
    return write_json_atomic(path, ledger, ensure_ascii=False)


def _read_manifest(ctx, stage: str) -> dict:
    path = ctx.warehouse.manifest(ctx.night, stage)
    return json.loads(path.read_text()) if path.exists() else {}


def ledger_night(ctx) -> Path:
    """Build and write the ledger; raise LedgerImbalance when it does not balance."""
    outcomes_path = ctx.warehouse.outcomes(ctx.night)
    outcomes = (
        pd.read_parquet(outcomes_path, columns=["facility_code", "outcome", "reason"])
        if outcomes_path.exists()
        else pd.DataFrame({"facility_code": [], "outcome": [], "reason": []})
    )
    ingest = _read_manifest(ctx, "ingest")
    load = _read_manifest(ctx, "load")
    ledger = build_ledger(ctx.night.isoformat(), ingest, outcomes, load.get("fhir"), load.get("late_tables"))
    path = write_ledger(ctx.warehouse.ledger(ctx.night), ledger)
    if problems := imbalances(ledger):
        raise LedgerImbalance("; ".join(problems))
    return path
