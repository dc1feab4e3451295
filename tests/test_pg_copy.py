"""Rows written by binary COPY (transforms/serving/pg_copy.py) come back from PostgreSQL exactly as sent."""

from __future__ import annotations

import datetime as dt
import math
import struct

import pyarrow as pa
import pytest
import sqlalchemy as sa

from transforms.load import stage as load
from transforms.serving import pg_copy
from transforms.serving import writer as serving_writer

TRICKY = [
    "back\\slash",
    "tab\there",
    "two\nlines\r\nand a CR",
    "\\N",  # the text format's null marker is plain text here
    'comma, "quotes"',
    "Tăng huyết áp vô căn",
    "",  # empty text is not null
    None,
]


def field(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def test_encode_writes_each_type_in_network_order_with_null_markers():
    batch = pa.record_batch(
        [
            pa.array(["ă", None]),
            pa.array([7, None], pa.int64()),
            pa.array([2**40, -1], pa.int64()),
            pa.array([True, None]),
            pa.array([dt.datetime(2000, 1, 1, 0, 0, 1), None], pa.timestamp("s")),
            pa.array([dt.date(1999, 12, 31), dt.date(2000, 1, 2)]),
            pa.array([1.5, None]),
        ],
        names=["t", "i", "b", "ok", "ts", "d", "x"],
    )
    types = [
        "text",
        "integer",
        "bigint",
        "boolean",
        "timestamp without time zone",
        "date",
        "double precision",
    ]
    null = struct.pack(">i", -1)
    first = (
        struct.pack(">h", 7)
        + field("ă".encode())
        + field(struct.pack(">i", 7))
        + field(struct.pack(">q", 2**40))
        + field(b"\x01")
        + field(struct.pack(">q", 1_000_000))  # microseconds since 2000-01-01
        + field(struct.pack(">i", -1))  # days since 2000-01-01
        + field(struct.pack(">d", 1.5))
    )
    second = (
        struct.pack(">h", 7)
        + null
        + null
        + field(struct.pack(">q", -1))
        + null
        + null
        + field(struct.pack(">i", 1))
        + null
    )
    assert pg_copy.encode(batch, types) == first + second


def test_encode_of_a_sliced_batch_holds_only_its_rows():
    batch = pa.record_batch([pa.array(["x", "y", "z"])], names=["t"]).slice(1, 2)
    assert pg_copy.encode(batch, ["text"]) == (struct.pack(">h", 1) + field(b"y")) + (
        struct.pack(">h", 1) + field(b"z")
    )


def test_an_integer_out_of_the_column_range_raises_instead_of_wrapping():
    batch = pa.record_batch([pa.array([2**31], pa.int64())], names=["i"])
    with pytest.raises(pa.ArrowInvalid):
        pg_copy.encode(batch, ["integer"])


@pytest.mark.postgres
def test_every_type_round_trips_through_copy(pg_url):
    engine = load.serving_engine(pg_url)
    n = len(TRICKY)
    rows = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "note": pa.array(TRICKY, pa.string()),
            "at": pa.array(
                [dt.datetime(2026, 6, 1, 9, 0), dt.datetime(1969, 7, 20, 20, 17, 40), *[None] * (n - 2)],
                pa.timestamp("s"),
            ),
            "on_day": pa.array([dt.date(1890, 2, 28), dt.date(2026, 11, 26), *[None] * (n - 2)]),
            "ok": pa.array([True, False] * (n // 2 - 1) + [True, None]),
            "x": pa.array([1.5, float("nan"), 1e20, -0.25, None, float("inf"), 2.0, 3.0]),
            "big": pa.array([2**62, -(2**62), 0, 1, 2, 3, 4, None], pa.int64()),
            "small": pa.array([2**31 - 1, -(2**31), 0, 1, 2, 3, 4, None], pa.int64()),
        }
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "create temp table tricky (id integer, note text, at timestamp, on_day date, ok boolean,"
            " x double precision, big bigint, small integer)"
        )
        assert serving_writer.bulk_insert(conn, "tricky", rows) == n  # n rows sent, n reported
        back = conn.execute(
            sa.text("select note, at, on_day, ok, x, big, small from tricky order by id")
        ).fetchall()
    assert [r[0] for r in back] == TRICKY
    assert [r[1] for r in back][:3] == [
        dt.datetime(2026, 6, 1, 9, 0),
        dt.datetime(1969, 7, 20, 20, 17, 40),
        None,
    ]
    assert [r[2] for r in back][:3] == [dt.date(1890, 2, 28), dt.date(2026, 11, 26), None]
    assert [r[3] for r in back] == rows["ok"].to_pylist()
    x = [r[4] for r in back]
    assert x[0] == 1.5 and math.isnan(x[1]) and x[2] == 1e20 and x[4] is None and x[5] == math.inf
    assert [r[5] for r in back] == rows["big"].to_pylist()
    assert [r[6] for r in back] == rows["small"].to_pylist()


@pytest.mark.postgres
def test_a_value_too_large_for_an_integer_column_fails_the_copy(pg_url):
    engine = load.serving_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("create temp table narrow (n integer)")
        with pytest.raises(pa.ArrowInvalid):
            serving_writer.bulk_insert(conn, "narrow", pa.table({"n": pa.array([2**40], pa.int64())}))
