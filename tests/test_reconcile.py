"""Reconciliation on tiny hand-made identities: every tier, every outcome, the review queue and
the stage's files. One registry of 1,000 filler citizens plus the people of the tests, so that
term frequencies behave like a real population's.

The tests use the model's priors (train_linkage.linkage_settings(), not the trained file) and fixed
thresholds (match 12, review 4, margin 6), so the arithmetic below stays true when the model is
retrained. Prior: 1 in 1,024 citizens -> -10.0. A name held by 1 citizen: exact +9.8 (by 2: +8.8,
by 10: +6.4); birth exact +14.4, partial (year only) +6.0; same sex +1.0; same ward +10.7, same
province only +1.7, other province -4.3; citizen ID one digit off +13.1.
So a record without any identifier but with a unique name, its birth date, sex and ward weighs
-10.0 + 9.8 + 14.4 + 1.0 + 10.7 = 25.9 (match), and with only the birth year and another ward
of the same province -10.0 + 9.8 + 6.0 + 1.0 + 1.7 = 8.5 (review queue).
"""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from transforms.core.warehouse import Warehouse
from transforms.reconcile.model import linkage_settings
from transforms.reconcile.scoring import registry_candidates_sql
from transforms.reconcile.stage import (
    OUTCOMES,
    ReconcileSettings,
    match_to_registry,
    reconcile_night,
)

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng"]
MIDDLE = ["Văn", "Thị", "Minh", "Hữu", "Đức", "Thanh", "Ngọc", "Quốc", "Hoài", "Xuân"]
GIVEN = ["An", "Bình", "Cường", "Dũng", "Giang", "Hà", "Hùng", "Lan", "Mai", "Nam"]


def citizen(cid, name, birth, sex, province="79", ward="26734", old=None, sin=None):
    return dict(
        citizen_id=cid,
        old_id_number=old,
        social_insurance_number=sin,
        full_name=name,
        birth_date=birth,
        sex=sex,
        ethnicity_code="01",
        nationality_code="000",
        province_code=province,
        ward_code=ward,
        blood_group=None,
        death_date=None,
    )


def filler_citizens() -> list[dict]:
    """1,000 citizens with 1,000 distinct names, none of them a name used by the tests."""
    rows = []
    for i in range(1000):
        name = f"{FAMILY[i // 100]} {MIDDLE[i // 10 % 10]} {GIVEN[i % 10]}"
        birth = f"{1940 + i % 60}{i % 12 + 1:02d}{i % 28 + 1:02d}"
        rows.append(citizen(f"0010{i:08d}", name, birth, str(1 + i % 2), "01", f"{i % 50:05d}"))
    return rows


PEOPLE = [
    # tier cases
    citizen("079090001234", "Quách Văn Khải", "19900305", "1", sin="7909000123", old="025123456"),
    citizen("079185004321", "Tạ Thị Thảo", "19850520", "2", "01", "00004", sin="0118500432"),
    # one digit apart: a typo of Lục's ID is Mạc's ID
    citizen("079070005555", "Lục Văn Tường", "19700707", "1", ward="26740"),
    citizen("079070005559", "Mạc Thị Yến", "19700909", "2", "48", "20194"),
    # indistinguishable twins: same name, birth, sex, ward
    citizen("079201001111", "Khổng Minh Triết", "20010102", "1", ward="26800"),
    citizen("079201002222", "Khổng Minh Triết", "20010102", "1", ward="26800"),
    citizen("079088003333", "Lạc Thị Nhung", "19880808", "2", ward="26750"),
]
# issue #18 cases: a patient who moved (ward 26734 in the registry); namesakes (same name, birth
# date and sex) living in two provinces; namesakes in two wards of province 79
PEOPLE += [
    citizen("079075007777", "Đinh Công Tráng", "19751111", "1", ward="26734"),
    citizen("079060001001", "Ông Văn Bảy", "19600606", "1", ward="26734"),
    citizen("048060001002", "Ông Văn Bảy", "19600606", "1", "48", "20194"),
    citizen("079062002001", "Kiều Thị Oanh", "19620202", "2", ward="26734"),
    citizen("079062002002", "Kiều Thị Oanh", "19620202", "2", ward="26801"),
    # namesakes whose identifiers a record may mix up: the citizen ID of one, the card of the other
    citizen("079080003001", "Mã Văn Lực", "19800101", "1", ward="26734", sin="7908000301"),
    citizen("079080003002", "Mã Văn Lực", "19800101", "1", ward="26801", sin="7908000302"),
]
# a common name: 9 more "Nguyễn Văn An" (1 in the filler), one of them born 1990-03-14
PEOPLE += [
    citizen(f"0300900{i:05d}", "Nguyễn Văn An", f"1990{(i % 12) + 1:02d}14", "1", "30", f"1{i:04d}")
    for i in range(2, 11)
]


def registry_frame() -> pd.DataFrame:
    return pd.DataFrame(filler_citizens() + PEOPLE)


def encounter(
    case, name, cid=None, birth="1990-03-05", precision="day", sex="1", card=None, province="79", ward="26734"
):
    return dict(
        facility_code="79001",
        encounter_id=case,
        version=1,
        patient_name=name,
        citizen_id=cid,
        birth_date=dt.date.fromisoformat(birth),
        birth_date_precision=precision,
        sex_code=sex,
        insurance_card=card,
        province_code=province,
        ward_code=ward,
    )


