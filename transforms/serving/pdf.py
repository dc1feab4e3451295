"""The citizen's book as PDF documents: the book document and one record per examination.

Input is one health book in the INTERFACES.md "One health book" shape (`transforms.serving.book.books_for`).
Output, per citizen, is one book document with the four groups of HEALTHBOOK.md (administration;
allergies, illnesses and vaccinations; the list of examinations; the medical record summaries), and
one PDF per encounter, the detailed record a citizen downloads. Codes are shown by their Vietnamese
names (`transforms.serving.book_names`, versioned reference files) with the code beside them; a code not in
its list is printed as sent with a mark. Dates are dd/mm/yyyy. Every page has a header (the citizen
and the document) and a footer "Trang x/y". Every document carries its issue time, the SHA-256
digest of its content and a QR code with a signed token (`transforms.serving.signing`), which
`healthbook verify` checks against the serving database.

The text is Vietnamese, so the PDF embeds Be Vietnam Pro (a TTF designed for Vietnamese, shipped
on PyPI by `fontpkg-be-vietnam-pro`, OFL-1.1): the core PDF fonts cover Latin-1 only. A character
the font does not have is printed as "[U+XXXX]" and reported (PdfReport.missing), never dropped.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fontpkg_be_vietnam_pro
import segno
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from transforms.core.safe_io import atomic_path
from transforms.serving import book_names, signing

FONT_FAMILY = "BeVietnamPro"
FONT_FILES = {
    "": fontpkg_be_vietnam_pro.ROOT / "files" / "BeVietnamPro-Regular.ttf",
    "B": fontpkg_be_vietnam_pro.ROOT / "files" / "BeVietnamPro-Bold.ttf",
}  # no italic: every embedded font costs a subsetting pass per document (notes are grey instead)

# Values `transforms.serving.book` writes in English words, shown in the form's wording (the words of a
# code the reference lists name are the same; these serve the nested papers, which carry words only).
RESULTS = {
    "cured": "Khỏi",
    "improved": "Đỡ",
    "unchanged": "Không thay đổi",
    "worse": "Nặng hơn",
    "died at the facility": "Tử vong tại cơ sở",
    "grave prognosis, taken home at the family's request": "Tiên lượng nặng, gia đình xin về",
    "undetermined": "Chưa xác định",
    "died outside the facility": "Tử vong ngoài cơ sở",
}
DISCHARGE_TYPES = {
    "discharged": "Ra viện",
    "transferred for professional reasons": "Chuyển tuyến theo yêu cầu chuyên môn",
    "absconded": "Trốn viện",
    "left on request": "Xin ra viện",
    "transferred at the patient's request": "Chuyển tuyến theo yêu cầu người bệnh",
}
VALUE_LABELS = {"result": RESULTS, "discharge_type": DISCHARGE_TYPES}
SEXES = {"male": "Nam", "female": "Nữ", "undetermined": "Chưa xác định"}
# The mark after a code that is not in its reference list (printed as sent).
UNKNOWN_MARK = "*"
UNKNOWN_NOTE = "* Mã không có trong danh mục tham chiếu: in nguyên văn như cơ sở gửi."
FACILITY_TEXT_NOTE = "(văn bản chẩn đoán của cơ sở)"
# Keys whose values are dates or instants, printed dd/mm/yyyy [HH:MM].
DATE_KEYS = {
    "at",
    "date",
    "birth_date",
    "death_date",
    "first_seen",
    "last_seen",
    "issued_on",
    "leave_from",
    "leave_to",
    "follow_up_date",
    "appointment_on",
    "received_on",
}
# Nested-paper keys whose name the book adds beside the code ("department" -> "department_name").
NAMED_KEYS = {"department", "from_facility", "to_facility"}
# Keys of the nested papers (summary, discharge paper, referral, follow-up) that have a form label;
# any other key is printed under its own name rather than hidden.
FIELD_LABELS = {
    "medical_history": "Quá trình bệnh lý",
    "paraclinical_summary": "Tóm tắt kết quả cận lâm sàng",
    "treatment_method": "Phương pháp điều trị",
    "treatment_plan": "Hướng điều trị",
    "instructions": "Lời dặn của bác sĩ",
    "prescriptions": "Đơn thuốc",
    "note": "Ghi chú",
    "admission_diagnosis": "Chẩn đoán vào viện",
    "discharge_diagnosis": "Chẩn đoán ra viện",
    "admitted_at": "Thời điểm vào viện",
    "discharged_at": "Thời điểm ra viện",
    "issued_on": "Ngày cấp",
    "archive_number": "Số lưu trữ",
    "department_head_name": "Trưởng khoa",
    "physician": "Bác sĩ",
    "date": "Ngày hẹn",
    "appointment_on": "Ngày hẹn khám lại",
    "appointment_number": "Số giấy hẹn",
    "referral_number": "Số giấy chuyển tuyến",
    "from_facility": "Nơi chuyển đi",
    "to_facility": "Nơi chuyển đến",
    "clinical_signs": "Dấu hiệu lâm sàng",
    "condition_at_transfer": "Tình trạng người bệnh lúc chuyển tuyến",
    "referral_reason_code": "Lý do chuyển tuyến",
    "transport": "Phương tiện vận chuyển",
    "escort_name": "Người hộ tống",
    "leave_days": "Số ngày nghỉ",
    "result": "Kết quả điều trị",
    "department": "Khoa ra viện",
    "diagnosis": "Chẩn đoán",
    "follow_up_date": "Ngày hẹn khám lại",
    "leave_from": "Nghỉ từ ngày",
    "leave_to": "Nghỉ đến ngày",
    "pregnancy_terminated": "Đình chỉ thai nghén",
    "termination_reason": "Nguyên nhân đình chỉ",
    "terminated_at": "Thời gian đình chỉ",
    "gestation_weeks": "Tuổi thai (tuần)",
    "reason_code": "Mã lý do chuyển tuyến",
    "discharge_type": "Hình thức ra viện",
    "physicians": "Bác sĩ",
}

_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
# A table row is cut into pieces of at most this many lines per cell, so that a long cell (a
# 1,024-character drug name) wraps and continues on the next page instead of failing the PDF.
ROW_LINES = 15
# A cell this short wraps to fewer than ROW_LINES lines even in the narrowest column (12 mm at 8 pt
# holds 5 or more characters a line), so only longer cells are measured.
SHORT_CELL = 70


@dataclass(frozen=True)
class Stamp:
    """What makes a document verifiable: the issue time, the content digest and the signed token."""

    issued_at: dt.datetime  # UTC, to the minute
    digest: str
    token: str


def document_content(kind: str, book: Mapping[str, Any], encounter: Mapping[str, Any] | None = None):
    """The content a document shows and its digest covers: the whole book, or the citizen and one
    encounter. `healthbook verify` recomputes it from the serving database."""
    if kind == "book":
        return {k: book.get(k) for k in ("citizen", "allergies", "illnesses", "vaccinations", "encounters")}
    return {"citizen": book.get("citizen"), "encounter": encounter}


def stamp_for(
    kind: str,
    book: Mapping[str, Any],
    issued_at: dt.datetime,
    key,
    encounter: Mapping[str, Any] | None = None,
) -> Stamp:
    """Sign a document: the token names the document, its issue time and its content digest."""
    issued_at = issued_at.astimezone(dt.UTC).replace(second=0, microsecond=0)
    digest = signing.content_digest(document_content(kind, book, encounter))
    payload = {
        "t": kind,
        "c": (book.get("citizen") or {}).get("citizen_id"),
        "i": issued_at.strftime("%Y-%m-%dT%H:%MZ"),
        "d": digest,
    }
    if encounter is not None:
        payload["e"] = [
            encounter.get("facility_code"),
            encounter.get("encounter_id"),
            encounter.get("version"),
        ]
    return Stamp(issued_at, digest, signing.sign(payload, key))


def issued_at_of(token_payload: Mapping[str, Any]) -> dt.datetime:
    return dt.datetime.strptime(token_payload["i"], "%Y-%m-%dT%H:%MZ").replace(tzinfo=dt.UTC)


@dataclass
class PdfReport:
    """What one `write_*` call did: files written, encounters that failed, characters not in the font."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file name, error)
    missing: dict[str, set[str]] = field(default_factory=dict)  # file name -> characters


