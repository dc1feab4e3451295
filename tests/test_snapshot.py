"""The analysts' snapshot: right rows, no identifiers, stable pseudonyms, atomic publication."""

from __future__ import annotations

import json
import os

import duckdb
import pytest
from snapshot_warehouse import (
    C1,
    C2,
    C3,
    C4,
    C5,
    C6,
    CARDS,
    N1,
    N2,
    N3,
    PHONES,
    REGISTRY,
    STRANGER,
    build_tiny_warehouse,
)

from transforms.core.context import NightContext
from transforms.snapshot.stage import build_snapshot, hmac_pads, pseudonymize, snapshot_night


@pytest.fixture
def tiny(tmp_path, pseudonym_key):
    warehouse, registry = build_tiny_warehouse(tmp_path)
    ctx = NightContext(N2, tmp_path / "extracts", registry, warehouse, "sqlite://")
    manifest = snapshot_night(ctx)
    return ctx, manifest, pseudonym_key


def _rows(path, sql, params=None):
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql, params or {}).fetchall()


def test_snapshot_file_manifest_and_latest_pointer_are_written(tiny):
    ctx, manifest_path, _ = tiny
    assert manifest_path == ctx.warehouse.manifest(N2, "snapshot")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["snapshot"] == "snapshots/2026-11-26.duckdb"
    assert ctx.warehouse.snapshot(N2).exists()
    latest = json.loads((ctx.warehouse.root / "snapshots" / "latest.json").read_text())
    assert latest == {"night": "2026-11-26", "snapshot": "2026-11-26.duckdb"}
    # nothing but the snapshot and the pointer: no temp file, no WAL
    assert sorted(p.name for p in (ctx.warehouse.root / "snapshots").iterdir()) == [
        "2026-11-26.duckdb",
        "latest.json",
    ]


def test_only_current_loaded_versions_up_to_the_night_are_encounters(tiny):
    ctx, manifest_path, key = tiny
    # E1v2, E2, E3, E4 (retried and loaded on N2), E5, E6, E8v1 = 7; not E1v1 (superseded),
    # E7 (quarantined), E8v2 (quarantined: v1 stays), E9 (loaded on N3, after the night)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["tables"]["encounters"] == 7
    assert manifest["current_versions_without_staged_row"] == 0
    assert manifest["encounters_without_citizen"] == 0
    keys = {
        r[0]: r[1:]
        for r in _rows(
            ctx.warehouse.snapshot(N2), "select encounter_key, version, main_icd10 from encounters"
        )
    }
    assert keys[pseudonymize("79001:LK1", key)] == (2, "I11.9")
    assert keys[pseudonymize("79001:LK8", key)] == (1, "A09")
    assert pseudonymize("01001:LK7", key) not in keys
    assert pseudonymize("79001:LK9", key) not in keys
    assert keys[pseudonymize("01001:LK4", key)] == (1, "I10")


def test_a_retried_encounter_takes_the_citizen_of_its_latest_link(tiny):
    ctx, _, key = tiny
    # E4 was a potential match on N1 and matched C3 on N2
    [(citizen_key,)] = _rows(
        ctx.warehouse.snapshot(N2),
        "select citizen_key from encounters where encounter_key = $k",
        {"k": pseudonymize("01001:LK4", key)},
    )
    assert citizen_key == pseudonymize(C3, key)


def test_citizens_have_birth_year_age_group_and_no_year_from_90(tiny):
    ctx, _, key = tiny
    rows = {
        r[0]: r[1:]
        for r in _rows(
            ctx.warehouse.snapshot(N2),
            "select citizen_key, birth_year, age_group, sex, province_code, is_deceased from citizens",
        )
    }
    p = lambda c: pseudonym_of(c, key)  # noqa: E731
    # no ward in citizens: it would give back the ward the encounters left out for k-anonymity
    assert rows[p(C1)] == (1990, "35-39", "male", "79", False)  # 2026-1990 = 36
    assert rows[p(C2)] == (1985, "40-44", "female", "01", False)  # month unknown: 41
    assert rows[p(C3)] == (None, "90+", "male", "01", False)  # 96: no birth year
    assert rows[p(C4)] == (2024, "00-04", "male", "79", False)  # 2
    assert rows[p(C5)] == (1936, "85-89", "female", "01", False)  # 90 only tomorrow
    assert rows[p(C6)][-1] is True  # died 2026-01-01


