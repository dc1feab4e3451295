"""The load stage against real databases: SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import sqlite3

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from serving_fixtures import (
    FACILITY,
    NIGHT1,
    NIGHT2,
    context,
    discharge_paper,
    drug,
    inpatient,
    outpatient,
    summary,
    write_findings,
    write_links,
    write_staged,
)

from transforms.load import assemble
from transforms.load import files as load_files
from transforms.load import stage as load
from transforms.load import writer as load_writer
from transforms.serving import db
from transforms.serving import writer as serving_writer
from transforms.serving.book import books_for
from transforms.serving.schema import SERVING_TABLES

AN = "079090001234"  # Nguyễn Văn An in the fixture registry
BINH = "001175000042"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def serving_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse' / 'serving.db'}"
    return request.getfixturevalue("pg_url")


def checksums(url: str) -> dict[str, str]:
    """sha256 of every serving table's rows in primary-key order (values as text)."""
    engine = load.serving_engine(url)
    out = {}
    with engine.connect() as conn:
        for table in SERVING_TABLES:
            rows = conn.exec_driver_sql(
                f"select * from {table.name} order by {', '.join(table.primary_key)}"
            ).fetchall()
            out[table.name] = hashlib.sha256(repr([tuple(map(str, r)) for r in rows]).encode()).hexdigest()
    return out


def count(url: str, sql: str) -> int:
    with load.serving_engine(url).connect() as conn:
        return conn.exec_driver_sql(sql).scalar_one()


def outcomes_of(ctx) -> dict:
    frame = pd.read_parquet(ctx.warehouse.outcomes(ctx.night))
    return {
        (r.encounter_id, r.version): (r.outcome, None if pd.isna(r.reason) else r.reason)
        for r in frame.itertuples()
    }


def night_one(ctx) -> None:
    """LK1 outpatient (complete), LK2 inpatient without its XML8, LK3 outpatient of an unknown
    patient, LK4 outpatient with a blocking quality finding, LK5 an unreadable HOSO (ingest)."""
    wh = ctx.warehouse
    write_staged(
        wh, "encounters", NIGHT1, [outpatient("LK1"), inpatient("LK2"), outpatient("LK3"), outpatient("LK4")]
    )
    write_staged(wh, "drugs", NIGHT1, [drug("LK1"), drug("LK1", drug_name="Metformin", drug_code="40.677")])
    write_staged(wh, "discharge_papers", NIGHT1, [discharge_paper("LK2")])
    write_findings(wh, NIGHT1, "ingest", [{"encounter_id": "LK5", "reason": "base64_invalid"}])
    write_findings(
        wh,
        NIGHT1,
        "quality",
        [
            {"encounter_id": "LK4", "reason": "discharge_before_admission"},
            {"encounter_id": "LK2", "reason": "missing_summary"},
            {"encounter_id": "LK1", "reason": "value_too_long", "severity": "warning"},
        ],
    )
    write_links(
        wh,
        NIGHT1,
        [
            {"encounter_id": "LK1", "outcome": "match", "citizen_id": AN},
            {"encounter_id": "LK2", "outcome": "match", "citizen_id": AN},
            {"encounter_id": "LK3", "outcome": "no_match", "citizen_id": None},
            {"encounter_id": "LK4", "outcome": "match", "citizen_id": BINH},
        ],
    )


