"""The load's warehouse files (outcomes, retried, pending) have one fixed Arrow schema."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from serving_fixtures import NIGHT1, context
from test_load_serving import night_one

from transforms.load import stage as load

NIGHT = dt.date(2026, 11, 26)


def outcome_row(**overrides) -> dict:
    row = {
        "facility_code": "01001",
        "encounter_id": "LK1",
        "version": 1,
        "night": NIGHT,
        "outcome": "loaded",
        "reason": None,
        "citizen_id": "079090001234",
        "is_retry": False,
        "is_published": True,
    }
    return row | overrides


def test_an_empty_outcomes_frame_is_written_with_typed_columns_not_null(tmp_path):
    empty = pd.DataFrame({c: pd.Series(dtype="object") for c in load.OUTCOMES_SCHEMA.names})
    path = load.write_parquet_atomic(empty, tmp_path / "retried.parquet", load.OUTCOMES_SCHEMA)
    assert pq.read_schema(path).remove_metadata() == load.OUTCOMES_SCHEMA
    assert pq.read_table(path).num_rows == 0


def test_str_dtype_and_object_columns_give_the_same_schema(tmp_path):
    # the same row built two ways: pandas 3 `str` columns (Arrow large_string underneath) and
    # object columns with an all-None reason (Arrow null type on its own)
    as_str = pd.DataFrame([outcome_row()]).astype({"facility_code": "str", "encounter_id": "str"})
    as_object = pd.DataFrame([outcome_row()]).astype("object")
    a = load.write_parquet_atomic(as_str, tmp_path / "a.parquet", load.OUTCOMES_SCHEMA)
    b = load.write_parquet_atomic(as_object, tmp_path / "b.parquet", load.OUTCOMES_SCHEMA)
    assert pq.read_schema(a).remove_metadata() == pq.read_schema(b).remove_metadata() == load.OUTCOMES_SCHEMA
    assert pq.read_table(a).equals(pq.read_table(b))


def test_a_timestamp_night_is_written_as_a_date():
    frame = pd.DataFrame([outcome_row(night=pd.Timestamp("2026-11-26"))])
    table = load.arrow_table(frame, load.OUTCOMES_SCHEMA)
    assert table.column("night").to_pylist() == [NIGHT]


def test_a_loaded_night_writes_outcomes_retried_and_pending_with_the_fixed_schemas(tmp_path):
    # night one retries nothing: retried.parquet is empty, yet typed like the outcomes
    ctx = context(tmp_path, NIGHT1, f"sqlite:///{tmp_path / 'warehouse' / 'serving.db'}")
    night_one(ctx)
    load.load_night(ctx)
    wh = ctx.warehouse
    assert pq.read_schema(wh.outcomes(NIGHT1)).remove_metadata() == load.OUTCOMES_SCHEMA
    assert pq.read_schema(wh.retried(NIGHT1)).remove_metadata() == load.OUTCOMES_SCHEMA
    assert pq.read_table(wh.retried(NIGHT1)).num_rows == 0
    assert pq.read_schema(wh.pending).remove_metadata() == load.PENDING_SCHEMA
    # 5 received, 1 loaded, 4 pending (see night_one)
    assert pq.read_table(wh.outcomes(NIGHT1)).num_rows == 5
    assert pq.read_table(wh.pending).column("version").type == pa.int64()
