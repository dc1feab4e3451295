"""The generator's identity noise (issue #18): the "hard" profile's registry and no-ID patients,
and the truth of records no evidence can tell apart from another citizen."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest

from transforms.synth.generate import generate_night
from transforms.synth.identity_truth import non_separable_records


def _citizen(cid, name, birth, sex, province, ward):
    return {
        "citizen_id": cid,
        "full_name": name,
        "birth_date": birth,
        "sex": sex,
        "province_code": province,
        "ward_code": ward,
    }


def test_a_record_another_citizen_fits_as_well_is_non_separable_and_better_a_closer_namesake(tmp_path):
    # A and B: same name, birth date and sex, living in 79/26734 and 48/20194; C another woman
    pd.DataFrame(
        [
            _citizen("079080000001", "Nguyễn Văn An", "19800101", "1", "79", "26734"),
            _citizen("048080000002", "Nguyễn Văn An", "19800101", "1", "48", "20194"),
            _citizen("079090000003", "Trần Thị Bé", "19900202", "2", "79", "26734"),
            # D: a third namesake, in a province none of the records names
            _citizen("033080000004", "Nguyễn Văn An", "19800101", "1", "33", "11111"),
        ]
    ).to_parquet(tmp_path / "part-0.parquet")
    shown = dict(name="Nguyễn Văn An", birth="19800101", sex="1")
    records = [
        # 1: A moved to province 01: A, B and D are all "another province" -> nothing separates them
        {"key": 1, "citizen_id": "079080000001", **shown, "province_code": "01", "ward_code": "00020"},
        # 2: A at home: same ward for A, another province for B -> separable
        {"key": 2, "citizen_id": "079080000001", **shown, "province_code": "79", "ward_code": "26734"},
        # 3: C with only her birth year: nobody else of that year, sex and name -> separable
        {
            "key": 3,
            "citizen_id": "079090000003",
            "name": "TRAN THI BE",
            "birth": "19900000",
            "sex": "2",
            "province_code": "79",
            "ward_code": "26734",
        },
        # 4: A moved into B's very ward: B fits better (same ward) although D ties with A (another
        # province): the evidence points at B
        {"key": 4, "citizen_id": "079080000001", **shown, "province_code": "48", "ward_code": "20194"},
    ]
    assert non_separable_records(tmp_path, records) == {1: "non_separable", 4: "closer_namesake"}


@pytest.fixture(scope="module")
def hard_night(tmp_path_factory):
    out = tmp_path_factory.mktemp("hard")
    generate_night(
        out,
        dt.date(2026, 11, 26),
        facilities=2,
        encounters=1500,
        citizens=20000,
        seed=7,
        identity_profile="hard",
    )
    return out


def test_the_hard_registry_has_about_30_percent_namesakes(hard_night):
    ((share,),) = duckdb.sql(
        f"""select avg((n > 1)::int) from (
              select count(*) over (partition by full_name, birth_date, sex) as n
              from read_parquet('{hard_night}/registry/*.parquet'))"""
    ).fetchall()
    assert 0.25 <= share <= 0.35


def test_the_hard_night_has_no_id_patients_with_every_slip_and_movers(hard_night):
    truth = pd.read_parquet(hard_night / "truth" / "encounters.parquet")
    no_id = truth[truth["identity_noise"].apply(lambda n: "self_pay_no_id" in list(n))]
    # 10% of the encounters (1,500 -> ~150), each slip at least once
    assert 0.07 <= len(no_id) / len(truth) <= 0.14
    kinds = pd.Series([k for n in no_id["identity_noise"] for k in n]).value_counts()
    for kind in (
        "moved_ward",
        "birth_year_only",
        "dropped_middle_name",
        "name_typo",
        "dob_day_month_swapped",
    ):
        assert kinds.get(kind, 0) > 0, kind
    movers = kinds.get("moved_ward", 0) + kinds.get("moved_province", 0)
    assert 0.1 <= movers / len(no_id) <= 0.3  # about 20%
    # the records no evidence separates are expected to end many_match
    tied = truth[truth["identity_noise"].apply(lambda n: "non_separable" in list(n))]
    assert (tied["expected_reason"] == "many_match").all()
    # those another citizen fits better are left to a person
    closer = truth[truth["identity_noise"].apply(lambda n: "closer_namesake" in list(n))]
    assert (closer["expected_reason"] == "potential_match").all()