def test_a_night_loads_complete_versions_and_accounts_for_every_received_one(tmp_path, serving_url):
    ctx = context(tmp_path, NIGHT1, serving_url)
    night_one(ctx)
    manifest = json.loads(load.load_night(ctx).read_text())

    # 5 versions received = 1 loaded + 4 quarantined (one reason each)
    assert outcomes_of(ctx) == {
        ("LK1", 1): ("loaded", None),
        ("LK2", 1): ("quarantined", "missing_summary"),
        ("LK3", 1): ("quarantined", "patient_not_in_registry"),
        ("LK4", 1): ("quarantined", "discharge_before_admission"),
        ("LK5", 1): ("quarantined", "base64_invalid"),
    }
    assert manifest["versions"]["received"] == 5 and manifest["versions"]["loaded"] == 1
    assert count(serving_url, "select count(*) from encounters") == 1
    assert count(serving_url, "select count(*) from medications") == 2
    # diagnoses: I10 main + E11 secondary
    assert count(serving_url, "select count(*) from diagnoses") == 2
    # only the citizen of a loaded encounter gets a book
    assert count(serving_url, "select count(*) from citizens") == 1
    pending = pd.read_parquet(ctx.warehouse.pending)
    assert sorted(pending["encounter_id"]) == ["LK2", "LK3", "LK4", "LK5"]


def test_rerunning_a_night_changes_nothing_in_the_serving_database(tmp_path, serving_url):
    ctx = context(tmp_path, NIGHT1, serving_url)
    night_one(ctx)
    load.load_night(ctx)
    first = checksums(serving_url)
    outcomes_first = pd.read_parquet(ctx.warehouse.outcomes(NIGHT1))
    load.load_night(ctx)
    assert checksums(serving_url) == first
    pd.testing.assert_frame_equal(pd.read_parquet(ctx.warehouse.outcomes(NIGHT1)), outcomes_first)


def test_an_inpatient_stay_whose_xml8_arrives_a_night_later_is_then_complete(tmp_path, serving_url):
    ctx1 = context(tmp_path, NIGHT1, serving_url)
    night_one(ctx1)
    load.load_night(ctx1)
    assert books_for(serving_url, [AN])[0]["encounters"][0]["encounter_id"] == "LK1"

    # night 2: the facility re-sends LK2 whole, now with its XML8 -> version 2
    ctx2 = context(tmp_path, NIGHT2, serving_url)
    wh = ctx2.warehouse
    write_staged(wh, "encounters", NIGHT2, [inpatient("LK2", version=2)])
    write_staged(wh, "discharge_papers", NIGHT2, [discharge_paper("LK2", version=2)])
    write_staged(wh, "summaries", NIGHT2, [summary("LK2", version=2)])
    write_links(wh, NIGHT2, [{"encounter_id": "LK2", "version": 2, "outcome": "match", "citizen_id": AN}])
    load.load_night(ctx2)

    assert outcomes_of(ctx2) == {("LK2", 2): ("loaded", None)}
    retried = pd.read_parquet(wh.retried(NIGHT2))
    closed = {(r.encounter_id, r.version): r.outcome for r in retried.itertuples()}
    assert closed[("LK2", 1)] == "superseded"  # the pending version is closed
    pending = pd.read_parquet(wh.pending)
    assert "LK2" not in set(pending["encounter_id"])

    book = books_for(serving_url, [AN])[0]
    stay = next(e for e in book["encounters"] if e["encounter_id"] == "LK2")
    assert stay["version"] == 2
    assert stay["summary"]["medical_history"] == "Ho, khó thở 3 ngày"
    assert stay["discharge_paper"]["physician"] == "BS. Lê Văn Cường"
    # ordered by first seen: J44 (stay admitted Nov 20), then E11 and I10 (visit of Nov 26)
    assert [i["icd10"] for i in book["illnesses"]] == ["J44", "E11", "I10"]


