"""The health book JSON: key names exactly as INTERFACES.md, values only from the source."""

from __future__ import annotations

import json

import pytest
from serving_fixtures import (
    NIGHT1,
    context,
    discharge_paper,
    drug,
    inpatient,
    outpatient,
    summary,
    write_links,
    write_staged,
)

from transforms.load import stage as load
from transforms.serving import db
from transforms.serving.book import books_for

AN = "079090001234"
BINH = "001175000042"

# INTERFACES.md "One health book", copied verbatim ("..." placeholders kept): the contract.
INTERFACES_BOOK = """
{
  "found": true,
  "citizen": {"citizen_id": "079090001234", "full_name": "Nguyễn Văn An", "birth_date": "1990-03-14",
              "sex": "male", "province_code": "79", "ward_code": "26734",
              "social_insurance_number": "7909000123", "blood_group": null},
  "allergies":    [{"substance": "...", "code": "...", "reaction": "...", "severity": "...", "recorded_at": "..."}],
  "illnesses":    [{"icd10": "I10", "name": "...", "first_seen": "2026-01-05", "last_seen": "2026-11-26"}],
  "vaccinations": [{"vaccine_code": "...", "vaccine": "...", "dose_number": 2, "date": "...", "facility_code": "...", "lot": "..."}],
  "encounters": [{
    "facility_code": "94170", "encounter_id": "<MA_LK>", "version": 2,
    "visit_type": "01", "reason": "...", "admitted_at": "2026-11-26T08:15", "inpatient_at": null,
    "discharged_at": "2026-11-26T10:40", "result": "improved", "discharge_type": "discharged",
    "main_diagnosis": {"icd10": "I10", "text": "..."}, "secondary_diagnoses": [{"icd10": "E11", "text": null}],
    "indicators": {"weight_kg": 61.5, "height_cm": 165},
    "lab_results": [{"code": "...", "name": "...", "value": "...", "unit": "...", "conclusion": "...", "reported_at": "..."}],
    "medications": [{"code": "...", "name": "...", "strength": "...", "route": "...", "dose": "...", "quantity": 10, "ordered_at": "..."}],
    "procedures":  [{"code": "...", "name": "...", "performed_at": "..."}],
    "clinical_course": [{"at": "...", "note": "..."}],
    "summary": null, "discharge_paper": null, "referral": null,
    "follow_up": {"date": "2026-12-10", "physician": "..."},
    "physician": "...",
    "source": {"file": "relative/path.xml", "received_on": "2026-11-26"}
  }]
}
"""
# Additions INTERFACES.md allows ("add to them freely"): HEALTHBOOK.md group 1 lists ethnicity
# and nationality; the registry carries the date of death.
CITIZEN_ADDITIONS = {"ethnicity_code", "nationality_code", "death_date"}
# Vietnamese names beside codes (README "Additions to INTERFACES.md"): *_name keys, codes of the
# results in words, and the name of a diagnosis from the reference list.
NAME_ADDITIONS = {
    "encounters[].facility_name",
    "encounters[].visit_type_name",
    "encounters[].result_code",
    "encounters[].result_name",
    "encounters[].discharge_type_code",
    "encounters[].discharge_type_name",
    "encounters[].main_diagnosis.name",
    "encounters[].secondary_diagnoses[].name",
    "encounters[].medications[].route_name",
    "illnesses[].name_vi",
    "vaccinations[].facility_name",
    "encounters[].main_diagnosis.source",  # issue 15: where the main code comes from ("xml1" | "xml7")
    "encounters[].incomplete",  # issue 15: a stay published after its grace period names what it lacks
}


