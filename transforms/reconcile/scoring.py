"""Tier 4 of the reconcile stage: Splink scores the blocked candidate pairs, and the SQL that
turns the scored pairs into one decision per encounter (best, runner-up, margin, the field that
explains it, ties) and into the fields the review queue shows side by side."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import duckdb

from transforms.reconcile.database import read_sql

if TYPE_CHECKING:
    from transforms.reconcile.stage import ReconcileSettings


def probabilistic_pairs_sql(predictions_table: str, comparisons: list[str], tf_comparisons: list[str]) -> str:
    """Splink's scored pairs in the project's shape, one row per (encounter, candidate citizen):
    the match weight, each comparison's contribution (`weight_<comparison>`, Splink's partial match
    weight, log2 of the Bayes factor, plus its term-frequency adjustment) and the candidate's rank for the encounter."""
    weights = []
    for name in comparisons:
        adjustment = f" + coalesce(mw_tf_adj_{name}, 0)" if name in tf_comparisons else ""
        weights.append(f"mw_{name}{adjustment} as weight_{name}")
        # the comparison level (Splink's gamma: higher = closer, -1 = a side is null): what
        # says whether a field separates two candidates
        weights.append(f"gamma_{name} as level_{name}")
    return f"""
create or replace table probabilistic_pairs as
with oriented as (
    select
        cast(case when source_dataset_l = 'encounters' then unique_id_l else unique_id_r end as bigint) as enc_key,
        case when source_dataset_l = 'encounters' then unique_id_r else unique_id_l end as citizen_id,
        match_weight,
        match_probability,
        {", ".join(weights)}
    from {predictions_table}
)
select
    *,
    row_number() over (partition by enc_key order by match_weight desc, citizen_id) as candidate_rank
from oriented
"""


def empty_probabilistic_pairs_sql(comparisons: list[str]) -> str:
    """An empty probabilistic_pairs table with the columns probabilistic_pairs_sql() gives."""
    weights = "".join(
        f", null::double as weight_{name}, null::integer as level_{name}" for name in comparisons
    )
    return f"""
create or replace table probabilistic_pairs as
select null::bigint as enc_key, null::varchar as citizen_id, null::double as match_weight,
       null::double as match_probability{weights}, null::bigint as candidate_rank
where false
"""


# Comparisons that are weak evidence (issue #18): where the record and the best candidate
# disagree, the disagreement still ranks the candidates and may explain a margin, but it does not
# count against the thresholds (the decision weight). A patient who moved to another province keeps
# the weight of the name, birth date and sex that agree; a residence that agrees still adds.
WEAK_EVIDENCE = ("residence",)


def probabilistic_decisions_sql(comparisons: list[str]) -> str:
    """One row per encounter with probabilistic candidates: the best and the runner-up, the
    margin between them, the field that explains it and how many candidates tie with the best;
    `decision_weight`, the best's weight with a disagreeing weak-evidence field (WEAK_EVIDENCE)
    counted as none: the weight the match and review thresholds apply to.

    A field separates the best from the runner-up when the best agrees with the record at a
    closer level (Splink's comparison level) than the runner-up does; among those, the deciding
    field is the one whose weight differs most. Candidates whose every field agrees at the same
    level as the best's (`tied`) cannot be told apart by any evidence on the record."""
    gaps = ", ".join(
        f"case when t.level_{n} > s.level_{n} then {{'gap': t.weight_{n} - s.weight_{n}, 'field': '{n}'}} end"
        for n in comparisons
    )
    same_levels = " and ".join(f"p.level_{n} is not distinct from t.level_{n}" for n in comparisons)
    relief = "".join(f" - least(coalesce(t.weight_{n}, 0), 0)" for n in comparisons if n in WEAK_EVIDENCE)
    return f"""
create or replace table probabilistic_decisions as
with top as (
    select * from probabilistic_pairs where candidate_rank = 1
),

runner_up as (
    select * from probabilistic_pairs where candidate_rank = 2
),

ties as (
    select t.enc_key, count(*) as tied
    from top as t
    inner join probabilistic_pairs as p on p.enc_key = t.enc_key and p.candidate_rank > 1 and {same_levels}
    group by t.enc_key
)

select
    t.enc_key,
    t.citizen_id as top_citizen_id,
    t.match_weight as top_weight,
    t.match_weight{relief} as decision_weight,
    s.match_weight as runner_up_weight,
    t.match_weight - s.match_weight as margin,
    case
        when s.enc_key is null then 'only_candidate'
        else list_reverse_sort(list_filter([{gaps}], lambda x: x is not null))[1].field
    end as deciding_field,
    coalesce(k.tied, 0) as tied
from top as t
left join runner_up as s on s.enc_key = t.enc_key
left join ties as k on k.enc_key = t.enc_key
"""