ENCOUNTERS = [
    encounter("id_exact_upper", "QUÁCH VĂN KHẢI", "079090001234"),
    encounter("id_exact_swapped_dob", "Quách Văn Khải", "079090001234", birth="1990-05-03"),
    encounter(
        "id_exact_nfd",
        unicodedata.normalize("NFD", "Tạ Thị Thảo"),
        "079185004321",
        "1985-05-20",
        sex="2",
        province="01",
        ward="00004",
    ),
    encounter("sin_in_cccd", "Quach Van Khai", "7909000123"),
    encounter(
        "sin_on_card",
        "Tạ Thị Thảo",
        None,
        "1985-05-20",
        sex="2",
        card=["HC4010118500432"],
        province="01",
        ward="00004",
    ),
    encounter("old_id_in_cccd", "Quách Văn Khải", "025123456"),
    encounter("id_typo_hits_other_citizen", "Lục Văn Tường", "079070005559", "1970-07-07", ward="26740"),
    encounter("id_typo_hits_nobody", "Lục Văn Tường", "079070005558", "1970-07-07", ward="26740"),
    encounter("no_id_unique_name", "Lạc Thị Nhung", None, "1988-08-08", sex="2", ward="26750"),
    encounter(
        "no_id_year_only", "Lạc Thị Nhung", None, "1988-01-01", precision="year", sex="2", ward="26999"
    ),
    encounter("twin_without_id", "Khổng Minh Triết", None, "2001-01-02", ward="26800"),
    encounter("not_in_registry", "Diệp Thế Vinh", None, "1979-11-30"),
    encounter("not_in_registry_with_foreign_id", "Diệp Thế Vinh", "B1234567", "1979-11-30"),
    encounter("common_name_same_birth", "Nguyễn Văn An", None, "1990-03-14", province="79", ward="26734"),
    encounter("mover_same_province", "Đinh Công Tráng", None, "1975-11-11", ward="26760"),
    encounter(
        "namesakes_record_moved_elsewhere", "Ông Văn Bảy", None, "1960-06-06", province="01", ward="00020"
    ),
    encounter("namesakes_told_apart_by_ward", "Kiều Thị Oanh", None, "1962-02-02", sex="2", ward="26734"),
    encounter(
        "ids_of_two_namesakes_ward_of_one",
        "Mã Văn Lực",
        "079080003001",
        "1980-01-01",
        card=["HC4017908000302"],
        ward="26801",
    ),
    encounter(
        "ids_of_two_namesakes_ward_of_neither",
        "Mã Văn Lực",
        "079080003001",
        "1980-01-01",
        card=["HC4017908000302"],
        ward="26999",
    ),
]


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> ReconcileSettings:
    model = tmp_path_factory.mktemp("model") / "priors.json"
    model.write_text(json.dumps(linkage_settings()))
    return ReconcileSettings(model_path=model, match_weight=12.0, review_weight=4.0, margin=6.0)


@pytest.fixture(scope="module")
def links(settings) -> pd.DataFrame:
    out = match_to_registry(pd.DataFrame(ENCOUNTERS), registry_frame(), settings)
    return out.set_index("encounter_id")


def test_one_link_per_encounter_version(links):
    assert len(links) == len(ENCOUNTERS)
    assert set(links["outcome"]) <= {"match", "potential_match", "no_match", "many_match"}


@pytest.mark.parametrize(
    ("case", "tier", "citizen_id", "differences"),
    [
        ("id_exact_upper", "citizen_id", "079090001234", ["name_upper"]),
        ("id_exact_swapped_dob", "citizen_id", "079090001234", ["dob_day_month_swapped"]),
        ("id_exact_nfd", "citizen_id", "079185004321", ["name_nfd"]),
        (
            "sin_in_cccd",
            "social_insurance",
            "079090001234",
            ["name_unaccented", "social_insurance_in_citizen_id"],
        ),
        ("sin_on_card", "social_insurance", "079185004321", ["citizen_id_missing"]),
        ("old_id_in_cccd", "old_id", "079090001234", ["old_id_in_citizen_id"]),
    ],
)
def test_an_identifier_that_agrees_with_name_birth_and_sex_matches_deterministically(
    links, case, tier, citizen_id, differences
):
    link = links.loc[case]
    assert (link["outcome"], link["tier"], link["citizen_id"]) == ("match", tier, citizen_id)
    assert list(link["differences"]) == differences


def test_an_id_typo_that_hits_another_citizen_is_not_trusted_and_finds_the_right_one(links):
    # Mạc Thị Yến owns 079070005559 but is a woman born 1970-09-09: tier 1 disagrees; tier 4
    # weighs Lục: -10.0 + name 9.8 + birth 14.4 + sex 1.0 + ward 10.7 + one digit off 13.1 = 39.0
    link = links.loc["id_typo_hits_other_citizen"]
    assert (link["outcome"], link["tier"], link["citizen_id"]) == ("match", "probabilistic", "079070005555")
    assert "id_one_digit_typo" in list(link["differences"])


def test_an_id_typo_that_hits_nobody_matches_probabilistically(links):
    link = links.loc["id_typo_hits_nobody"]
    assert (link["outcome"], link["citizen_id"]) == ("match", "079070005555")
    assert list(link["differences"]) == ["id_one_digit_typo"]


def test_a_patient_without_any_identifier_matches_on_a_rare_name_birth_sex_and_ward(links):
    link = links.loc["no_id_unique_name"]
    assert (link["outcome"], link["tier"], link["citizen_id"]) == ("match", "probabilistic", "079088003333")
    assert link["match_weight"] == pytest.approx(25.9, abs=0.1)


