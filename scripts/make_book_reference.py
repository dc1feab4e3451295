"""Regenerate the code-name files the book reads (transforms/reference/*.csv owned by the book).

The names are the project's own vocabulary (transforms/synth/vocab.py, transforms/serving/pdf.py form labels),
written once into versioned CSV files so that the book and the analysts read the same names and a
change of a name is a reviewed change of a file. Run: PYTHONPATH=. python scripts/make_book_reference.py
"""

from __future__ import annotations

import csv
from pathlib import Path

from transforms.synth import vocab

OUT = Path(__file__).resolve().parents[1] / "transforms" / "core" / "reference"
VERSION = "2026-12-06"


SOURCES: list[list[str]] = []

# 3-character categories the illness history names (transforms/load/illness.py) for the generator's
# codes: Decision 4469/QĐ-BYT category titles, typed by the project (check against the official list).
CATEGORIES = {
    "A15": "Lao hô hấp, có xác nhận về vi khuẩn học và mô học",
    "B18": "Viêm gan virus mạn",
    "C16": "U ác của dạ dày",
    "C18": "U ác của đại tràng",
    "C22": "U ác của gan và đường mật trong gan",
    "C34": "U ác của phế quản và phổi",
    "C50": "U ác của vú",
    "E03": "Suy giáp khác",
    "E04": "Bướu giáp không độc khác",
    "E05": "Nhiễm độc giáp [cường giáp]",
    "E11": "Bệnh đái tháo đường không phụ thuộc insuline",
    "E66": "Béo phì",
    "E78": "Rối loạn chuyển hóa lipoprotein và tình trạng tăng lipid máu khác",
    "F03": "Sa sút trí tuệ không đặc hiệu",
    "F32": "Giai đoạn trầm cảm",
    "G20": "Bệnh Parkinson",
    "G40": "Động kinh",
    "I10": "Tăng huyết áp vô căn (nguyên phát)",
    "I11": "Bệnh tim do tăng huyết áp",
    "I20": "Cơn đau thắt ngực",
    "I21": "Nhồi máu cơ tim cấp",
    "I25": "Bệnh tim thiếu máu cục bộ mạn",
    "I48": "Rung nhĩ và cuồng nhĩ",
    "I50": "Suy tim",
    "I61": "Xuất huyết não",
    "I63": "Nhồi máu não",
    "I67": "Bệnh mạch máu não khác",
    "I69": "Di chứng bệnh mạch máu não",
    "J44": "Bệnh phổi tắc nghẽn mạn tính khác",
    "J45": "Hen [suyễn]",
    "K74": "Xơ hóa và xơ gan",
    "M06": "Viêm khớp dạng thấp khác",
    "M10": "Bệnh gút",
    "N18": "Bệnh thận mạn tính",
}


def write(name: str, header: list[str], rows: list[list[str]], source: str) -> None:
    # plain CSV (no comment lines: any CSV reader takes it); source and version in book_sources.csv
    with open(OUT / name, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    SOURCES.append([name, VERSION, source])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    write(
        "icd10_vi.csv",
        ["code", "name_vi"],
        sorted({**CATEGORIES, **{d.code: d.name for d in vocab.ICD10}}.items()),
        "Vietnamese titles of Decision 4469/QĐ-BYT (ICD-10, 2020) for the codes the generator draws "
        "(transforms/synth/vocab.py ICD10; some titles abridged), plus the 3-character categories the "
        "illness history names (scripts/make_book_reference.py CATEGORIES); not the full 4469 list",
    )
    write(
        "routes.csv",
        ["code", "name_vi"],
        sorted({(d.route_code, d.route) for d in vocab.DRUGS}),
        "route-of-administration codes (DUONG_DUNG) of the Ministry's shared code list "
        "(Decision 7603/QĐ-BYT), the subset transforms/synth/vocab.py uses",
    )
    write(
        "departments.csv",
        ["code", "name_vi"],
        sorted(vocab.DEPARTMENTS.items()),
        "department codes (MA_KHOA) of the Ministry's shared code list (Decision 7603/QĐ-BYT), "
        "the subset transforms/synth/vocab.py uses",
    )
    # facilities.csv: written by scripts/make_reference.py (shared with the analysts' snapshot)
    write(
        "visit_types.csv",
        ["code", "name_vi"],
        [
            ["01", "Khám bệnh"],
            ["02", "Điều trị ngoại trú"],
            ["03", "Điều trị nội trú"],
            ["04", "Điều trị nội trú ban ngày"],
            ["05", "Điều trị ngoại trú các bệnh mạn tính dài ngày liên tục trong năm"],
            ["06", "Điều trị lưu tại trạm y tế tuyến xã, phòng khám đa khoa khu vực"],
            ["07", "Nhận thuốc theo hẹn (không khám bệnh)"],
            ["08", "Điều trị ngoại trú các bệnh mạn tính dài ngày có khám bệnh, cấp thuốc"],
            ["09", "Điều trị nội trú dưới 04 giờ"],
        ],
        "MA_LOAI_KCB, Decision 130/QĐ-BYT (2023) as amended by 4750/QĐ-BYT and 3176/QĐ-BYT",
    )
    write(
        "treatment_results.csv",
        ["code", "name_vi"],
        [
            ["1", "Khỏi"],
            ["2", "Đỡ"],
            ["3", "Không thay đổi"],
            ["4", "Nặng hơn"],
            ["5", "Tử vong tại cơ sở"],
            ["6", "Tiên lượng nặng, gia đình xin về"],
            ["7", "Chưa xác định"],
            ["8", "Tử vong ngoài cơ sở"],
        ],
        "KET_QUA_DTRI, Decision 130/QĐ-BYT (2023) and the 3176/QĐ-BYT annex",
    )
    write(
        "discharge_types.csv",
        ["code", "name_vi"],
        [
            ["1", "Ra viện"],
            ["2", "Chuyển tuyến theo yêu cầu chuyên môn"],
            ["3", "Trốn viện"],
            ["4", "Xin ra viện"],
            ["5", "Chuyển tuyến theo yêu cầu người bệnh"],
        ],
        "MA_LOAI_RV, Decision 130/QĐ-BYT (2023) and the 3176/QĐ-BYT annex",
    )
    with open(OUT / "book_sources.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "version", "source"])
        w.writerows(sorted(SOURCES))


if __name__ == "__main__":
    main()
