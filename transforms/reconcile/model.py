"""The linkage model of the probabilistic tier: its Splink structure (comparisons, levels, blocking
rules) and the versioned, trained file the nightly run loads (never retrains).

The trainer (transforms/synth/train_linkage.py, outside the runtime path) imports this module; the
reconcile stage never imports the trainer. Comparison columns are the standardized ones of
sql/reconcile/linkage_*.sql, the same on both sides. Levels are plain SQL over those columns (no
project macros), so the JSON stays readable and portable to Splink's Spark backend.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transforms.core.resources import package_path

MODEL_PATH = package_path("transforms.reconcile", "linkage_model.json")
MODEL_VERSION = "2026-12-07.1"  # near-name levels term-frequency adjusted (issue #18); m, u unchanged


# A near miss of a common name is weak evidence too: many citizens' names are a typo or a dropped
# middle name away from "nguyen thi lan", few from a rare one. Splink adjusts these levels by the
# more frequent of the two names (log2 of the exact level's u over that frequency); the floor at
# the exact level's u (written by name_tf_floor()) means the adjustment only ever lowers a
# level's weight, for names more common than the average: a rare name gains nothing. On the hard
# 100k night this removed the 2 links among non-separable candidates and 3 of 8 wrong links (a
# typo neighbour in the record's ward of a common name), for 0.5% of no-ID recall
# (benchmarks/results/reconcile_hard_100k_vs_1000k.md).
NEAR_NAME_TF = {"tf_adjustment_column": "name_fold", "tf_adjustment_weight": 1.0}


def name_tf_floor(model: dict[str, Any]) -> dict[str, Any]:
    """The model with each term-frequency-adjusted name level floored at the exact level's u
    (Splink's tf_minimum_u_value), so a frequency adjustment never raises a weight."""
    for comparison in model["comparisons"]:
        levels = comparison["comparison_levels"]
        exact = [
            lv for lv in levels if lv.get("label_for_charts") == "exact" and lv.get("tf_adjustment_column")
        ]
        for level in levels:
            if exact and level.get("tf_adjustment_column") and level is not exact[0]:
                level["tf_minimum_u_value"] = exact[0]["u_probability"]
    return model


def _level(sql: str, label: str, m: float, u: float, **extra: Any) -> dict[str, Any]:
    return {"sql_condition": sql, "label_for_charts": label, "m_probability": m, "u_probability": u} | extra


def _null(sql: str) -> dict[str, Any]:
    return {"sql_condition": sql, "label_for_charts": "null", "is_null_level": True}


def _else(m: float, u: float) -> dict[str, Any]:
    return {"sql_condition": "ELSE", "label_for_charts": "all other", "m_probability": m, "u_probability": u}


def linkage_settings(probability_two_random_records_match: float = 1e-6) -> dict[str, Any]:
    """The Splink settings of the probabilistic tier with prior m/u values (before training).

    Six comparisons: name (term-frequency adjusted on the exact level), birth date (partial dates
    and swapped day/month as their own levels), sex, citizen ID (exact or one digit off),
    social-insurance number, residence (ward, else province).
    """
    name_tokens_contained = (
        "(list_has_all(name_tokens_l, name_tokens_r) or list_has_all(name_tokens_r, name_tokens_l))"
    )
    birth_known_l = "birth_ymd_l not like '%00'"
    comparisons = [
        {
            "output_column_name": "name",
            "comparison_description": "folded full name",
            "comparison_levels": [
                _null("name_fold_l is null or name_fold_r is null"),
                _level(
                    "name_fold_l = name_fold_r",
                    "exact",
                    0.85,
                    0.0005,
                    tf_adjustment_column="name_fold",
                    tf_adjustment_weight=1.0,
                ),
                _level(
                    f"family_name_l = family_name_r and given_name_l = given_name_r and {name_tokens_contained}",
                    "middle name dropped or added",
                    0.04,
                    0.0002,
                    **NEAR_NAME_TF,
                ),
                _level(
                    "damerau_levenshtein(name_fold_l, name_fold_r) <= 2",
                    "typo (<= 2 edits)",
                    0.06,
                    0.001,
                    **NEAR_NAME_TF,
                ),
                _level(
                    "jaro_winkler_similarity(name_fold_l, name_fold_r) >= 0.9",
                    "similar (jaro-winkler >= 0.9)",
                    0.02,
                    0.01,
                    **NEAR_NAME_TF,
                ),
                _else(0.03, 0.9883),
            ],
        },
        {
            "output_column_name": "birth",
            "comparison_description": "birth date yyyymmdd, 00 for unknown month/day",
            "comparison_levels": [
                _null("birth_ymd_l is null or birth_ymd_r is null"),
                _level(f"birth_ymd_l = birth_ymd_r and {birth_known_l}", "exact", 0.88, 0.00004),
                _level(
                    "left(birth_ymd_l, 4) = left(birth_ymd_r, 4)"
                    " and substr(birth_ymd_l, 5, 2) = substr(birth_ymd_r, 7, 2)"
                    " and substr(birth_ymd_l, 7, 2) = substr(birth_ymd_r, 5, 2)"
                    " and substr(birth_ymd_l, 5, 2) <> '00' and substr(birth_ymd_l, 7, 2) <> '00'",
                    "day and month swapped",
                    0.03,
                    0.00004,
                ),
                _level(
                    "left(birth_ymd_l, 4) = left(birth_ymd_r, 4)"
                    " and (substr(birth_ymd_l, 5, 2) = substr(birth_ymd_r, 5, 2)"
                    " or '00' in (substr(birth_ymd_l, 5, 2), substr(birth_ymd_r, 5, 2)))"
                    " and (substr(birth_ymd_l, 7, 2) = substr(birth_ymd_r, 7, 2)"
                    " or '00' in (substr(birth_ymd_l, 7, 2), substr(birth_ymd_r, 7, 2)))",
                    "agree as far as known (partial date)",
                    0.05,
                    0.0008,
                ),
                _level("left(birth_ymd_l, 4) = left(birth_ymd_r, 4)", "same year", 0.02, 0.0125),
                _else(0.02, 0.98),
            ],
        },
        {
            "output_column_name": "sex",
            "comparison_levels": [
                _null("sex_l is null or sex_r is null"),
                _level("sex_l = sex_r", "exact", 0.99, 0.5),
                _else(0.01, 0.5),
            ],
        },
        {
            "output_column_name": "citizen_id",
            "comparison_levels": [
                _null("citizen_id_l is null or citizen_id_r is null"),
                _level("citizen_id_l = citizen_id_r", "exact", 0.9, 1e-7),
                _level("hamming(citizen_id_l, citizen_id_r) = 1", "one digit off", 0.09, 1e-5),
                _else(0.01, 0.99999),
            ],
        },
        {
            "output_column_name": "social_insurance",
            "comparison_levels": [
                _null("social_insurance_number_l is null or social_insurance_number_r is null"),
                _level("social_insurance_number_l = social_insurance_number_r", "exact", 0.95, 1e-7),
                _else(0.05, 0.9999999),
            ],
        },
        {
            "output_column_name": "residence",
            "comparison_levels": [
                _null("province_code_l is null or province_code_r is null"),
                _level("ward_code_l = ward_code_r", "same ward", 0.85, 0.0005),
                _level("province_code_l = province_code_r", "same province", 0.1, 0.03),
                _else(0.05, 0.9695),
            ],
        },
    ]
    # Each rule survives one slip of the record, and none requires the residence to agree (a
    # patient who moved is still compared): a name typo or a dropped middle name keeps the birth
    # date and an outer token, a swapped or partial birth date keeps the year and the name, a
    # typo with a partial date keeps the family name, the year, the sex and the given name's
    # first letter. Birth date and sex alone would be ~140 citizens a block in 10 million.
    blocking_rules = [
        "l.name_fold = r.name_fold and l.birth_year = r.birth_year",
        "l.birth_ymd = r.birth_ymd and l.given_name = r.given_name",
        "l.birth_ymd = r.birth_ymd and l.family_name = r.family_name",
        "l.family_name = r.family_name and l.given_name = r.given_name and l.birth_year = r.birth_year",
        "l.family_name = r.family_name and l.birth_year = r.birth_year and l.sex = r.sex"
        " and left(l.given_name, 1) = left(r.given_name, 1)",
        "l.citizen_id = r.citizen_id",
        "l.social_insurance_number = r.social_insurance_number",
    ]
    return name_tf_floor(
        {
            "link_type": "link_only",
            "unique_id_column_name": "unique_id",
            "source_dataset_column_name": "source_dataset",
            "probability_two_random_records_match": probability_two_random_records_match,
            "retain_matching_columns": False,
            "retain_intermediate_calculation_columns": True,
            "comparisons": comparisons,
            "blocking_rules_to_generate_predictions": [
                {"blocking_rule": rule, "sql_dialect": "duckdb"} for rule in blocking_rules
            ],
            "sql_dialect": "duckdb",
            "linker_uid": "healthbook",
        }
    )


def load_model(path: Path = MODEL_PATH) -> dict[str, Any]:
    """The versioned model (a Splink settings dictionary), or the priors when none is trained yet."""
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return linkage_settings()