def test_too_little_evidence_goes_to_the_review_queue(links):
    # only the birth year, another ward: 8.5 in [review 4, match 12)
    link = links.loc["no_id_year_only"]
    assert link["match_weight"] == pytest.approx(8.5, abs=0.1)
    assert link["outcome"] == "potential_match"
    assert pd.isna(link["citizen_id"]) and link["candidate_citizen_id"] == "079088003333"
    assert link["reason"] == "potential_match"


def test_a_best_candidate_under_the_review_weight_is_no_match_and_over_it_a_review(settings):
    # the same record (8.5) on each side of the review weight: only the review weight moves it
    record = pd.DataFrame([e for e in ENCOUNTERS if e["encounter_id"] == "no_id_year_only"])
    below = match_to_registry(record, registry_frame(), replace(settings, review_weight=9.0)).iloc[0]
    assert (below["outcome"], below["reason"]) == ("no_match", "patient_not_in_registry")
    assert pd.isna(below["candidate_citizen_id"])
    above = match_to_registry(record, registry_frame(), replace(settings, review_weight=8.0)).iloc[0]
    assert (above["outcome"], above["candidate_citizen_id"]) == ("potential_match", "079088003333")


def test_indistinguishable_twins_are_never_auto_matched(links):
    link = links.loc["twin_without_id"]
    assert link["outcome"] == "many_match" and pd.isna(link["citizen_id"])
    assert link["margin"] == 0 and link["reason"] == "many_match"


@pytest.mark.parametrize("case", ["not_in_registry", "not_in_registry_with_foreign_id"])
def test_a_patient_absent_from_the_registry_is_not_matched(links, case):
    link = links.loc[case]
    assert link["outcome"] == "no_match" and pd.isna(link["citizen_id"])
    assert link["reason"] == "patient_not_in_registry"


def test_a_common_name_and_birth_date_alone_never_match(links):
    # "nguyen van an" is 10 of 1,024 citizens: exact name +6.4 only; the one born 1990-03-14
    # lives in another province: -10.0 + 6.4 + 14.4 + 1.0 - 4.3 = 7.5
    link = links.loc["common_name_same_birth"]
    assert link["outcome"] in ("no_match", "potential_match") and pd.isna(link["citizen_id"])


def test_a_match_is_stable_across_runs(links, settings):
    again = match_to_registry(pd.DataFrame(ENCOUNTERS), registry_frame(), settings).set_index("encounter_id")
    pd.testing.assert_frame_equal(links, again)


def test_the_stage_writes_links_review_queue_and_manifest(tmp_path, settings):
    from transforms.core.context import NightContext

    night = dt.date(2026, 11, 26)
    warehouse = Warehouse(tmp_path / "warehouse")
    staged = warehouse.staging_night("encounters", night) / "facility_code=79001" / "part-0.parquet"
    staged.parent.mkdir(parents=True)
    pd.DataFrame(ENCOUNTERS).assign(night=night).to_parquet(staged)
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    registry = registry_frame()
    registry.iloc[:500].to_parquet(registry_dir / "part-0.parquet")
    registry.iloc[500:].to_parquet(registry_dir / "part-1.parquet")
    ctx = NightContext(night, tmp_path / "extracts", registry_dir, warehouse, "sqlite://")

    manifest_path = reconcile_night(ctx, settings)

    manifest = json.loads(manifest_path.read_text())
    assert manifest_path == warehouse.manifest(night, "reconcile")
    assert manifest["encounters"] == len(ENCOUNTERS) and manifest["registry_rows"] == len(registry)
    assert sum(manifest["outcomes"].values()) == sum(manifest["tiers"].values()) == len(ENCOUNTERS)
    # + the two records carrying two namesakes' identifiers: one linked through the card, the tie
    # reported under its strongest identifier
    assert manifest["tiers"]["citizen_id"] == 4 and manifest["tiers"]["social_insurance"] == 3
    links = pd.read_parquet(warehouse.staging_night("patient_links", night) / "part-0.parquet")
    assert len(links) == len(ENCOUNTERS)
    assert links["outcome"].value_counts().to_dict() == {k: v for k, v in manifest["outcomes"].items() if v}
    review = pd.read_parquet(warehouse.review(night) / "review_queue.parquet")
    twins = review[review["encounter_id"] == "twin_without_id"]
    # both twins side by side, each field's weight shown, equal in total
    assert sorted(twins["citizen_id"]) == ["079201001111", "079201002222"]
    assert {"weight_name", "weight_birth", "weight_residence"} <= set(review.columns)
    assert twins["match_weight"].nunique() == 1
    assert (warehouse.review(night) / "review_queue.csv").read_text().count("twin_without_id") == 2


def test_a_night_without_staged_encounters_writes_empty_outputs(tmp_path):
    from transforms.core.context import NightContext

    night = dt.date(2026, 11, 26)
    registry = tmp_path / "registry.parquet"
    registry_frame().to_parquet(registry)
    ctx = NightContext(night, tmp_path / "extracts", registry, Warehouse(tmp_path / "wh"), "sqlite://")
    manifest = json.loads(reconcile_night(ctx).read_text())
    assert manifest["encounters"] == 0
    assert len(pd.read_parquet(ctx.warehouse.staging_night("patient_links", night))) == 0


