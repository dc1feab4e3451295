"""The detailed record of one examination as a PDF, the form a citizen downloads from the health book.

Input is one health book in the INTERFACES.md "One health book" shape (`transforms.book.books_for`);
output is one PDF per encounter of that book. The text is Vietnamese, so the PDF embeds Be Vietnam Pro
(a TTF designed for Vietnamese, shipped on PyPI by `fontpkg-be-vietnam-pro`, OFL-1.1): the core PDF
fonts cover Latin-1 only and would drop every letter like "ă", "ế" or "ệ".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import fontpkg_be_vietnam_pro
from fpdf import FPDF
from fpdf.enums import XPos, YPos

FONT_FAMILY = "BeVietnamPro"
FONT_FILES = {
    "": fontpkg_be_vietnam_pro.ROOT / "files" / "BeVietnamPro-Regular.ttf",
    "B": fontpkg_be_vietnam_pro.ROOT / "files" / "BeVietnamPro-Bold.ttf",
    "I": fontpkg_be_vietnam_pro.ROOT / "files" / "BeVietnamPro-Italic.ttf",
}

# Labels follow the wording of the Ministry's forms (Decision 130/4750/3176) so a citizen
# recognises the paper copy.
VISIT_TYPES = {
    "01": "Khám bệnh",
    "02": "Điều trị ngoại trú",
    "03": "Điều trị nội trú",
    "04": "Điều trị nội trú ban ngày",
    "05": "Điều trị ngoại trú bệnh mạn tính",
    "06": "Điều trị lưu tại trạm y tế",
    "07": "Nhận thuốc theo hẹn",
    "08": "Điều trị ngoại trú có dịch vụ kỹ thuật",
    "09": "Điều trị nội trú dưới 4 giờ",
}
# Keys are the values `transforms.book` writes (KET_QUA_DTRI and MA_LOAI_RV in words).
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
# Values of the nested papers that the book writes in words, shown in the form's wording.
VALUE_LABELS = {"result": RESULTS, "discharge_type": DISCHARGE_TYPES}
SEXES = {"male": "Nam", "female": "Nữ", "undetermined": "Chưa xác định"}
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


def write_encounter_pdfs(book: dict, out_dir: Path) -> list[Path]:
    """Write one PDF per encounter of `book` into `out_dir`; the paths, in the book's encounter order.

    A book that was not found, or has no encounters, writes nothing and returns [].
    Re-writing the same book gives byte-identical files.
    """
    if not book.get("found"):
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    citizen = book.get("citizen") or {}
    paths = []
    for encounter in book.get("encounters") or []:
        path = out_dir / encounter_pdf_name(citizen.get("citizen_id"), encounter)
        pdf = render_encounter(citizen, encounter)
        tmp = path.with_name(path.name + ".tmp")
        pdf.output(str(tmp))
        tmp.replace(path)
        paths.append(path)
    return paths


def render_encounter(citizen: Mapping[str, Any], encounter: Mapping[str, Any]) -> FPDF:
    """The laid-out PDF of one encounter (not yet written)."""
    pdf = _new_document(encounter)
    w = _Writer(pdf)
    w.title("SỔ SỨC KHỎE ĐIỆN TỬ", "Chi tiết lần khám bệnh, chữa bệnh")

    w.heading("Thông tin người bệnh")
    w.field("Họ và tên", citizen.get("full_name"))
    w.field("Số định danh cá nhân", citizen.get("citizen_id"))
    w.field("Ngày sinh", citizen.get("birth_date"))
    w.field("Giới tính", SEXES.get(citizen.get("sex"), citizen.get("sex")))
    w.field("Số BHXH", citizen.get("social_insurance_number"))

    w.heading("Cơ sở khám bệnh, chữa bệnh")
    w.field("Mã cơ sở KBCB", encounter.get("facility_code"))
    w.field("Mã lượt khám (MA_LK)", encounter.get("encounter_id"))
    w.field("Phiên bản hồ sơ", encounter.get("version"))
    visit_type = encounter.get("visit_type")
    w.field("Hình thức KBCB", _coded(visit_type, VISIT_TYPES.get(visit_type)))
    w.field("Lý do đến khám", encounter.get("reason"))
    w.field("Thời điểm vào", _when(encounter.get("admitted_at")))
    w.field("Thời điểm vào nội trú", _when(encounter.get("inpatient_at")))
    w.field("Thời điểm ra", _when(encounter.get("discharged_at")))
    w.field("Kết quả điều trị", RESULTS.get(encounter.get("result"), encounter.get("result")))
    w.field(
        "Tình trạng ra viện",
        DISCHARGE_TYPES.get(encounter.get("discharge_type"), encounter.get("discharge_type")),
    )

    w.heading("Chẩn đoán")
    main = encounter.get("main_diagnosis") or {}
    w.field("Bệnh chính", _diagnosis(main) if main else None)
    secondary = encounter.get("secondary_diagnoses") or []
    w.field("Bệnh kèm theo", "; ".join(_diagnosis(d) for d in secondary) if secondary else None)

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
            ("Mã", "code"),
            ("Chỉ số", "name"),
            ("Kết quả", "value"),
            ("Đơn vị", "unit"),
            ("Kết luận", "conclusion"),
            ("Thời điểm", "reported_at"),
        ),
    )
    w.heading("Thuốc")
    w.rows(
        encounter.get("medications"),
        (
            ("Mã", "code"),
            ("Tên thuốc", "name"),
            ("Hàm lượng", "strength"),
            ("Đường dùng", "route"),
            ("Liều dùng", "dose"),
            ("Số lượng", "quantity"),
            ("Thời điểm chỉ định", "ordered_at"),
        ),
    )
    w.heading("Phẫu thuật, thủ thuật")
    w.rows(
        encounter.get("procedures"),
        (("Mã", "code"), ("Tên", "name"), ("Thời điểm thực hiện", "performed_at")),
    )
    w.heading("Diễn biến lâm sàng")
    w.rows(encounter.get("clinical_course"), (("Thời điểm", "at"), ("Diễn biến", "note")))

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
    w.field("Ngày tiếp nhận", source.get("received_on"))

    # Late tables (issue #15): a stay published after its grace period says what it lacks.
    if missing := encounter.get("incomplete"):
        names = {"discharge_paper": "Giấy ra viện (XML7)", "summary": "Tóm tắt hồ sơ bệnh án (XML8)"}
        w.field("Hồ sơ chưa đầy đủ, còn thiếu", ", ".join(names.get(m, m) for m in missing))
    return pdf


def _new_document(encounter: Mapping[str, Any]) -> FPDF:
    pdf = FPDF(format="A4")
    for style, path in FONT_FILES.items():
        pdf.add_font(FONT_FAMILY, style, str(path))
    pdf.set_font(FONT_FAMILY, size=10)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title(
        f"{encounter.get('facility_code')} {encounter.get('encounter_id')} v{encounter.get('version')}"
    )
    pdf.set_creator("healthbook")
    pdf.set_producer("healthbook")
    # A fixed creation date (the encounter's own, not the clock) keeps re-renders byte-identical.
    pdf.set_creation_date(_document_date(encounter))
    pdf.add_page()
    return pdf


def _document_date(encounter: Mapping[str, Any]) -> dt.datetime:
    for key in ("discharged_at", "admitted_at"):
        value = encounter.get(key)
        if value:
            try:
                return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.UTC)
            except ValueError:
                continue
    return dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def _text(value: Any) -> str:
    """Display text of a value: NFC (precomposed letters the font has glyphs for), "" for none."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list | tuple):
        return "; ".join(_text(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items() if v not in (None, "", []))
    return unicodedata.normalize("NFC", str(value))


def _when(value: Any) -> str | None:
    return None if value is None else str(value).replace("T", " ")


def _coded(code: Any, label: str | None) -> str | None:
    if code is None:
        return None
    return f"{code} – {label}" if label else str(code)


def _diagnosis(d: Mapping[str, Any]) -> str:
    code, text = d.get("icd10"), d.get("text")
    return f"{code} – {text}" if text else str(code)


class _Writer:
    """Lays out labelled fields, tables and papers top to bottom on an FPDF document."""

    def __init__(self, pdf: FPDF):
        self.pdf = pdf

    def title(self, title: str, subtitle: str) -> None:
        self.pdf.set_font(FONT_FAMILY, "B", 15)
        self.pdf.cell(0, 9, title, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.pdf.set_font(FONT_FAMILY, "", 11)
        self.pdf.cell(0, 7, subtitle, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.pdf.ln(2)

    def heading(self, text: str) -> None:
        self.pdf.ln(2)
        self.pdf.set_font(FONT_FAMILY, "B", 11)
        self.pdf.set_fill_color(230, 236, 245)
        self.pdf.cell(0, 7, text, fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.pdf.set_font(FONT_FAMILY, "", 10)

    def field(self, label: str, value: Any) -> None:
        """One "label: value" line; a value the source did not carry shows as "—", never invented."""
        shown = _text(value) or "—"
        self.pdf.set_font(FONT_FAMILY, "B", 10)
        self.pdf.cell(55, 6, _text(label))
        self.pdf.set_font(FONT_FAMILY, "", 10)
        self.pdf.multi_cell(0, 6, shown, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def none(self) -> None:
        self.pdf.set_font(FONT_FAMILY, "I", 10)
        self.pdf.cell(0, 6, "Không có", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.pdf.set_font(FONT_FAMILY, "", 10)

    def rows(self, items: Iterable[Mapping[str, Any]] | None, columns: tuple[tuple[str, str], ...]) -> None:
        """A table, one line per item, with the given (header, key) columns."""
        items = list(items or [])
        if not items:
            self.none()
            return
        self.pdf.set_font(FONT_FAMILY, "", 8)
        with self.pdf.table(text_align="LEFT", line_height=4.5, padding=1) as table:
            header = table.row()
            for label, _ in columns:
                header.cell(label)
            for item in items:
                row = table.row()
                for _, key in columns:
                    value = item.get(key)
                    row.cell(_text(_when(value) if key.endswith("_at") or key == "at" else value))
        self.pdf.set_font(FONT_FAMILY, "", 10)

    def paper(self, paper: Mapping[str, Any] | None) -> None:
        """A nested paper (summary, discharge paper, referral, follow-up) as labelled fields."""
        if not paper:
            self.none()
            return
        for key, value in paper.items():
            if isinstance(value, list) and value and isinstance(value[0], Mapping):
                self.field(FIELD_LABELS.get(key, key), "")
                self.rows(value, tuple((k, k) for k in value[0]))
            else:
                if key in VALUE_LABELS:
                    value = VALUE_LABELS[key].get(value, value)
                self.field(FIELD_LABELS.get(key, key), _when(value) if key.endswith("_at") else value)
