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
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fpdf import FPDF

from transforms.core.safe_io import atomic_path
from transforms.serving import signing
from transforms.serving.pdf_layout import Stamp, Writer
from transforms.serving.pdf_text import (
    DISCHARGE_TYPES,
    RESULTS,
    SEXES,
    UNSAFE_FILE_CHARS,
    date_vi,
    join_shown,
)


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
    safe = UNSAFE_FILE_CHARS.sub("_", str(citizen_id))
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
    safe = [UNSAFE_FILE_CHARS.sub("_", p) for p in parts]
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
    w = Writer(citizen, title, stamp)
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
    w.field("Thời điểm vào", date_vi(encounter.get("admitted_at")))
    w.field("Thời điểm vào nội trú", date_vi(encounter.get("inpatient_at")))
    w.field("Thời điểm ra", date_vi(encounter.get("discharged_at")))
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
    w.field("Ngày tiếp nhận", date_vi(source.get("received_on")))
    w.closing()
    return w.pdf, w.missing


def render_book(book: Mapping[str, Any], stamp: Stamp | None = None) -> tuple[FPDF, set[str]]:
    """The laid-out book document (four groups of HEALTHBOOK.md) and the characters missing."""
    citizen = book.get("citizen") or {}
    title = "Sổ sức khỏe điện tử – bản tổng hợp"
    w = Writer(citizen, title, stamp)
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
            "vaccine": join_shown(
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
                "when": join_shown(date_vi(e.get("admitted_at")), "–", date_vi(e.get("discharged_at"))),
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
            join_shown(
                date_vi(e.get("admitted_at")),
                "–",
                date_vi(e.get("discharged_at")),
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


def _citizen_fields(w: Writer, citizen: Mapping[str, Any], short: bool) -> None:
    w.field("Họ và tên", citizen.get("full_name"))
    w.field("Số định danh cá nhân", citizen.get("citizen_id"))
    w.field("Ngày sinh", date_vi(citizen.get("birth_date")))
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
        w.field("Ngày mất", date_vi(citizen.get("death_date")))


def _result(w: Writer, e: Mapping[str, Any]) -> str | None:
    if e.get("result_code") is not None:
        return w.coded("result", e.get("result_code"), e.get("result_name"))
    return RESULTS.get(e.get("result"), e.get("result"))


def _discharge_type(w: Writer, e: Mapping[str, Any]) -> str | None:
    if e.get("discharge_type_code") is not None:
        return w.coded("discharge_type", e.get("discharge_type_code"), e.get("discharge_type_name"))
    return DISCHARGE_TYPES.get(e.get("discharge_type"), e.get("discharge_type"))
