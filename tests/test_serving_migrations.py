"""Serving-database migrations (issue #17 item 6): a database of the b747057 release, with a night
in it, is refused by today's load until `healthbook db upgrade`; then the next night loads and the
first night's books still read. On SQLite and on PostgreSQL (a database of the test's own)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from alembic import command
from serving_fixtures import FACILITY, NIGHT1, at, context, drug, outpatient, write_links, write_staged
from typer.testing import CliRunner

from transforms.load import stage as load
from transforms.serving import db as serving_db
from transforms.serving import migrations
from transforms.serving.book import books_for
from transforms.serving.schema import SERVING_TABLES

OLD_NIGHT = dt.date(2026, 11, 25)  # loaded by the b747057 release
AN = "079090001234"  # in both nights (serving_fixtures.REGISTRY)
BINH = "001175000042"  # in the old night only
BINH_VERSION_ID = 3_000_001  # far from 1: the PostgreSQL backfill runs over several batches


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse' / 'serving.db'}"
    return request.getfixturevalue("pg_url")  # a database of its own, dropped after the test


def create_b747057(url: str) -> None:
    """The schema as the b747057 release's load made it: its DDL, no alembic_version."""
    with serving_db.serving_engine(url).begin() as conn:
        for statement in migrations.baseline_statements():
            conn.exec_driver_sql(statement)


def insert(conn, table: str, **row) -> None:
    conn.execute(
        sa.text(f"insert into {table} ({', '.join(row)}) values ({', '.join(':' + c for c in row)})"), row
    )


def load_old_night(url: str) -> None:
    """What the b747057 load wrote for one night: two citizens, an outpatient visit each (version
    ids 1 and BINH_VERSION_ID), their diagnoses, a drug line, a vaccination, illnesses, history."""
    with serving_db.serving_engine(url).begin() as conn:
        for citizen_id, name, birth in (
            (AN, "Nguyễn Văn An", "1990-03-14"),
            (BINH, "Trần Thị Bình", "1975-01-01"),
        ):
            insert(
                conn,
                "citizens",
                citizen_id=citizen_id,
                full_name=name,
                birth_date=dt.date.fromisoformat(birth),
                birth_date_precision="day" if citizen_id == AN else "year",
                sex_code="1" if citizen_id == AN else "2",
                province_code="79",
                registry_night=OLD_NIGHT,
            )
        for version_id, citizen_id, lk, code, text in (
            (1, AN, "LK0", "I10", "Tăng huyết áp"),
            (BINH_VERSION_ID, BINH, "LK9", "J45", "Hen phế quản"),
        ):
            insert(
                conn,
                "encounters",
                version_id=version_id,
                facility_code=FACILITY,
                encounter_id=lk,
                version=1,
                is_current=True,
                citizen_id=citizen_id,
                visit_type="01",
                visit_reason="Khám định kỳ",
                admitted_at=at("2026-11-25 07:30"),
                discharged_at=at("2026-11-25 09:00"),
                result_code="2",
                discharge_type_code="1",
                main_icd10=code,
                discharge_diagnosis=text,
                link_tier="citizen_id",
                match_weight=20.0,
                night=OLD_NIGHT,
                source_file=f"{FACILITY}/old.xml",
                hoso_index=0,
            )
            insert(
                conn,
                "diagnoses",
                version_id=version_id,
                position=0,
                icd10=code,
                is_main=True,
                diagnosis_text=text,
            )
        insert(
            conn,
            "medications",
            version_id=BINH_VERSION_ID,
            row_index=0,
            drug_code="40.500",
            drug_name="Salbutamol",
            strength="100mcg",
            route_code="1.05",
            dose="2 nhát/lần",
            quantity=1.0,
            ordered_at=at("2026-11-25 08:30"),
        )
        insert(
            conn,
            "immunizations",
            resource_id="imm-1",
            citizen_id=BINH,
            status="completed",
            vaccine_code="03",
            vaccine_name="MMR",
            occurred_at=at("2026-11-20 09:00"),
            dose_number=1,
            facility_code=FACILITY,
            night=OLD_NIGHT,
            source_file="fhir/imm.ndjson",
            line_number=1,
        )
        for citizen_id, code, condition in ((AN, "I10", "hypertension"), (BINH, "J45", "asthma")):
            insert(
                conn,
                "illnesses",
                citizen_id=citizen_id,
                icd10=code,
                condition=condition,
                name=code,
                first_seen=OLD_NIGHT,
                last_seen=OLD_NIGHT,
                encounter_count=1,
            )
        insert(
            conn, "load_history", night=OLD_NIGHT, versions_received=2, versions_loaded=2, rows_published=9
        )