def book_pdf_name(citizen_id: str) -> str:
    """The book document's file name: `<citizen_id>_book.pdf` (unsafe characters as for encounters)."""
    safe = _UNSAFE_FILE_CHARS.sub("_", str(citizen_id))
    if safe != str(citizen_id):
        safe += "-" + hashlib.sha256(str(citizen_id).encode()).hexdigest()[:8]
    return f"{safe}_book.pdf"


def encounter_pdf_name(citizen_id: str, encounter: Mapping[str, Any]) -> str:
    """The deterministic file name of one encounter version's PDF.

    `<citizen_id>_<facility>_<encounter_id>_v<version>.pdf`; characters unsafe in a file name are
    replaced by "_", and then a short hash of the raw parts is appended so that two encounter IDs that
    differ only in such characters never share a file.
    """
    parts = [str(citizen_id), str(encounter.get("facility_code")), str(encounter.get("encounter_id"))]
    safe = [_UNSAFE_FILE_CHARS.sub("_", p) for p in parts]
    stem = f"{safe[0]}_{safe[1]}_{safe[2]}_v{encounter.get('version')}"
    if safe != parts:
        stem += "-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:8]
    return stem + ".pdf"


def _save(pdf: FPDF, path: Path) -> None:
    """Write a laid-out document to `path` through a temporary file (a reader never sees half a file)."""
    with atomic_path(path) as tmp:  # created O_EXCL: a planted name is not followed
        pdf.output(str(tmp))


