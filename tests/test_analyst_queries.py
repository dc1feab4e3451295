"""Each example query of sql/analyst/ gives the answer worked out by hand on the tiny warehouse.

See tests/snapshot_warehouse.py for the data; the snapshot is of N2 = 2026-11-26.
"""

from __future__ import annotations

import pytest
from snapshot_warehouse import N2, build_tiny_warehouse

from transforms.snapshot.stage import analyst_query_names, build_snapshot, run_analyst_query


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyst")
    warehouse, registry = build_tiny_warehouse(root)
    path = root / "snapshot.duckdb"
    build_snapshot(warehouse, N2, registry, bytes(range(32)), path)
    return path


def _rows(table):
    return [tuple(r.values()) for r in table.to_pylist()]


def test_every_analyst_query_is_tested_here():
    assert analyst_query_names() == [
        "encounters_per_province_per_chapter",
        "readmissions_within_30_days",
        "top_drugs",
        "vaccination_coverage_by_age_group",
    ]


def test_encounters_per_province_per_chapter(snapshot):
    # province 01: E3 O80 (XV), E4 I10 (IX), E6 e119 (IV), E8v1 A09 (I)
    # province 79: E1v2 I11.9 (IX), E5 I10 (IX), E2 J06.9 (X)
    rows = [
        (r[0], r[2], r[5]) for r in _rows(run_analyst_query(snapshot, "encounters_per_province_per_chapter"))
    ]
    assert rows == [
        ("01", "I", 1),
        ("01", "IV", 1),
        ("01", "IX", 1),
        ("01", "XV", 1),
        ("79", "IX", 2),
        ("79", "X", 1),
    ]


def test_readmissions_within_30_days(snapshot):
    # inpatient/day-care stays: C1 E1 (79001, out 11-05) then E5 (79001, in 11-20): 15 days -> readmitted;
    # C2 E3 (01001, out 10-03) then E6 (01001, in 11-25): 53 days -> not; E5, E6 have no next stay.
    # 01001: 2 stays, 0 readmitted; 79001: 2 stays, 1 readmitted = 0.5; total 4 stays, 1 = 0.25
    assert _rows(run_analyst_query(snapshot, "readmissions_within_30_days")) == [
        ("01001", 2, 0, 0.0),
        ("79001", 2, 1, 0.5),
        (None, 4, 1, 0.25),
    ]


def test_vaccination_coverage_by_age_group_any_vaccine(snapshot):
    # living citizens (C6 died): C4 00-04 (BCG), C1 35-39 (COVID19 withdrawn -> none),
    # C2 40-44 (COVID19), C5 85-89 (none), C3 90+ (influenza). The stranger is no citizen.
    rows = _rows(run_analyst_query(snapshot, "vaccination_coverage_by_age_group", {"vaccine_code": None}))
    assert rows == [
        ("00-04", 1, 1, 1.0),
        ("35-39", 1, 0, 0.0),
        ("40-44", 1, 1, 1.0),
        ("85-89", 1, 0, 0.0),
        ("90+", 1, 1, 1.0),
    ]


def test_vaccination_coverage_by_age_group_one_vaccine(snapshot):
    # COVID19: only C2 (40-44); C1's dose was entered in error
    rows = _rows(
        run_analyst_query(snapshot, "vaccination_coverage_by_age_group", {"vaccine_code": "COVID19"})
    )
    assert [(r[0], r[2]) for r in rows] == [
        ("00-04", 0),
        ("35-39", 0),
        ("40-44", 1),
        ("85-89", 0),
        ("90+", 0),
    ]


def test_top_drugs(snapshot):
    # D3 Paracetamol: E2 10 + E4 5 + E6 20 = 35, 5000 + 2500 + 10000 = 17500, citizens C4 C3 C2
    # D1 Amlodipin:   E1v2 30 + E5 30 = 60 (E1v1 superseded), 60000, citizen C1
    # D2 Metformin:   E1v2 60 + E6 60 = 120, 120000, citizens C1 C2   (E7 is quarantined)
    assert _rows(run_analyst_query(snapshot, "top_drugs")) == [
        ("D3", "Paracetamol", 3, 3, 35.0, 17500.0),
        ("D1", "Amlodipin", 2, 1, 60.0, 60000.0),
        ("D2", "Metformin", 2, 2, 120.0, 120000.0),
    ]