def test_the_versioned_model_links_a_rare_name_and_refuses_twins():
    links = match_to_registry(pd.DataFrame(ENCOUNTERS), registry_frame()).set_index("encounter_id")
    assert links.loc["no_id_unique_name", "citizen_id"] == "079088003333"
    assert links.loc["twin_without_id", "outcome"] == "many_match"
    assert links.loc["not_in_registry", "outcome"] == "no_match"


def test_the_versioned_model_and_settings_tell_a_ward_mover_from_a_namesake_elsewhere():
    # issue #18: "Ông Văn Bảy" born 1960-06-06 lives in 79/26734, his namesake in province 48; the
    # record gives another ward of 79. Only the province separates them: the shipped model's step
    # from another province to the same province must clear the shipped margin, or every such
    # mover waits for a person (retraining the model re-checks it here)
    record = encounter("mover_namesake_elsewhere", "Ông Văn Bảy", None, "1960-06-06", ward="26760")
    link = match_to_registry(pd.DataFrame([record]), registry_frame()).iloc[0]
    assert (link["outcome"], link["citizen_id"]) == ("match", "079060001001")
    assert link["deciding_field"] == "residence"
    assert ReconcileSettings().margin <= link["margin"] < 6.0


def test_a_citizen_recorded_dead_before_the_admission_is_never_linked_on_demographics():
    # "Phùng Văn Dũng" is unique in the registry and died 2025-10-01: a record with his name, birth
    # date, sex and ward and no ID is him only if it was admitted before that day
    dead = citizen("079040009999", "Phùng Văn Dũng", "19400101", "1") | {"death_date": "20251001"}
    registry = pd.concat([registry_frame(), pd.DataFrame([dead])], ignore_index=True)
    before, after, with_id = (
        encounter("before_death", "Phùng Văn Dũng", None, "1940-01-01"),
        encounter("after_death", "Phùng Văn Dũng", None, "1940-01-01"),
        encounter("after_death_with_id", "Phùng Văn Dũng", "079040009999", "1940-01-01"),
    )
    before["admitted_at"] = dt.datetime(2025, 9, 30, 8, 15)
    after["admitted_at"] = with_id["admitted_at"] = dt.datetime(2025, 10, 2, 8, 15)
    links = match_to_registry(pd.DataFrame([before, after, with_id]), registry).set_index("encounter_id")

    assert (links.loc["before_death", "outcome"], links.loc["before_death", "citizen_id"]) == (
        "match",
        "079040009999",
    )
    assert "died_before_admission" not in links.loc["before_death", "differences"]
    # the same evidence after his death: a person decides, and sees why
    assert links.loc["after_death", "outcome"] == "potential_match"
    assert links.loc["after_death", "candidate_citizen_id"] == "079040009999"
    assert "died_before_admission" in links.loc["after_death", "differences"]
    # his citizen ID with his name, birth date and sex: linked, the contradiction named on the link
    assert (links.loc["after_death_with_id", "outcome"], links.loc["after_death_with_id", "tier"]) != (
        "potential_match",
        "probabilistic",
    )
    assert links.loc["after_death_with_id", "citizen_id"] == "079040009999"
    assert "died_before_admission" in links.loc["after_death_with_id", "differences"]


@pytest.mark.parametrize(
    "death_date", ["=cmd|' /C calc'!A0", "2025-10-01'; drop table x; --", "1O251001", ""]
)
def test_a_death_date_that_is_not_a_date_neither_fails_nor_holds_a_link_back(death_date):
    # the registry is input too: a malformed death date is no death date
    odd = citizen("079040008888", "Phùng Văn Dũng", "19400101", "1") | {"death_date": death_date}
    registry = pd.concat([registry_frame(), pd.DataFrame([odd])], ignore_index=True)
    record = encounter("odd_death_date", "Phùng Văn Dũng", None, "1940-01-01")
    record["admitted_at"] = dt.datetime(2026, 11, 26, 8, 15)
    link = match_to_registry(pd.DataFrame([record]), registry).iloc[0]
    assert (link["outcome"], link["citizen_id"]) == ("match", "079040008888")
    assert "died_before_admission" not in link["differences"]


def test_duckdb_sizing_comes_from_the_environment():
    env = {"HEALTHBOOK_RECONCILE_MEMORY_LIMIT": "3GB", "HEALTHBOOK_RECONCILE_THREADS": "1"}
    settings = ReconcileSettings.from_environment(env)
    assert (settings.memory_limit, settings.threads, settings.temp_directory) == ("3GB", 1, None)
    assert ReconcileSettings.from_environment({}) == ReconcileSettings()


def test_splink_is_shown_only_the_citizens_sharing_a_blocking_key():
    sql = registry_candidates_sql(["l.name_fold = r.name_fold", "l.citizen_id = r.citizen_id"])
    assert sql.count("semi join linkage_encounters as l on") == 2
    assert "on l.citizen_id = r.citizen_id" in sql and "union" in sql


