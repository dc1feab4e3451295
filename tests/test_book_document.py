"""The citizen's book document and the examination PDFs, read back through their text layer.

Four groups (HEALTHBOOK.md), Vietnamese names from the reference files beside their codes,
dd/mm/yyyy dates, a header and "Trang x/y" on every page, and (issue #16 item 6) long text that
wraps across pages, one failing encounter that does not stop the others, characters the font lacks
reported rather than dropped.
"""

from __future__ import annotations

import copy
import datetime as dt
import re

import pytest
from pypdf import PdfReader

from transforms.serving import book_names
from transforms.serving.pdf import PdfReport, write_book_pdf, write_encounter_pdfs

ISSUED = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
AN = "079090001234"


@pytest.fixture(autouse=True)
def signing_key_setting(monkeypatch):
    monkeypatch.setenv("HEALTHBOOK_SIGNING_KEY", "22" * 32)


def encounter(encounter_id="LK1", **extra) -> dict:
    """An inpatient stay at facility 01700 (in facilities.csv) with coded values of every list."""
    return {
        "facility_code": "01700",
        "encounter_id": encounter_id,
        "version": 1,
        "visit_type": "03",
        "reason": "Đau bụng",
        "admitted_at": "2026-11-20T09:00",
        "inpatient_at": "2026-11-20T10:00",
        "discharged_at": "2026-11-25T16:00",
        "result": "improved",
        "result_code": "2",
        "discharge_type": "discharged",
        "discharge_type_code": "1",
        "main_diagnosis": {"icd10": "K29.7", "text": "Viêm dạ dày"},
        "secondary_diagnoses": [
            {"icd10": "I10", "text": None},
            {"icd10": "Q99.99", "text": "Bệnh lạ do cơ sở ghi"},  # not in icd10_vi.csv
        ],
        "indicators": {"weight_kg": 61.5, "height_cm": 165},
        "lab_results": [],
        "medications": [
            {
                "code": "40.17",
                "name": "Omeprazol",
                "strength": "40mg",
                "route": "2.15",
                "dose": "1 lọ/ngày",
                "quantity": 5,
                "ordered_at": "2026-11-20T11:00",
            }
        ],
        "procedures": [],
        "clinical_course": [{"at": "2026-11-21T07:00", "note": "Bớt đau"}],
        "summary": {"medical_history": "Đau thượng vị 3 ngày", "treatment_method": "Nội khoa"},
        "discharge_paper": {"department": "K05", "archive_number": "RV-7"},
        "referral": None,
        "follow_up": {"date": "2026-12-10", "physician": None},
        "physician": "BS. Lê Văn Cường",
        "source": {"file": "01700/night.xml", "received_on": "2026-11-26"},
        **extra,
    }


BOOK = {
    "found": True,
    "citizen": {
        "citizen_id": AN,
        "full_name": "Nguyễn Văn An",
        "birth_date": "1990-03-14",
        "sex": "male",
        "province_code": "79",
        "ward_code": "26734",
        "social_insurance_number": "7909000123",
        "blood_group": "O",
    },
    "allergies": [
        {
            "substance": "Penicilin",
            "code": "764146007",
            "reaction": "Mày đay",
            "severity": "moderate",
            "recorded_at": "2025-05-02T10:00",
        }
    ],
    "illnesses": [
        {
            "icd10": "I10",
            "name": "Essential (primary) hypertension",
            "name_vi": "Tăng huyết áp vô căn (nguyên phát)",
            "first_seen": "2024-01-05",
            "last_seen": "2026-11-25",
        }
    ],
    "vaccinations": [
        {
            "vaccine_code": "VX-HBV",
            "vaccine": "Viêm gan B",
            "dose_number": 2,
            "date": "2025-03-01",
            "facility_code": "01700",
            "lot": "QV1234",
        }
    ],
    "encounters": [encounter()],
}


def pages_of(path) -> list[str]:
    return [" ".join(page.extract_text().split()) for page in PdfReader(path).pages]


def flat(path) -> str:
    return " ".join(pages_of(path))