def test_a_resent_encounter_replaces_the_earlier_version_which_stays_in_history(tmp_path, serving_url):
    ctx1 = context(tmp_path, NIGHT1, serving_url)
    night_one(ctx1)
    load.load_night(ctx1)

    ctx2 = context(tmp_path, NIGHT2, serving_url)
    wh = ctx2.warehouse
    write_staged(wh, "encounters", NIGHT2, [outpatient("LK1", version=2, main_icd10="I11")])
    write_staged(wh, "drugs", NIGHT2, [drug("LK1", version=2, drug_name="Losartan")])
    write_links(wh, NIGHT2, [{"encounter_id": "LK1", "version": 2, "outcome": "match", "citizen_id": AN}])
    load.load_night(ctx2)

    assert count(serving_url, "select count(*) from encounters") == 2
    assert count(serving_url, "select count(*) from encounters where is_current and version = 2") == 1
    assert count(serving_url, "select count(*) from medications") == 3  # v1: 2 lines, v2: 1 line
    encounters = books_for(serving_url, [AN])[0]["encounters"]
    assert [(e["encounter_id"], e["version"]) for e in encounters] == [("LK1", 2)]
    assert [m["name"] for m in encounters[0]["medications"]] == ["Losartan"]
    assert encounters[0]["main_diagnosis"]["icd10"] == "I11"


def rows_of(url: str, sql: str) -> list[tuple]:
    with load.serving_engine(url).connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql).fetchall()]


def test_version_ids_are_allocated_in_publish_order_and_kept_when_a_version_is_written_again(
    tmp_path, serving_url
):
    ctx1 = context(tmp_path, NIGHT1, serving_url)
    night_one(ctx1)
    load.load_night(ctx1)
    assert rows_of(serving_url, "select encounter_id, version, version_id from encounters") == [("LK1", 1, 1)]

    # night 2: LK1 re-sent (version 2) and LK2 re-sent whole with its XML8 (version 2)
    ctx2 = context(tmp_path, NIGHT2, serving_url)
    wh = ctx2.warehouse
    write_staged(wh, "encounters", NIGHT2, [outpatient("LK1", version=2), inpatient("LK2", version=2)])
    write_staged(wh, "drugs", NIGHT2, [drug("LK1", version=2, drug_name="Losartan")])
    write_staged(wh, "discharge_papers", NIGHT2, [discharge_paper("LK2", version=2)])
    write_staged(wh, "summaries", NIGHT2, [summary("LK2", version=2)])
    write_links(
        wh,
        NIGHT2,
        [
            {"encounter_id": "LK1", "version": 2, "outcome": "match", "citizen_id": AN},
            {"encounter_id": "LK2", "version": 2, "outcome": "match", "citizen_id": AN},
        ],
    )
    load.load_night(ctx2)
    ids = "select encounter_id, version, version_id, is_current from encounters order by version_id"
    expected = [("LK1", 1, 1, False), ("LK1", 2, 2, True), ("LK2", 2, 3, True)]
    assert rows_of(serving_url, ids) == expected
    # the line items are keyed by their version's id: version 1's two drug lines stay with it
    lines = "select version_id, row_index from medications order by version_id, row_index"
    assert rows_of(serving_url, lines) == [(1, 0), (1, 1), (2, 0)]
    assert rows_of(serving_url, "select version_id from summaries") == [(3,)]

    # a re-run of night 2 writes its versions again under the same ids: nothing changes (but the
    # night's load_history row: the re-run retries no pending version, the first run retried LK2 v1)
    before = checksums(serving_url)
    load.load_night(ctx2)
    assert rows_of(serving_url, ids) == expected
    assert checksums(serving_url) == {**before, "load_history": checksums(serving_url)["load_history"]}


def test_a_resend_linked_to_another_citizen_moves_the_illnesses_with_it(tmp_path, serving_url):
    ctx1 = context(tmp_path, NIGHT1, serving_url)
    night_one(ctx1)
    load.load_night(ctx1)
    assert [i["icd10"] for i in books_for(serving_url, [AN])[0]["illnesses"]] == ["E11", "I10"]

    # night 2: the facility corrects the patient of LK1 (version 2 belongs to Binh)
    ctx2 = context(tmp_path, NIGHT2, serving_url)
    wh = ctx2.warehouse
    write_staged(wh, "encounters", NIGHT2, [outpatient("LK1", version=2)])
    write_links(wh, NIGHT2, [{"encounter_id": "LK1", "version": 2, "outcome": "match", "citizen_id": BINH}])
    load.load_night(ctx2)

    an, binh = books_for(serving_url, [AN, BINH])
    assert an["encounters"] == [] and an["illnesses"] == []
    assert [(e["encounter_id"], e["version"]) for e in binh["encounters"]] == [("LK1", 2)]
    assert [i["icd10"] for i in binh["illnesses"]] == ["E11", "I10"]


