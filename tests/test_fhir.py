"""FHIR NDJSON lines into typed rows, skips and quarantine."""

from __future__ import annotations

import datetime as dt
import json

from transforms.ingest import fhir

NIGHT = dt.date(2026, 11, 26)
PATIENT = {"identifier": {"system": "urn:vn:cccd", "value": "079090001234"}}


def immunization(**extra) -> dict:
    return {
        "resourceType": "Immunization",
        "id": "imm-1",
        "status": "completed",
        "patient": PATIENT,
        "vaccineCode": {
            "coding": [{"system": "urn:vn:vaccine", "code": "MMR", "display": "Sởi-quai bị-rubella"}]
        },
        "occurrenceDateTime": "2026-11-01T08:00:00+07:00",
        "lotNumber": "L01",
        "protocolApplied": [{"doseNumberPositiveInt": 2}],
        "performer": [{"actor": {"identifier": {"value": "01234"}}}],
        **extra,
    }


def allergy(**extra) -> dict:
    return {
        "resourceType": "AllergyIntolerance",
        "id": "al-1",
        "patient": PATIENT,
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "verificationStatus": {"coding": [{"code": "confirmed"}]},
        "code": {"coding": [{"system": "urn:x", "code": "PEN", "display": "Penicillin"}]},
        "reaction": [
            {"manifestation": [{"coding": [{"code": "HIVES", "display": "Mề đay"}]}], "severity": "mild"}
        ],
        "criticality": "low",
        "recordedDate": "2026-10-02",
        **extra,
    }


def read(tmp_path, lines: list) -> tuple[dict, dict]:
    path = tmp_path / "f.ndjson"
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else json.dumps(x).encode() for x in lines) + b"\n")
    counts = fhir.FhirCounts()
    tables: dict[str, list] = {}
    for kind, table in fhir.read_ndjson(path, "f.ndjson", NIGHT, counts):
        tables.setdefault(kind, []).extend(table.to_pylist())
    return tables, counts.as_dict()


def test_immunization_is_typed(tmp_path):
    tables, counts = read(tmp_path, [immunization()])
    row = tables["Immunization"][0]
    assert row["citizen_id"] == "079090001234" and row["vaccine_code"] == "MMR"
    assert row["occurred_at"] == dt.datetime(2026, 11, 1, 8, 0)
    assert (row["dose_number"], row["facility_code"], row["lot_number"]) == (2, "01234", "L01")
    assert row["is_active"] is True and row["line_number"] == 1
    assert counts["Immunization"] == {"received": 1, "loaded": 1, "quarantined": {}, "skipped": 0}


def test_utc_times_become_vietnam_local_time(tmp_path):
    tables, _ = read(tmp_path, [immunization(occurrenceDateTime="2026-11-01T01:00:00Z")])
    assert tables["Immunization"][0]["occurred_at"] == dt.datetime(2026, 11, 1, 8, 0)  # 01:00 UTC + 7 h


def test_entered_in_error_is_kept_but_inactive(tmp_path):
    tables, _ = read(tmp_path, [immunization(status="entered-in-error")])
    assert tables["Immunization"][0]["is_active"] is False


def test_refuted_allergy_is_inactive_and_a_confirmed_one_active(tmp_path):
    refuted = allergy(id="al-2", verificationStatus={"coding": [{"code": "refuted"}]})
    tables, counts = read(tmp_path, [allergy(), refuted])
    assert [r["is_active"] for r in tables["AllergyIntolerance"]] == [True, False]
    first = tables["AllergyIntolerance"][0]
    assert (first["substance_code"], first["reaction_name"], first["severity"]) == ("PEN", "Mề đay", "mild")
    assert first["recorded_at"] == dt.datetime(2026, 10, 2)
    assert counts["AllergyIntolerance"]["loaded"] == 2


def test_other_resource_types_are_counted_and_skipped(tmp_path):
    tables, counts = read(tmp_path, [{"resourceType": "Patient", "id": "p"}, immunization()])
    assert counts["Patient"] == {"received": 1, "loaded": 0, "quarantined": {}, "skipped": 1}
    assert "Patient" not in tables


def test_bad_lines_are_quarantined_with_a_reason(tmp_path):
    no_patient = immunization(id="imm-2")
    del no_patient["patient"]
    lines = [b"{not json", b"\xff\xfe", b"[1, 2]", no_patient, immunization(id=None)]
    tables, counts = read(tmp_path, lines)
    reasons = [(r["resource_type"], r["reason"], r["line_number"]) for r in tables["quarantine"]]
    assert reasons == [
        ("unknown", "json_invalid", 1),
        ("unknown", "json_invalid", 2),
        ("unknown", "json_invalid", 3),
        ("Immunization", "missing_citizen_id", 4),
        ("Immunization", "missing_resource_id", 5),
    ]
    # received 2 Immunization = loaded 0 + quarantined 2
    assert counts["Immunization"] == {
        "received": 2,
        "loaded": 0,
        "quarantined": {"missing_citizen_id": 1, "missing_resource_id": 1},
        "skipped": 0,
    }


