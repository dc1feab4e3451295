"""Nothing lost: on the golden night (every defect class the generator makes, incl. rejected files)
the ledger balances exactly for every facility and in total, and agrees with the generator's truth."""

from __future__ import annotations

import json

import pandas as pd

from transforms.orchestration import ledger as ledger_mod


def test_the_ledger_balances_for_every_facility_and_in_total(clean_run):
    ledger = clean_run.ledger()
    assert ledger_mod.imbalances(ledger) == []
    for code, f in ledger["facilities"].items():
        # every received HOSO is loaded or quarantined with a reason: received = loaded + Σ reasons
        assert f["received"] == f["loaded"] + sum(f["quarantined"].values()), code
    totals = ledger["totals"]
    for key in ("files", "declared", "received", "loaded"):
        assert totals[key] == sum(f[key] for f in ledger["facilities"].values()), key
    assert totals["quarantined"] == sum(sum(f["quarantined"].values()) for f in ledger["facilities"].values())
    assert totals["received"] == totals["loaded"] + totals["quarantined"]


def test_the_ledger_matches_the_generators_truth(clean_run, golden_night):
    ledger = clean_run.ledger()
    summary = json.loads((golden_night / "truth" / "summary.json").read_text())
    truth = pd.read_parquet(golden_night / "truth" / "encounters.parquet")
    files = pd.read_parquet(golden_night / "truth" / "files.parquet")

    # the generator guarantees every defect class at this size, file defects included
    assert {"xml_malformed", "xml_entity_declared", "declared_count_mismatch"} <= set(
        files["file_defect"].dropna()
    )
    assert ledger["totals"]["files"] == len(files)
    assert ledger["totals"]["declared"] == summary["declared"] == int(files["declared"].sum())

    # received = the HOSOs of accepted files; the versions of a rejected file are not received
    received = truth[truth["expected_outcome"] != "rejected_file"]
    assert ledger["totals"]["received"] == len(received)
    per_facility = received.groupby("facility_code").size().to_dict()
    assert {c: f["received"] for c, f in ledger["facilities"].items() if f["received"]} == per_facility

    expected_loaded = int((received["expected_outcome"] == "load").sum())
    assert ledger["totals"]["loaded"] == expected_loaded == summary["expected_outcome"]["load"]
    reasons: dict[str, int] = {}
    for f in ledger["facilities"].values():
        for reason, n in f["quarantined"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    assert reasons == received["expected_reason"].dropna().value_counts().to_dict()
    # the truth's reasons are those plus the file-level reasons of the HOSOs of rejected files
    lost_with_files = truth[truth["expected_outcome"] == "rejected_file"]
    assert {**reasons, **lost_with_files["expected_reason"].value_counts().to_dict()} == summary[
        "expected_reason"
    ]

    rejected = {r["file"]: r["reason"] for r in ledger["files"]["rejected"]}
    expected_rejected = files[files["file_defect"].isin(["xml_malformed", "xml_entity_declared"])]
    assert rejected == dict(
        zip(expected_rejected["source_file"], expected_rejected["file_defect"], strict=True)
    )
    # a rejected file's declared count still counts (its header was read)
    declared = {r["file"]: r["declared"] for r in ledger["files"]["rejected"]}
    assert declared == dict(zip(expected_rejected["source_file"], expected_rejected["declared"], strict=True))


def test_every_received_version_has_exactly_one_outcome(clean_run):
    outcomes = pd.read_parquet(clean_run.run_dir / "outcomes.parquet")
    key = ["facility_code", "encounter_id", "version"]
    assert not outcomes.duplicated(key).any()
    assert len(outcomes) == clean_run.ledger()["totals"]["received"]
    assert set(outcomes["outcome"]) <= {"loaded", "quarantined", "superseded"}
    # a quarantined version always says why
    assert outcomes.loc[outcomes["outcome"] == "quarantined", "reason"].notna().all()