def pseudonym_of(citizen_id, key):
    return pseudonymize(citizen_id, key)


def test_diagnoses_carry_position_and_icd10_chapter(tiny):
    ctx, _, key = tiny
    rows = _rows(
        ctx.warehouse.snapshot(N2),
        "select position, is_main, icd10, icd10_category, icd10_chapter, icd10_block from diagnoses "
        "where encounter_key = $k order by position",
        {"k": pseudonymize("79001:LK1", key)},
    )
    assert rows == [(0, True, "I11.9", "I11", "IX", "I10-I15"), (1, False, "E11", "E11", "IV", "E10-E14")]
    # E1v2 2 + E2 1 + E3 1 + E4 1 + E5 1 + E6 1 + E8v1 1 = 8
    assert _rows(ctx.warehouse.snapshot(N2), "select count(*) from diagnoses") == [(8,)]
    # 'e119' (E6) is category E11, chapter IV
    assert _rows(
        ctx.warehouse.snapshot(N2),
        "select icd10_category, icd10_chapter from diagnoses where encounter_key = $k",
        {"k": pseudonymize("01001:LK6", key)},
    ) == [("E11", "IV")]


def test_medications_procedures_immunizations_allergies_rows(tiny):
    path = tiny[0].warehouse.snapshot(N2)
    # drugs of current versions: E1v2 2 + E5 1 + E2 1 + E4 1 + E6 2 = 7 (not E1v1, not E7)
    assert _rows(path, "select count(*) from medications") == [(7,)]
    # CT line 2 codes + ECG 1 code + delivery without code 1 = 4; the lab line is not a procedure
    assert _rows(path, "select icd9_code, service_code from procedures order by service_code, icd9_code") == [
        ("89.52", "S1"),
        (None, "S2"),
        ("87.44", "X1"),
        ("88.01", "X1"),
    ]
    # R1, R2, R4, R5, R6 (R3 withdrawn on N2) = 5
    assert _rows(path, "select count(*) from immunizations") == [(5,)]
    # A1 only (A2 refuted)
    assert _rows(path, "select substance_code from allergies") == [("764146007",)]


def test_stranger_immunization_is_kept_without_demographics(tiny):
    ctx, _, key = tiny
    assert _rows(
        ctx.warehouse.snapshot(N2),
        "select vaccine_code, age_group_at_dose from immunizations where citizen_key = $k",
        {"k": pseudonymize(STRANGER, key)},
    ) == [("BCG", None)]


def test_no_text_value_of_any_table_equals_an_identifier_of_the_registry(tiny):
    ctx, _, key = tiny
    identifiers = set()
    for citizen_id, old_id, sin, name, *_ in REGISTRY:
        identifiers |= {citizen_id, sin, name, CARDS[citizen_id], PHONES[citizen_id]}
        if old_id:
            identifiers.add(old_id)
    identifiers |= {STRANGER, "12 Lê Lợi, Phường Bến Thành"}
    hits = scan_text_values(ctx.warehouse.snapshot(N2), identifiers)
    assert hits == []


def scan_text_values(path, identifiers: set[str]) -> list[tuple[str, str, str]]:
    """(table, column, value) of every text value (or list element) of every table and view that is
    an identifier or contains a 9+ digit identifier."""
    hits = []
    long_numbers = {i for i in identifiers if i.isdigit() and len(i) >= 9}
    with duckdb.connect(str(path), read_only=True) as con:
        columns = con.execute(
            "select table_name, column_name, data_type from information_schema.columns "
            "where data_type like 'VARCHAR%'"
        ).fetchall()
        for table, column, data_type in columns:
            expr = f'unnest("{column}")' if data_type.endswith("[]") else f'"{column}"'
            values = {v for (v,) in con.execute(f'select distinct {expr} from "{table}"').fetchall() if v}
            for value in values:
                if value in identifiers or any(n in value for n in long_numbers):
                    hits.append((table, column, value))
    return hits


