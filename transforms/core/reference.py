"""Reference tables (names for codes) shipped with the package under transforms/reference/.

Each `<name>.csv` starts with `# key: value` comment lines naming its source and version, then a
header row; every value is text (codes keep their leading zeros). One function per table returns
it as an Arrow table; `source(name)` returns the header comment.

A deployment drops in its own list (e.g. the Ministry's facility list) without touching the
package: a file of the same name in the folder named by HEALTHBOOK_REFERENCE_DIR wins over the
packaged one, table by table. It must have the packaged file's columns (extra columns are kept).
"""

from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

import pyarrow as pa

from transforms.core.resources import package_path

REFERENCE_DIR = package_path("transforms.core", "reference")
OVERRIDE_ENV = "HEALTHBOOK_REFERENCE_DIR"


def reference_path(name: str) -> Path:
    """The file a table is read from: the deployment's override, else the packaged one."""
    override = os.environ.get(OVERRIDE_ENV)
    if override and (Path(override) / f"{name}.csv").is_file():
        return Path(override) / f"{name}.csv"
    return REFERENCE_DIR / f"{name}.csv"


def _split(path: Path) -> tuple[dict[str, str], list[str]]:
    meta: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    body = 0
    while body < len(lines) and lines[body].startswith("#"):
        key, _, value = lines[body][1:].partition(":")
        meta[key.strip()] = value.strip()
        body += 1
    return meta, lines[body:]


def source(name: str) -> dict[str, str]:
    """The header comment of a table's file (source, version, ...)."""
    return _split(reference_path(name))[0]


def read_reference(name: str) -> pa.Table:
    """A reference table, every column text; empty strings read as null."""
    path = reference_path(name)
    packaged = REFERENCE_DIR / f"{name}.csv"
    _, lines = _split(path)
    rows = list(csv.reader(lines))
    if not rows:
        raise ValueError(f"{path}: no header row")
    header, data = rows[0], rows[1:]
    if path != packaged:  # a dropped-in list must keep the packaged columns
        missing = [c for c in _split(packaged)[1][0].split(",") if c not in header]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}")
    columns = {
        column: pa.array([(r[i] if i < len(r) and r[i] != "" else None) for r in data], pa.string())
        for i, column in enumerate(header)
    }
    return pa.table(columns)


def provinces() -> pa.Table:
    """Post-2025 provinces: province_code (2 digits), name, division_type."""
    return read_reference("provinces")


@functools.cache
def province_names() -> dict[str, str]:
    """Province code -> its official full name ("Tỉnh Cao Bằng", "Thành phố Hà Nội")."""
    return {
        r["province_code"]: r["name"] if r["division_type"] != "tỉnh" else f"Tỉnh {r['name']}"
        for r in provinces().to_pylist()
    }


def wards() -> pa.Table:
    """Post-2025 wards and communes: ward_code (5 digits), name, division_type, province_code."""
    return read_reference("wards")


def icd10_chapters() -> pa.Table:
    """ICD-10 chapters: chapter (numeral), chapter_number, first/last category, title_vi, title_en."""
    table = read_reference("icd10_chapters")
    index = table.schema.get_field_index("chapter_number")
    return table.set_column(index, "chapter_number", table["chapter_number"].cast(pa.int32()))


def icd10_blocks() -> pa.Table:
    """ICD-10 blocks: block ('A00-A09'), chapter, first/last category, title_vi, title_en."""
    return read_reference("icd10_blocks")


def service_groups() -> pa.Table:
    """MA_NHOM cost groups of drug and service lines: group_code, name_vi, name_en, kind."""
    return read_reference("service_groups")


def facilities() -> pa.Table:
    """Facilities: facility_code (5 characters), name, province_code, level."""
    return read_reference("facilities")