def test_the_stage_spills_inside_the_warehouse_and_cleans_up(tmp_path, monkeypatch):
    """DuckDB is bounded (memory_limit) and spills to the night's scratch folder, never to the
    working folder; the scratch folder is gone when the stage ends."""
    import transforms.reconcile.stage as reconcile_mod
    from transforms.core.context import NightContext

    night = dt.date(2026, 11, 26)
    registry = tmp_path / "registry.parquet"
    registry_frame().to_parquet(registry)
    ctx = NightContext(night, tmp_path / "extracts", registry, Warehouse(tmp_path / "wh"), "sqlite://")
    seen = []
    real_connect = reconcile_mod.connect

    def spy(settings):
        con = real_connect(settings)
        seen.append(con.execute("select current_setting('temp_directory')").fetchall()[0][0])
        assert Path(seen[-1]).is_dir()  # DuckDB would fail to spill into a folder whose parent is missing
        return con

    monkeypatch.setattr(reconcile_mod, "connect", spy)
    monkeypatch.chdir(tmp_path)
    reconcile_night(ctx)
    assert seen == [str(ctx.warehouse.scratch("reconcile", night))]
    assert not ctx.warehouse.scratch("reconcile", night).exists()
    assert ReconcileSettings().memory_limit == "3GB"


def test_a_version_pending_for_its_patient_is_linked_again_when_the_registry_has_them(tmp_path, settings):
    """HEALTHBOOK.md: quarantined versions are re-tried when a correction arrives. A patient
    absent from night 1's registry is registered by night 2: night 2 links the pending version
    (which the load then publishes); a re-run of night 2 links the same versions, even after the
    load took it off the pending list."""
    from transforms.core.context import NightContext

    night1, night2 = dt.date(2026, 11, 25), dt.date(2026, 11, 26)
    warehouse = Warehouse(tmp_path / "warehouse")
    newcomer = encounter("registered_later", "Lò Văn Pá", "001099012345", "1999-05-06")
    staged = warehouse.staging_night("encounters", night1) / "facility_code=79001" / "part-0.parquet"
    staged.parent.mkdir(parents=True)
    pd.DataFrame([*ENCOUNTERS[:3], newcomer]).assign(night=night1).to_parquet(staged)
    registry1 = tmp_path / "registry1.parquet"
    registry_frame().to_parquet(registry1)
    ctx1 = NightContext(night1, tmp_path / "extracts", registry1, warehouse, "sqlite://")
    reconcile_night(ctx1, settings)
    first = pd.read_parquet(warehouse.staging_night("patient_links", night1)).set_index("encounter_id")
    assert first.loc["registered_later", "outcome"] == "no_match"

    # what the load of night 1 leaves: the version pending for its patient (and one for a
    # missing table, which reconcile must leave alone)
    pending = pd.DataFrame(
        {
            "facility_code": ["79001", "79001"],
            "encounter_id": ["registered_later", ENCOUNTERS[0]["encounter_id"]],
            "version": [1, 1],
            "night": [night1, night1],
            "reason": ["patient_not_in_registry", "missing_summary"],
        }
    )
    warehouse.pending.parent.mkdir(parents=True, exist_ok=True)
    pending.to_parquet(warehouse.pending)

    registry2 = tmp_path / "registry2.parquet"
    pd.DataFrame(
        [*filler_citizens(), *PEOPLE, citizen("001099012345", "Lò Văn Pá", "19990506", "1")]
    ).to_parquet(registry2)
    ctx2 = NightContext(night2, tmp_path / "extracts", registry2, warehouse, "sqlite://")
    manifest = json.loads(reconcile_night(ctx2, settings).read_text())
    links = pd.read_parquet(warehouse.staging_night("patient_links", night2))
    assert links[["encounter_id", "outcome", "citizen_id", "tier"]].to_dict("records") == [
        {
            "encounter_id": "registered_later",
            "outcome": "match",
            "citizen_id": "001099012345",
            "tier": "citizen_id",
        }
    ]
    assert manifest["encounters"] == 0  # tonight received nothing
    assert manifest["retried"] == {"versions": 1, "outcomes": {**dict.fromkeys(OUTCOMES, 0), "match": 1}}

    # the load publishes it and empties the pending list; a re-run of night 2 links the same
    warehouse.pending.unlink()
    reconcile_night(ctx2, settings)
    assert pd.read_parquet(warehouse.staging_night("patient_links", night2)).equals(links)


# --- issue #18: movers, non-separable candidates, the deciding field, reviewers' decisions ---


def test_a_patient_who_moved_ward_is_linked_and_the_move_is_named(links):
    # no ID, unique name, birth date and sex; another ward of the same province: the residence is
    # weak evidence, not a veto: -10.0 + 9.8 + 14.4 + 1.0 + 1.7 = 16.9 >= 12, nobody else blocked
    link = links.loc["mover_same_province"]
    assert (link["outcome"], link["citizen_id"]) == ("match", "079075007777")
    assert link["match_weight"] == pytest.approx(16.9, abs=0.1)
    assert list(link["differences"]) == ["moved_ward", "citizen_id_missing"]
    assert link["deciding_field"] == "only_candidate"


def test_a_patient_who_moved_to_another_province_is_linked_on_name_birth_and_sex(settings):
    # no ID, unique name, birth date and sex; the record lives in province 01: Splink weighs
    # -10.0 + 9.8 + 14.4 + 1.0 - 4.3 = 10.9, under the match weight 12. A residence that differs is
    # weak evidence, not a veto: it counts as none against the thresholds (decision weight 15.2)
    record = encounter(
        "mover_other_province", "Đinh Công Tráng", None, "1975-11-11", province="01", ward="00020"
    )
    link = match_to_registry(pd.DataFrame([record]), registry_frame(), settings).iloc[0]
    assert link["match_weight"] == pytest.approx(10.9, abs=0.1)
    assert link["decision_weight"] == pytest.approx(link["match_weight"] + 4.3, abs=0.05)
    assert (link["outcome"], link["citizen_id"]) == ("match", "079075007777")
    assert list(link["differences"]) == ["moved_ward", "province_differs", "citizen_id_missing"]
    # with the birth year alone the same move stays under it: -10.0 + 9.8 + 6.0 + 1.0 = 6.8 -> review
    year_only = encounter(
        "mover_other_province_year",
        "Đinh Công Tráng",
        None,
        "1975-01-01",
        "year",
        province="01",
        ward="00020",
    )
    link = match_to_registry(pd.DataFrame([year_only]), registry_frame(), settings).iloc[0]
    assert link["decision_weight"] == pytest.approx(6.8, abs=0.1)
    assert (link["outcome"], link["candidate_citizen_id"]) == ("potential_match", "079075007777")


