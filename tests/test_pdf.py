"""The examination PDF: one file per encounter, Vietnamese text intact in its text layer."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from pypdf import PdfReader

from transforms.serving.pdf import encounter_pdf_name, write_encounter_pdfs

HYPERTENSION = "Tăng huyết áp vô căn (nguyên phát)"
ISSUED = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def signing_key_setting(monkeypatch):
    """Documents are signed: a test key as the setting (never the per-user key file)."""
    monkeypatch.setenv("HEALTHBOOK_SIGNING_KEY", "11" * 32)


def _encounter(encounter_id: str, version: int, admitted_at: str) -> dict:
    return {
        "facility_code": "94170",
        "encounter_id": encounter_id,
        "version": version,
        "visit_type": "03",
        "reason": "Đau đầu, chóng mặt",
        "admitted_at": admitted_at,
        "inpatient_at": admitted_at,
        "discharged_at": "2026-11-26T10:40",
        "result": "improved",  # as transforms.serving.book writes it
        "discharge_type": "discharged",
        "main_diagnosis": {"icd10": "I10", "text": HYPERTENSION},
        "secondary_diagnoses": [
            {"icd10": "E11", "text": "Bệnh đái tháo đường typ 2"},
            {"icd10": "Z95", "text": None},
        ],
        "indicators": {"weight_kg": 61.5, "height_cm": 165},
        "lab_results": [
            {
                "code": "GLU",
                "name": "Glucose máu",
                "value": "7.8",
                "unit": "mmol/L",
                "conclusion": "Tăng",
                "reported_at": "2026-11-24T09:00",
            }
        ],
        "medications": [
            {
                "code": "40.17",
                "name": "Amlodipin",
                "strength": "5mg",
                "route": "Uống",
                "dose": "1 viên/ngày",
                "quantity": 10,
                "ordered_at": "2026-11-24T08:30",
            }
        ],
        "procedures": [{"code": "89.52", "name": "Điện tâm đồ", "performed_at": "2026-11-24T08:45"}],
        "clinical_course": [{"at": "2026-11-25T07:00", "note": "Huyết áp ổn định 130/80 mmHg"}],
        "summary": {
            "medical_history": "Tăng huyết áp 5 năm",
            "treatment_method": "Nội khoa",
            "result": "died outside the facility",
        },
        "discharge_paper": {"archive_number": "RV-001", "note": "Tái khám sau 2 tuần"},
        "referral": None,
        "follow_up": {"date": "2026-12-10", "physician": "Trần Thị Bình"},
        "physician": "000123/HCM-CCHN",
        "source": {"file": "bv94170/night.xml", "received_on": "2026-11-26"},
    }


BOOK = {
    "found": True,
    "citizen": {
        "citizen_id": "079090001234",
        "full_name": "Nguyễn Văn An",
        "birth_date": "1990-03-14",
        "sex": "male",
        "province_code": "79",
        "ward_code": "26734",
        "social_insurance_number": "7909000123",
        "blood_group": None,
    },
    "allergies": [],
    "illnesses": [],
    "vaccinations": [],
    "encounters": [_encounter("LK002", 2, "2026-11-24T08:15"), _encounter("LK001", 1, "2026-10-01T08:00")],
}


def _text_of(path) -> str:
    text = " ".join(page.extract_text() for page in PdfReader(path).pages)
    return " ".join(text.split())


def test_one_pdf_per_encounter_with_deterministic_names(tmp_path):
    paths = write_encounter_pdfs(BOOK, tmp_path)
    assert [p.name for p in paths] == [
        "079090001234_94170_LK002_v2.pdf",
        "079090001234_94170_LK001_v1.pdf",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_vietnamese_diagnosis_text_is_in_the_text_layer(tmp_path):
    [path, _] = write_encounter_pdfs(BOOK, tmp_path)
    text = _text_of(path)
    assert HYPERTENSION in text
    assert "Nguyễn Văn An" in text
    # E11 by its name in the reference file (icd10_vi.csv), not the facility's own wording
    assert "E11 – Bệnh đái tháo đường không phụ thuộc insuline" in text


def test_the_whole_record_is_printed(tmp_path):
    [path, _] = write_encounter_pdfs(BOOK, tmp_path)
    text = _text_of(path)
    for expected in (
        "94170",  # facility
        "24/11/2026 08:15",  # admitted, dd/mm/yyyy
        "Glucose máu",  # lab result
        "Amlodipin",  # medication
        "Điện tâm đồ",  # procedure
        "Huyết áp ổn định 130/80 mmHg",  # clinical course
        "Tăng huyết áp 5 năm",  # summary
        "Tử vong ngoài cơ sở",  # the summary's result, in the form's words
        "Đỡ",  # the encounter's result "improved"
        "RV-001",  # discharge paper
        "10/12/2026",  # follow-up
        "000123/HCM-CCHN",  # physician
        "bv94170/night.xml",  # source
    ):
        assert expected in text, expected


def test_decomposed_vietnamese_input_is_printed_as_the_same_letters(tmp_path):
    import unicodedata

    book = copy.deepcopy(BOOK)
    book["encounters"] = book["encounters"][:1]
    book["encounters"][0]["main_diagnosis"]["text"] = unicodedata.normalize("NFD", HYPERTENSION)
    [path] = write_encounter_pdfs(book, tmp_path)
    assert HYPERTENSION in _text_of(path)


def test_rewriting_the_same_book_gives_identical_bytes(tmp_path):
    first = [p.read_bytes() for p in write_encounter_pdfs(BOOK, tmp_path / "a", issued_at=ISSUED)]
    second = [p.read_bytes() for p in write_encounter_pdfs(BOOK, tmp_path / "b", issued_at=ISSUED)]
    assert first == second


def test_a_book_not_found_writes_nothing(tmp_path):
    assert write_encounter_pdfs({"citizen": {"citizen_id": "079090001234"}, "found": False}, tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_missing_values_and_empty_lists_do_not_break_the_page(tmp_path):
    bare = {
        "facility_code": "01001",
        "encounter_id": "X1",
        "version": 1,
        **dict.fromkeys(
            ("visit_type", "reason", "admitted_at", "discharged_at", "main_diagnosis", "summary", "source"),
            None,
        ),
    }
    [path] = write_encounter_pdfs(
        {"found": True, "citizen": {"citizen_id": "001200000001"}, "encounters": [bare]}, tmp_path
    )
    assert "Không có" in _text_of(path)


def test_unsafe_encounter_ids_get_a_safe_distinct_file_name():
    a = encounter_pdf_name("079090001234", {"facility_code": "94170", "encounter_id": "LK/1", "version": 1})
    b = encounter_pdf_name("079090001234", {"facility_code": "94170", "encounter_id": "LK:1", "version": 1})
    assert a.startswith("079090001234_94170_LK_1_v1-") and a.endswith(".pdf")
    assert a != b


def test_pdfs_of_a_book_served_by_the_real_load_stage(tmp_path):
    """Integration: the book that transforms.serving.book serves after a real load renders, text intact."""
    from serving_fixtures import NIGHT1, context
    from test_load_serving import night_one

    from transforms.load import stage as load
    from transforms.serving.book import books_for

    ctx = context(tmp_path, NIGHT1)
    night_one(ctx)  # LK1 (hypertension, Nguyễn Văn An) loads
    load.load_night(ctx)
    [book] = books_for(ctx.serving_url, ["079090001234"])
    paths = write_encounter_pdfs(book, tmp_path / "pdf")
    assert [p.name for p in paths] == ["079090001234_94170_LK1_v1.pdf"]
    text = _text_of(paths[0])
    assert "Nguyễn Văn An" in text
    assert f"I10 – {HYPERTENSION}" in text  # the fixture's CHAN_DOAN_RV, through serving and the book