ORPHAN_LINES = (
    "select count(*) from medications as m "
    "where not exists (select 1 from encounters as e where e.version_id = m.version_id)"
)


@pytest.mark.postgres
def test_line_items_left_by_a_crash_between_the_two_commits_are_deleted_by_the_next_load(
    tmp_path, pg_url, monkeypatch
):
    """On PostgreSQL a helper connection commits the new versions' line items just before the
    load's own commit. A crash in between leaves line items no encounter reaches (the book is
    unchanged); the next load deletes them before it gives their version ids out again."""
    ctx = context(tmp_path, NIGHT1, pg_url)
    night_one(ctx)
    publish = load.NightWriter.publish

    def crash_after_the_helper_commit(self, *args, **kwargs):
        written = publish(self, *args, **kwargs)
        assert self.helper is not None and written["medications"] == 2
        raise RuntimeError("the process died before its own commit")

    monkeypatch.setattr(load.NightWriter, "publish", crash_after_the_helper_commit)
    with pytest.raises(RuntimeError, match="died"):
        load.load_night(ctx)
    assert count(pg_url, "select count(*) from encounters") == 0  # nothing was published
    assert count(pg_url, "select count(*) from citizens") == 0
    assert count(pg_url, ORPHAN_LINES) == 2  # LK1's two drug lines, reachable from no encounter

    monkeypatch.undo()
    load.load_night(ctx)
    assert count(pg_url, ORPHAN_LINES) == 0
    assert count(pg_url, "select count(*) from medications") == 2
    lk1 = books_for(pg_url, [AN])[0]["encounters"][0]
    assert [m["name"] for m in lk1["medications"]] == ["Amlodipin", "Metformin"]


def lk1_rows(ctx, **changes) -> dict[str, pd.DataFrame]:
    """The assembled rows of LK1 version 1 of night one (encounter columns changed by `changes`),
    linked to An: for tests that publish rows themselves."""
    published = pd.DataFrame(
        [
            {
                "facility_code": FACILITY,
                "encounter_id": "LK1",
                "version": 1,
                "citizen_id": AN,
                "link_tier": "citizen_id",
                "match_weight": 20.0,
            }
        ]
    )
    encounters = load_files.read_staged_night(ctx.warehouse, "encounters", NIGHT1).query(
        "encounter_id == 'LK1'"
    )
    staged = {
        "encounters": encounters.assign(**changes),
        "drugs": load_files.read_staged_night(ctx.warehouse, "drugs", NIGHT1),
    }
    return assemble.serving_rows(staged, published)


def test_a_line_item_of_no_version_of_the_batch_refuses_the_publish(tmp_path, serving_url):
    ctx = context(tmp_path, NIGHT1, serving_url)
    night_one(ctx)
    load.load_night(ctx)
    before = checksums(serving_url)
    rows = lk1_rows(ctx)
    rows["medications"] = pd.concat(
        [rows["medications"], rows["medications"].iloc[:1].assign(encounter_id="LK404")], ignore_index=True
    )
    citizens = assemble.citizen_rows(load_files.read_registry(ctx.registry_path, {AN}), NIGHT1)
    engine = load.serving_engine(serving_url)
    with pytest.raises(
        load_writer.LoadAuditFailed, match="medications: 1 rows of a version that is not published"
    ):
        load_writer.publish(engine, NIGHT1, rows, citizens, {}, {}, {k: 0 for k in HISTORY_KEYS})
    assert checksums(serving_url) == before