def write_encounter_pdfs(
    book: dict,
    out_dir: Path,
    *,
    issued_at: dt.datetime | None = None,
    key=None,
    report: PdfReport | None = None,
) -> list[Path]:
    """Write one PDF per encounter of `book` into `out_dir`; the paths, in the book's encounter order.

    A book that was not found, or has no encounters, writes nothing and returns []. An encounter
    whose PDF fails is recorded in `report.failed` and the others are still written. Re-writing the
    same book with the same `issued_at` gives byte-identical files. `key`: the signing key (default:
    the setting, `transforms.serving.signing.signing_key`).
    """
    if not book.get("found"):
        return []
    report = report if report is not None else PdfReport()
    issued_at = issued_at or dt.datetime.now(dt.UTC)
    key = key if key is not None else signing.signing_key()
    out_dir.mkdir(parents=True, exist_ok=True)
    citizen = book.get("citizen") or {}
    paths = []
    for encounter in book.get("encounters") or []:
        name = encounter_pdf_name(citizen.get("citizen_id"), encounter)
        try:
            stamp = stamp_for("encounter", book, issued_at, key, encounter)
            pdf, missing = render_encounter(citizen, encounter, stamp)
            _save(pdf, out_dir / name)
        except Exception as e:  # one encounter's failure must not stop the citizen's other records
            report.failed.append((name, f"{type(e).__name__}: {e}"))
            continue
        if missing:
            report.missing[name] = missing
        report.written.append(out_dir / name)
        paths.append(out_dir / name)
    return paths


def write_book_pdf(
    book: dict,
    out_dir: Path,
    *,
    issued_at: dt.datetime | None = None,
    key=None,
    report: PdfReport | None = None,
) -> Path | None:
    """Write the citizen's book document (four groups) into `out_dir`; None for a book not found."""
    if not book.get("found"):
        return None
    report = report if report is not None else PdfReport()
    issued_at = issued_at or dt.datetime.now(dt.UTC)
    key = key if key is not None else signing.signing_key()
    out_dir.mkdir(parents=True, exist_ok=True)
    name = book_pdf_name((book.get("citizen") or {}).get("citizen_id"))
    try:
        pdf, missing = render_book(book, stamp_for("book", book, issued_at, key))
        _save(pdf, out_dir / name)
    except Exception as e:
        report.failed.append((name, f"{type(e).__name__}: {e}"))
        return None
    if missing:
        report.missing[name] = missing
    report.written.append(out_dir / name)
    return out_dir / name


# ---------------------------------------------------------------------------------------------
# the two documents


