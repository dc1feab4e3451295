"""CSV formula injection (issue #16 item 5): every CSV written for people escapes a text cell that
a spreadsheet would run as a formula (OWASP: = + - @ tab CR), keeps numbers numbers, and the quality
report's failing-row CSVs and the review queue of a real night go through it."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import re
import shutil
from pathlib import Path

import pandas as pd

NIGHT = dt.date(2026, 11, 26)
# OWASP's formula starters, written out here (not imported) so the test also runs on code without them
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _cells(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _text_cells(path: Path) -> list[str]:
    """The cells of a CSV's rows that are not numbers: a spreadsheet reads "-1" (a review queue's
    comparison level) as the value -1, never as a formula; anything else must not start like one."""
    return [c for row in _cells(path)[1:] for c in row if not _is_number(c)]


def test_formula_cells_get_a_quote_in_front_text_is_quoted_and_numbers_stay_numbers(tmp_path):
    from transforms.core.csv_safe import escape_cell, write_csv

    frame = pd.DataFrame(
        {
            "value": pd.Series(
                ['=HYPERLINK("http://x","y")', "+1", "-5", "@SUM(A1)", "\tcmd", "\rcmd", "N18.5", None],
                dtype="str",
            ),
            "weight": [-1.5, 2.0, -3.25, 0.0, 1.0, 1.0, 1.0, 1.0],  # numeric: negatives stay readable
            "row_index": [0, 1, 2, 3, 4, 5, 6, 7],
        }
    )
    path = write_csv(frame, tmp_path / "x.csv")
    rows = _cells(path)
    assert rows[0] == ["value", "weight", "row_index"]
    assert [r[0] for r in rows[1:]] == [
        '\'=HYPERLINK("http://x","y")',
        "'+1",
        "'-5",  # a text cell: text, so escaped
        "'@SUM(A1)",
        "'\tcmd",
        "'\rcmd",
        "N18.5",
        "",
    ]
    assert [r[1] for r in rows[1:4]] == ["-1.5", "2.0", "-3.25"]
    text = path.read_text(encoding="utf-8")
    assert '"\'=HYPERLINK(""http://x"",""y"")",-1.5,0' in text  # text wrapped, quotes doubled, numbers bare
    assert escape_cell(-5) == -5 and escape_cell("a=b") == "a=b"


def _poison(extracts: Path) -> None:
    """Every patient name starts with '@' and every main diagnosis is a formula: values a hostile
    hospital system could send, inside the base64 XML1 payloads of the generated envelopes."""

    def payload(match: re.Match) -> bytes:
        inner = base64.b64decode(match.group(2))
        inner = re.sub(rb"(<HO_TEN>(?:<!\[CDATA\[)?)", rb"\1@", inner)
        inner = re.sub(rb"(<MA_BENH_CHINH>(?:<!\[CDATA\[)?)[^<\]]*", rb"\1=1+2", inner)
        return match.group(1) + base64.b64encode(inner) + match.group(3)

    for xml in extracts.rglob("*.xml"):
        data = re.sub(
            rb"(<LOAIHOSO>XML1</LOAIHOSO><NOIDUNGFILE>)([^<]+)(</NOIDUNGFILE>)", payload, xml.read_bytes()
        )
        xml.write_bytes(data)


def test_a_generated_night_with_formula_values_writes_only_escaped_cells_for_people(
    tmp_path, golden_night, pseudonym_key
):
    from transforms.core.context import make_context
    from transforms.orchestration.pipeline import run_night

    # the golden night has twins, so its review queue is not empty
    shutil.copytree(golden_night / "extracts", tmp_path / "extracts")
    shutil.copytree(golden_night / "registry", tmp_path / "registry")
    _poison(tmp_path / "extracts")
    ctx = make_context(NIGHT, tmp_path / "extracts", tmp_path / "registry", tmp_path / "warehouse")
    run_night(ctx, stages=["ingest", "quality", "reconcile", "load", "ledger", "report"])

    failures = sorted((ctx.warehouse.quality / NIGHT.isoformat() / "failures").glob("*.csv"))
    review = ctx.warehouse.review(NIGHT) / "review_queue.csv"
    assert failures and review.exists()
    cells = {path.name: _text_cells(path) for path in [*failures, review]}
    # no cell of any CSV would run as a formula
    assert {n: [c for c in v if c.startswith(FORMULA_PREFIXES)] for n, v in cells.items()} == {
        n: [] for n in cells
    }
    # and the poisoned values did reach them, escaped
    every_failure_cell = [c for path in failures for c in cells[path.name]]
    assert "'=1+2" in every_failure_cell
    assert any(c.startswith("'@") for c in cells["review_queue.csv"])


def test_text_columns_are_escaped_vectorised_as_cell_by_cell():
    """A str column is escaped with pandas' string methods, an object column cell by cell: the
    same rule either way (escape_cell), missing cells left missing."""
    from transforms.core.csv_safe import escape_cell, escape_frame

    values = ["=a", "b", None, "-5", "@x", "\tq", "\rr", "+1", "ok", "a=b"]
    frame = pd.DataFrame(
        {"text": pd.Series(values, dtype="str"), "mixed": pd.Series([*values[:-1], 7], dtype=object)}
    )
    escaped = escape_frame(frame)
    for column in frame.columns:
        expected = [None if pd.isna(v) else escape_cell(v) for v in frame[column]]
        assert [None if pd.isna(v) else v for v in escaped[column]] == expected
        assert escaped[column].dtype == frame[column].dtype
    assert escaped["text"].tolist()[:2] == ["'=a", "b"]