def candidate_fields_sql(comparisons: list[str]) -> str:
    """For each probabilistic candidate, the fields that separate it from the other contender
    (the runner-up for the best, the best for the others) and the fields that fail to: the
    review queue shows them side by side (table candidate_fields)."""

    def fields(test: str) -> str:
        items = ", ".join(f"case when p.level_{n} {test} o.level_{n} then '{n}' end" for n in comparisons)
        return f"case when o.enc_key is null then []::varchar[] else list_filter([{items}], lambda x: x is not null) end"

    return f"""
create or replace table candidate_fields as
select
    p.enc_key,
    p.citizen_id,
    {fields("is distinct from")} as fields_separating,
    {fields("is not distinct from")} as fields_not_separating
from probabilistic_pairs as p
left join probabilistic_pairs as o
    on o.enc_key = p.enc_key and o.candidate_rank = case when p.candidate_rank = 1 then 2 else 1 end
where p.candidate_rank <= $max_candidates
"""


def registry_candidates_sql(blocking_rules: list[str]) -> str:
    """The citizens that share at least one blocking key with a pending encounter: the only ones
    Splink can pair, so the only ones it needs to see (a few percent of a national registry).
    Blocking rules are the model's own SQL conditions over aliases l (encounter) and r (citizen)."""
    selects = "\n    union\n".join(
        f"    select r.unique_id from linkage_registry as r semi join linkage_encounters as l on {rule}"
        for rule in blocking_rules
    )
    return f"""
create or replace table linkage_registry_candidates as
with candidate_ids as (
{selects}
)
select * from linkage_registry
where unique_id in (select unique_id from candidate_ids)
"""


def blocking_rules(model: dict[str, Any]) -> list[str]:
    return [
        rule["blocking_rule"] if isinstance(rule, dict) else rule
        for rule in model["blocking_rules_to_generate_predictions"]
    ]


def comparison_names(model: dict[str, Any]) -> tuple[list[str], list[str]]:
    names, tf_names = [], []
    for comparison in model["comparisons"]:
        names.append(comparison["output_column_name"])
        if any(level.get("tf_adjustment_column") for level in comparison["comparison_levels"]):
            tf_names.append(comparison["output_column_name"])
    return names, tf_names


def score_candidates(
    con: duckdb.DuckDBPyConnection, model: dict[str, Any], settings: ReconcileSettings
) -> None:
    """Tier 4: Splink scores the blocked candidate pairs of the encounters no identifier settled
    against the registry (name frequencies, table name_frequencies of step 1, and prior odds from
    the whole registry, pairs only with the citizens that share a blocking key); writes table
    probabilistic_pairs."""
    comparisons, tf_comparisons = comparison_names(model)
    con.execute(read_sql("linkage_encounters"))
    con.execute(read_sql("linkage_registry"))
    (pending,) = con.execute("select count(*) from linkage_encounters").fetchall()[0]
    if pending == 0:
        con.execute(empty_probabilistic_pairs_sql(comparisons))
        return
    con.execute(registry_candidates_sql(blocking_rules(model)))

    from splink import DuckDBAPI, Linker  # imported here: heavy, and only this tier needs it

    # A patient is at most one of the registry's citizens: the prior odds of a pair are 1 in the
    # registry's size, tonight's, not the training night's. Names' term frequencies scale the
    # same way, so a name shared by k citizens weighs the same in any registry, while birth date
    # and residence weigh less in a larger one, as they should (more people share them).
    (registry_rows,) = con.execute("select count(*) from registry_identities").fetchall()[0]
    # retain_matching_columns: Splink 5 keeps each comparison's level (gamma_*) in the
    # predictions only with it, and the levels say which field separates two candidates
    model = model | {
        "probability_two_random_records_match": 1 / max(registry_rows, 2),
        "retain_matching_columns": True,
    }
    db_api = DuckDBAPI(connection=con)
    encounters = db_api.register("linkage_encounters", table_name="encounters")
    registry = db_api.register("linkage_registry_candidates", table_name="registry")
    # validate_settings=False: Splink's validation only logs columns the model names and the tables
    # lack, by parsing every level's SQL (a quarter of a second a night); the versioned model is
    # validated once, by test_the_versioned_model_names_only_columns_the_linkage_tables_have
    linker = Linker([encounters, registry], model, log_level=logging.WARNING, validate_settings=False)
    frequencies = db_api.register("name_frequencies", table_name="tf_name_fold_registry")
    linker.table_management.register_term_frequency_lookup(frequencies, "name_fold")
    predictions = linker.inference.predict(threshold_match_weight=settings.floor_weight, warning_mode="never")
    con.execute(probabilistic_pairs_sql(predictions.physical_name, comparisons, tf_comparisons))
    predictions.drop_table_from_database_and_remove_from_cache()
