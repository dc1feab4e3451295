"""ICD-10 validity (WHO list + Vietnamese additions) and ICD-9-CM procedure shape."""

from __future__ import annotations

import pandas as pd
import pytest

from transforms.icd10 import (
    canonical_icd10,
    invalid_codes_in_lists,
    invalid_icd10_mask,
    is_icd9_procedure_shape,
    is_valid_icd10,
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
