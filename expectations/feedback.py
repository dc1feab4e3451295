"""The feedback a hospital acts on: `<warehouse>/feedback/<D>/<facility>.{xlsx,csv,json}`.

One row per failing record of the night (ingest and quality findings of the facility): MA_LK, the
version sent, the table (XML1...XML14) and field in the standard's names, the value sent (identities
masked as in the report), the check broken, its severity, and how to fix it, in Vietnamese (the
hospitals' language, whatever the report's language). The XLSX has Vietnamese headers for people;
the CSV (UTF-8 with BOM, so Excel shows Vietnamese) and the JSON carry the same rows under stable
machine keys for the hospital's own software. A facility that sent something tonight always gets
its three files, empty when nothing failed: "no file" would be ambiguous.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from pathlib import Path

import pandas as pd

from expectations.i18n import Texts
from expectations.masking import mask_findings
from transforms.core.csv_safe import escape_cell  # the one rule for cells people open in a spreadsheet
from transforms.core.safe_io import atomic_path
from transforms.core.warehouse import Warehouse

# machine key -> Vietnamese header of the XLSX
FEEDBACK_COLUMNS = {
    "ma_lk": "MA_LK",
    "version": "Lần gửi",
    "table": "Bảng",
    "field": "Trường",
    "value": "Giá trị đã gửi",
    "check_id": "Mã kiểm tra",
    "rule": "Quy tắc bị vi phạm",
    "severity": "Mức độ",
    "fix": "Cách sửa",
}
SEVERITY_VI = {"blocking": "Chặn (hồ sơ chưa được nạp)", "warning": "Cảnh báo (hồ sơ vẫn được nạp)"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def safe_facility_name(code: str) -> str:
    """A facility code as a file name: refused (ValueError) when it could leave the folder."""
    text = str(code)
    if not _SAFE_NAME.match(text) or text in (".", ".."):
        raise ValueError(f"facility code {text!r} cannot name a file")
    return text


def standard_names(dataset: str | None, column: str | None) -> tuple[str, str]:
    """The standard's names (XML2, THANH_TIEN_BV) of a staged dataset and column."""
    from transforms.core.schema import TABLES_BY_DATASET

    table = TABLES_BY_DATASET.get(dataset or "")
    if table is None:
        return (dataset or "", column or "")
    try:
        return table.loaihoso, table.column(column).source if column else ""
    except KeyError:
        return table.loaihoso, column or ""


def feedback_rows(findings: pd.DataFrame, descriptions: dict[str, str]) -> list[dict]:
    """The rows of one facility's feedback, sorted by MA_LK, table, field."""
    return _rows_by_facility(findings, descriptions).get(None, [])


def _rows_by_facility(
    findings: pd.DataFrame, descriptions: dict[str, str], by: str | None = None
) -> dict[str | None, list[dict]]:
    """Feedback rows per value of the column `by` (None: one group, key None), each sorted by
    MA_LK, table, field; a row whose `by` is missing belongs to no group (as in a groupby).

    One pass over the night's findings: masking, the standard's names and the Vietnamese texts
    once per row or per check, not a pandas frame per facility (13,000 of them nationally).
    """
    if findings.empty:
        return {}
    vi = Texts("vi")
    texts: dict[str, tuple[str, str]] = {}  # check -> (rule, fix)
    names: dict[tuple, tuple[str, str]] = {}  # (dataset, column) -> (XML2, THANH_TIEN_BV)
    masked = mask_findings(findings)
    keys = masked[by] if by is not None else [None] * len(masked)
    groups: dict[str | None, list[dict]] = {}
    for key, f in zip(keys, masked.itertuples(index=False), strict=True):
        if by is not None and pd.isna(key):
            continue
        where = (f.dataset, f.column)
        if where not in names:
            names[where] = standard_names(*where)
        table, field = names[where]
        check = str(f.check_id)
        if check not in texts:
            description = descriptions.get(check, "")
            texts[check] = (vi.check(check, "name", description), vi.check(check, "fix", description))
        rule, fix = texts[check]
        groups.setdefault(key, []).append(
            {
                "ma_lk": None if pd.isna(f.encounter_id) else str(f.encounter_id),
                "version": None if pd.isna(f.version) else int(f.version),
                "table": table,
                "field": field,
                "value": None if f.value is None or pd.isna(f.value) else str(f.value),
                "check_id": check,
                "rule": rule,
                "severity": SEVERITY_VI.get(str(f.severity), str(f.severity)),
                "fix": fix,
            }
        )
    for rows in groups.values():
        rows.sort(key=lambda r: (r["ma_lk"] or "", r["version"] or 0, r["table"], r["field"], r["check_id"]))
    return groups


def write_feedback(folder: Path, facility: str, rows: list[dict], night: dt.date) -> dict[str, Path]:
    """The three files of one facility; returns their paths by extension.

    The XLSX is written by PyExcelerate (inline strings, one pass): openpyxl's write-only mode took
    2x as long, the largest part of the report at national scale (100,000 rows x 9 columns: ~8.5 s
    against ~4.4 s). It replaces characters XML cannot carry with U+FFFD where openpyxl refused the
    whole file (a FHIR value with a control character)."""
    from pyexcelerate import Workbook

    name = safe_facility_name(facility)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {ext: folder / f"{name}.{ext}" for ext in ("xlsx", "csv", "json")}
    keys = list(FEEDBACK_COLUMNS)

    def xlsx(tmp: Path) -> None:
        book = Workbook()
        data = [list(FEEDBACK_COLUMNS.values()), *([escape_cell(r[k]) for k in keys] for r in rows)]
        book.new_sheet(f"Phản hồi {night.isoformat()}", data=data)
        book.save(str(tmp))

    def csv_(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(keys)
            for r in rows:
                writer.writerow(["" if r[k] is None else escape_cell(r[k]) for k in keys])

    def json_(tmp: Path) -> None:
        body = {"facility_code": name, "night": night.isoformat(), "columns": keys, "rows": rows}
        tmp.write_text(json.dumps(body, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    for ext, write in (("xlsx", xlsx), ("csv", csv_), ("json", json_)):
        with atomic_path(paths[ext]) as tmp:
            write(tmp)
    return paths


def feedback_dir(warehouse: Warehouse, night: dt.date) -> Path:
    return warehouse.feedback(night)


def write_night_feedback(
    warehouse: Warehouse, night: dt.date, findings: pd.DataFrame, facilities: list[str], descriptions: dict
) -> dict[str, int]:
    """Every facility's files for the night; returns facility -> rows written. A facility code that
    cannot name a file is counted under "" (its rows stay in the findings and the report)."""
    folder = feedback_dir(warehouse, night)
    by_facility = _rows_by_facility(findings, descriptions, by="facility_code")
    written = {}
    for facility in sorted(set(facilities) | set(by_facility)):
        rows = by_facility.get(facility, [])
        try:
            write_feedback(folder, facility, rows, night)
        except ValueError:
            written[""] = written.get("", 0) + len(rows)
            continue
        written[facility] = len(rows)
    return written