def key_paths(value, prefix: str = "") -> set[str]:
    """Every key path of a JSON value ("encounters[].medications[].name"); lists by their items."""
    out = set()
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(prefix + k)
            out |= key_paths(v, prefix + k + ".")
    elif isinstance(value, list):
        for item in value:
            out |= key_paths(item, prefix.rstrip(".") + "[].")
    return out


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def loaded(request, tmp_path):
    """A serving database after one night: An has an outpatient visit with a drug line and a
    complete inpatient stay; Bình has nothing."""
    url = (
        f"sqlite:///{tmp_path / 'warehouse' / 'serving.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    ctx = context(tmp_path, NIGHT1, url)
    wh = ctx.warehouse
    write_staged(wh, "encounters", NIGHT1, [outpatient("LK1"), inpatient("LK2", reserve="165")])
    write_staged(wh, "drugs", NIGHT1, [drug("LK1", physician_codes=["000123/HCM-CCHN"])])
    write_staged(wh, "discharge_papers", NIGHT1, [discharge_paper("LK2")])
    write_staged(wh, "summaries", NIGHT1, [summary("LK2")])
    write_links(
        wh,
        NIGHT1,
        [
            {"encounter_id": "LK1", "outcome": "match", "citizen_id": AN},
            {"encounter_id": "LK2", "outcome": "match", "citizen_id": AN},
        ],
    )
    load.load_night(ctx)
    return url


def test_book_key_names_are_exactly_those_of_interfaces_md(loaded):
    expected = key_paths(json.loads(INTERFACES_BOOK))
    book = books_for(loaded, [AN])[0]
    got = key_paths(book)
    # lists empty in this book (allergies, vaccinations, lab results...) have no item keys to compare
    comparable = {p for p in expected if not any(p.startswith(e) for e in EMPTY_LISTS)}
    additions = {f"citizen.{k}" for k in CITIZEN_ADDITIONS} | NAME_ADDITIONS
    summary_keys = {
        p for p in got if p.startswith(("encounters[].summary.", "encounters[].discharge_paper."))
    }
    assert got - summary_keys - additions == comparable


EMPTY_LISTS = (
    "allergies[].",
    "vaccinations[].",
    "encounters[].lab_results[].",
    "encounters[].procedures[].",
    "encounters[].clinical_course[].",
)


def test_book_values_come_from_the_registry_and_the_encounters_in_the_order_asked(loaded):
    books = books_for(loaded, ["000000000000", AN, BINH])
    assert books[0] == {"citizen": {"citizen_id": "000000000000"}, "found": False}
    assert books[2] == {"citizen": {"citizen_id": BINH}, "found": False}
    book = books[1]
    # the registry's name, never the "NGUYEN VAN AN" / "999999999999" the hospital typed
    assert book["citizen"]["full_name"] == "Nguyễn Văn An"
    assert book["citizen"]["citizen_id"] == AN
    assert book["citizen"]["birth_date"] == "1990-03-14"
    assert book["citizen"]["sex"] == "male"
    assert book["citizen"]["blood_group"] is None
    # newest admission first: LK1 (Nov 26 08:15) before LK2 (Nov 20 09:00)
    assert [e["encounter_id"] for e in book["encounters"]] == ["LK1", "LK2"]
    visit, stay = book["encounters"]
    assert visit["admitted_at"] == "2026-11-26T08:15" and visit["inpatient_at"] is None
    assert visit["result"] == "improved" and visit["discharge_type"] == "discharged"
    assert visit["main_diagnosis"] == {
        "icd10": "I10",
        "text": "Tăng huyết áp vô căn (nguyên phát)",
        "name": "Tăng huyết áp vô căn (nguyên phát)",  # icd10_vi.csv
        "source": "xml1",
    }
    # names beside codes: route 1.01, visit type 01, result 2, discharge type 1 (reference files)
    assert visit["medications"][0]["route"] == "1.01" and visit["medications"][0]["route_name"] == "Uống"
    assert (visit["visit_type"], visit["visit_type_name"]) == ("01", "Khám bệnh")
    assert (visit["result_code"], visit["result_name"]) == ("2", "Đỡ")
    assert (visit["discharge_type_code"], visit["discharge_type_name"]) == ("1", "Ra viện")
    assert visit["facility_name"] is None  # 94170 is not in facilities.csv: no name is invented
    assert visit["secondary_diagnoses"] == [
        {"icd10": "E11", "text": None, "name": "Bệnh đái tháo đường không phụ thuộc insuline"}
    ]
    assert visit["indicators"] == {"weight_kg": 61.5, "height_cm": None}  # no DU_PHONG, no XML4 height
    assert stay["indicators"] == {"weight_kg": 61.5, "height_cm": 165}  # XML1 DU_PHONG "165"
    assert visit["medications"][0]["quantity"] == 10
    assert visit["follow_up"] == {"date": "2026-12-10", "physician": None}
    assert visit["summary"] is None and visit["discharge_paper"] is None and visit["referral"] is None
    assert visit["physician"] == "000123/HCM-CCHN"  # an outpatient visit's doctor: its prescriber (XML2)
    assert visit["source"] == {"file": "94170/batch.xml", "received_on": "2026-11-26"}
    assert stay["inpatient_at"] == "2026-11-20T10:00"
    assert stay["physician"] == "BS. Lê Văn Cường"
    assert stay["summary"]["treatment_method"] == "Kháng sinh, giãn phế quản"
    assert stay["summary"]["instructions"] == "Tái khám sau 2 tuần"


def test_the_main_diagnosis_text_is_its_own_part_of_the_discharge_diagnosis_text():
    from transforms.serving.book import split_diagnosis_text

    # CHAN_DOAN_RV lists main; secondary: one part per code -> each code its own text
    assert split_diagnosis_text("Tăng huyết áp; Đái tháo đường", 1) == ("Tăng huyết áp", ["Đái tháo đường"])
    # more parts than codes: the main keeps the first part, the secondary codes get no text
    assert split_diagnosis_text("A; B; C", 1) == ("A", [None])
    # no secondary code: a ";" may belong to the main text itself, kept whole
    assert split_diagnosis_text("Viêm phổi; theo dõi lao", 0) == ("Viêm phổi; theo dõi lao", [])


def test_the_main_diagnosis_of_a_served_book_has_no_secondary_text_appended(tmp_path):
    ctx = context(tmp_path, NIGHT1)
    text = "Tăng huyết áp vô căn (nguyên phát); Bệnh đái tháo đường typ 2"  # as generate_encounters joins
    write_staged(ctx.warehouse, "encounters", NIGHT1, [outpatient("LK1", discharge_diagnosis=text)])
    write_links(ctx.warehouse, NIGHT1, [{"encounter_id": "LK1", "outcome": "match", "citizen_id": AN}])
    load.load_night(ctx)
    [visit] = books_for(ctx.serving_url, [AN])[0]["encounters"]
    assert visit["main_diagnosis"]["text"] == "Tăng huyết áp vô căn (nguyên phát)"
    assert visit["secondary_diagnoses"][0]["text"] == "Bệnh đái tháo đường typ 2"


def test_a_birth_date_known_only_to_the_year_is_shown_as_the_year(tmp_path):
    from transforms.serving.book import birth_date_text

    assert birth_date_text("1975-01-01", "year") == "1975"
    assert birth_date_text("1975-03-01", "month") == "1975-03"
    assert birth_date_text("1975-03-14", "day") == "1975-03-14"


def test_a_missing_sqlite_serving_database_is_an_error_not_an_empty_book(tmp_path):
    with pytest.raises(db.ServingDatabaseUnreachable):
        books_for(f"sqlite:///{tmp_path / 'nope.db'}", [AN])
    assert not (tmp_path / "nope.db").exists()