def test_a_pending_version_loads_when_a_later_night_links_its_patient(tmp_path, serving_url):
    ctx1 = context(tmp_path, NIGHT1, serving_url)
    night_one(ctx1)
    load.load_night(ctx1)

    # night 2 receives nothing new for LK3, but reconcile now links it (registry updated)
    ctx2 = context(tmp_path, NIGHT2, serving_url)
    write_links(
        ctx2.warehouse,
        NIGHT2,
        [{"encounter_id": "LK3", "version": 1, "outcome": "match", "citizen_id": BINH}],
    )
    manifest = json.loads(load.load_night(ctx2).read_text())

    assert manifest["versions"]["received"] == 0  # LK3 was received on night 1, not tonight
    assert manifest["retried"]["loaded"] == 1
    assert pd.read_parquet(ctx2.warehouse.outcomes(NIGHT2)).empty
    assert books_for(serving_url, [BINH])[0]["encounters"][0]["encounter_id"] == "LK3"


def test_a_failed_publish_leaves_the_published_state_intact(tmp_path, serving_url):
    ctx = context(tmp_path, NIGHT1, serving_url)
    night_one(ctx)
    load.load_night(ctx)
    before = checksums(serving_url)

    engine = load.serving_engine(serving_url)
    rows = lk1_rows(ctx, main_icd10="Z00")  # a change that must not survive
    # the same drug line twice: the insert into medications violates its primary key after
    # encounters and diagnoses were already replaced inside the transaction
    rows["medications"] = pd.concat([rows["medications"], rows["medications"].iloc[:1]], ignore_index=True)
    citizens = assemble.citizen_rows(load_files.read_registry(ctx.registry_path, {AN}), NIGHT1)
    # raised by the driver (COPY / executemany run on the raw connection)
    with pytest.raises((sa.exc.IntegrityError, sqlite3.IntegrityError, psycopg.IntegrityError)):
        load_writer.publish(engine, NIGHT1, rows, citizens, {}, {}, {k: 0 for k in HISTORY_KEYS})
    assert checksums(serving_url) == before


HISTORY_KEYS = (
    "versions_received",
    "versions_retried",
    "versions_loaded",
    "versions_quarantined",
    "versions_superseded",
    "rows_published",
    "fhir_upserted",
    "fhir_removed",
)


def write_fhir(wh, dataset: str, night: dt.date, rows: list[dict]) -> None:
    folder = wh.staging_night(dataset, night)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "part-0.parquet")


def immunization(resource_id: str, line: int, **extra) -> dict:
    return {
        "night": NIGHT1,
        "source_file": "fhir/imm.ndjson",
        "line_number": line,
        "resource_id": resource_id,
        "citizen_id": AN,
        "status": "completed",
        "vaccine_system": "http://hl7.org/fhir/sid/cvx",
        "vaccine_code": "08",
        "vaccine_name": "Hepatitis B",
        "occurred_at": dt.datetime(2026, 5, 1, 9, 0),
        "lot_number": "LOT1",
        "dose_number": 2,
        "facility_code": FACILITY,
        "is_active": True,
        "row_warnings": [],
        **extra,
    }


def allergy(resource_id: str, line: int, **extra) -> dict:
    return {
        "night": NIGHT1,
        "source_file": "fhir/all.ndjson",
        "line_number": line,
        "resource_id": resource_id,
        "citizen_id": AN,
        "clinical_status": "active",
        "verification_status": "confirmed",
        "substance_system": "http://snomed.info/sct",
        "substance_code": "764146007",
        "substance_name": "Penicillin",
        "reaction_code": "271807003",
        "reaction_name": "Phát ban",
        "severity": "moderate",
        "criticality": "low",
        "recorded_at": dt.datetime(2025, 4, 2, 10, 30),
        "is_active": True,
        "row_warnings": [],
        **extra,
    }


