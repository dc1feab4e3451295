"""Diagnosis and procedure code validity: WHO ICD-10 (Vietnamese edition) and ICD-9-CM shape.

Canonical ICD-10 form: upper case, with the dot ("E11.9"), as WHO and Decision 4469/QĐ-BYT print
it. Facilities send both "E11.9" and "E119"; both are valid and compare equal once canonical.
Dagger and asterisk marks ("A17.0†", "G01*") are stripped before the look-up: they mark the
etiology/manifestation pair, not a different code.

The reference list is the national list `transforms/data/icd10_vn.csv` (its manifest
`icd10_vn.manifest.json` names its sources and version; `scripts/build_icd10_list.py` builds it):
WHO ICD-10 2019 categories ("E11") and subcategories ("E11.9"), chapter XIX's optional fifth
character (fractures 0 closed / 1 open: "S72.00"), the COVID-19 codes WHO added after 2019 that the
Ministry of Health uses (U10-U12), and codes retired by earlier WHO updates that facilities still
send ("D75.2", "N18.8"): those are valid (the diagnosis is real and is shown) and
`is_retired_icd10` lets a check warn the facility. A chapter ("IV") or a block ("E10-E14") is not
a code a diagnosis can carry.
"""

from __future__ import annotations

import csv
import json
import re
from functools import cache, lru_cache

import numpy as np
import pandas as pd

from transforms.core.resources import package_path

NATIONAL_LIST = package_path("transforms.core", "data", "icd10_vn.csv")
NATIONAL_LIST_MANIFEST = NATIONAL_LIST.with_name("icd10_vn.manifest.json")

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


@cache
def national_list() -> dict[str, str]:
    """The national ICD-10 list: canonical code -> status ("valid" | "retired")."""
    with NATIONAL_LIST.open(encoding="utf-8", newline="") as f:
        return {row["code"]: row["status"] for row in csv.DictReader(f)}


@cache
def national_list_version() -> str:
    """The version of the national list, from its manifest (printed with the checks' policy)."""
    return str(json.loads(NATIONAL_LIST_MANIFEST.read_text(encoding="utf-8"))["version"])


@lru_cache(maxsize=65536)
def icd10_status(code: str | None) -> str | None:
    """ "valid", "retired" (a code WHO deleted that still loads, with a warning), or None when the
    code, once canonical, is not on the national list (or is empty, or has not the shape)."""
    canonical = canonical_icd10(code)
    if canonical is None or not _SHAPE.match(canonical):
        return None
    return national_list().get(canonical)


def is_valid_icd10(code: str | None) -> bool:
    """True when the code, once canonical, is on the national list (retired codes included)."""
    return icd10_status(code) is not None


def is_retired_icd10(code: str | None) -> bool:
    """True when the code is one WHO retired (it loads; the facility is warned)."""
    return icd10_status(code) == "retired"


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


# --- the main diagnosis of an encounter: XML1, else XML7 ----------------------------------------------

VERSION_KEY = ["facility_code", "encounter_id", "version"]
# a discharge diagnosis text that starts with its code: "S72.00 - Gãy kín cổ xương đùi", "I10; ..."
_LEADING_CODE = re.compile(r"^\s*([A-Za-z][0-9]{2}(?:\.?[0-9A-Za-z]{1,2})?)[†*+!]?(?![0-9A-Za-z.])")


def leading_icd10(text: str | None) -> str | None:
    """The code a free-text diagnosis starts with, canonical, when it is on the national list."""
    if text is None or not isinstance(text, str):
        return None
    match = _LEADING_CODE.match(text)
    if match is None or not is_valid_icd10(match.group(1)):
        return None
    return canonical_icd10(match.group(1))


def paper_main_icd10(papers: pd.DataFrame) -> pd.Series:
    """Per XML7 row: the discharge diagnosis code it carries, canonical (its MA_BENH_CHINH when
    valid, else the code its CHAN_DOAN_RV starts with), or None."""
    codes = papers["main_icd10"] if "main_icd10" in papers.columns else pd.Series(None, index=papers.index)
    texts = (
        papers["discharge_diagnosis"]
        if "discharge_diagnosis" in papers.columns
        else pd.Series(None, index=papers.index)
    )
    out = [
        canonical_icd10(c) if isinstance(c, str) and is_valid_icd10(c) else leading_icd10(t)
        for c, t in zip(codes.to_numpy(), texts.to_numpy(), strict=True)
    ]
    return pd.Series(out, index=papers.index, dtype="object")


def resolve_main_icd10(encounters: pd.DataFrame, papers: pd.DataFrame | None) -> pd.DataFrame:
    """Per encounter row (same index): the main diagnosis the book shows and where it comes from.

    XML1's MA_BENH_CHINH when it is on the national list (source "xml1", the code as sent);
    otherwise, when XML1's is empty or malformed, the discharge paper (XML7) of the same encounter
    version when it carries a valid code (source "xml7", canonical), with XML7's CHAN_DOAN_RV as
    the text when XML1 has none; otherwise XML1's code as sent and no source (a blocking check
    keeps such an encounter out). Columns: main_icd10, main_icd10_source, paper_diagnosis.
    """
    raw = (
        encounters["main_icd10"]
        if "main_icd10" in encounters.columns
        else pd.Series(None, index=encounters.index)
    )
    valid = ~raw.isna() & ~invalid_icd10_mask(raw)  # one look-up per distinct code
    out = pd.DataFrame(
        {
            "main_icd10": raw.astype("object").where(raw.notna(), None),
            "main_icd10_source": pd.Series(
                np.where(valid, "xml1", None), index=encounters.index, dtype="object"
            ),
            "paper_diagnosis": pd.Series(None, index=encounters.index, dtype="object"),
        }
    )
    if papers is None or papers.empty or bool(valid.all()):
        return out
    paper = papers[[c for c in VERSION_KEY if c in papers.columns]].copy()
    paper["_code"] = paper_main_icd10(papers).to_numpy()
    paper["_text"] = (
        papers["discharge_diagnosis"].to_numpy() if "discharge_diagnosis" in papers.columns else None
    )
    paper = paper[paper["_code"].notna()].drop_duplicates(VERSION_KEY)
    if paper.empty:
        return out
    joined = encounters[VERSION_KEY].merge(paper, on=VERSION_KEY, how="left")
    recovered = (~valid.to_numpy()) & joined["_code"].notna().to_numpy()
    out.loc[recovered, "main_icd10"] = joined["_code"].to_numpy()[recovered]
    out.loc[recovered, "main_icd10_source"] = "xml7"
    out.loc[recovered, "paper_diagnosis"] = joined["_text"].to_numpy()[recovered]
    return out
