"""The feedback a hospital acts on: `<warehouse>/feedback/<D>/<facility>.{xlsx,csv,json}`.

One row per failing record of the night (ingest and quality findings of the facility): MA_LK, the
version sent, the table (XML1...XML14) and field in the standard's names, the value sent (identities
masked as in the report), the check broken, its severity, and how to fix it, in Vietnamese (the
hospitals' language, whatever the report's language). The XLSX has Vietnamese headers for people;
the CSV (UTF-8 with BOM, so Excel shows Vietnamese) and the JSON carry the same rows under stable
machine keys for the hospital's own software. A facility that sent something tonight always gets
its three files, empty when nothing failed: "no file" would be ambiguous.

The feedback stage (`feedback_night`, declared in expectations/__init__.py) writes them, and the
report's CSVs of every check's failing rows (`quality/<D>/failures/<check>.csv`), as soon as the
findings are known: both are the night's findings written out, they need neither the books nor the
ledger, and at national scale (a million failing rows) they are most of the report's work, so they
run beside the load instead of after it. `runs/<D>/feedback.json` says what was written; the report
links to it.
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
from transforms.core.csv_safe import (
    escape_frame,
    write_csv,
)  # the one rule for cells people open in a spreadsheet
from transforms.core.safe_io import atomic_path, write_json_atomic
from transforms.core.warehouse import Warehouse

# The columns of a finding people read: the failing rows' CSVs, the report's tables.
CSV_COLUMNS = [
    "facility_code",
    "encounter_id",
    "version",
    "dataset",
    "row_index",
    "check_id",
    "severity",
    "reason",
    "column",
    "value",
]

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


def names_a_file(code: str) -> bool:
    """Whether a facility code can name its feedback files (never a path out of the folder)."""
    text = str(code)
    return bool(_SAFE_NAME.match(text)) and text not in (".", "..")


def safe_facility_name(code: str) -> str:
    """A facility code as a file name: refused (ValueError) when it could leave the folder."""
    if not names_a_file(code):
        raise ValueError(f"facility code {str(code)!r} cannot name a file")
    return str(code)


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


class _FeedbackRows:
    """Feedback rows of masked findings as a frame (FEEDBACK_COLUMNS' keys), built with pandas:
    the standard's names and the Vietnamese texts looked up once per (table, field) and per check
    for the whole night, not once per row or per facility (13,000 of them nationally)."""

    def __init__(self, descriptions: dict[str, str]) -> None:
        self.descriptions = descriptions
        self.vi = Texts("vi")
        self.texts: dict[str, tuple[str, str]] = {}  # check -> (rule, fix)
        self.names: dict[tuple, tuple[str, str]] = {}  # (dataset, column) -> (XML2, THANH_TIEN_BV)

    def _text(self, check: str) -> tuple[str, str]:
        if check not in self.texts:
            description = self.descriptions.get(check, "")
            self.texts[check] = (
                self.vi.check(check, "name", description),
                self.vi.check(check, "fix", description),
            )
        return self.texts[check]

    def of(self, masked: pd.DataFrame) -> pd.DataFrame:
        """The rows of these (masked) findings, sorted by MA_LK, version, table, field, check (a
        missing MA_LK first, a missing version as 0; ties in the findings' order)."""
        located = masked[["dataset", "column"]]
        where = located.astype(object).where(located.notna(), None)
        pairs = list(zip(where["dataset"], where["column"], strict=True))
        for pair in set(pairs) - self.names.keys():
            self.names[pair] = standard_names(*pair)
        check = masked["check_id"].astype(object).map(str)
        texts = {c: self._text(c) for c in check.unique()}
        severity = masked["severity"].astype(object).map(str)
        frame = pd.DataFrame(
            {
                "ma_lk": masked["encounter_id"].astype("str"),
                "version": masked["version"].astype("Int64"),
                "table": pd.Series([self.names[p][0] for p in pairs], dtype="str", index=masked.index),
                "field": pd.Series([self.names[p][1] for p in pairs], dtype="str", index=masked.index),
                "value": masked["value"].astype("str"),
                "check_id": check.astype("str"),
                "rule": check.map(lambda c: texts[c][0]).astype("str"),
                "severity": severity.map(lambda s: SEVERITY_VI.get(s, s)).astype("str"),
                "fix": check.map(lambda c: texts[c][1]).astype("str"),
            }
        ).reset_index(drop=True)
        order = pd.DataFrame(
            {
                "ma_lk": frame["ma_lk"].fillna(""),
                "version": frame["version"].fillna(0),
                "table": frame["table"],
                "field": frame["field"],
                "check_id": frame["check_id"],
            }
        ).sort_values(["ma_lk", "version", "table", "field", "check_id"], kind="stable")
        return frame.iloc[order.index].reset_index(drop=True)


def _records(frame: pd.DataFrame) -> list[dict]:
    """The frame's rows as dicts, a missing value as None, the version an int."""
    columns = {k: frame[k].astype(object).where(frame[k].notna(), None).tolist() for k in frame.columns}
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _feedback_frame(rows: pd.DataFrame | list[dict]) -> pd.DataFrame:
    """Rows given as dicts (FEEDBACK_COLUMNS' keys) as the frame `_FeedbackRows.of` makes."""
    if isinstance(rows, pd.DataFrame):
        return rows
    frame = pd.DataFrame.from_records(rows, columns=list(FEEDBACK_COLUMNS)) if rows else None
    return pd.DataFrame(
        {
            k: pd.array([] if frame is None else frame[k], dtype="Int64" if k == "version" else "str")
            for k in FEEDBACK_COLUMNS
        }
    )


# Characters XML 1.0 cannot carry (a FHIR value may hold them: JSON can): U+FFFD in the XLSX.
# (the characters themselves, not escapes: pandas hands the pattern to Arrow's RE2)
_NOT_XML = "[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]"


def write_feedback(
    folder: Path, facility: str, rows: pd.DataFrame | list[dict], night: dt.date
) -> dict[str, Path]:
    """The three files of one facility (rows: `_FeedbackRows.of`'s frame, or dicts with
    FEEDBACK_COLUMNS' keys); returns their paths by extension. Text cells of the XLSX and the CSV
    are escaped (csv_safe: a formula shows as text).

    The XLSX is written by rustpy-xlsxwriter (rust_xlsxwriter, from a pandas frame through Arrow):
    about 6x PyExcelerate's speed, which took ~85 s of the report at a million failing rows
    (openpyxl's write-only mode 2x more); characters XML cannot carry show as U+FFFD. The JSON
    holds one row per line (each row encoded by the json module's C encoder; an indented dump runs
    its pure-Python encoder, 4x slower)."""
    from rustpy_xlsxwriter import write_worksheet

    name = safe_facility_name(facility)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {ext: folder / f"{name}.{ext}" for ext in ("xlsx", "csv", "json")}
    keys = list(FEEDBACK_COLUMNS)
    frame = _feedback_frame(rows)
    escaped = escape_frame(frame)

    def xlsx(tmp: Path) -> None:
        sheet = escaped.rename(columns=FEEDBACK_COLUMNS)
        for header in sheet.columns:
            if sheet[header].dtype == "str":
                sheet[header] = sheet[header].str.replace(_NOT_XML, "\ufffd", regex=True)
        write_worksheet(sheet, str(tmp), sheet_name=f"Phản hồi {night.isoformat()}")

    def csv_(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(keys)
            columns = [escaped[k].astype(object).where(escaped[k].notna(), "").tolist() for k in keys]
            writer.writerows(zip(*columns, strict=True))

    def json_(tmp: Path) -> None:
        head = {"facility_code": name, "night": night.isoformat(), "columns": keys}
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "rows": [')
            fh.write(",".join("\n" + json.dumps(r, ensure_ascii=False) for r in _records(frame)))
            fh.write("\n]}\n")

    for ext, write in (("xlsx", xlsx), ("csv", csv_), ("json", json_)):
        with atomic_path(paths[ext]) as tmp:
            write(tmp)
    return paths


def feedback_dir(warehouse: Warehouse, night: dt.date) -> Path:
    return warehouse.feedback(night)


def write_night_feedback(
    warehouse: Warehouse, night: dt.date, findings: pd.DataFrame, facilities: list[str], descriptions: dict
) -> dict[str, int]:
    """Every facility's files for the night (`facilities` and every facility with findings);
    returns facility -> rows written. A facility code that cannot name a file is counted under ""
    (its rows stay in the findings and the report); a finding of no facility is in no file.

    One facility's rows at a time: the night's findings are masked once, and only the rows of the
    facility being written are held as Python objects."""
    folder = feedback_dir(warehouse, night)
    masked = mask_findings(findings) if len(findings) else findings
    positions = masked.groupby("facility_code", sort=False).indices if len(masked) else {}
    make = _FeedbackRows(descriptions)
    written: dict[str, int] = {}
    for facility in sorted(set(facilities) | set(positions)):
        rows = make.of(masked.iloc[positions[facility]]) if facility in positions else _feedback_frame([])
        try:
            write_feedback(folder, facility, rows, night)
        except ValueError:
            written[""] = written.get("", 0) + len(rows)
            continue
        written[facility] = len(rows)
    return written


def csv_name(check_id: str) -> str:
    return f"{check_id}.csv"


def write_failing_rows(warehouse: Warehouse, night: dt.date, quality: pd.DataFrame) -> dict[str, str]:
    """Every check's failing rows (the night's quality findings, masked) as
    `quality/<D>/failures/<check>.csv`, replacing the folder's CSVs; returns check -> the CSV's
    path relative to the night's report page."""
    failures_dir = warehouse.quality / night.isoformat() / "failures"
    failures_dir.mkdir(parents=True, exist_ok=True)
    for old in failures_dir.glob("*.csv"):
        old.unlink()
    masked = mask_findings(quality[CSV_COLUMNS]) if len(quality) else quality
    links = {}
    for check_id, part in masked.groupby("check_id") if len(masked) else []:
        write_csv(part, failures_dir / csv_name(check_id))  # formula cells escaped (csv_safe)
        links[check_id] = f"failures/{csv_name(check_id)}"
    return links


def night_findings(warehouse: Warehouse, night: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(all, quality): the night's ingest and quality findings together, and the quality findings
    alone (CSV_COLUMNS at least; empty frames when a stage wrote none)."""
    folder = warehouse.quarantine("findings", night)
    frames = {}
    for stage in ("ingest", "quality"):
        path = folder / f"{stage}.parquet"
        frames[stage] = pd.read_parquet(path) if path.exists() else None
    quality = frames["quality"]
    if quality is None:
        quality = pd.DataFrame(columns=CSV_COLUMNS + ["stage", "night"])
    parts = [f for f in (frames["ingest"], quality) if f is not None and len(f)]
    everything = pd.concat(parts, ignore_index=True) if parts else quality
    if "severity" not in everything.columns:
        everything["severity"] = "blocking"
    return everything, quality


def write_facilities_feedback(
    warehouse: Warehouse, night: dt.date, findings: pd.DataFrame, facilities: list[str]
) -> dict[str, int]:
    """The feedback files of these facilities only, from the night's findings (any columns);
    returns facility -> rows written, as `write_night_feedback`."""
    from expectations.checks import load_checks

    descriptions = {c.id: c.description for c in load_checks().checks.values()}
    feedback = findings.reindex(columns=CSV_COLUMNS) if len(findings) else findings
    feedback = feedback[feedback["facility_code"].isin(facilities)] if len(feedback) else feedback
    return write_night_feedback(warehouse, night, feedback, facilities, descriptions)


def write_night_outputs(
    warehouse: Warehouse,
    night: dt.date,
    findings: pd.DataFrame,
    quality: pd.DataFrame,
    facilities: list[str],
    only_facilities: tuple[str, ...] | None = None,
) -> dict:
    """The feedback files of `facilities` and of every facility with findings (only those of
    `only_facilities` when given) and the failing rows' CSVs; returns what `runs/<D>/feedback.json`
    holds: rows written per facility ("" for codes that cannot name a file) and the CSVs per check."""
    if only_facilities is None:
        named = findings["facility_code"].dropna().unique().tolist() if len(findings) else []
        chosen = sorted(set(facilities) | set(named))
    else:
        chosen = [f for f in facilities if f in only_facilities]
    return {
        "feedback_rows": write_facilities_feedback(warehouse, night, findings, chosen),
        "failures": write_failing_rows(warehouse, night, quality),
    }


def warm_up_feedback() -> None:
    """The feedback stage's declared warm-up: import the XLSX writer (write_feedback imports it on
    first use) and the checks' texts."""
    import rustpy_xlsxwriter  # noqa: F401

    from expectations.checks import load_checks

    load_checks()


def feedback_night(ctx) -> Path:
    """The feedback stage: every facility's feedback files and every check's failing rows' CSV,
    from the night's findings alone; returns `runs/<D>/feedback.json`. The facilities are the ones
    the night's ingest received something from (the ledger's), and every facility with a
    finding."""
    warehouse, night = ctx.warehouse, ctx.night
    findings, quality = night_findings(warehouse, night)
    ingest = warehouse.manifest(night, "ingest")
    received = json.loads(ingest.read_text()).get("facilities", {}) if ingest.exists() else {}
    outputs = write_night_outputs(warehouse, night, findings, quality, sorted(received))
    return write_json_atomic(warehouse.manifest(night, "feedback"), {"night": night.isoformat(), **outputs})


def read_night_outputs(warehouse: Warehouse, night: dt.date) -> dict | None:
    """What the feedback stage wrote for the night (None before it ran)."""
    path = warehouse.manifest(night, "feedback")
    return json.loads(path.read_text()) if path.exists() else None