def test_fhir_resources_load_for_registry_citizens_and_entered_in_error_removes_them(tmp_path, serving_url):
    ctx1 = context(tmp_path, NIGHT1, serving_url)
    write_fhir(
        ctx1.warehouse,
        "immunizations",
        NIGHT1,
        [immunization("imm-1", 1), immunization("imm-2", 2, citizen_id="000000000000")],
    )
    write_fhir(ctx1.warehouse, "allergies", NIGHT1, [allergy("all-1", 1)])
    manifest = json.loads(load.load_night(ctx1).read_text())
    # 2 immunization lines = 1 loaded + 1 quarantined (citizen not in the registry)
    assert manifest["fhir"]["Immunization"]["loaded"] == 1
    assert manifest["fhir"]["Immunization"]["quarantined"] == {"patient_not_in_registry": 1}

    book = books_for(serving_url, [AN])[0]
    assert book["found"] is True and book["encounters"] == []
    assert book["vaccinations"] == [
        {
            "vaccine_code": "08",
            "vaccine": "Hepatitis B",
            "dose_number": 2,
            "date": "2026-05-01",
            "facility_code": FACILITY,
            "facility_name": None,  # addition: 94170 is not in transforms/reference/facilities.csv
            "lot": "LOT1",
        }
    ]
    assert book["allergies"][0]["substance"] == "Penicillin"
    assert book["allergies"][0]["recorded_at"] == "2025-04-02T10:30"

    ctx2 = context(tmp_path, NIGHT2, serving_url)
    write_fhir(
        ctx2.warehouse,
        "immunizations",
        NIGHT2,
        [immunization("imm-1", 1, night=NIGHT2, status="entered-in-error", is_active=False)],
    )
    load.load_night(ctx2)
    assert books_for(serving_url, [AN])[0]["vaccinations"] == []
    assert count(serving_url, "select count(*) from allergies") == 1

    # re-running night 1 afterwards must not bring back the copy night 2 removed
    after_night2 = checksums(serving_url)
    load.load_night(ctx1)
    assert books_for(serving_url, [AN])[0]["vaccinations"] == []
    assert checksums(serving_url) == {**after_night2, "load_history": checksums(serving_url)["load_history"]}


def test_an_unreachable_serving_database_raises_a_clear_error(tmp_path):
    ctx = context(tmp_path, NIGHT1, "postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(db.ServingDatabaseUnreachable, match="unreachable"):
        load.load_night(ctx)


def test_a_batch_write_that_fails_fails_the_night_and_publishes_nothing(tmp_path, serving_url, monkeypatch):
    """On PostgreSQL a batch is written in a background thread while the next one is assembled:
    its failure still fails the night, in the caller, and rolls every batch back."""
    import threading

    ctx1 = context(tmp_path, NIGHT1, serving_url)
    night_one(ctx1)
    load.load_night(ctx1)
    before = checksums(serving_url)

    ctx2 = context(tmp_path, NIGHT2, serving_url)
    write_staged(ctx2.warehouse, "encounters", NIGHT2, [outpatient("LK7"), outpatient("LK8")])
    write_staged(ctx2.warehouse, "drugs", NIGHT2, [drug("LK7"), drug("LK8")])
    write_links(
        ctx2.warehouse,
        NIGHT2,
        [
            {"encounter_id": "LK7", "outcome": "match", "citizen_id": AN},
            {"encounter_id": "LK8", "outcome": "match", "citizen_id": BINH},
        ],
    )
    real = serving_writer.bulk_insert

    def failing(conn, target, rows):
        if target == "medications":
            raise RuntimeError("the disk is full")
        return real(conn, target, rows)

    monkeypatch.setattr(load_writer, "bulk_insert", failing)
    # two batches: the first fails in the background
    ctx2 = dataclasses.replace(ctx2, settings=ctx2.settings.replace("load", batch_encounters=1))
    with pytest.raises(RuntimeError, match="the disk is full"):
        load.load_night(ctx2)
    assert checksums(serving_url) == before
    assert not [t for t in threading.enumerate() if t.name == "healthbook-load-writer"]
    assert not ctx2.warehouse.outcomes(NIGHT2).exists()