def test_a_residence_that_agrees_counts_in_the_decision_weight_in_full(links):
    # the same ward (+10.7) or the same province (+1.7) adds to the decision weight as to Splink's
    for case in ("no_id_unique_name", "mover_same_province"):
        assert links.loc[case, "decision_weight"] == pytest.approx(links.loc[case, "match_weight"])


def test_candidates_no_field_separates_are_many_match_whatever_their_weight(links):
    # two "Ông Văn Bảy" born 1960-06-06, men, in provinces 79 and 48; the record lives in 01:
    # both weigh -10.0 + 8.8 + 14.4 + 1.0 - 4.3 = 9.9, every field at the same level. Below the
    # match weight, the old rule made this a potential_match; no evidence can tell them apart.
    link = links.loc["namesakes_record_moved_elsewhere"]
    assert link["match_weight"] == pytest.approx(9.9, abs=0.1)
    assert link["outcome"] == "many_match" and pd.isna(link["citizen_id"])
    assert link["margin"] == 0 and pd.isna(link["deciding_field"])


def test_a_margin_is_explained_by_the_one_field_that_separates_the_candidates(links):
    # two "Kiều Thị Oanh" born 1962-02-02, both in province 79; the record's ward is the first's:
    # 24.9 (same ward +10.7) against 15.9 (same province +1.7): margin 9.0 >= 6, all of it residence
    link = links.loc["namesakes_told_apart_by_ward"]
    assert (link["outcome"], link["citizen_id"]) == ("match", "079062002001")
    assert link["margin"] == pytest.approx(9.0, abs=0.1)
    assert link["deciding_field"] == "residence"


def test_a_typo_of_a_common_name_weighs_less_than_a_typo_of_a_rare_one(settings):
    # one letter off "Lạc Thị Nhung" (1 citizen) and off "Nguyễn Văn An" (10 citizens), each with
    # the citizen's birth date, sex and ward: the near-name level is adjusted by the name's
    # frequency like the exact one, so the two weights differ by log2(10) = 3.3, nothing else
    records = [
        encounter("typo_of_rare_name", "Lạc Thị Nhunh", None, "1988-08-08", sex="2", ward="26750"),
        encounter("typo_of_common_name", "Nguyễn Văn Ah", None, "1990-03-14", province="30", ward="10002"),
    ]
    links = match_to_registry(pd.DataFrame(records), registry_frame(), settings).set_index("encounter_id")
    assert links.loc["typo_of_rare_name", "candidate_citizen_id"] == "079088003333"
    assert links.loc["typo_of_common_name", "candidate_citizen_id"] == "030090000002"
    gap = links.loc["typo_of_rare_name", "match_weight"] - links.loc["typo_of_common_name", "match_weight"]
    assert gap == pytest.approx(3.32, abs=0.05)


def test_the_review_queue_is_ranked_by_closeness_and_shows_what_separates(tmp_path, settings):
    from transforms.core.context import NightContext

    night = dt.date(2026, 11, 26)
    warehouse = Warehouse(tmp_path / "warehouse")
    staged = warehouse.staging_night("encounters", night) / "facility_code=79001" / "part-0.parquet"
    staged.parent.mkdir(parents=True)
    pd.DataFrame(ENCOUNTERS).assign(night=night).to_parquet(staged)
    registry = tmp_path / "registry.parquet"
    registry_frame().to_parquet(registry)
    reconcile_night(NightContext(night, tmp_path / "extracts", registry, warehouse, "sqlite://"), settings)
    review = pd.read_parquet(warehouse.review(night) / "review_queue.parquet")
    # ties (margin 0) first; each encounter's rows share one rank
    first = review[review["review_rank"] == 1]
    assert set(first["outcome"]) == {"many_match"}
    assert review["review_rank"].is_monotonic_increasing
    bay = review[review["encounter_id"] == "namesakes_record_moved_elsewhere"]
    assert sorted(bay["citizen_id"]) == ["048060001002", "079060001001"]
    # no field separates the two: every compared field is on the "fails to separate" side
    assert all(len(f) == 0 for f in bay["fields_separating"])
    assert {"name", "birth", "sex", "residence"} <= set(bay["fields_not_separating"].iloc[0])


def _night(tmp_path, warehouse, night, rows, registry):
    from transforms.core.context import NightContext

    staged = warehouse.staging_night("encounters", night) / "facility_code=79001" / "part-0.parquet"
    staged.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).assign(night=night).to_parquet(staged)
    return NightContext(night, tmp_path / "extracts", registry, warehouse, "sqlite://")