def test_the_book_document_holds_the_four_groups(tmp_path):
    path = write_book_pdf(BOOK, tmp_path, issued_at=ISSUED)
    assert path.name == f"{AN}_book.pdf"
    text = flat(path)
    # 1. administration, from the registry part of the book
    assert "I. Thông tin hành chính" in text and "Nguyễn Văn An" in text and "14/03/1990" in text
    # 2. allergies, illnesses with first/last seen, vaccinations
    assert "II. Tiền sử" in text
    assert "Penicilin" in text and "Mày đay" in text
    assert "I10 – Tăng huyết áp vô căn (nguyên phát)" in text  # Vietnamese, not the WHO English title
    assert "Essential" not in text
    assert "05/01/2024" in text and "25/11/2026" in text  # first and last seen
    assert "Viêm gan B" in text and "QV1234" in text
    # 3. the list of encounters: dates, facility by name, visit type, main diagnosis
    assert "III. Các lần khám bệnh, chữa bệnh" in text
    assert "20/11/2026 09:00 – 25/11/2026 16:00" in text
    assert "Bệnh viện Đa khoa Hà Nội 1 (01700)" in text  # facilities.csv
    assert "K29.7 – Viêm dạ dày, không đặc hiệu" in text
    # 4. the summary of the medical record of the stay
    assert "IV. Tóm tắt hồ sơ bệnh án" in text and "Đau thượng vị 3 ngày" in text
    # verification: issue time and content digest printed
    assert "01/12/2026 09:30" in text and re.search(r"SHA-256\): [0-9a-f]{64}", text)


def test_the_examination_pdf_shows_names_beside_codes_and_marks_unknown_codes(tmp_path):
    [path] = write_encounter_pdfs(BOOK, tmp_path, issued_at=ISSUED)
    text = flat(path)
    assert "Tiêm tĩnh mạch (2.15)" in text  # route, routes.csv
    assert "Khoa Nội tiêu hóa (K05)" in text  # department, departments.csv
    assert "Bệnh viện Đa khoa Hà Nội 1 (01700)" in text  # facility
    assert "Điều trị nội trú (03)" in text and "Đỡ (2)" in text and "Ra viện (1)" in text
    assert "E11" not in text and "I10 – Tăng huyết áp vô căn (nguyên phát)" in text  # secondary by name
    # a code outside the list: as sent, marked, with the facility's own text and the legend
    assert "Q99.99* – Bệnh lạ do cơ sở ghi (văn bản chẩn đoán của cơ sở)" in text
    assert "* Mã không có trong danh mục tham chiếu" in text
    assert "10/12/2026" in text and "2026-12-10" not in text  # dd/mm/yyyy


def test_names_come_from_the_reference_files(tmp_path, monkeypatch):
    """A deployment's own routes list (HEALTHBOOK_REFERENCE_DIR): the document prints its name."""
    folder = tmp_path / "reference"
    folder.mkdir()
    packaged = (book_names.REFERENCE_DIR / "routes.csv").read_text(encoding="utf-8")
    (folder / "routes.csv").write_text(packaged.replace("Tiêm tĩnh mạch", "Tiêm TM (thử)"), "utf-8")
    monkeypatch.setenv("HEALTHBOOK_REFERENCE_DIR", str(folder))
    book_names._table.cache_clear()
    try:
        [path] = write_encounter_pdfs(BOOK, tmp_path / "pdf", issued_at=ISSUED)
        assert "Tiêm TM (thử) (2.15)" in flat(path)
    finally:
        book_names._table.cache_clear()


def test_every_page_has_the_header_and_is_numbered(tmp_path):
    # 30 encounters make the book document run over more than one page
    book = copy.deepcopy(BOOK)
    book["encounters"] = [encounter(f"LK{k}") for k in range(30)]
    pages = pages_of(write_book_pdf(book, tmp_path, issued_at=ISSUED))
    assert len(pages) >= 2
    for k, page in enumerate(pages, start=1):
        assert f"Trang {k}/{len(pages)}" in page
        assert "Nguyễn Văn An · 079090001234" in page  # the citizen, in the header
        assert "Sổ sức khỏe điện tử – bản tổng hợp" in page  # the document, in the header
    assert "Trang 1/" + str(len(pages)) in pages[0]


def test_no_page_is_nearly_blank(tmp_path):
    """Every page carries content besides its header and footer (the third page of the old layout
    held one line)."""
    [path] = write_encounter_pdfs(BOOK, tmp_path, issued_at=ISSUED)
    for page in PdfReader(path).pages:
        lines = [line for line in page.extract_text().splitlines() if line.strip()]
        assert len(lines) >= 5, lines  # header, footer and at least three lines of the record


