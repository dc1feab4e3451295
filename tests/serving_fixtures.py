"""Tiny hand-made warehouses for the load and book tests (the contracts of ARCHITECTURE.md).

Each builder writes exactly what the upstream stage would: staged Parquet partitioned by night and
facility, findings, patient links, a registry snapshot. Values are small enough to check by eye.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.core.context import NightContext
from transforms.core.parquet_io import known_schema
from transforms.core.schema import FINDINGS_SCHEMA
from transforms.core.warehouse import Warehouse

NIGHT1 = dt.date(2026, 11, 26)
NIGHT2 = dt.date(2026, 11, 27)
FACILITY = "94170"


def at(text: str) -> dt.datetime:
    """'2026-11-26 08:15' -> datetime."""
    return dt.datetime.fromisoformat(text)


def write_staged(wh: Warehouse, dataset: str, night: dt.date, rows: list[dict]) -> None:
    """Write staged rows (declared columns + lineage) the way ingest partitions them."""
    schema = known_schema(dataset)  # exactly what ingest writes
    by_facility: dict[str, list[dict]] = {}
    for i, row in enumerate(rows):
        full = {
            "night": night,
            "facility_code": FACILITY,
            "version": 1,
            "source_file": f"{row.get('facility_code', FACILITY)}/batch.xml",
            "hoso_index": 0,
            "row_index": i,
            "row_warnings": [],
            **row,
        }
        by_facility.setdefault(full["facility_code"], []).append(full)
    for facility, items in by_facility.items():
        folder = wh.staging_night(dataset, night) / f"facility_code={facility}"
        folder.mkdir(parents=True, exist_ok=True)
        columns = {f.name: [r.get(f.name) for r in items] for f in schema}
        pq.write_table(pa.table(columns, schema=schema), folder / "part-0.parquet")


def write_links(wh: Warehouse, night: dt.date, rows: list[dict]) -> None:
    folder = wh.staging_night("patient_links", night)
    folder.mkdir(parents=True, exist_ok=True)
    full = [
        {
            "facility_code": FACILITY,
            "version": 1,
            "tier": "citizen_id",
            "match_weight": 20.0,
            "margin": 10.0,
            "differences": [],
            **r,
        }
        for r in rows
    ]
    schema = pa.schema(
        [
            ("facility_code", pa.string()),
            ("encounter_id", pa.string()),
            ("version", pa.int64()),
            ("outcome", pa.string()),
            ("citizen_id", pa.string()),
            ("tier", pa.string()),
            ("match_weight", pa.float64()),
            ("margin", pa.float64()),
            ("differences", pa.list_(pa.string())),
        ]
    )
    pq.write_table(
        pa.table({f.name: [r.get(f.name) for r in full] for f in schema}, schema=schema),
        folder / "part-0.parquet",
    )


def write_findings(wh: Warehouse, night: dt.date, stage: str, rows: list[dict]) -> None:
    folder = wh.quarantine("findings", night)
    folder.mkdir(parents=True, exist_ok=True)
    full = [
        {
            "night": night,
            "facility_code": FACILITY,
            "version": 1,
            "dataset": "encounters",
            "row_index": None,
            "stage": stage,
            "check_id": f"{stage}.{r['reason']}",
            "severity": "blocking",
            "column": None,
            "value": None,
            **r,
        }
        for r in rows
    ]
    schema = FINDINGS_SCHEMA
    pq.write_table(
        pa.table({f.name: [r.get(f.name) for r in full] for f in schema}, schema=schema),
        folder / f"{stage}.parquet",
    )


REGISTRY = [
    {
        "citizen_id": "079090001234",
        "old_id_number": None,
        "social_insurance_number": "7909000123",
        "full_name": "Nguyễn Văn An",
        "birth_date": "19900314",
        "sex": "1",
        "ethnicity_code": "01",
        "nationality_code": "000",
        "province_code": "79",
        "ward_code": "26734",
        "blood_group": None,
        "death_date": None,
    },
    {
        "citizen_id": "001175000042",
        "old_id_number": "012345678",
        "social_insurance_number": "0117500004",
        "full_name": "Trần Thị Bình",
        "birth_date": "19750000",
        "sex": "2",
        "ethnicity_code": "01",
        "nationality_code": "000",
        "province_code": "01",
        "ward_code": "00004",
        "blood_group": "O+",
        "death_date": None,
    },
]


def write_registry(path: Path, rows: list[dict] = REGISTRY) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(REGISTRY[0])
    pq.write_table(pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in columns}), path)
    return path


def context(tmp_path: Path, night: dt.date, serving_url: str | None = None) -> NightContext:
    wh = Warehouse(tmp_path / "warehouse")
    registry = tmp_path / "registry" / "registry.parquet"
    if not registry.exists():
        write_registry(registry)
    return NightContext(
        night=night,
        extracts_dir=tmp_path / "extracts",
        registry_path=registry,
        warehouse=wh,
        serving_url=serving_url or wh.default_serving_url,
    )


def outpatient(encounter_id: str, **extra) -> dict:
    """An outpatient visit (visit type 01) for hypertension with a secondary diabetes code."""
    return {
        "encounter_id": encounter_id,
        "citizen_id": "999999999999",  # what the hospital typed: must never reach the book
        "patient_name": "NGUYEN VAN AN",
        "visit_type": "01",
        "visit_reason": "Đau đầu",
        "admitted_at": at("2026-11-26 08:15"),
        "discharged_at": at("2026-11-26 10:40"),
        "result_code": "2",
        "discharge_type_code": "1",
        "main_icd10": "I10",
        "secondary_icd10": ["E11"],
        "discharge_diagnosis": "Tăng huyết áp vô căn (nguyên phát)",
        "weight_kg": 61.5,
        "follow_up_dates": [dt.date(2026, 12, 10)],
        "instructions": "Tái khám sau 2 tuần",
        **extra,
    }


def inpatient(encounter_id: str, **extra) -> dict:
    """An inpatient stay (visit type 03): needs XML7 and XML8 to be complete."""
    return outpatient(
        encounter_id,
        visit_type="03",
        admitted_at=at("2026-11-20 09:00"),
        inpatient_at=at("2026-11-20 10:00"),
        discharged_at=at("2026-11-25 16:00"),
        main_icd10="J44.1",
        secondary_icd10=[],
        discharge_diagnosis="Bệnh phổi tắc nghẽn mạn tính có đợt cấp",
        **extra,
    )


def discharge_paper(encounter_id: str, **extra) -> dict:
    return {
        "encounter_id": encounter_id,
        "department_head_name": "BS. Lê Văn Cường",
        "discharge_diagnosis": "COPD đợt cấp",
        "issued_on": dt.date(2026, 11, 25),
        **extra,
    }


def summary(encounter_id: str, **extra) -> dict:
    return {
        "encounter_id": encounter_id,
        "medical_history": "Ho, khó thở 3 ngày",
        "treatment_method": "Kháng sinh, giãn phế quản",
        "issued_on": dt.date(2026, 11, 25),
        **extra,
    }


def drug(encounter_id: str, **extra) -> dict:
    return {
        "encounter_id": encounter_id,
        "drug_code": "40.17",
        "drug_name": "Amlodipin",
        "strength": "5mg",
        "route_code": "1.01",
        "dose": "1 viên/ngày",
        "quantity": 10.0,
        "ordered_at": at("2026-11-26 09:00"),
        **extra,
    }
