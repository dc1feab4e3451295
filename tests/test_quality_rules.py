"""The vectorised suite rules agree with Great Expectations row for row, and GX records them.

The per-column expectations of every suite (`gx_expectation(rule)`) run through GX itself, result
format COMPLETE, on the defect night plus edge cases (nulls, empty text, values exactly on a bound,
a text exactly at its length limit); their unexpected rows and evaluated counts must equal what
`evaluate_rule` computes. One GX validation run per dataset keeps this test to a few seconds.
"""

from __future__ import annotations

import datetime as dt

import great_expectations as gx
import numpy as np
import pandas as pd
import pytest
from test_quality_checks import defect_night
from test_quality_frames import NIGHT, clean_encounter, staged, ts

from expectations.checks import load_checks
from expectations.rules import evaluate_rule
from expectations.runner import RuleOutcome, evaluate_suites, gx_errors, prepare_frame, validate_frames
from expectations.suites import SUITE_BUILDERS, gx_expectation, night_end, verdict_column


def edge_encounters() -> list[dict]:
    """Values on the edges of the rules; each comment says the verdict GX gives."""
    end = night_end(NIGHT)
    return [
        clean_encounter("EDGE-LEN", ward_code="12345"),  # exactly 5 characters: passes max_length 5
        clean_encounter("EDGE-EMPTY", ward_code="", patient_category=""),  # "" is not null: regex fails
        clean_encounter("EDGE-NULLS", sex_code=None, weight_kg=None),  # only not-null judges them
        clean_encounter("EDGE-END", admitted_at=end, discharged_at=end),  # on the night's bound: passes
        clean_encounter("EDGE-PAIR", discharged_at=None),  # pair ignored, not-null fails
        clean_encounter("EDGE-W", weight_kg=0.3),  # the lower bound itself: passes
        clean_encounter("EDGE-W2", weight_kg=0.0),  # below: fails
        clean_encounter(
            "EDGE-SAME", admitted_at=ts("2026-11-25 08:00"), discharged_at=ts("2026-11-25 08:00")
        ),
    ]


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    night = defect_night()
    night["encounters"] = pd.concat(
        [night["encounters"], staged("encounters", edge_encounters())], ignore_index=True
    )
    night["drugs"] = pd.concat(
        [
            night["drugs"],
            staged("drugs", [{"encounter_id": "LEN", "quantity": 0.0, "unit_price_vnd": 0.001}]),
        ],
        ignore_index=True,
    )  # quantity 0 fails strict > 0; a price of 0.001 passes
    return {ds: prepare_frame(ds, f) for ds, f in night.items()}


@pytest.fixture(scope="module")
def gx_per_column(frames):
    """{(dataset, rule index): (unexpected _row_ids, evaluated)} from GX running every rule."""
    config = load_checks()
    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_pandas("staged")
    out = {}
    for dataset, build in SUITE_BUILDERS.items():
        frame = frames.get(dataset)
        if frame is None or frame.empty:
            continue
        rules = build(config, NIGHT)
        suite = gx.ExpectationSuite(name=dataset)
        for i, rule in enumerate(rules):
            expectation = gx_expectation(rule)
            expectation.meta = {"index": i}
            suite.add_expectation(expectation)
        suite = context.suites.add(suite)
        batch = source.add_dataframe_asset(dataset).add_batch_definition_whole_dataframe("all")
        result = context.validation_definitions.add(
            gx.ValidationDefinition(name=dataset, data=batch, suite=suite)
        ).run(
            batch_parameters={"dataframe": frame},
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["_row_id"]},
        )
        for r in result.results:
            assert not (r.exception_info or {}).get("raised_exception"), r.exception_info
            i = r.expectation_config.meta["index"]
            res = r.result
            evaluated = int(res.get("element_count", 0)) - int(res.get("missing_count") or 0) * (
                r.expectation_config.type != "expect_column_values_to_not_be_null"
            )
            ids = sorted(int(item["_row_id"]) for item in res.get("unexpected_index_list") or [])
            out[(dataset, i)] = (ids, evaluated)
    return out