def test_a_1024_character_drug_name_wraps_across_pages(tmp_path):
    """Issue #16 item 6: 1,024 characters (the standard's limit) failed with 'row ... too high'."""
    name = ("Thuốc tên rất dài " * 60)[:1024]
    book = copy.deepcopy(BOOK)
    book["encounters"][0]["medications"][0]["name"] = name
    report = PdfReport()
    [path] = write_encounter_pdfs(book, tmp_path, issued_at=ISSUED, report=report)
    assert report.failed == []
    pages = pages_of(path)
    assert len(pages) >= 2
    # 1,024 = 56 x 18 + 16: the phrase 56 times whole, then "Thuốc tên rất dà"; lines wrap at
    # spaces, so every word is in the text layer, once: "rất" 56 + 1 times, the cut "dà" once
    words = " ".join(pages).split()
    assert words.count("rất") == 57 and words.count("dài") == 56 and words.count("dà") == 1


def test_a_failing_encounter_does_not_stop_the_other_pdfs(tmp_path):
    book = copy.deepcopy(BOOK)
    broken = encounter("LK-BAD", lab_results=["not a row"])  # hostile shape: a row that is no mapping
    book["encounters"] = [broken, encounter("LK2")]
    report = PdfReport()
    paths = write_encounter_pdfs(book, tmp_path, issued_at=ISSUED, report=report)
    assert [p.name for p in paths] == [f"{AN}_01700_LK2_v1.pdf"]
    assert [name for name, _ in report.failed] == [f"{AN}_01700_LK-BAD_v1.pdf"]
    assert "AttributeError" in report.failed[0][1]


def test_characters_missing_from_the_font_are_reported_not_dropped(tmp_path):
    book = copy.deepcopy(BOOK)
    book["encounters"][0]["medications"][0]["name"] = "Thuốc 😀 A\x00B"
    report = PdfReport()
    [path] = write_encounter_pdfs(book, tmp_path, issued_at=ISSUED, report=report)
    assert report.missing == {path.name: {"😀", "\x00"}}
    text = flat(path)
    assert "Thuốc [U+1F600] A[U+0000]B" in text


def test_the_cli_writes_the_book_document_and_the_encounter_pdfs(tmp_path):
    from serving_fixtures import NIGHT1, context
    from test_load_serving import night_one
    from typer.testing import CliRunner

    from transforms.load import stage as load
    from transforms.orchestration.cli import app

    ctx = context(tmp_path, NIGHT1)
    night_one(ctx)
    load.load_night(ctx)
    out = tmp_path / "pdf"
    result = CliRunner().invoke(
        app, ["book", "--warehouse", str(ctx.warehouse.root), "--citizen", AN, "--pdf", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [f"{AN}_94170_LK1_v1.pdf", f"{AN}_book.pdf"]
    assert "Nguyễn Văn An" in flat(out / f"{AN}_book.pdf")


def test_the_cli_reports_a_failed_pdf_and_missing_characters_and_exits_1(tmp_path, monkeypatch):
    """`book --pdf` goes on past a failing encounter, names it and every character the font lacks
    on stderr, and exits 1 so that a scheduler notices."""
    import json

    from typer.testing import CliRunner

    from transforms.orchestration import cli
    from transforms.serving import book as book_module

    hostile = copy.deepcopy(BOOK)
    hostile["encounters"] = [encounter("LK-BAD", lab_results=["not a row"]), encounter("LK2")]
    hostile["encounters"][1]["reason"] = "Đau \U0001f600"
    # a book the serving database cannot produce (a lab row that is no mapping) stands in for "an
    # encounter whose PDF fails": the read is replaced, the CLI and the PDF writers are the real ones
    monkeypatch.setattr(book_module, "books_for", lambda url, ids: [hostile])
    out = tmp_path / "pdf"
    result = CliRunner().invoke(
        cli.app, ["book", "--warehouse", str(tmp_path), "--citizen", AN, "--pdf", str(out)]
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout.splitlines()[0])["citizen"]["citizen_id"] == AN  # the JSON still printed
    assert f"{AN}_01700_LK-BAD_v1.pdf was not written" in " ".join(result.stderr.split())
    assert "U+1F600" in result.stderr
    # 3 attempted, 2 written: the book document and LK2 (LK-BAD failed)
    assert sorted(p.name for p in out.iterdir()) == [f"{AN}_01700_LK2_v1.pdf", f"{AN}_book.pdf"]
