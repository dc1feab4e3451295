"""CSV files that people open in a spreadsheet: no cell can be read as a formula (issue #16 item 5).

OWASP "CSV Injection": a cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return
is a formula to Excel and LibreOffice (`=HYPERLINK(...)`, `@SUM(...)`, DDE). Such a text cell is
written with a single quote in front (the spreadsheet shows the text, the quote is a visible hint),
and every text cell is wrapped in double quotes, embedded quotes doubled (csv.QUOTE_NONNUMERIC).

Only text cells are escaped: a numeric column (a float match weight, an int row index) stays a
number, so a negative number stays readable and sortable (a number cannot hold a formula). A text
column whose value happens to be "-5" is text and is escaped: "'-5".

Every CSV the project writes for people goes through `write_csv`: the failing-row CSVs of the
quality report (expectations/report.py) and the review queue (transforms/reconcile/stage.py).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
from pandas.api import types as ptypes

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value):
    """A text cell that a spreadsheet would take for a formula, prefixed with a single quote;
    anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def escape_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with every text cell escaped; numeric, boolean and date columns untouched."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if (
            ptypes.is_numeric_dtype(series)
            or ptypes.is_bool_dtype(series)
            or ptypes.is_datetime64_any_dtype(series)
        ):
            continue
        if isinstance(series.dtype, pd.StringDtype):  # text only: the same rule, vectorised
            formulas = series.str.startswith(FORMULA_PREFIXES, na=False)
            if formulas.any():  # most columns have none: no prefixed copy of the column to build
                out[column] = series.mask(formulas, "'" + series)
        else:  # mixed objects: only their text cells
            out[column] = series.map(escape_cell, na_action="ignore").astype(series.dtype, copy=False)
    return out


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write `frame` as a CSV with a header for people: text cells escaped and quoted."""
    from transforms.core.safe_io import atomic_path

    with atomic_path(Path(path)) as tmp:
        escape_frame(frame).to_csv(tmp, index=False, quoting=csv.QUOTE_NONNUMERIC)
    return Path(path)
