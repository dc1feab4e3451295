"""The identity macros (transforms/reconcile/identity.py) on tiny values, run in a real DuckDB."""

from __future__ import annotations

import re
import unicodedata

import duckdb
import pytest

from transforms.reconcile.identity import DIFFERENCE_CODES, identity_macros_sql


@pytest.fixture(scope="module")
def con():
    con = duckdb.connect()
    for statement in identity_macros_sql():
        con.execute(statement)
    yield con
    con.close()


def call(con, expression: str, *params):
    return con.execute(f"select {expression}", list(params)).fetchone()[0]


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


@pytest.mark.parametrize(
    "raw",
    [
        "Đặng Văn Đức",
        "ĐẶNG VĂN ĐỨC",
        "Dang Van Duc",
        "  dang   van\tđuc ",
        nfd("Đặng Văn Đức"),
        "Đặng-Văn Đức.",
    ],
)
def test_every_spelling_of_a_name_folds_to_the_same_key(con, raw):
    assert call(con, "hb_fold_name(?)", raw) == "dang van duc"


def test_horned_vowels_fold_to_their_base_letter(con):
    # ư, ơ carry a horn (U+031B), a combining mark once decomposed
    assert call(con, "hb_fold_name(?)", "Trương Thị Ơn") == "truong thi on"


def test_an_empty_name_folds_to_null(con):
    assert call(con, "hb_fold_name(?)", " . ") is None


@pytest.mark.parametrize(
    ("raw", "kind", "value"),
    [
        ("079090001234", "citizen_id", "079090001234"),
        (" 079 090.001-234 ", "citizen_id", "079090001234"),
        ("7909000123", "social_insurance", "7909000123"),
        ("025123456", "old_id", "025123456"),
        ("B1234567", "other", "B1234567"),
        ("", None, None),
        (None, None, None),
    ],
)
def test_so_cccd_is_classified_by_its_shape(con, raw, kind, value):
    assert call(con, "hb_identifier_kind(?)", raw) == kind
    assert call(con, "hb_identifier_of_kind(?, ?)", raw, kind or "citizen_id") == value


@pytest.mark.parametrize(
    ("card", "expected"),
    [("DN4797909000123", "7909000123"), ("7909000123", "7909000123"), ("DN479790900012X", None)],
)
def test_the_social_insurance_number_is_the_last_ten_digits_of_the_card(con, card, expected):
    assert call(con, "hb_social_insurance_from_card(?)", card) == expected


@pytest.mark.parametrize(
    ("precision", "expected"), [("day", "19900314"), ("month", "19900300"), ("year", "19900000")]
)
def test_a_staged_birth_date_becomes_the_registry_form_with_zeros_for_the_unknown(con, precision, expected):
    # ingest sets an unknown day/month to 01 and says so in the precision
    assert call(con, "hb_birth_ymd(date '1990-03-14', ?)", precision) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("19900314", "19900314", "same"),
        ("19900503", "19900305", "dob_day_month_swapped"),
        ("19900000", "19900314", "birth_date_partial"),
        ("19900300", "19900314", "birth_date_partial"),
        ("19900400", "19900314", None),
        ("19910314", "19900314", None),
        (None, "19900314", None),
    ],
)
def test_birth_dates_agree_as_far_as_both_are_known(con, a, b, expected):
    assert call(con, "hb_birth_agreement(?, ?)", a, b) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("nguyen van an", "nguyen van an", "same"),
        ("nguyen an", "nguyen van an", "dropped_middle_name"),
        ("nguyen van anh", "nguyen van an", "name_typo"),
        ("tran thi binh", "nguyen van an", None),
        ("le an", "le van", None),  # 2 edits but too short to call it a typo
    ],
)
def test_folded_names_agree_despite_a_dropped_middle_name_or_a_typo(con, a, b, expected):
    assert call(con, "hb_name_agreement(?, ?)", a, b) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Nguyễn Văn An", None),
        ("NGUYỄN VĂN AN", "name_upper"),
        ("Nguyen Van An", "name_unaccented"),
        (nfd("Nguyễn Văn An"), "name_nfd"),
        ("Nguyễn An", "dropped_middle_name"),
        ("Nguyễn Văn Anh", "name_typo"),
        ("Trần Thị Bình", "name_differs"),
    ],
)
def test_a_name_difference_is_named(con, raw, expected):
    assert call(con, "hb_name_difference(?, 'Nguyễn Văn An')", raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("079090001234", None),
        ("079090001284", "id_one_digit_typo"),
        ("079090004321", "citizen_id_differs"),
        ("7909000123", "social_insurance_in_citizen_id"),
        ("025123456", "old_id_in_citizen_id"),
        (None, "citizen_id_missing"),
    ],
)
def test_an_identifier_difference_is_named(con, raw, expected):
    assert call(con, "hb_id_difference(?, '079090001234')", raw) == expected


def test_every_difference_a_macro_can_name_is_documented():
    literals = set(re.findall(r"'([a-z_]+)'", " ".join(identity_macros_sql())))
    not_differences = {
        "citizen_id",
        "social_insurance",
        "old_id",
        "other",
        "same",
        "day",
        "month",
        "year",
        "g",
        "d",
    }
    assert literals - not_differences <= set(DIFFERENCE_CODES)