def test_the_key_never_lands_in_the_snapshot_file(tiny, monkeypatch):
    ctx, _, _ = tiny
    # a random key: the fixture's bytes 0..31 also occur by chance in DuckDB's own storage (row ids)
    key = os.urandom(32)
    monkeypatch.setenv("HEALTHBOOK_PSEUDONYM_KEY", key.hex())
    manifest_path = snapshot_night(ctx)
    raw = ctx.warehouse.snapshot(N2).read_bytes()
    for secret in (key, key.hex().encode(), *hmac_pads(key)):
        assert secret not in raw
    assert key.hex() not in manifest_path.read_text()


def test_pseudonym_is_stable_for_a_key_and_differs_with_another(tmp_path):
    key_a, key_b = bytes(range(32)), bytes(range(1, 33))
    assert pseudonymize(C1, key_a) == pseudonymize(C1, key_a)
    assert pseudonymize(C1, key_a) != pseudonymize(C1, key_b)
    assert pseudonymize(C1, key_a) != pseudonymize(C2, key_a)

    warehouse, registry = build_tiny_warehouse(tmp_path)
    keys = {}
    for name, key in (("a1", key_a), ("a2", key_a), ("b", key_b)):
        out = tmp_path / f"{name}.duckdb"
        build_snapshot(warehouse, N2, registry, key, out)
        keys[name] = {r[0] for r in _rows(out, "select citizen_key from citizens")}
    assert keys["a1"] == keys["a2"]
    assert keys["a1"] == {pseudonymize(r[0], key_a) for r in REGISTRY}  # SQL and Python agree
    assert keys["a1"].isdisjoint(keys["b"])


def test_a_long_key_is_hashed_first_as_hmac_requires(tmp_path):
    key = bytes(range(100))  # longer than the 64-byte block
    warehouse, registry = build_tiny_warehouse(tmp_path)
    out = tmp_path / "long.duckdb"
    build_snapshot(warehouse, N2, registry, key, out)
    keys = {r[0] for r in _rows(out, "select citizen_key from citizens")}
    assert pseudonymize(C1, key) in keys


def test_rebuilding_a_night_gives_the_same_tables(tiny):
    ctx, _, _ = tiny
    path = ctx.warehouse.snapshot(N2)
    before = _rows(path, "select * from encounters order by encounter_key")
    snapshot_night(ctx)
    assert _rows(path, "select * from encounters order by encounter_key") == before


def test_an_earlier_night_does_not_move_the_latest_pointer_back(tiny):
    ctx, _, _ = tiny
    earlier = NightContext(N1, ctx.extracts_dir, ctx.registry_path, ctx.warehouse, ctx.serving_url)
    snapshot_night(earlier)
    latest = json.loads((ctx.warehouse.root / "snapshots" / "latest.json").read_text())
    assert latest["night"] == "2026-11-26"
    # the N1 snapshot knows only N1: E1v1, E2, E3, E8v1 (E4 was still quarantined) = 4
    assert _rows(ctx.warehouse.snapshot(N1), "select count(*) from encounters") == [(4,)]
    later = NightContext(N3, ctx.extracts_dir, ctx.registry_path, ctx.warehouse, ctx.serving_url)
    snapshot_night(later)
    assert json.loads((ctx.warehouse.root / "snapshots" / "latest.json").read_text())["night"] == "2026-11-27"


def test_views_work_when_the_file_is_opened_on_its_own(tiny):
    path = tiny[0].warehouse.snapshot(N2)
    assert _rows(path, "select count(*) from encounter_details") == [(7,)]
    assert _rows(path, "select count(*) from vaccination_status where vaccine_code = 'BCG'") == [(2,)]


def test_an_empty_warehouse_gives_an_empty_snapshot_not_a_crash(tmp_path, pseudonym_key):
    from snapshot_warehouse import write_registry

    from transforms.core.warehouse import Warehouse

    registry = write_registry(tmp_path / "registry.parquet")
    ctx = NightContext(N2, tmp_path / "x", registry, Warehouse(tmp_path / "wh"), "sqlite://")
    manifest = json.loads(snapshot_night(ctx).read_text())
    assert manifest["tables"]["encounters"] == 0
    assert manifest["tables"]["citizens"] == 6