def stage_next_night(tmp_path, url: str):
    """Today's warehouse for NIGHT1: An's next visit (hypertension again, diabetes), a drug line."""
    ctx = context(tmp_path, NIGHT1, url)
    write_staged(ctx.warehouse, "encounters", NIGHT1, [outpatient("LK1")])
    write_staged(ctx.warehouse, "drugs", NIGHT1, [drug("LK1", physician_codes=["BS01"])])
    write_links(ctx.warehouse, NIGHT1, [{"encounter_id": "LK1", "outcome": "match", "citizen_id": AN}])
    return ctx


def db(*args: str):
    from transforms.orchestration.cli import app

    return CliRunner().invoke(app, ["db", *args])


def book(*args: str):
    from transforms.orchestration.cli import app

    return CliRunner().invoke(app, ["book", *args])


def said(result) -> str:
    """stderr as words (rich wraps long lines)."""
    return " ".join(result.stderr.split())


def count(url: str, sql: str) -> int:
    with serving_db.serving_engine(url).connect() as conn:
        return conn.exec_driver_sql(sql).scalar_one()


def test_a_b747057_database_is_refused_then_upgraded_and_the_next_night_loads(tmp_path, url):
    create_b747057(url)
    load_old_night(url)
    ctx = stage_next_night(tmp_path, url)

    # today's load refuses the un-upgraded database, telling the operator what to run; nothing written
    with pytest.raises(
        serving_db.ServingSchemaOutdated, match="no migration revision.*`healthbook db upgrade`"
    ):
        load.load_night(ctx)
    assert count(url, "select count(*) from encounters") == 2
    current = db("current", "--serving-url", url)
    assert current.exit_code == 1 and "revision none; this release 20261207" in current.stdout
    # nor does `healthbook book` read books from it: refused before any book is read or printed
    refused = book("--serving-url", url, "--citizen", BINH)
    assert refused.exit_code == 1 and refused.stdout == ""
    assert "refused" in said(refused) and "healthbook db upgrade" in said(refused)

    upgraded = db("upgrade", "--serving-url", url)
    assert upgraded.exit_code == 0, upgraded.output
    assert "upgraded from b747057 to 20261207" in said(upgraded) and "stamped the baseline" in said(upgraded)
    assert db("current", "--serving-url", url).exit_code == 0
    assert "already at 20261207" in said(db("upgrade", "--serving-url", url))  # a second run: nothing to do

    load.load_night(ctx)

    an, binh = books_for(url, [AN, BINH])
    # the new night is there, after the old one, under a version id above every old one
    assert [(e["encounter_id"], e["main_diagnosis"]["icd10"]) for e in an["encounters"]] == [
        ("LK1", "I10"),
        ("LK0", "I10"),
    ]
    new, old = an["encounters"]
    assert new["main_diagnosis"]["source"] == "xml1" and new["secondary_diagnoses"][0]["icd10"] == "E11"
    assert [m["name"] for m in new["medications"]] == ["Amlodipin"]
    assert old["main_diagnosis"] == {
        "icd10": "I10",
        "text": "Tăng huyết áp",
        "name": old["main_diagnosis"]["name"],
        "source": "xml1",  # backfilled: XML1 was the only source when b747057 loaded it
    }
    assert old["source"] == {"file": f"{FACILITY}/old.xml", "received_on": "2026-11-25"}
    assert old["incomplete"] is None
    assert count(url, "select max(version_id) from encounters") > BINH_VERSION_ID
    # the illnesses of An were recomputed over both nights' encounters (the old rows read by today's SQL)
    illnesses = {i["icd10"]: (i["first_seen"], i["last_seen"]) for i in an["illnesses"]}
    assert illnesses == {"I10": ("2026-11-25", "2026-11-26"), "E11": ("2026-11-26", "2026-11-26")}

    # Bình, of the first night only, reads as the old release published her
    assert binh["found"] and binh["citizen"]["full_name"] == "Trần Thị Bình"
    (visit,) = binh["encounters"]
    assert (visit["encounter_id"], visit["main_diagnosis"]["icd10"], visit["main_diagnosis"]["source"]) == (
        "LK9",
        "J45",
        "xml1",
    )
    assert [(m["name"], m["quantity"]) for m in visit["medications"]] == [("Salbutamol", 1)]
    assert [(v["vaccine"], v["date"]) for v in binh["vaccinations"]] == [("MMR", "2026-11-20")]
    assert [i["icd10"] for i in binh["illnesses"]] == ["J45"]
    assert count(url, "select count(*) from load_history") == 2

    # the access log the upgrade created takes the reads of `healthbook book`
    read = book("--serving-url", url, "--citizen", BINH, "--purpose", "test")
    assert read.exit_code == 0, read.output
    assert json.loads(read.stdout)["citizen"]["citizen_id"] == BINH
    assert count(url, "select count(*) from book_access") == 1