def render_encounter(
    citizen: Mapping[str, Any], encounter: Mapping[str, Any], stamp: Stamp | None = None
) -> tuple[FPDF, set[str]]:
    """The laid-out PDF of one encounter (not yet written) and the characters missing from the font."""
    title = "Chi tiết lần khám bệnh, chữa bệnh"
    w = _Writer(citizen, title, stamp)
    w.title(title)

    w.heading("Thông tin người bệnh")
    _citizen_fields(w, citizen, short=True)

    w.heading("Cơ sở khám bệnh, chữa bệnh")
    w.field("Cơ sở KBCB", w.coded("facility", encounter.get("facility_code"), encounter.get("facility_name")))
    w.field("Mã lượt khám (MA_LK)", encounter.get("encounter_id"))
    w.field("Phiên bản hồ sơ", encounter.get("version"))
    w.field(
        "Hình thức KBCB",
        w.coded("visit_type", encounter.get("visit_type"), encounter.get("visit_type_name")),
    )
    w.field("Lý do đến khám", encounter.get("reason"))
    w.field("Thời điểm vào", _date_vi(encounter.get("admitted_at")))
    w.field("Thời điểm vào nội trú", _date_vi(encounter.get("inpatient_at")))
    w.field("Thời điểm ra", _date_vi(encounter.get("discharged_at")))
    w.field("Kết quả điều trị", _result(w, encounter))
    w.field("Tình trạng ra viện", _discharge_type(w, encounter))
    # the place for marks of the record (an incomplete stay, the diagnosis's source) when they exist
    for line in encounter_marks(encounter):
        w.mark(line)

    w.heading("Chẩn đoán")
    main = encounter.get("main_diagnosis") or {}
    w.field("Bệnh chính", w.diagnosis(main) if main else None)
    secondary = encounter.get("secondary_diagnoses") or []
    if secondary:
        for k, d in enumerate(secondary):
            w.field("Bệnh kèm theo" if k == 0 else "", w.diagnosis(d))
    else:
        w.field("Bệnh kèm theo", None)

    indicators = encounter.get("indicators") or {}
    w.heading("Chỉ số lâm sàng")
    w.field("Cân nặng (kg)", indicators.get("weight_kg"))
    w.field("Chiều cao (cm)", indicators.get("height_cm"))
    for key, value in indicators.items():
        if key not in ("weight_kg", "height_cm"):
            w.field(key, value)

    w.heading("Kết quả cận lâm sàng")
    w.rows(
        encounter.get("lab_results"),
        (
            ("Mã", "code", 14),
            ("Chỉ số", "name", 36),
            ("Kết quả", "value", 24),
            ("Đơn vị", "unit", 16),
            ("Kết luận", "conclusion", 50),
            ("Thời điểm", "reported_at", 0),
        ),
    )
    w.heading("Thuốc")
    meds = [
        {**m, "route": w.coded("route", m.get("route"), m.get("route_name"))}
        for m in encounter.get("medications") or []
    ]
    w.rows(
        meds,
        (
            ("Mã", "code", 16),
            ("Tên thuốc", "name", 38),
            ("Hàm lượng", "strength", 18),
            ("Đường dùng", "route", 28),
            ("Liều dùng", "dose", 28),
            ("Số lượng", "quantity", 14),
            ("Thời điểm chỉ định", "ordered_at", 0),
        ),
    )
    w.heading("Phẫu thuật, thủ thuật")
    w.rows(
        encounter.get("procedures"),
        (("Mã", "code", 25), ("Tên", "name", 110), ("Thời điểm thực hiện", "performed_at", 0)),
    )
    w.heading("Diễn biến lâm sàng")
    w.rows(encounter.get("clinical_course"), (("Thời điểm", "at", 36), ("Diễn biến", "note", 0)))

    w.heading("Tóm tắt hồ sơ bệnh án")
    w.paper(encounter.get("summary"))
    w.heading("Giấy ra viện")
    w.paper(encounter.get("discharge_paper"))
    w.heading("Giấy chuyển tuyến")
    w.paper(encounter.get("referral"))
    w.heading("Hẹn khám lại")
    w.paper(encounter.get("follow_up"))

    w.heading("Bác sĩ điều trị và nguồn dữ liệu")
    w.field("Bác sĩ điều trị", encounter.get("physician"))
    source = encounter.get("source") or {}
    w.field("Tệp dữ liệu gốc", source.get("file"))
    w.field("Ngày tiếp nhận", _date_vi(source.get("received_on")))
    w.closing()
    return w.pdf, w.missing


def render_book(book: Mapping[str, Any], stamp: Stamp | None = None) -> tuple[FPDF, set[str]]:
    """The laid-out book document (four groups of HEALTHBOOK.md) and the characters missing."""
    citizen = book.get("citizen") or {}
    title = "Sổ sức khỏe điện tử – bản tổng hợp"
    w = _Writer(citizen, title, stamp)
    w.title(title)

    w.heading("I. Thông tin hành chính")
    _citizen_fields(w, citizen, short=False)

    w.heading("II. Tiền sử: dị ứng, bệnh tật, tiêm chủng")
    w.subheading("Dị ứng")
    w.rows(
        book.get("allergies"),
        (
            ("Tác nhân", "substance", 45),
            ("Mã", "code", 25),
            ("Phản ứng", "reaction", 45),
            ("Mức độ", "severity", 25),
            ("Ngày ghi nhận", "recorded_at", 0),
        ),
    )
    w.subheading("Bệnh mạn tính và bệnh đáng kể")
    illnesses = [
        # no fallback text: the other title the book has is WHO's English one, not Vietnamese
        {**i, "name": w.named_code("icd10", i.get("icd10"), i.get("name_vi"))}
        for i in book.get("illnesses") or []
    ]
    w.rows(
        illnesses,
        (("Bệnh (mã ICD-10)", "name", 110), ("Lần đầu", "first_seen", 35), ("Lần gần nhất", "last_seen", 0)),
    )
    w.subheading("Tiêm chủng")
    vaccinations = [
        {
            **v,
            "vaccine": _join(
                v.get("vaccine"), f"({v.get('vaccine_code')})" if v.get("vaccine_code") else None
            ),
            "facility_code": w.coded("facility", v.get("facility_code"), v.get("facility_name")),
        }
        for v in book.get("vaccinations") or []
    ]
    w.rows(
        vaccinations,
        (
            ("Vắc xin", "vaccine", 55),
            ("Mũi", "dose_number", 12),
            ("Ngày tiêm", "date", 24),
            ("Nơi tiêm", "facility_code", 55),
            ("Số lô", "lot", 0),
        ),
    )

    w.heading("III. Các lần khám bệnh, chữa bệnh")
    encounters = book.get("encounters") or []
    w.rows(
        [
            {
                "when": _join(_date_vi(e.get("admitted_at")), "–", _date_vi(e.get("discharged_at"))),
                "facility": w.coded("facility", e.get("facility_code"), e.get("facility_name")),
                "visit": w.coded("visit_type", e.get("visit_type"), e.get("visit_type_name")),
                "diagnosis": w.diagnosis(e.get("main_diagnosis")) if e.get("main_diagnosis") else None,
                "result": _result(w, e),
                "id": f"{e.get('encounter_id')} (v{e.get('version')})",
            }
            for e in encounters
        ],
        (
            ("Thời gian", "when", 36),
            ("Cơ sở KBCB", "facility", 36),
            ("Hình thức", "visit", 26),
            ("Chẩn đoán chính", "diagnosis", 46),
            ("Kết quả", "result", 18),
            ("Mã lượt khám", "id", 0),
        ),
    )
    w.note(f"Chi tiết từng lần khám có trong tệp PDF riêng của lần khám đó ({len(encounters)} lần).")

    w.heading("IV. Tóm tắt hồ sơ bệnh án")
    stays = [e for e in encounters if e.get("summary")]
    if not stays:
        w.none("Không có (tóm tắt hồ sơ bệnh án chỉ có với đợt điều trị nội trú, nội trú ban ngày)")
    for e in stays:
        w.subheading(
            _join(
                _date_vi(e.get("admitted_at")),
                "–",
                _date_vi(e.get("discharged_at")),
                "·",
                w.coded("facility", e.get("facility_code"), e.get("facility_name")),
            )
        )
        w.paper(e.get("summary"))
    w.closing()
    return w.pdf, w.missing