def test_a_crash_midway_leaves_the_previous_snapshot_untouched(tiny, monkeypatch):
    ctx, _, key = tiny
    path = ctx.warehouse.snapshot(N2)
    before = path.read_bytes()
    import transforms.snapshot.stage as snapshot

    monkeypatch.setattr(snapshot, "SNAPSHOT_STATEMENTS", (*snapshot.SNAPSHOT_STATEMENTS, "no_such_statement"))
    with pytest.raises(FileNotFoundError):
        build_snapshot(ctx.warehouse, N2, ctx.registry_path, key, path)
    assert path.read_bytes() == before


def test_snapshot_after_the_real_load_stage_holds_what_serving_holds(tmp_path, pseudonym_key):
    """Integration: the load stage's own outcomes (SQLite serving) drive the snapshot."""
    import sqlalchemy as sa
    from serving_fixtures import NIGHT1, NIGHT2, context, outpatient, write_links, write_staged
    from test_load_serving import night_one

    from transforms.load import stage as load

    ctx1 = context(tmp_path, NIGHT1)
    night_one(ctx1)  # LK1 loads; LK2 (no XML8), LK3 (no match), LK4 (blocking finding) wait
    load.load_night(ctx1)
    ctx2 = context(tmp_path, NIGHT2)
    an, binh = "079090001234", "001175000042"
    write_staged(ctx2.warehouse, "encounters", NIGHT2, [outpatient("LK1", version=2, main_icd10="I11")])
    write_links(
        ctx2.warehouse,
        NIGHT2,
        [
            {"encounter_id": "LK1", "version": 2, "outcome": "match", "citizen_id": an},
            {"encounter_id": "LK3", "version": 1, "outcome": "match", "citizen_id": binh},  # retried
        ],
    )
    load.load_night(ctx2)
    snapshot_night(ctx2)

    with sa.create_engine(ctx2.serving_url).connect() as conn:
        served = conn.exec_driver_sql("select count(*) from encounters where is_current").scalar_one()
    path = ctx2.warehouse.snapshot(NIGHT2)
    # LK1 v2 (resent) and LK3 (retried, now linked) = 2
    assert _rows(path, "select count(*) from encounters") == [(served,)] == [(2,)]
    assert sorted(_rows(path, "select main_icd10, version from encounters")) == [("I10", 1), ("I11", 2)]
    identifiers = {
        an,
        binh,
        "Nguyễn Văn An",
        "Trần Thị Bình",
        "7909000123",
        "0117500004",
        "012345678",
        "999999999999",
    }
    assert scan_text_values(path, identifiers) == []


def test_a_citizen_repeated_in_the_registry_is_one_citizen_the_earliest_birth_then_residence(pseudonym_key):
    """registry_citizens.sql: one row per citizen ID; of a repeated citizen the row first by
    (birth date, province, ward), whatever the file's order; a citizen listed once is kept as is."""
    import datetime as dt

    from transforms.snapshot.stage import read_sql

    con = duckdb.connect()
    inner, outer = hmac_pads(pseudonym_key)
    con.execute("set variable hmac_inner_pad = $p", {"p": inner})
    con.execute("set variable hmac_outer_pad = $p", {"p": outer})
    con.execute("set variable snapshot_night = $n", {"n": dt.date(2026, 11, 26)})
    for name in ("macro_pseudonym", "macro_age_on", "macro_age_group"):
        con.execute(read_sql("snapshot", name))
    con.execute(
        """create view registry_rows as select * from (values
            ('079000000002', '19900101', '2', '79', '26740', null),
            ('079000000001', '19800505', '1', '79', '26734', null),
            ('079000000002', '19900101', '2', '01', '00004', null),
            ('079000000002', '19950101', '1', '01', '00001', null),
            (null, '19700101', '1', '79', '26734', null)
        ) as t(citizen_id, birth_date, sex, province_code, ward_code, death_date)"""
    )
    con.execute(read_sql("snapshot", "registry_citizens"))
    rows = con.execute(
        "select citizen_id, citizen_key, birth_date_text, sex, province_code, ward_code "
        "from registry_citizens order by citizen_id"
    ).fetchall()
    assert rows == [
        ("079000000001", pseudonymize("079000000001", pseudonym_key), "19800505", "male", "79", "26734"),
        # 1990 before 1995; of the two 1990 rows, province 01 before 79
        ("079000000002", pseudonymize("079000000002", pseudonym_key), "19900101", "female", "01", "00004"),
    ]