def test_a_reviewers_decision_is_applied_next_night_audited_and_never_overridden(tmp_path, settings):
    """Night 1: "no_id_year_only" is a potential_match (8.5) and "twin_without_id" a many_match.
    A reviewer links the first to 079088003333 and rejects the second; night 2 re-links both
    pending versions with those decisions. Night 3 receives version 2 of the first encounter
    (still only the birth year: automatically a potential_match again) after the CSV is gone:
    the decision kept in the warehouse still decides it."""
    night1, night2, night3 = dt.date(2026, 11, 25), dt.date(2026, 11, 26), dt.date(2026, 11, 27)
    warehouse = Warehouse(tmp_path / "warehouse")
    registry = tmp_path / "registry.parquet"
    registry_frame().to_parquet(registry)
    cases = {e["encounter_id"]: e for e in ENCOUNTERS}
    ctx1 = _night(tmp_path, warehouse, night1, [cases["no_id_year_only"], cases["twin_without_id"]], registry)
    reconcile_night(ctx1, settings)
    first = pd.read_parquet(warehouse.staging_night("patient_links", night1)).set_index("encounter_id")
    assert first.loc["no_id_year_only", "outcome"] == "potential_match"
    assert first.loc["twin_without_id", "outcome"] == "many_match"
    warehouse.pending.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "facility_code": ["79001", "79001"],
            "encounter_id": ["no_id_year_only", "twin_without_id"],
            "version": [1, 1],
            "night": [night1, night1],
            "reason": ["potential_match", "many_match"],
        }
    ).to_parquet(warehouse.pending)
    decisions = warehouse.root / "review" / "decisions" / "2026-11-25-bs-lan.csv"
    decisions.parent.mkdir(parents=True)
    decisions.write_text(
        "facility_code,encounter_id,decision,citizen_id,reviewer,decided_at\n"
        "79001,no_id_year_only,link,079088003333,bs.lan,2026-11-26T08:15:00\n"
        "79001,twin_without_id,reject,,bs.lan,2026-11-26T08:20:00\n"
        "79001,some_encounter,link,not-an-id,bs.lan,2026-11-26T08:25:00\n",
        encoding="utf-8",
    )

    ctx2 = NightContext_of(tmp_path, warehouse, night2, registry)
    manifest = json.loads(reconcile_night(ctx2, settings).read_text())
    second = pd.read_parquet(warehouse.staging_night("patient_links", night2)).set_index("encounter_id")
    linked = second.loc["no_id_year_only"]
    assert (linked["outcome"], linked["citizen_id"], linked["tier"]) == ("match", "079088003333", "reviewer")
    assert (linked["decided_by"], linked["deciding_field"]) == ("bs.lan", "reviewer")
    assert linked["decided_at"] == pd.Timestamp("2026-11-26 08:15:00")
    rejected = second.loc["twin_without_id"]
    assert (rejected["outcome"], rejected["reason"]) == ("rejected", "not_reconciled")
    assert pd.isna(rejected["citizen_id"])
    # the malformed row is not dropped silently: counted and recorded with its problem
    assert manifest["review_decisions"]["status"] == {"applied": 2, "invalid_citizen_id": 1}
    record = pd.read_parquet(warehouse.run_dir(night2) / "review_decisions.parquet")
    assert sorted(record["status"]) == ["applied", "applied", "invalid_citizen_id"]
    review = pd.read_parquet(warehouse.review(night2) / "review_queue.parquet")
    assert review.empty  # decided: off the worklist

    # night 3: the load published the link (nothing pending); a corrected re-send arrives
    warehouse.pending.unlink()
    decisions.unlink()
    resent = cases["no_id_year_only"] | {"version": 2}
    ctx3 = _night(tmp_path, warehouse, night3, [resent], registry)
    reconcile_night(ctx3, settings)
    third = pd.read_parquet(warehouse.staging_night("patient_links", night3)).set_index("encounter_id")
    assert (third.loc["no_id_year_only", "outcome"], third.loc["no_id_year_only", "citizen_id"]) == (
        "match",
        "079088003333",
    )
    assert third.loc["no_id_year_only", "decided_by"] == "bs.lan"


def test_a_reviewers_decision_outranks_a_later_automatic_match(tmp_path, settings):
    """Night 1 links "mover_same_province" automatically (16.9, the only candidate). A reviewer
    rejects that link; on night 2 a re-send (version 2) would again be matched automatically, and
    on night 3 the reviewer links it to another citizen: each night the reviewer's newest
    decision decides, the automatic match never comes back."""
    nights = [dt.date(2026, 11, 25), dt.date(2026, 11, 26), dt.date(2026, 11, 27)]
    warehouse = Warehouse(tmp_path / "warehouse")
    registry = tmp_path / "registry.parquet"
    registry_frame().to_parquet(registry)
    mover = next(e for e in ENCOUNTERS if e["encounter_id"] == "mover_same_province")
    reconcile_night(_night(tmp_path, warehouse, nights[0], [mover], registry), settings)
    first = pd.read_parquet(warehouse.staging_night("patient_links", nights[0])).iloc[0]
    assert (first["outcome"], first["tier"], first["citizen_id"]) == (
        "match",
        "probabilistic",
        "079075007777",
    )
    folder = warehouse.root / "review" / "decisions"
    folder.mkdir(parents=True)
    (folder / "reject.csv").write_text(
        "facility_code,encounter_id,decision,citizen_id,reviewer,decided_at\n"
        "79001,mover_same_province,reject,,bs.an,2026-11-26T07:00:00\n",
        encoding="utf-8",
    )
    reconcile_night(_night(tmp_path, warehouse, nights[1], [mover | {"version": 2}], registry), settings)
    second = pd.read_parquet(warehouse.staging_night("patient_links", nights[1])).iloc[0]
    assert (second["outcome"], second["tier"], second["decided_by"]) == ("rejected", "reviewer", "bs.an")
    assert pd.isna(second["citizen_id"])
    (folder / "link.csv").write_text(
        "facility_code,encounter_id,decision,citizen_id,reviewer,decided_at\n"
        "79001,mover_same_province,link,079088003333,bs.lan,2026-11-27T07:00:00\n",
        encoding="utf-8",
    )
    reconcile_night(_night(tmp_path, warehouse, nights[2], [mover | {"version": 3}], registry), settings)
    third = pd.read_parquet(warehouse.staging_night("patient_links", nights[2])).iloc[0]
    assert (third["outcome"], third["citizen_id"], third["tier"]) == ("match", "079088003333", "reviewer")
    assert (third["decided_by"], third["deciding_field"]) == ("bs.lan", "reviewer")