def encounter_marks(encounter: Mapping[str, Any]) -> list[str]:
    """Lines printed under the encounter's facility block about the record itself: a stay
    published after its grace period says which late tables it lacks (issue #15)."""
    marks = []
    if missing := encounter.get("incomplete"):
        names = {"discharge_paper": "Giấy ra viện (XML7)", "summary": "Tóm tắt hồ sơ bệnh án (XML8)"}
        marks.append("Hồ sơ chưa đầy đủ, còn thiếu: " + ", ".join(names.get(m, m) for m in missing))
    return marks


def _citizen_fields(w: _Writer, citizen: Mapping[str, Any], short: bool) -> None:
    w.field("Họ và tên", citizen.get("full_name"))
    w.field("Số định danh cá nhân", citizen.get("citizen_id"))
    w.field("Ngày sinh", _date_vi(citizen.get("birth_date")))
    w.field("Giới tính", SEXES.get(citizen.get("sex"), citizen.get("sex")))
    w.field("Số BHXH", citizen.get("social_insurance_number"))
    if short:
        return
    w.field("Dân tộc (mã)", citizen.get("ethnicity_code"))
    w.field("Quốc tịch (mã)", citizen.get("nationality_code"))
    w.field("Tỉnh/thành phố cư trú (mã)", citizen.get("province_code"))
    w.field("Xã/phường cư trú (mã)", citizen.get("ward_code"))
    w.field("Nhóm máu", citizen.get("blood_group"))
    if citizen.get("death_date"):
        w.field("Ngày mất", _date_vi(citizen.get("death_date")))


def _result(w: _Writer, e: Mapping[str, Any]) -> str | None:
    if e.get("result_code") is not None:
        return w.coded("result", e.get("result_code"), e.get("result_name"))
    return RESULTS.get(e.get("result"), e.get("result"))


def _discharge_type(w: _Writer, e: Mapping[str, Any]) -> str | None:
    if e.get("discharge_type_code") is not None:
        return w.coded("discharge_type", e.get("discharge_type_code"), e.get("discharge_type_name"))
    return DISCHARGE_TYPES.get(e.get("discharge_type"), e.get("discharge_type"))


# ---------------------------------------------------------------------------------------------
# values


def _join(*parts) -> str | None:
    shown = [str(p) for p in parts if p not in (None, "")]
    return " ".join(shown) if any(p not in ("–", "·") for p in shown) else None


