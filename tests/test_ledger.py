"""The conservation ledger: received == loaded + quarantined, per facility and in total."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from transforms.core.context import make_context
from transforms.orchestration.ledger import LOADED_MEANS, LedgerImbalance, build_ledger, imbalances
from transforms.orchestration.pipeline import NightLocked, ledger_night, night_lock


def _outcomes(rows):
    return pd.DataFrame(rows, columns=["facility_code", "outcome", "reason"])


INGEST = {
    "facilities": {
        "94170": {"files": 2, "declared": 5, "received": 4},
        "01001": {"files": 1, "declared": 1, "received": 1},
    },
    "rejected_files": [{"file": "a/b.xml", "reason": "xml_entity_declared"}],
}


def test_ledger_counts_loaded_superseded_and_quarantined_by_reason():
    # 94170: 4 received = 2 loaded + 1 superseded (counts as loaded) + 1 quarantined
    outcomes = _outcomes(
        [
            ("94170", "loaded", None),
            ("94170", "loaded", None),
            ("94170", "superseded", None),
            ("94170", "quarantined", "invalid_icd10"),
            ("01001", "quarantined", "patient_not_in_registry"),
        ]
    )
    ledger = build_ledger("2026-11-26", INGEST, outcomes)
    assert ledger["facilities"]["94170"] == {
        "files": 2,
        "declared": 5,
        "received": 4,
        "loaded": 3,
        "quarantined": {"invalid_icd10": 1},
    }
    # superseded: 1 of the 3 loaded (a figure of its own, not a third outcome: 5 = 3 + 2)
    assert ledger["totals"] == {
        "files": 3,
        "declared": 6,
        "received": 5,
        "loaded": 3,
        "quarantined": 2,
        "superseded": 1,
    }
    assert ledger["definitions"]["loaded"] == LOADED_MEANS
    assert ledger["files"]["rejected"] == INGEST["rejected_files"]
    assert imbalances(ledger) == []


def test_an_encounter_without_an_outcome_makes_the_ledger_unbalanced():
    # 94170 received 4 but only 3 outcomes: one encounter is unaccounted for
    outcomes = _outcomes([("94170", "loaded", None)] * 3 + [("01001", "loaded", None)])
    problems = imbalances(build_ledger("2026-11-26", INGEST, outcomes))
    assert any("94170" in p for p in problems)
    assert any(p.startswith("totals") for p in problems)


def test_a_run_whose_ledger_does_not_balance_fails(tmp_path):
    ctx = make_context(dt.date(2026, 11, 26), tmp_path / "x", tmp_path / "r", tmp_path / "wh")
    manifest = ctx.warehouse.manifest(ctx.night, "ingest")
    manifest.parent.mkdir(parents=True)
    manifest.write_text('{"facilities": {"94170": {"files": 1, "declared": 2, "received": 2}}}')
    _outcomes([("94170", "loaded", None)]).to_parquet(ctx.warehouse.outcomes(ctx.night))
    with pytest.raises(LedgerImbalance, match="94170"):
        ledger_night(ctx)
    assert ctx.warehouse.ledger(ctx.night).exists()  # written anyway, for the operator to read


def test_a_second_run_of_the_same_night_is_refused_while_the_first_holds_the_lock(tmp_path):
    ctx = make_context(dt.date(2026, 11, 26), tmp_path / "x", tmp_path / "r", tmp_path / "wh")
    with night_lock(ctx), pytest.raises(NightLocked, match="in progress"), night_lock(ctx):
        pass
    with night_lock(ctx):  # released: a later run proceeds
        pass
