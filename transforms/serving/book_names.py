"""Vietnamese names of the codes a health book shows, from versioned reference files.

The files live in `transforms/reference/` (plain CSV, `code,name_vi`; facilities
`facility_code,name,province_code,level`); `book_sources.csv` beside them names each file's source
and version, and the book document prints those versions. A code that is not in its list has no
name: `name()` returns None and the caller prints the code as sent, with a mark (never a guess).
"""

from __future__ import annotations

import csv
import functools
import re

from transforms.core import reference

REFERENCE_DIR = reference.REFERENCE_DIR

# list name -> its reference file (columns code, name_vi, but for those in OTHER_COLUMNS)
LISTS = {
    "icd10": "icd10_vi.csv",
    "route": "routes.csv",
    "department": "departments.csv",
    "facility": "facilities.csv",
    "visit_type": "visit_types.csv",
    "result": "treatment_results.csv",
    "discharge_type": "discharge_types.csv",
}
# list name -> (code column, name column) where they are not (code, name_vi)
OTHER_COLUMNS = {"facility": ("facility_code", "name")}


@functools.cache
def _table(kind: str) -> dict[str, str]:
    # read as the snapshot reads it (transforms/core/reference.py): the same files, header comments,
    # and a deployment's own list (HEALTHBOOK_REFERENCE_DIR) naming codes in books too
    code_column, name_column = OTHER_COLUMNS.get(kind, ("code", "name_vi"))
    table = reference.read_reference(LISTS[kind].removesuffix(".csv"))
    return {
        code.strip(): value.strip()
        for code, value in zip(
            table.column(code_column).to_pylist(), table.column(name_column).to_pylist(), strict=True
        )
        if code and value
    }


def name(kind: str, code) -> str | None:
    """The Vietnamese name of `code` in list `kind`, or None (unknown code, or no code)."""
    if code is None:
        return None
    text = str(code).strip()
    names = _table(kind)
    found = names.get(text)
    if found is None and kind == "icd10":
        # facilities send "e119" and "E11.9": the same code (transforms.core.icd10.canonical_icd10's
        # reshaping, without importing its pandas-backed validity list)
        bare = re.sub(r"[†*+!\s.]", "", text).upper()
        found = names.get(bare[:3] + ("." + bare[3:] if len(bare) > 3 else ""))
    return found


@functools.cache
def versions() -> dict[str, str]:
    """file -> version of every reference file the book reads (book_sources.csv)."""
    with open(REFERENCE_DIR / "book_sources.csv", newline="", encoding="utf-8") as f:
        return {row["file"]: row["version"] for row in csv.DictReader(f)}


def versions_text() -> str:
    """One line naming the reference versions, printed on every document."""
    files = set(LISTS.values())
    return ", ".join(
        f"{file.removesuffix('.csv')} {v}" for file, v in sorted(versions().items()) if file in files
    )