def NightContext_of(tmp_path, warehouse, night, registry):
    from transforms.core.context import NightContext

    return NightContext(night, tmp_path / "extracts", registry, warehouse, "sqlite://")


def test_identifiers_pointing_at_two_citizens_link_only_when_a_field_separates_them(links):
    # SO_CCCD names one "Mã Văn Lực", the card the other; name, birth and sex agree with both.
    # The record's ward 26801 is the second's (the first is only in the same province): that
    # field separates them. In ward 26999 (both only the same province) nothing does.
    link = links.loc["ids_of_two_namesakes_ward_of_one"]
    assert (link["outcome"], link["citizen_id"], link["tier"]) == (
        "match",
        "079080003002",
        "social_insurance",
    )
    assert link["deciding_field"] == "residence"
    tie = links.loc["ids_of_two_namesakes_ward_of_neither"]
    assert tie["outcome"] == "many_match" and pd.isna(tie["citizen_id"]) and pd.isna(tie["deciding_field"])


def test_a_rejected_version_comes_back_when_a_newer_decision_links_it(tmp_path, settings):
    """A reviewer rejected "no_id_year_only" (the load keeps it pending as not_reconciled, never
    retried on its own); the next morning they change their mind: the newer decision, a link,
    brings the version back and links it."""
    night1, night2 = dt.date(2026, 11, 25), dt.date(2026, 11, 26)
    warehouse = Warehouse(tmp_path / "warehouse")
    registry = tmp_path / "registry.parquet"
    registry_frame().to_parquet(registry)
    case = next(e for e in ENCOUNTERS if e["encounter_id"] == "no_id_year_only")
    _night(tmp_path, warehouse, night1, [case], registry)
    warehouse.pending.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "facility_code": ["79001"],
            "encounter_id": ["no_id_year_only"],
            "version": [1],
            "night": [night1],
            "reason": ["not_reconciled"],
        }
    ).to_parquet(warehouse.pending)
    decisions = warehouse.root / "review" / "decisions" / "day.csv"
    decisions.parent.mkdir(parents=True)
    decisions.write_text(
        "facility_code,encounter_id,decision,citizen_id,reviewer,decided_at\n"
        "79001,no_id_year_only,reject,,bs.lan,2026-11-25T20:00:00\n"
        "79001,no_id_year_only,link,079088003333,bs.minh,2026-11-26T07:30:00+07:00\n",
        encoding="utf-8",
    )
    manifest = json.loads(
        reconcile_night(NightContext_of(tmp_path, warehouse, night2, registry), settings).read_text()
    )
    links = pd.read_parquet(warehouse.staging_night("patient_links", night2)).set_index("encounter_id")
    # 07:30 in UTC+7 is 00:30 UTC, after 20:00 UTC the day before: the link is the newer one
    assert (links.loc["no_id_year_only", "outcome"], links.loc["no_id_year_only", "decided_by"]) == (
        "match",
        "bs.minh",
    )
    assert manifest["review_decisions"]["status"] == {"applied": 1, "superseded": 1}


def test_the_versioned_model_names_only_columns_the_linkage_tables_have(monkeypatch, caplog, tmp_path):
    """The nightly Linker skips Splink's settings validation (it only logs); this runs it on the
    versioned model and the real linkage tables: no column is missing. A model naming a column the
    tables lack is reported (the check works)."""
    import logging

    import splink

    from transforms.reconcile.model import MODEL_PATH

    real_linker = splink.Linker
    validated = []

    def validating_linker(*args, **kwargs):
        validated.append(True)
        return real_linker(*args, **(kwargs | {"validate_settings": True}))

    monkeypatch.setattr(splink, "Linker", validating_linker)
    with caplog.at_level(logging.WARNING):
        match_to_registry(pd.DataFrame(ENCOUNTERS), registry_frame(), ReconcileSettings())
    assert validated and "SETTINGS VALIDATION" not in caplog.text

    model = json.loads(MODEL_PATH.read_text())
    model["additional_columns_to_retain"] = ["no_such_column"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(model))
    caplog.clear()
    with caplog.at_level(logging.WARNING), pytest.raises(Exception):  # noqa: B017, PT011 (the SQL then fails too)
        match_to_registry(pd.DataFrame(ENCOUNTERS), registry_frame(), ReconcileSettings(model_path=broken))
    assert "no_such_column" in caplog.text
