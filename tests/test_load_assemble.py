"""Pure parts of the load: which versions are complete, their primary reason, illnesses, FHIR."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from transforms.load import assemble, illness
from transforms.serving.schema import IMMUNIZATIONS

F = "94170"
NIGHT = dt.date(2026, 11, 26)


def frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def candidates(*versions: tuple[str, int]) -> pd.DataFrame:
    return frame(
        [
            {"facility_code": F, "encounter_id": e, "version": v, "night": NIGHT, "is_retry": False}
            for e, v in versions
        ],
        ["facility_code", "encounter_id", "version", "night", "is_retry"],
    )


def presence(*rows: tuple[str, int, str, str | None]) -> pd.DataFrame:
    return frame(
        [
            {"facility_code": F, "encounter_id": e, "version": v, "dataset": d, "visit_type": t}
            for e, v, d, t in rows
        ],
        ["facility_code", "encounter_id", "version", "dataset", "visit_type"],
    )


def findings(*rows: tuple[str, int, str, str, str]) -> pd.DataFrame:
    return frame(
        [
            {"facility_code": F, "encounter_id": e, "version": v, "stage": s, "reason": r, "severity": sev}
            for e, v, s, r, sev in rows
        ],
        ["facility_code", "encounter_id", "version", "stage", "reason", "severity"],
    )


def links(*rows: tuple[str, int, str, str | None]) -> pd.DataFrame:
    return frame(
        [
            {"facility_code": F, "encounter_id": e, "version": v, "outcome": o, "citizen_id": c}
            for e, v, o, c in rows
        ],
        ["facility_code", "encounter_id", "version", "outcome", "citizen_id"],
    )


def decide(cands, pres, finds, lnks, known=None):
    known = cands[["facility_code", "encounter_id", "version"]] if known is None else known
    out = assemble.decide_outcomes(cands, pres, finds, lnks, known)
    return {(r.encounter_id, r.version): (r.outcome, r.reason) for r in out.itertuples()}


CID = "079090001234"


def test_a_matched_outpatient_visit_without_findings_loads():
    out = decide(
        candidates(("A", 1)),
        presence(("A", 1, "encounters", "01")),
        findings(),
        links(("A", 1, "match", CID)),
    )
    assert out == {("A", 1): ("loaded", None)}


def test_an_inpatient_stay_without_xml7_and_xml8_is_quarantined_missing_discharge_paper_first():
    # both papers missing: missing_discharge_paper precedes missing_summary in reasons.py
    out = decide(
        candidates(("A", 1)),
        presence(("A", 1, "encounters", "03")),
        findings(),
        links(("A", 1, "match", CID)),
    )
    assert out == {("A", 1): ("quarantined", "missing_discharge_paper")}


def test_a_day_care_stay_with_its_discharge_paper_but_no_summary_is_missing_summary():
    pres = presence(("A", 1, "encounters", "04"), ("A", 1, "discharge_papers", None))
    out = decide(candidates(("A", 1)), pres, findings(), links(("A", 1, "match", CID)))
    assert out == {("A", 1): ("quarantined", "missing_summary")}


def test_primary_reason_follows_ingest_then_completeness_then_quality_then_reconcile():
    pres = presence(("A", 1, "encounters", "03"), ("B", 1, "encounters", "03"), ("C", 1, "encounters", "01"))
    finds = findings(
        ("A", 1, "quality", "discharge_before_admission", "blocking"),
        ("A", 1, "ingest", "base64_invalid", "blocking"),
        ("B", 1, "quality", "invalid_icd10", "blocking"),
        ("C", 1, "quality", "date_after_night", "blocking"),
    )
    lnks = links(("A", 1, "no_match", None), ("B", 1, "no_match", None), ("C", 1, "no_match", None))
    out = decide(candidates(("A", 1), ("B", 1), ("C", 1)), pres, finds, lnks)
    assert out[("A", 1)] == ("quarantined", "base64_invalid")  # ingest beats all
    assert out[("B", 1)] == ("quarantined", "missing_discharge_paper")  # completeness beats quality
    assert out[("C", 1)] == ("quarantined", "date_after_night")  # quality beats reconcile


def test_a_warning_finding_does_not_block():
    finds = findings(("A", 1, "quality", "value_too_long", "warning"))
    out = decide(
        candidates(("A", 1)), presence(("A", 1, "encounters", "01")), finds, links(("A", 1, "match", CID))
    )
    assert out == {("A", 1): ("loaded", None)}


def test_each_link_outcome_other_than_match_gives_its_reason():
    pres = presence(*[(e, 1, "encounters", "01") for e in "ABCD"])
    lnks = links(("A", 1, "no_match", None), ("B", 1, "potential_match", None), ("C", 1, "many_match", None))
    out = decide(candidates(*[(e, 1) for e in "ABCD"]), pres, findings(), lnks)
    assert out[("A", 1)] == ("quarantined", "patient_not_in_registry")
    assert out[("B", 1)] == ("quarantined", "potential_match")
    assert out[("C", 1)] == ("quarantined", "many_match")
    assert out[("D", 1)] == ("quarantined", "not_reconciled")  # no link row at all


def test_an_older_version_is_superseded_and_published_as_history_only_when_complete():
    # A1 complete, A2 complete -> A1 superseded but published; B1 incomplete, B2 complete -> B1 not published
    pres = presence(
        ("A", 1, "encounters", "01"),
        ("A", 2, "encounters", "01"),
        ("B", 1, "encounters", "03"),
        ("B", 2, "encounters", "03"),
        ("B", 2, "discharge_papers", None),
        ("B", 2, "summaries", None),
    )
    lnks = links(*[(e, v, "match", CID) for e in "AB" for v in (1, 2)])
    cands = candidates(("A", 1), ("A", 2), ("B", 1), ("B", 2))
    out = assemble.decide_outcomes(
        cands, pres, findings(), lnks, cands[["facility_code", "encounter_id", "version"]]
    )
    got = {(r.encounter_id, r.version): (r.outcome, r.reason, r.is_published) for r in out.itertuples()}
    assert got == {
        ("A", 1): ("superseded", None, True),
        ("A", 2): ("loaded", None, True),
        ("B", 1): ("superseded", "missing_discharge_paper", False),
        ("B", 2): ("loaded", None, True),
    }


def test_a_version_older_than_one_already_in_serving_is_superseded():
    known = frame(
        [{"facility_code": F, "encounter_id": "A", "version": 3}],
        ["facility_code", "encounter_id", "version"],
    )
    out = decide(
        candidates(("A", 2)),
        presence(("A", 2, "encounters", "01")),
        findings(),
        links(("A", 2, "match", CID)),
        known,
    )
    assert out == {("A", 2): ("superseded", None)}


def test_illnesses_keep_chronic_categories_with_first_and_last_seen():
    d = pd.DataFrame(
        [
            # I10 seen at two encounters (Jan 5 and Nov 26); E11.9 and E119 are the same category E11;
            # J06 (a cold) is not a chronic or significant condition
            (CID, F, "A", "I10", dt.date(2026, 1, 5)),
            (CID, F, "B", "I10", dt.date(2026, 11, 26)),
            (CID, F, "B", "E11.9", dt.date(2026, 11, 26)),
            (CID, F, "C", "e119", dt.date(2026, 3, 1)),
            (CID, F, "C", "J06", dt.date(2026, 3, 1)),
        ],
        columns=["citizen_id", "facility_code", "encounter_id", "icd10", "seen_on"],
    )
    out = illness.illnesses_from_diagnoses(d)
    rows = {r.icd10: (r.condition, r.first_seen, r.last_seen, r.encounter_count) for r in out.itertuples()}
    assert rows == {
        "E11": ("diabetes_mellitus", dt.date(2026, 3, 1), dt.date(2026, 11, 26), 2),
        "I10": ("hypertension", dt.date(2026, 1, 5), dt.date(2026, 11, 26), 2),
    }
    assert out.set_index("icd10").loc["I10", "name"] == "Essential (primary) hypertension"


def test_condition_ranges_include_their_ends_and_exclude_neighbours():
    assert illness.condition_of("I15") == "hypertension"
    assert illness.condition_of("I16") is None
    assert illness.condition_of("C00") == "malignant_neoplasm"
    assert illness.condition_of("D10") is None  # benign neoplasms are not in the list
    assert illness.condition_of("A16") == "tuberculosis"


def test_registry_birth_dates_keep_their_precision():
    assert assemble.parse_registry_birth("19900314") == (dt.date(1990, 3, 14), "day")
    assert assemble.parse_registry_birth("19750300") == (dt.date(1975, 3, 1), "month")
    assert assemble.parse_registry_birth("19750000") == (dt.date(1975, 1, 1), "year")
    assert assemble.parse_registry_birth(None) == (None, None)


def test_registry_birth_dates_parsed_together_equal_the_value_by_value_parse():
    # the numpy path (eight ASCII digits, a real month or 00) and every other shape, which goes
    # through parse_registry_birth itself: 30 Feb and 32 Dec keep their month; 29 Feb only in
    # leap years (2000 is one, 1900 is not); other digits and shapes as the reference reads them
    texts = [
        "19900314",
        "19750300",
        "19750000",
        "19900230",
        "19901232",
        "20000229",
        "19000229",
        "19900099",
        "19901200",
        "00010101",
        "99991231",
        "00000101",
        "19901305",
        "19909914",
        None,
        "",
        "1990",
        "199003",
        "19900314x",
        "abcd0314",
        "1990-03-14",
        "\u0661\u0669\u0669\u0660\u0660\u0663\u0661\u0664",
    ]
    series = pd.Series(texts, index=range(10, 10 + len(texts)), dtype="str")
    dates, precisions = assemble.parse_registry_births(series)
    expected = [assemble.parse_registry_birth(t) for t in texts]
    assert list(dates.index) == list(series.index)
    assert list(dates) == [d for d, _ in expected]
    assert [None if pd.isna(p) else p for p in precisions] == [p for _, p in expected]
    assert expected[3] == (dt.date(1990, 2, 1), "month") and expected[5] == (dt.date(2000, 2, 29), "day")
    assert expected[6] == (dt.date(1900, 2, 1), "month")
    # no calendar has year 0 or month 13: unknown, not an error that stops the load
    assert expected[11:14] == [(None, None), (dt.date(1990, 1, 1), "year"), (dt.date(1990, 1, 1), "year")]


def test_citizen_rows_keep_a_death_date_only_when_its_day_is_known():
    registry = pd.DataFrame(
        {
            "citizen_id": ["2", "1", "3"],
            "birth_date": ["19500101", "19600000", None],
            "death_date": ["20200515", "20200500", None],
            "sex": ["1", "2", "1"],
        }
    )
    rows = assemble.citizen_rows(registry, NIGHT)
    assert list(rows["citizen_id"]) == ["1", "2", "3"]  # in citizen_id order
    assert list(rows["birth_date_precision"].fillna("-")) == ["year", "day", "-"]
    assert list(rows["death_date"]) == [None, dt.date(2020, 5, 15), None]  # May 2020 alone: no date


def test_fhir_newest_copy_wins_inactive_removes_and_unknown_citizens_are_quarantined():
    staged = pd.DataFrame(
        [
            # r1: two copies, the later one (line 5) wins; r2: entered-in-error -> removed;
            # r3: a citizen absent from the registry -> quarantined. 4 lines = 1 upsert + 1 replaced
            # + 1 removed + 1 quarantined
            ("r1", CID, True, NIGHT, "a.ndjson", 1, "old"),
            ("r1", CID, True, NIGHT, "a.ndjson", 5, "new"),
            ("r2", CID, False, NIGHT, "a.ndjson", 2, "x"),
            ("r3", "000000000000", True, NIGHT, "a.ndjson", 3, "y"),
        ],
        columns=[
            "resource_id",
            "citizen_id",
            "is_active",
            "night",
            "source_file",
            "line_number",
            "lot_number",
        ],
    )
    upserts, removed, counts = assemble.fhir_changes(staged, {CID}, IMMUNIZATIONS)
    assert upserts[["resource_id", "lot_number"]].values.tolist() == [["r1", "new"]]
    assert removed == ["r2"]
    assert counts == {
        "received": 4,
        "upserted": 1,
        "removed": 1,
        "replaced": 1,
        "quarantined": {"patient_not_in_registry": 1},
    }


def test_height_comes_from_xml1_du_phong_else_from_an_xml4_height_row_in_cm():
    key = ["facility_code", "encounter_id", "version"]
    encounters = pd.DataFrame(
        [(F, "A", 1, "165"), (F, "B", 1, None), (F, "C", 1, "không rõ"), (F, "D", 1, None)],
        columns=[*key, "reserve"],
    )
    labs = pd.DataFrame(
        [
            (F, "B", 1, 0, "CHIEU_CAO", "158,5", "cm"),  # comma decimal: 158.5
            (F, "D", 1, 0, "CHIEU_CAO", "1.6", "m"),  # not in cm: not taken (never converted by guess)
        ],
        columns=[*key, "row_index", "indicator_code", "value", "unit"],
    )
    heights = assemble.heights_cm(encounters, labs).set_index("encounter_id")["height_cm"]
    assert heights["A"] == 165.0
    assert heights["B"] == 158.5
    assert pd.isna(heights["C"]) and pd.isna(heights["D"])


def test_fhir_a_later_nights_copy_wins_over_tonights_when_an_old_night_is_rerun():
    columns = ["resource_id", "citizen_id", "is_active", "night", "source_file", "line_number", "lot_number"]
    tonight = pd.DataFrame([("r1", CID, True, NIGHT, "a.ndjson", 1, "old")], columns=columns)
    later = pd.DataFrame(
        [("r1", CID, False, NIGHT + dt.timedelta(days=1), "b.ndjson", 1, "x")], columns=columns
    )  # entered-in-error the next night
    upserts, removed, counts = assemble.fhir_changes(tonight, {CID}, IMMUNIZATIONS, later)
    assert upserts.empty and removed == ["r1"]
    assert counts["replaced"] == 1 and counts["upserted"] == 0 and counts["removed"] == 0
