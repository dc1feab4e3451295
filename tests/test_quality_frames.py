"""Tiny staged frames for the quality tests, typed exactly as ingest writes them (ARCHITECTURE.md).

`staged(dataset, rows)` builds the frame through an Arrow table of the declared kinds, then
`to_pandas()`, the same path as reading the staged Parquet; unspecified columns are null.
"""

from __future__ import annotations

import datetime as dt
import zlib

import pandas as pd
import pyarrow as pa

from transforms.core import schema

NIGHT = dt.date(2026, 11, 26)
FACILITY = "94170"

_ARROW = {
    "text": pa.string(),
    "code": pa.string(),
    "int": pa.int64(),
    "decimal": pa.float64(),
    "instant": pa.timestamp("s"),
    "date": pa.date32(),
    "birth": pa.date32(),
    "codes": pa.list_(pa.string()),
    "dates": pa.list_(pa.date32()),
}
_LINEAGE = [
    ("night", pa.date32()),
    ("facility_code", pa.string()),
    ("encounter_id", pa.string()),
    ("version", pa.int64()),
    ("source_file", pa.string()),
    ("hoso_index", pa.int64()),
    ("row_index", pa.int64()),
    ("row_warnings", pa.list_(pa.string())),
]


def arrow_schema(dataset: str) -> pa.Schema:
    fields = dict(_LINEAGE)
    for column in schema.TABLES_BY_DATASET[dataset].columns:
        fields.setdefault(column.name, _ARROW[column.kind])
        if column.kind == "birth":
            fields["birth_date_precision"] = pa.string()
    return pa.schema(list(fields.items()))


def ts(text: str) -> dt.datetime:
    """'2026-11-20 08:15' -> datetime."""
    return dt.datetime.fromisoformat(text)


def staged(dataset: str, rows: list[dict]) -> pd.DataFrame:
    """A staged frame of `dataset`: lineage defaults (night, facility 94170, version 1, row_index i)."""
    arrow = arrow_schema(dataset)
    full = []
    for i, row in enumerate(rows):
        base = {
            "night": NIGHT,
            "facility_code": FACILITY,
            "version": 1,
            "source_file": "f.xml",
            "hoso_index": 0,
            "row_index": i,
            "row_warnings": [],
        }
        base.update(row)
        unknown = set(base) - set(arrow.names)
        assert not unknown, unknown
        full.append(base)
    return pa.Table.from_pylist(full, schema=arrow).to_pandas()


def clean_encounter(encounter_id: str = "LK1", **overrides) -> dict:
    """An outpatient visit that passes every check; no line items, so every total is 0."""
    row = {
        "encounter_id": encounter_id,
        "patient_name": "Nguyễn Văn An",
        "citizen_id": "079090001234",  # 079 HCMC, 0 = male 1900s, 90 -> 1990
        "birth_date": dt.date(1990, 3, 14),
        "birth_date_precision": "day",
        "sex_code": "1",
        # one card per encounter id, so that two clean encounters are never a duplicate claim
        "insurance_card": [f"DN479{zlib.crc32(encounter_id.encode()) % 10**10:010d}"],
        "card_valid_from": [dt.date(2026, 1, 1)],
        "card_valid_to": [dt.date(2026, 12, 31)],
        "main_icd10": "I10",
        "secondary_icd10": ["E11.9", "E119"],
        "procedure_icd9": [],
        "patient_category": "1.12",
        "admitted_at": ts("2026-11-25 08:15"),
        "discharged_at": ts("2026-11-25 10:40"),
        "result_code": "2",
        "discharge_type_code": "1",
        "visit_type": "01",
        "weight_kg": 61.5,
        "drugs_total_vnd": 0.0,
        "supplies_total_vnd": 0.0,
        "hospital_total_vnd": 0.0,
        "insured_total_vnd": 0.0,
        "patient_paid_vnd": 0.0,
        "patient_copay_vnd": 0.0,
        "insurance_paid_vnd": 0.0,
        "other_sources_vnd": 0.0,
    }
    row.update(overrides)
    return row


def test_staged_frames_have_the_declared_kinds():
    frame = staged("encounters", [clean_encounter()])
    assert str(frame["admitted_at"].dtype) == "datetime64[s]"
    assert frame.loc[0, "secondary_icd10"].tolist() == ["E11.9", "E119"]
    assert frame.loc[0, "facility_code"] == FACILITY
