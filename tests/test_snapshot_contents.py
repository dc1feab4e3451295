"""What the snapshot holds beyond encounters: lab results with units, reference names, the data
dictionary (and docs/snapshot.md), the history promise over three nights, dates without times and
the k-anonymity coarsening. Data: tests/snapshot_warehouse.py."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from snapshot_warehouse import N1, N2, N3, build_tiny_warehouse

from transforms.core.settings import SnapshotSettings
from transforms.snapshot import stage as snapshot
from transforms.snapshot.dictionary import declared_columns, render_markdown
from transforms.snapshot.stage import build_snapshot, pseudonymize

KEY = bytes(range(32))
DOCS = Path(__file__).parents[1] / "docs" / "snapshot.md"


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """Snapshots of N1, N2 and N3 of the tiny warehouse."""
    root = tmp_path_factory.mktemp("contents")
    warehouse, registry = build_tiny_warehouse(root)
    out = {}
    for night in (N1, N2, N3):
        out[night] = root / f"{night}.duckdb"
        build_snapshot(warehouse, night, registry, KEY, out[night])
    return out


def _rows(path, sql, params=None):
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql, params or {}).fetchall()


def test_lab_results_keep_value_and_unit_and_drop_free_text(nights):
    rows = _rows(
        nights[N2],
        "select indicator_code, value_number, value_text, unit, reported_on::varchar from lab_results "
        "order by line_number",
    )
    # LK3 lines 1..4; LK1 v1's line is superseded. '5,6' -> 5.6; NaN is no number and no short text;
    # the 46-character note is free text: neither number nor text survives
    assert rows == [
        ("GLU", 5.6, None, "mmol/L", "2026-10-01"),
        ("HBSAG", None, "Âm tính", None, "2026-10-01"),
        ("NOTE", None, None, None, "2026-10-01"),
        ("HB", None, None, "g/L", "2026-10-01"),
    ]


def test_reference_tables_name_the_codes(nights):
    path = nights[N2]
    assert _rows(path, "select count(*) from provinces") == [(34,)]
    assert _rows(path, "select name from provinces where province_code = '79'") == [
        ("Thành phố Hồ Chí Minh",)
    ]
    assert _rows(path, "select title_vi, title_en from icd10_chapters where chapter = 'IX'") == [
        ("Bệnh của hệ tuần hoàn", "Diseases of the circulatory system")
    ]
    assert _rows(path, "select name_vi from service_groups where group_code = '8'") == [
        ("Phẫu thuật, thủ thuật",)
    ]
    assert _rows(path, "select name from wards where ward_code = '00004'") == [("Phường Ba Đình",)]
    # 79001 and 01001 are not in the shipped (generator's) list: present, with their province
    assert _rows(
        path, "select facility_code, province_code, is_listed from facilities where name is null"
    ) == [
        ("01001", "01", False),
        ("79001", "79", False),
    ]
    assert {r[0] for r in _rows(path, "select table_name from reference_sources")} == set(
        snapshot.REFERENCE_TABLES
    )


def test_a_dropped_in_facility_list_wins_over_the_packaged_one(tmp_path, monkeypatch):
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "facilities.csv").write_text(
        "# source: Bộ Y tế facility list\n# version: 2026-11\n"
        "facility_code,name,province_code,level\n79001,Bệnh viện Chợ Rẫy,79,chuyen_sau\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("HEALTHBOOK_REFERENCE_DIR", str(tmp_path / "ref"))
    warehouse, registry = build_tiny_warehouse(tmp_path)
    out = tmp_path / "s.duckdb"
    build_snapshot(warehouse, N2, registry, KEY, out)
    assert _rows(out, "select name, level, is_listed from facilities where facility_code = '79001'") == [
        ("Bệnh viện Chợ Rẫy", "chuyen_sau", True)
    ]
    assert _rows(
        out, "select facility_name from encounter_details where facility_code = '79001' limit 1"
    ) == [("Bệnh viện Chợ Rẫy",)]
    assert _rows(
        out, "select is_packaged, version from reference_sources where table_name = 'facilities'"
    ) == [(False, "2026-11")]
    # a list without the packaged columns is refused, not half-read
    (tmp_path / "ref" / "facilities.csv").write_text("code,name\n79001,X\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing columns"):
        build_snapshot(warehouse, N2, registry, KEY, tmp_path / "t.duckdb")


def test_the_columns_table_declares_every_column_of_every_table_and_view(nights):
    rows = _rows(
        nights[N2], "select table_name, column_name, data_type, meaning, source, privacy from columns"
    )
    undeclared = [r[:2] for r in rows if r[3] is None]
    missing = [r[:2] for r in rows if r[2] is None]  # declared but not in the file
    assert undeclared == [] and missing == []
    tables = {t for (t,) in _rows(nights[N2], "select table_name from information_schema.tables")}
    assert {r[0] for r in rows} == tables
    assert len(rows) == len(declared_columns())


def test_docs_snapshot_md_is_rendered_from_the_same_declaration():
    assert DOCS.read_text(encoding="utf-8") == render_markdown(), (
        "run: python -m transforms.snapshot.dictionary > docs/snapshot.md"
    )


def test_history_promise_every_loaded_encounter_since_the_first_night_newest_version_only(nights):
    def served(night):
        return dict(_rows(nights[night], "select encounter_key, version from encounters"))

    n1, n2, n3 = served(N1), served(N2), served(N3)
    lk = lambda f, e: pseudonymize(f"{f}:{e}", KEY)  # noqa: E731
    # N1: E1v1 E2 E3 E8v1 = 4; N2: + E4 (retried) E5 E6, E1 now v2 = 7; N3: + E9 = 8
    assert (len(n1), len(n2), len(n3)) == (4, 7, 8)
    assert n1[lk("79001", "LK1")] == 1 and n3[lk("79001", "LK1")] == 2
    assert n3[lk("79001", "LK8")] == 1  # v2 was quarantined: v1 stays served
    assert lk("01001", "LK7") not in n3  # quarantined: never
    # nothing ever disappears, and a version never goes back
    assert set(n1) <= set(n2) <= set(n3)
    assert all(n3[k] >= v for k, v in n2.items()) and all(n2[k] >= v for k, v in n1.items())
    assert _rows(nights[N3], "select encounters, first_night::varchar from snapshot_info") == [
        (8, "2026-11-25")
    ]


def test_dates_keep_the_day_and_no_column_holds_a_time(nights):
    types = {t for (t,) in _rows(nights[N2], "select distinct data_type from columns")}
    assert not any(t.startswith("TIMESTAMP") or t.startswith("TIME") for t in types)
    assert _rows(
        nights[N2],
        "select admitted_on::varchar, discharged_on::varchar from encounters where encounter_key = $k",
        {"k": pseudonymize("79001:LK1", KEY)},
    ) == [("2026-11-01", "2026-11-05")]


def test_k_anonymity_leaves_out_the_ward_of_groups_under_five_and_records_it(nights, tmp_path):
    # every (age group, sex, ward, month) group of N2 holds one citizen: all 7 wards left out
    assert _rows(
        nights[N2],
        "select k_threshold, k_before_coarsening, k_after_coarsening, encounters_ward_coarsened,"
        " encounters_below_k_after_coarsening from snapshot_info",
    ) == [(5, 1, 1, 7, 7)]
    assert _rows(
        nights[N2], "select distinct patient_ward_code, patient_residence_level from encounters"
    ) == [(None, "province")]
    # with k = 1 every group is large enough: the wards stay, nothing is coarsened
    warehouse, registry = build_tiny_warehouse(tmp_path)
    out = tmp_path / "k1.duckdb"
    build_snapshot(warehouse, N2, registry, KEY, out, SnapshotSettings(k_anonymity=1))
    assert _rows(
        out, "select encounters_ward_coarsened, encounters_below_k_after_coarsening from snapshot_info"
    ) == [(0, 0)]
    assert _rows(out, "select count(*) from encounters where patient_residence_level = 'ward'") == [(7,)]
