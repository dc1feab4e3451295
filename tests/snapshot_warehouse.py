"""A tiny hand-made warehouse (two nights, six citizens) for the snapshot and analyst-query tests.

Nights: N1 = 2026-11-25, N2 = 2026-11-26 (the snapshot night), N3 = 2026-11-27 (later: ignored).

Encounter versions (facility, MA_LK, version) -> citizen, what happened:
  E1  79001 LK1 v1  C1  inpatient 11-01..11-05, loaded N1, superseded N2 by v2
  E1  79001 LK1 v2  C1  inpatient 11-01..11-05, I11.9 + [E11], loaded N2            (current)
  E2  79001 LK2 v1  C4  outpatient 11-20, J06.9, loaded N1                            (current)
  E3  01001 LK3 v1  C2  inpatient 10-01..10-03, O80, loaded N1                        (current)
  E4  01001 LK4 v1  C3  outpatient, I10, potential match N1 (quarantined), retried and loaded N2
                        (runs/N2/retried.parquet)                                   (current)
  E5  79001 LK5 v1  C1  inpatient 11-20..11-22, I10, loaded N2                        (current)
  E6  01001 LK6 v1  C2  day-care 11-25, 'e119', loaded N2                             (current)
  E7  01001 LK7 v1  C5  quarantined N2 (discharge_before_admission)
  E8  79001 LK8 v1  C6  outpatient, A09, loaded N1                                    (current)
  E8  79001 LK8 v2  C6  B00, quarantined N2 (totals_mismatch): v1 stays current
  E9  79001 LK9 v1  C1  loaded N3: after the snapshot night, never in the N2 snapshot
=> 7 current encounters: E1v2, E2, E3, E4, E5, E6, E8v1.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.core.warehouse import Warehouse
from transforms.snapshot.stage import FHIR_COLUMNS, staged_arrow_schema

N1, N2, N3 = dt.date(2026, 11, 25), dt.date(2026, 11, 26), dt.date(2026, 11, 27)


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


REGISTRY = [
    # citizen_id, old_id, SIN, name, birth_date, sex, province, ward, death_date
    ("079090001234", "123456789", "7909000123", "Nguyễn Văn An", "19900314", "1", "79", "26734", None),
    ("001185000002", None, "0118500002", "Trần Thị Bình", "19850000", "2", "01", "00004", None),
    ("001030000003", "012345678", "0103000003", "Lê Văn Cường", "19300501", "1", "01", "00004", None),
    ("079224000004", None, "7922400004", "Phạm Minh Dũng", "20240210", "1", "79", "26734", None),
    ("001136000005", None, "0133600005", "Hoàng Thị Em", "19361127", "2", "01", "00007", None),
    ("001070000006", "098765432", "0107000006", "Đỗ Văn Phúc", "19700101", "1", "01", "00007", "20260101"),
]
C1, C2, C3, C4, C5, C6 = (r[0] for r in REGISTRY)
PHONES = {
    C1: "0912345678",
    C2: "0987654321",
    C3: "0901234567",
    C4: "0911222333",
    C5: "0933444555",
    C6: "0944555666",
}
CARDS = {cid: f"DN479{sin}" for cid, _, sin, *_ in REGISTRY}
NAMES = {r[0]: r[3] for r in REGISTRY}


def encounter(facility, lk, version, citizen, visit_type, admitted, discharged, main, secondary=()):
    return {
        "facility_code": facility,
        "encounter_id": lk,
        "version": version,
        "patient_name": NAMES.get(citizen, "Người Lạ"),
        "citizen_id": citizen,
        "phone": PHONES.get(citizen),
        "address": "12 Lê Lợi, Phường Bến Thành",
        "insurance_card": [CARDS[citizen]] if citizen in CARDS else [],
        "visit_reason": f"Khám cho {NAMES.get(citizen)}",
        "visit_type": visit_type,
        "admitted_at": ts(admitted),
        "discharged_at": ts(discharged),
        "main_icd10": main,
        "secondary_icd10": list(secondary),
        "hospital_total_vnd": 100000.0,
    }


STAGED_ENCOUNTERS = {
    N1: [
        encounter(
            "79001", "LK1", 1, C1, "03", "2026-11-01T08:00", "2026-11-05T10:00", "I10", ["E11.9", "Z95"]
        ),
        encounter("79001", "LK2", 1, C4, "01", "2026-11-20T09:00", "2026-11-20T09:30", "J06.9"),
        encounter("01001", "LK3", 1, C2, "03", "2026-10-01T08:00", "2026-10-03T10:00", "O80"),
        encounter("01001", "LK4", 1, C3, "01", "2026-11-24T08:00", "2026-11-24T09:00", "I10"),
        encounter("79001", "LK8", 1, C6, "01", "2025-12-01T08:00", "2025-12-01T09:00", "A09"),
    ],
    N2: [
        encounter("79001", "LK1", 2, C1, "03", "2026-11-01T08:00", "2026-11-05T10:00", "I11.9", ["E11"]),
        encounter("79001", "LK5", 1, C1, "03", "2026-11-20T08:00", "2026-11-22T10:00", "I10"),
        encounter("01001", "LK6", 1, C2, "04", "2026-11-25T08:00", "2026-11-25T16:00", "e119"),
        encounter("01001", "LK7", 1, C5, "01", "2026-11-25T08:00", "2026-11-24T08:00", "K29"),
        encounter("79001", "LK8", 2, C6, "01", "2025-12-01T08:00", "2025-12-01T09:00", "B00"),
    ],
    N3: [encounter("79001", "LK9", 1, C1, "03", "2026-11-26T08:00", "2026-11-27T08:00", "I10")],
}


def drug(facility, lk, version, line, code, name, quantity, amount):
    return {
        "facility_code": facility,
        "encounter_id": lk,
        "version": version,
        "line_number": line,
        "row_index": line - 1,
        "drug_code": code,
        "drug_name": name,
        "quantity": float(quantity),
        "amount_vnd": float(amount),
        "dose": "1 viên/ngày",
        "directions": "Uống sau ăn",
    }


STAGED_DRUGS = {
    N1: [
        drug("79001", "LK1", 1, 1, "D1", "Amlodipin", 10, 10000),  # v1: superseded, not counted
        drug("79001", "LK2", 1, 1, "D3", "Paracetamol", 10, 5000),
        drug("01001", "LK4", 1, 1, "D3", "Paracetamol", 5, 2500),
    ],
    N2: [
        drug("79001", "LK1", 2, 1, "D1", "Amlodipin", 30, 30000),
        drug("79001", "LK1", 2, 2, "D2", "Metformin", 60, 60000),
        drug("79001", "LK5", 1, 1, "D1", "Amlodipin", 30, 30000),
        drug("01001", "LK6", 1, 1, "D2", "Metformin", 60, 60000),
        drug("01001", "LK6", 1, 2, "D3", "Paracetamol", 20, 10000),
        drug("01001", "LK7", 1, 1, "D3", "Paracetamol", 100, 50000),  # quarantined encounter
    ],
}


def service(facility, lk, version, line, group, code, name, icd9):
    return {
        "facility_code": facility,
        "encounter_id": lk,
        "version": version,
        "line_number": line,
        "row_index": line - 1,
        "cost_group": group,
        "service_code": code,
        "service_name": name,
        "procedure_icd9": icd9,
        "quantity": 1.0,
        "performed_at": ts("2026-11-02T09:00"),
    }


STAGED_SERVICES = {
    N1: [
        service("01001", "LK3", 1, 1, "8", "S2", "Đỡ đẻ thường", []),  # procedure without a code
        service("01001", "LK3", 1, 2, "1", "L1", "Định lượng Glucose", []),  # a lab test: not a procedure
    ],
    N2: [
        service("79001", "LK1", 2, 1, "2", "X1", "Chụp CT sọ não", ["88.01", "87.44"]),
        service("79001", "LK5", 1, 1, "8", "S1", "Điện tâm đồ", ["89.52"]),
    ],
}


def immunization(night, rid, citizen, code, occurred, active=True, line=1):
    return {
        "night": night,
        "source_file": "fhir/immunizations.ndjson",
        "line_number": line,
        "resource_id": rid,
        "citizen_id": citizen,
        "status": "completed" if active else "entered-in-error",
        "vaccine_system": "urn:vn:vaccine",
        "vaccine_code": code,
        "vaccine_name": code,
        "occurred_at": ts(occurred),
        "lot_number": "LOT1",
        "dose_number": 1,
        "facility_code": "79001",
        "is_active": active,
    }


STRANGER = "079099999999"  # not in the registry
STAGED_IMMUNIZATIONS = {
    N1: [
        immunization(N1, "R1", C4, "BCG", "2024-02-11T08:00", line=1),
        immunization(N1, "R2", C4, "DTP-HepB-Hib", "2024-04-10T08:00", line=2),
        immunization(N1, "R3", C1, "COVID19", "2021-08-01T08:00", line=3),
    ],
    N2: [
        immunization(N2, "R3", C1, "COVID19", "2021-08-01T08:00", active=False, line=1),  # withdrawn
        immunization(N2, "R4", C2, "COVID19", "2021-09-01T08:00", line=2),
        immunization(N2, "R5", C3, "INFLUENZA", "2026-10-01T08:00", line=3),
        immunization(N2, "R6", STRANGER, "BCG", "2026-01-05T08:00", line=4),
    ],
}

STAGED_ALLERGIES = {
    N2: [
        {
            "night": N2,
            "source_file": "fhir/allergies.ndjson",
            "line_number": 1,
            "resource_id": "A1",
            "citizen_id": C1,
            "substance_code": "764146007",
            "substance_name": "Penicillin",
            "severity": "severe",
            "recorded_at": ts("2026-11-01T08:00"),
            "is_active": True,
        },
        {
            "night": N2,
            "source_file": "fhir/allergies.ndjson",
            "line_number": 2,
            "resource_id": "A2",
            "citizen_id": C2,
            "substance_code": "227493005",
            "substance_name": "Cashew nuts",
            "verification_status": "refuted",
            "recorded_at": ts("2026-11-01T08:00"),
            "is_active": False,
        },
    ]
}

OUTCOMES = {
    N1: [
        ("79001", "LK1", 1, "loaded", None),
        ("79001", "LK2", 1, "loaded", None),
        ("01001", "LK3", 1, "loaded", None),
        ("01001", "LK4", 1, "quarantined", "potential_match"),
        ("79001", "LK8", 1, "loaded", None),
    ],
    N2: [
        ("79001", "LK1", 2, "loaded", None),
        ("79001", "LK1", 1, "superseded", None),
        ("79001", "LK5", 1, "loaded", None),
        ("01001", "LK6", 1, "loaded", None),
        ("01001", "LK7", 1, "quarantined", "discharge_before_admission"),
        ("79001", "LK8", 2, "quarantined", "totals_mismatch"),
    ],
    N3: [("79001", "LK9", 1, "loaded", None)],
}
# pending versions the load retried on a night (runs/<D>/retried.parquet)
RETRIED = {N2: [("01001", "LK4", 1, "loaded", None)]}

LINKS = {
    N1: [
        ("79001", "LK1", 1, "match", C1),
        ("79001", "LK2", 1, "match", C4),
        ("01001", "LK3", 1, "match", C2),
        ("01001", "LK4", 1, "potential_match", None),
        ("79001", "LK8", 1, "match", C6),
    ],
    N2: [
        ("79001", "LK1", 2, "match", C1),
        ("01001", "LK4", 1, "match", C3),
        ("79001", "LK5", 1, "match", C1),
        ("01001", "LK6", 1, "match", C2),
        ("01001", "LK7", 1, "match", C5),
        ("79001", "LK8", 2, "match", C6),
    ],
    N3: [("79001", "LK9", 1, "match", C1)],
}


def _table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(
        [{name: row.get(name) for name in schema.names} for row in rows], schema=schema
    )


def write_staged_xml(warehouse: Warehouse, dataset: str, by_night: dict[dt.date, list[dict]]) -> None:
    """Hive-partitioned like ingest: night=<D>/facility_code=<F>/part-0.parquet (partition keys in the path)."""
    schema = staged_arrow_schema(dataset)
    for night, rows in by_night.items():
        for facility in sorted({r["facility_code"] for r in rows}):
            part = [dict(r, night=night) for r in rows if r["facility_code"] == facility]
            folder = warehouse.staging_night(dataset, night) / f"facility_code={facility}"
            folder.mkdir(parents=True, exist_ok=True)
            table = _table(part, schema).drop(["night", "facility_code"])
            pq.write_table(table, folder / "part-0.parquet")


def write_staged_fhir(warehouse: Warehouse, dataset: str, by_night: dict[dt.date, list[dict]]) -> None:
    schema = pa.schema(list(FHIR_COLUMNS[dataset].items()) + [("row_warnings", pa.list_(pa.string()))])
    for night, rows in by_night.items():
        folder = warehouse.staging_night(dataset, night)
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(_table(rows, schema), folder / "part-0.parquet")


def write_registry(path: Path) -> Path:
    columns = [
        "citizen_id",
        "old_id_number",
        "social_insurance_number",
        "full_name",
        "birth_date",
        "sex",
        "province_code",
        "ward_code",
        "death_date",
    ]
    table = pa.table({c: [r[i] for r in REGISTRY] for i, c in enumerate(columns)})
    table = table.append_column("ethnicity_code", pa.array(["01"] * len(REGISTRY)))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def build_tiny_warehouse(root: Path) -> tuple[Warehouse, Path]:
    """The warehouse above, and the registry file (outside the warehouse)."""
    warehouse = Warehouse(root / "warehouse")
    write_staged_xml(warehouse, "encounters", STAGED_ENCOUNTERS)
    write_staged_xml(warehouse, "drugs", STAGED_DRUGS)
    write_staged_xml(warehouse, "services", STAGED_SERVICES)
    write_staged_xml(warehouse, "lab_results", STAGED_LAB_RESULTS)
    write_staged_fhir(warehouse, "immunizations", STAGED_IMMUNIZATIONS)
    write_staged_fhir(warehouse, "allergies", STAGED_ALLERGIES)
    for outcomes, file_of in (
        (OUTCOMES, warehouse.outcomes),
        (RETRIED, warehouse.retried),
    ):
        for night, rows in outcomes.items():
            cols = ["facility_code", "encounter_id", "version", "outcome", "reason"]
            table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})
            table = table.set_column(2, "version", table["version"].cast(pa.int64()))
            warehouse.run_dir(night).mkdir(parents=True, exist_ok=True)
            pq.write_table(table, file_of(night))
    for night, rows in LINKS.items():
        cols = ["facility_code", "encounter_id", "version", "outcome", "citizen_id"]
        table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})
        table = table.set_column(2, "version", table["version"].cast(pa.int64()))
        folder = warehouse.staging_night("patient_links", night)
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "part-0.parquet")
    registry = write_registry(root / "registry" / "registry.parquet")
    return warehouse, registry


def lab(facility, lk, version, line, code, value, unit):
    return {
        "facility_code": facility,
        "encounter_id": lk,
        "version": version,
        "line_number": line,
        "row_index": line - 1,
        "service_code": "L1",
        "indicator_code": code,
        "indicator_name": code,
        "value": value,
        "unit": unit,
        "description": "Bệnh nhân Nguyễn Văn An",  # free text: never in the snapshot
        "conclusion": "Bình thường",
        "reported_at": ts("2026-10-01T10:30"),
    }


STAGED_LAB_RESULTS = {
    N1: [
        lab("01001", "LK3", 1, 1, "GLU", "5,6", "mmol/L"),  # comma decimal
        lab("01001", "LK3", 1, 2, "HBSAG", "Âm tính", ""),  # short text, no unit
        lab("01001", "LK3", 1, 3, "NOTE", "Bệnh nhân Nguyễn Văn An, 079090001234, đã ổn", ""),  # free text
        lab("01001", "LK3", 1, 4, "HB", "NaN", "g/L"),  # not a number
        lab("79001", "LK1", 1, 1, "GLU", "9.9", "mmol/L"),  # v1: superseded, not served
    ],
}
