"""Rows written by COPY text format come back from PostgreSQL exactly as they were sent."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
import sqlalchemy as sa

from transforms import load

TRICKY = [
    "back\\slash",  # the escape character itself
    "tab\there",
    "two\nlines\r\nand a CR",
    "\\N",  # the null marker as a real value stays text
    'comma, "quotes"',
    "Tăng huyết áp vô căn",
    "",  # empty text is not null
    None,
]


def test_copy_text_renders_each_kind_and_escapes_text():
    batch = pa.record_batch(
        [
            pa.array(["a\tb", None]),
            pa.array([1, None], pa.int64()),
            pa.array([True, False]),
            pa.array([dt.datetime(2026, 6, 1, 9, 30), None], pa.timestamp("s")),
            pa.array([dt.date(2026, 11, 26), None]),
        ],
        names=["t", "i", "b", "ts", "d"],
    )
    assert load.copy_text(batch) == (b"a\\tb\t1\tt\t2026-06-01 09:30:00\t2026-11-26\n\\N\t\\N\tf\t\\N\t\\N\n")


def test_copy_text_of_a_sliced_batch_holds_only_its_rows():
    batch = pa.record_batch([pa.array(["x", "y", "z"])], names=["t"]).slice(1, 2)
    assert load.copy_text(batch) == b"y\nz\n"


@pytest.mark.postgres
def test_tricky_text_round_trips_through_copy(pg_url):
    engine = load.serving_engine(pg_url)
    rows = pa.table(
        {
            "id": pa.array(range(len(TRICKY)), pa.int64()),
            "note": pa.array(TRICKY, pa.string()),
            "at": pa.array([dt.datetime(2026, 6, 1, 9, 0)] * len(TRICKY), pa.timestamp("s")),
            "ok": pa.array([True] * (len(TRICKY) - 1) + [None]),
            "x": pa.array([1.5, float("nan"), 1e20, -0.25, None, 0.0, 2.0, 3.0]),
        }
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "create temp table tricky (id integer, note text, at timestamp, ok boolean, x double precision)"
        )
        # 8 rows sent, 8 reported
        assert load.bulk_insert(conn, "tricky", rows) == len(TRICKY)
        back = conn.execute(sa.text("select note, at, ok, x from tricky order by id")).fetchall()
    assert [r[0] for r in back] == TRICKY
    assert {r[1] for r in back} == {dt.datetime(2026, 6, 1, 9, 0)}
    assert [r[2] for r in back] == [True] * 7 + [None]
    assert back[0][3] == 1.5 and back[1][3] != back[1][3] and back[2][3] == 1e20 and back[4][3] is None