def test_every_rule_fails_the_same_rows_as_great_expectations(frames, gx_per_column):
    config = load_checks()
    compared = 0
    for (dataset, i), (gx_ids, _) in gx_per_column.items():
        rule = SUITE_BUILDERS[dataset](config, NIGHT)[i]
        verdict = evaluate_rule(rule, frames[dataset])
        ours = sorted(int(x) for x in frames[dataset]["_row_id"].to_numpy()[verdict.failing])
        assert ours == gx_ids, rule.describe()
        compared += 1
    assert compared > 100  # every column rule of the 10 datasets the night has


def test_every_rule_evaluates_as_many_rows_as_great_expectations(frames, gx_per_column):
    config = load_checks()
    for (dataset, i), (_, gx_evaluated) in gx_per_column.items():
        rule = SUITE_BUILDERS[dataset](config, NIGHT)[i]
        assert evaluate_rule(rule, frames[dataset]).evaluated == gx_evaluated, rule.describe()


def test_the_edge_cases_get_the_verdicts_their_comments_state(frames):
    outcome = evaluate_suites(frames, load_checks(), NIGHT)
    enc = frames["encounters"]
    ids = dict(zip(enc["_row_id"], enc["encounter_id"], strict=True))
    failed = {
        (f["check_id"].iloc[0], ids[r])
        for f in outcome.failures
        if f["dataset"].iloc[0] == "encounters"
        for r in f["_row_id"]
    }
    assert ("conformance.max_length", "EDGE-LEN") not in failed
    assert ("conformance.patient_category_shape", "EDGE-EMPTY") in failed
    assert not {c for c, e in failed if e == "EDGE-NULLS"} - {"completeness.encounter_expected_fields"}
    assert not {c for c, e in failed if e in ("EDGE-END", "EDGE-W", "EDGE-SAME")}
    assert ("completeness.encounter_required_fields", "EDGE-PAIR") in failed
    assert ("plausibility.discharge_before_admission", "EDGE-PAIR") not in failed
    assert ("plausibility.weight_range", "EDGE-W2") in failed


def test_great_expectations_records_one_result_per_check_with_the_rules_counts(tmp_path):
    result = validate_frames(defect_night(), NIGHT, data_docs_dir=tmp_path / "docs")
    # every GX check of the defect night has its defect: its status is failed (threshold 0 or 1%)
    gx_checks = result.checks[result.checks.engine == "gx"]
    assert (gx_checks.loc[gx_checks.failed_rows > 0, "status"] != "error").all()
    assert (tmp_path / "docs" / "index.html").exists()
    pages = list((tmp_path / "docs" / "validations").rglob("*.html"))
    assert len(pages) == 8  # one validation page per dataset the defect night has rows in


def test_a_gx_count_that_disagrees_with_the_rules_is_refused():
    config = load_checks()
    frame = prepare_frame("drugs", staged("drugs", [{"encounter_id": "A", "quantity": -1.0}]))
    outcome = evaluate_suites({"drugs": frame}, config, NIGHT)
    from expectations.runner import run_gx

    results = run_gx(outcome, config, NIGHT, None)
    assert gx_errors(results, outcome) == []
    # the same GX results against verdicts that claim one failing row fewer
    column = verdict_column("plausibility.positive_quantity")
    tampered = outcome.verdicts["drugs"].assign(**{column: np.ones(1, dtype=bool)})
    lying = RuleOutcome(outcome.failures, outcome.evaluated, [], {"drugs": tampered}, outcome.rules)
    with pytest.raises(RuntimeError, match="positive_quantity"):
        gx_errors(results, lying)


def test_a_rule_on_a_missing_column_is_an_error_not_a_pass():
    frame = prepare_frame("drugs", staged("drugs", [{"encounter_id": "A"}])).drop(columns=["quantity"])
    result = validate_frames({"drugs": frame}, NIGHT)
    status = result.checks.set_index(["check_id", "dataset"])["status"]
    assert status[("plausibility.positive_quantity", "drugs")] == "error"


def test_dates_on_the_last_second_of_the_night_pass_and_after_it_fail():
    frame = prepare_frame(
        "drugs",
        staged(
            "drugs",
            [
                {"encounter_id": "A", "ordered_at": dt.datetime(2026, 11, 26, 23, 59, 59)},
                {"encounter_id": "B", "ordered_at": dt.datetime(2026, 11, 27, 0, 0, 0)},
            ],
        ),
    )
    result = validate_frames({"drugs": frame}, NIGHT)
    hit = result.findings[result.findings.check_id == "plausibility.line_not_after_night"]
    assert hit["encounter_id"].tolist() == ["B"]