def columns_types_keys(url: str) -> dict:
    """Per table: its columns with their types, primary key, unique keys and indexes (order aside)."""
    engine = serving_db.serving_engine(url)
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        out = {}
        for name in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
            out[name] = (
                {c["name"]: str(c["type"]).lower() for c in inspector.get_columns(name)},
                inspector.get_pk_constraint(name)["constrained_columns"],
                sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)),
                sorted((i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(name)),
            )
    return out


def test_every_revision_from_the_baseline_makes_the_schema_a_fresh_load_makes(tmp_path, url):
    # through Alembic from nothing: the baseline revision creates b747057's schema, the rest upgrade it
    cfg = migrations.config()
    engine = serving_db.serving_engine(url)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "b747057")
        conn.commit()
    assert db("upgrade", "--serving-url", url).exit_code == 0
    migrated = columns_types_keys(url)

    fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    if url.startswith("postgresql"):  # the same engine: a second database of the test's own
        fresh_url = url.rsplit("/", 1)[0] + "/" + url.rsplit("/", 1)[1] + "_fresh"
        with sa.create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.exec_driver_sql(f'create database "{fresh_url.rsplit("/", 1)[1]}"')
    try:
        serving_db.ensure_schema(serving_db.serving_engine(fresh_url))
        assert migrated == columns_types_keys(fresh_url)
        with serving_db.serving_engine(fresh_url).connect() as conn:
            assert migrations.current_revision(conn) == migrations.head()  # a fresh database is stamped
            assert migrations.schema_differences(conn) == []
    finally:
        serving_db.serving_engine(fresh_url).dispose()
        if url.startswith("postgresql"):
            with sa.create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.exec_driver_sql(f'drop database if exists "{fresh_url.rsplit("/", 1)[1]}" with (force)')

    # a release rolled back: down to b747057's columns, the access log kept; up again
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "b747057")
        conn.commit()
    down = columns_types_keys(url)
    assert set(down) == set(migrated)
    baseline = migrations.baseline_columns()
    assert {t: set(down[t][0]) for t in baseline} == {t: set(c) for t, c in baseline.items()}
    assert db("upgrade", "--serving-url", url).exit_code == 0
    assert columns_types_keys(url) == migrated
    engine.dispose()


def test_a_database_of_a_release_between_b747057_and_now_upgrades_too(tmp_path):
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    create_b747057(url)
    with serving_db.serving_engine(
        url
    ).begin() as conn:  # the release that added incomplete, not yet the rest
        conn.exec_driver_sql("alter table encounters add column incomplete text")
    result = db("upgrade", "--serving-url", url)
    assert result.exit_code == 0, result.output
    with serving_db.serving_engine(url).connect() as conn:
        assert migrations.schema_differences(conn) == []
        assert migrations.current_revision(conn) == migrations.head()


def test_the_demo_upgrades_its_serving_database_of_an_earlier_release_and_keeps_its_books(tmp_path):
    from transforms.orchestration.cli import _demo_serving

    url = f"sqlite:///{tmp_path / 'serving.db'}"
    create_b747057(url)
    load_old_night(url)
    _demo_serving(url)
    with serving_db.serving_engine(url).connect() as conn:
        assert migrations.current_revision(conn) == migrations.head()
        assert migrations.schema_differences(conn) == []
    assert count(url, "select count(*) from citizens") == 2
    assert count(url, "select count(*) from encounters") == 2


def test_a_database_older_than_the_baseline_is_not_touched(tmp_path):
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    with serving_db.serving_engine(url).begin() as conn:  # the encounters table before version ids
        conn.exec_driver_sql(
            "create table encounters (facility_code text not null, encounter_id text not null, "
            "version integer not null, primary key (facility_code, encounter_id, version))"
        )
    result = db("upgrade", "--serving-url", url)
    assert result.exit_code == 1
    assert "not upgraded" in said(result) and "older than b747057" in said(result)
    assert "encounters.version_id" in result.stderr.replace("\n", "")
    with serving_db.serving_engine(url).connect() as conn:
        assert migrations.current_revision(conn) is None
        assert set(sa.inspect(conn).get_table_names()) == {"encounters"}


def test_db_upgrade_of_an_empty_database_creates_this_release_schema(tmp_path):
    result = db("upgrade", "--warehouse", str(tmp_path / "warehouse"))  # the default: SQLite in the warehouse
    assert result.exit_code == 0, result.output
    url = f"sqlite:///{tmp_path / 'warehouse' / 'serving.db'}"
    with serving_db.serving_engine(url).connect() as conn:
        assert migrations.current_revision(conn) == migrations.head()
        assert {t.name for t in SERVING_TABLES} <= set(sa.inspect(conn).get_table_names())
