"""What the book's PDF prints and how: labels of fields and coded values (Vietnamese), dates, the font's characters."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

import fontpkg_be_vietnam_pro
from fontTools.ttLib import TTFont

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

UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
# A table row is cut into pieces of at most this many lines per cell, so that a long cell (a
# 1,024-character drug name) wraps and continues on the next page instead of failing the PDF.
ROW_LINES = 15
# A cell this short wraps to fewer than ROW_LINES lines even in the narrowest column (12 mm at 8 pt
# holds 5 or more characters a line), so only longer cells are measured.
SHORT_CELL = 70


# ---------------------------------------------------------------------------------------------
# values


def join_shown(*parts) -> str | None:
    shown = [str(p) for p in parts if p not in (None, "")]
    return " ".join(shown) if any(p not in ("–", "·") for p in shown) else None


def date_vi(value: Any) -> str | None:
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


def shown_text(value: Any) -> str:
    """Display text of a value: NFC (precomposed letters the font has glyphs for), "" for none."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Có" if value else "Không"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list | tuple):
        return "; ".join(shown_text(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {shown_text(v)}" for k, v in value.items() if v not in (None, "", []))
    return unicodedata.normalize("NFC", str(value))


@functools.cache
def font_chars() -> frozenset[int]:
    """Code points every embedded style of the font has a glyph for."""
    sets = [set(TTFont(str(path), lazy=True).getBestCmap()) for path in FONT_FILES.values()]
    return frozenset(set.intersection(*sets))


def printable(text: str, missing: set[str]) -> str:
    """`text` with every character the font cannot draw (and every control character) written as
    "[U+XXXX]" and added to `missing`: reported, never silently dropped."""
    chars = font_chars()
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