def _date_vi(value: Any) -> str | None:
    """ISO dates and instants as Vietnamese forms write them: dd/mm/yyyy, dd/mm/yyyy HH:MM; a date
    known to the month or the year only as mm/yyyy or yyyy; anything else as sent."""
    if value is None or value == "":
        return None
    text = str(value)
    m = re.fullmatch(
        r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}:\d{2})(?::\d{2}(?:\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?", text
    )
    if m:
        y, mo, d, hm, _ = m.groups()
        return f"{d}/{mo}/{y}" + (f" {hm}" if hm else "")
    if m := re.fullmatch(r"(\d{4})-(\d{2})", text):
        return f"{m.group(2)}/{m.group(1)}"
    return text


def _text(value: Any) -> str:
    """Display text of a value: NFC (precomposed letters the font has glyphs for), "" for none."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Có" if value else "Không"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list | tuple):
        return "; ".join(_text(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items() if v not in (None, "", []))
    return unicodedata.normalize("NFC", str(value))


@functools.cache
def _font_chars() -> frozenset[int]:
    """Code points every embedded style of the font has a glyph for."""
    sets = [set(TTFont(str(path), lazy=True).getBestCmap()) for path in FONT_FILES.values()]
    return frozenset(set.intersection(*sets))


def _printable(text: str, missing: set[str]) -> str:
    """`text` with every character the font cannot draw (and every control character) written as
    "[U+XXXX]" and added to `missing`: reported, never silently dropped."""
    chars = _font_chars()
    out = []
    for ch in text:
        if ch == "\n" or (ord(ch) in chars and unicodedata.category(ch)[0] != "C"):
            out.append(ch)
        elif ch == "\t":
            out.append(" ")
        else:
            missing.add(ch)
            out.append(f"[U+{ord(ch):04X}]")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# layout


class _Document(FPDF):
    """An A4 page with the document's header (citizen and document) and footer ("Trang x/y")."""

    def __init__(self, header_left: str, header_right: str, footer_left: str):
        super().__init__(format="A4")
        self.header_left, self.header_right, self.footer_left = header_left, header_right, footer_left

    def header(self) -> None:
        self.set_font(FONT_FAMILY, "", 7.5)
        self.set_text_color(90, 90, 90)
        self.cell(self.epw / 2, 4, self.header_left)
        self.cell(self.epw / 2, 4, self.header_right, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(180, 180, 180)
        self.line(self.l_margin, self.get_y() + 0.5, self.w - self.r_margin, self.get_y() + 0.5)
        self.ln(3)
        self.set_text_color(0, 0, 0)
        self.set_font(FONT_FAMILY, "", 10)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT_FAMILY, "", 7.5)
        self.set_text_color(90, 90, 90)
        self.cell(self.epw - 30, 5, self.footer_left)
        self.cell(30, 5, f"Trang {self.page_no()}/{{nb}}", align="R")
        self.set_text_color(0, 0, 0)


class _Writer:
    """Lays out labelled fields, tables and papers top to bottom; keeps the characters missing."""

    def __init__(self, citizen: Mapping[str, Any], title: str, stamp: Stamp | None):
        self.missing: set[str] = set()
        self.unknown_codes = False
        self.pending: list[tuple[str, str | None]] = []  # headings waiting for their first block
        self.stamp = stamp
        name = self.t(citizen.get("full_name")) or "—"
        footer = "Sổ sức khỏe điện tử"
        if stamp:
            footer = f"Cấp lúc {stamp.issued_at:%d/%m/%Y %H:%M} UTC · mã nội dung {stamp.digest[:16]}"
        pdf = _Document(
            f"SỔ SỨC KHỎE ĐIỆN TỬ · {title}", f"{name} · {self.t(citizen.get('citizen_id'))}", footer
        )
        for style, path in FONT_FILES.items():
            pdf.add_font(FONT_FAMILY, style, str(path))
        pdf.set_font(FONT_FAMILY, size=10)
        pdf.set_auto_page_break(auto=True, margin=16)
        pdf.set_title(f"{title} – {citizen.get('citizen_id')}")
        pdf.set_creator("healthbook")
        pdf.set_producer("healthbook")
        if stamp:
            # the token travels in the file's metadata too: `healthbook verify` reads it there
            pdf.set_keywords(f"healthbook-token {stamp.token}")
        # a fixed creation date (the issue time, not the clock) keeps re-renders byte-identical
        pdf.set_creation_date(stamp.issued_at if stamp else dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        pdf.add_page()
        self.pdf = pdf

    def t(self, value: Any) -> str:
        return _printable(_text(value), self.missing)

    # --- names of codes -----------------------------------------------------------------

    def coded(self, kind: str, code: Any, name: str | None = None) -> str | None:
        """ "Name (code)" from the reference list; a code not in it as sent, with the mark."""
        if code is None or code == "":
            return None
        name = name or book_names.name(kind, code)
        if name:
            return f"{name} ({code})"
        self.unknown_codes = True
        return f"{code}{UNKNOWN_MARK}"

    def named_code(self, kind: str, code: Any, name: str | None, fallback: str | None = None) -> str | None:
        """ "code – name" (ICD-10 style); an unknown code marked, with the facility's text if any."""
        if code is None or code == "":
            return fallback
        name = name or book_names.name(kind, code)
        if name:
            return f"{code} – {name}"
        self.unknown_codes = True
        return (
            f"{code}{UNKNOWN_MARK} – {fallback} {FACILITY_TEXT_NOTE}" if fallback else f"{code}{UNKNOWN_MARK}"
        )

    def diagnosis(self, d: Mapping[str, Any] | None) -> str | None:
        if not d:
            return None
        return self.named_code("icd10", d.get("icd10"), d.get("name"), fallback=d.get("text"))

    # --- blocks -------------------------------------------------------------------------

    def title(self, subtitle: str) -> None:
        pdf = self.pdf
        qr_size = 30 if self.stamp else 0
        width = pdf.epw - (qr_size + 4 if qr_size else 0)
        top = pdf.get_y()
        pdf.set_font(FONT_FAMILY, "B", 15)
        pdf.cell(width, 9, "SỔ SỨC KHỎE ĐIỆN TỬ", align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(FONT_FAMILY, "", 11)
        pdf.cell(width, 7, subtitle, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if self.stamp:
            pdf.set_font(FONT_FAMILY, "", 7.5)
            pdf.multi_cell(
                width,
                3.8,
                f"Thời điểm cấp: {self.stamp.issued_at:%d/%m/%Y %H:%M} (UTC)\n"
                f"Mã nội dung (SHA-256): {self.stamp.digest}\n"
                "Kiểm tra tính xác thực: quét mã QR, hoặc `healthbook verify <tệp PDF>` "
                "đối chiếu với cơ sở dữ liệu phục vụ (chữ ký Ed25519).",
                align="L",
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
            self._qr(self.stamp.token, pdf.w - pdf.r_margin - qr_size, top, qr_size)
            pdf.set_y(max(pdf.get_y(), top + qr_size))
        pdf.set_font(FONT_FAMILY, "", 10)
        pdf.ln(1)

    def _qr(self, token: str, x: float, y: float, size: float) -> None:
        """The token as a QR code drawn in vector squares (no image: deterministic and sharp)."""
        # a fixed mask: segno otherwise scores all eight (a third of a second per document)
        matrix = segno.make(token, error="m", micro=False, mask=0).matrix
        n = len(matrix)
        quiet = 2
        cell = size / (n + 2 * quiet)
        self.pdf.set_fill_color(0, 0, 0)
        for r, row in enumerate(matrix):
            c = 0
            while c < n:
                if row[c]:
                    start = c
                    while c < n and row[c]:
                        c += 1
                    self.pdf.rect(
                        x + (quiet + start) * cell,
                        y + (quiet + r) * cell,
                        (c - start) * cell,
                        cell,
                        style="F",
                    )
                else:
                    c += 1

    def _room(self, needed: float) -> None:
        """Start a new page when less than `needed` mm remain (a heading never ends a page)."""
        if self.pdf.get_y() + needed > self.pdf.page_break_trigger:
            self.pdf.add_page()

    def heading(self, text: str) -> None:
        """A section heading, drawn with the block that follows it (`_flush`): a heading never
        stays alone at the foot of a page."""
        self.pending.append(("heading", text))

    def subheading(self, text: str | None) -> None:
        self.pending.append(("subheading", text))

    def _flush(self, needed: float) -> None:
        """Draw the pending headings, first starting a new page unless they and `needed` mm fit."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        self._room(sum(9 if kind == "heading" else 7 for kind, _ in pending) + max(needed, 12))
        for kind, text in pending:
            if kind == "heading":
                self.pdf.ln(2)
                self.pdf.set_font(FONT_FAMILY, "B", 11)
                self.pdf.set_fill_color(230, 236, 245)
                self.pdf.cell(0, 7, self.t(text), fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            else:
                self.pdf.ln(1)
                self.pdf.set_font(FONT_FAMILY, "B", 10)
                self.pdf.multi_cell(0, 6, self.t(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self.pdf.set_font(FONT_FAMILY, "", 10)

    def field(self, label: str, value: Any) -> None:
        """One "label: value" line; a value the source did not carry shows as "—", never invented."""
        shown = self.t(value) or "—"
        self._flush(12)
        self.pdf.set_font(FONT_FAMILY, "B", 10)
        self.pdf.cell(55, 6, self.t(label))
        self.pdf.set_font(FONT_FAMILY, "", 10)
        self.pdf.multi_cell(0, 6, shown, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def mark(self, text: str) -> None:
        self._flush(12)
        self.pdf.set_font(FONT_FAMILY, "B", 10)
        self.pdf.set_text_color(160, 30, 30)
        self.pdf.multi_cell(0, 6, self.t(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.pdf.set_text_color(0, 0, 0)
        self.pdf.set_font(FONT_FAMILY, "", 10)

    def note(self, text: str) -> None:
        self._grey(8, 4.5, text)

    def none(self, text: str = "Không có") -> None:
        self._grey(10, 6, text)

    def _grey(self, size: float, height: float, text: str) -> None:
        self._flush(12)
        self.pdf.set_font(FONT_FAMILY, "", size)
        self.pdf.set_text_color(100, 100, 100)
        self.pdf.multi_cell(0, height, self.t(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.pdf.set_text_color(0, 0, 0)
        self.pdf.set_font(FONT_FAMILY, "", 10)

    def rows(
        self, items: Iterable[Mapping[str, Any]] | None, columns: tuple[tuple[str, str, float], ...]
    ) -> None:
        """A table, one row per item, with (header, key, width mm; 0 = the rest) columns.

        A row taller than ROW_LINES lines is cut into pieces of at most ROW_LINES lines per cell,
        each its own table row, so a very long cell wraps and continues on the following page.
        """
        items = list(items or [])
        if not items:
            self.none()
            return
        pdf = self.pdf
        fixed = sum(w for _, _, w in columns)
        widths = [w or max(pdf.epw - fixed, 15) for _, _, w in columns]
        scale = pdf.epw / sum(widths)
        widths = [w * scale for w in widths]
        padding = 1
        pdf.set_font(FONT_FAMILY, "", 8)
        rows = [self._pieces(self._cells(item, columns), widths, padding) for item in items]
        # room for the header row (two lines at most) and the first piece of the first row
        first = rows[0][0]
        needed = 2 * 4 + 2 * padding + self._height(first, widths, padding)
        self._flush(needed)
        self._room(needed)
        with pdf.table(
            col_widths=widths, text_align="LEFT", line_height=4, padding=padding, first_row_as_headings=True
        ) as table:
            header = table.row()
            for label, _, _ in columns:
                header.cell(self.t(label))
            for pieces in rows:
                for piece in pieces:
                    row = table.row()
                    for text in piece:
                        row.cell(text)
        pdf.set_font(FONT_FAMILY, "", 10)

    def _cells(self, item: Mapping[str, Any], columns: tuple[tuple[str, str, float], ...]) -> list[str]:
        cells = []
        for _, key, _ in columns:
            value = item.get(key)
            if key in DATE_KEYS or key.endswith("_at"):
                value = _date_vi(value)
            cells.append(self.t(value))
        return cells

    def _lines(self, text: str, width: float, padding: float) -> list[str]:
        if not text:
            return [""]
        return self.pdf.multi_cell(width - 2 * padding - 0.5, 4, text, dry_run=True, output="LINES")

    def _height(self, cells: list[str], widths: list[float], padding: float) -> float:
        tallest = max(len(self._lines(t, w, padding)) for t, w in zip(cells, widths, strict=True))
        return tallest * 4 + 2 * padding

    def _pieces(self, cells: list[str], widths: list[float], padding: float) -> list[list[str]]:
        if all(len(text) <= SHORT_CELL for text in cells):
            return [cells]  # too short to reach ROW_LINES in any column: no measuring
        lines = [self._lines(text, w, padding) for text, w in zip(cells, widths, strict=True)]
        tallest = max(len(x) for x in lines)
        if tallest <= ROW_LINES:
            return [cells]
        return [
            ["\n".join(x[start : start + ROW_LINES]) for x in lines] for start in range(0, tallest, ROW_LINES)
        ]

    def paper(self, paper: Mapping[str, Any] | None) -> None:
        """A nested paper (summary, discharge paper, referral, follow-up) as labelled fields."""
        # a paper lists what it carries: the keys the source left empty are not printed one "—"
        # line each (a discharge paper has 14 keys, most empty for most stays)
        shown = {k: v for k, v in (paper or {}).items() if v not in (None, "", [], {})}
        if not shown:
            self.none()
            return
        for key, value in shown.items():
            if key.endswith("_name") and key.removesuffix("_name") in NAMED_KEYS:
                continue  # printed beside its code
            if isinstance(value, list) and value and isinstance(value[0], Mapping):
                self.field(FIELD_LABELS.get(key, key), "")
                self.rows(value, tuple((k, k, 0) for k in value[0]))
                continue
            if key in VALUE_LABELS:
                value = VALUE_LABELS[key].get(value, value)
            elif key in NAMED_KEYS:
                kind = "department" if key == "department" else "facility"
                value = self.coded(kind, value, paper.get(f"{key}_name"))
            elif key in DATE_KEYS or key.endswith("_at"):
                value = _date_vi(value)
            self.field(FIELD_LABELS.get(key, key), value)

    def closing(self) -> None:
        """The notes that end every document: the unknown-code mark (when used) and the reference
        versions the names came from."""
        self._flush(12)
        self._room(14)
        self.pdf.ln(3)
        if self.unknown_codes:
            self.note(UNKNOWN_NOTE)
        self.note(f"Tên theo danh mục tham chiếu: {book_names.versions_text()}.")