def test_partial_and_bad_dates_are_flagged(tmp_path):
    lines = [
        immunization(occurrenceDateTime="2026-11"),
        immunization(id="i2", occurrenceDateTime="yesterday"),
    ]
    tables, _ = read(tmp_path, lines)
    rows = tables["Immunization"]
    assert rows[0]["occurred_at"] == dt.datetime(2026, 11, 1) and rows[0]["row_warnings"] == [
        "partial_date:occurred_at"
    ]
    assert rows[1]["occurred_at"] is None and rows[1]["row_warnings"] == ["unparseable:occurred_at"]


def test_hostile_shapes_do_not_crash(tmp_path):
    lines = [
        immunization(protocolApplied="x", vaccineCode=[1], performer={"a": 1}),
        immunization(
            id="i3",
            protocolApplied=[{"doseNumberPositiveInt": "two"}],
            patient={"identifier": [PATIENT["identifier"]]},
        ),
    ]
    tables, counts = read(tmp_path, lines)
    assert counts["Immunization"]["loaded"] == 2
    assert tables["Immunization"][1]["row_warnings"] == ["unparseable:dose_number"]


def test_each_line_that_stopped_the_night_is_quarantined_with_its_reason(tmp_path):
    line = json.dumps(immunization(id="x")).encode()
    lines = [
        b'{"resourceType": "Immunization", "id": "d", "extension": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        line.replace(b'"doseNumberPositiveInt": 2', b'"doseNumberPositiveInt": ' + b"9" * 30),
        line.replace(b'"doseNumberPositiveInt": 2', b'"doseNumberPositiveInt": "' + b"9" * 25 + b'"'),
        line.replace(b'"lotNumber": "L01"', b'"lotNumber": "\\ud800"'),
        line.replace(b'"lotNumber": "L01"', b'"lotNumber": "L\\u0000"'),
        line.replace(b'"id": "x"', b'"id": "x", "id": "y"'),
        line.replace(b'"id": "x"', b'"id": true'),
        line.replace(b'"id": "x"', b'"id": 12'),
        line.replace(b'"value": "079090001234"', b'"value": 79090001234'),
        line.replace(b'"lotNumber": "L01"', b'"lotNumber": NaN'),
        json.dumps(immunization(id="ok")).encode(),
    ]
    tables, counts = read(tmp_path, lines)
    assert [r["reason"] for r in tables["quarantine"]] == [
        "json_too_deep",
        "number_out_of_range",
        "number_out_of_range",
        "text_invalid",
        "text_invalid",
        "json_duplicate_key",
        "type_invalid",
        "type_invalid",
        "type_invalid",
        "json_invalid",
    ]
    assert [r["resource_id"] for r in tables["Immunization"]] == ["ok"]
    # Immunization: int30, str25, surrogate, NUL, bool id, number id, number citizen ID = 7
    # quarantined + "ok" loaded = 8 received; the deep, duplicate-key and NaN lines are "unknown"
    assert counts["Immunization"] == {
        "received": 8,
        "loaded": 1,
        "quarantined": {"number_out_of_range": 2, "text_invalid": 2, "type_invalid": 3},
        "skipped": 0,
    }
    assert counts["unknown"]["quarantined"] == {
        "json_duplicate_key": 1,
        "json_invalid": 1,
        "json_too_deep": 1,
    }


def test_the_line_reader_never_holds_a_long_line(tmp_path):
    import tracemalloc

    path = tmp_path / "long.ndjson"
    with path.open("wb") as f:  # a 64 MiB line, then a good one
        f.write(b'{"resourceType": "Immunization", "pad": "')
        chunk = b"x" * (1 << 20)
        for _ in range(64):
            f.write(chunk)
        f.write(b'"}\n' + json.dumps(immunization()).encode() + b"\n")
    counts = fhir.FhirCounts()
    tracemalloc.start()
    try:
        tables = [(kind, t.to_pylist()) for kind, t in fhir.read_ndjson(path, "long.ndjson", NIGHT, counts)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # loosely: a few 1 MiB reads, far below the 64 MiB line (the old reader held it whole)
    assert peak < 16 << 20, peak
    quarantined = [rows for kind, rows in tables if kind == "quarantine"][0]
    assert quarantined[0]["reason"] == "line_too_large"
    assert quarantined[0]["line_bytes"] == 41 + (64 << 20) + 2  # prefix + pad + '"}'
    assert counts.loaded["Immunization"] == 1


def test_bounded_lines_never_return_more_than_the_cap(tmp_path):
    import io

    # lines of 3, 16, 17 and 40 bytes (plus "\n") with a cap of 16: the last two are too long
    data = b"abc\n" + b"a" * 16 + b"\n" + b"b" * 17 + b"\n" + b"c" * 40 + b"\nend"
    out = list(fhir.bounded_lines(io.BufferedReader(io.BytesIO(data)), 16, 1 << 20))
    assert [(n, line, length) for n, line, length in out] == [
        (1, b"abc\n", 4),
        (2, b"a" * 16 + b"\n", 17),
        (3, None, 17),
        (4, None, 40),
        (5, b"end", 3),
    ]
    assert all(line is None or len(line) <= 16 + 1 for _, line, _ in out)
