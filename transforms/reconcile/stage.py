"""Reconcile stage: link every encounter version's patient to exactly one citizen, or say why not.

Set-based in DuckDB over the night's staged XML1 rows and the registry snapshot (read once):

  1. standardize both sides with the same rules (transforms/reconcile/identity.py macros)
  2. tiers 1-3: exact citizen ID, social-insurance number (SO_CCCD or card), old ID card,
     each confirmed by name, birth date and sex agreeing (known noise tolerated); when the
     record's identifiers point at several agreeing citizens, one links only if a field
     separates it from the others (it agrees more closely on it, less closely on none)
  3. tier 4: Splink (Fellegi-Sunter) over blocked candidates with the versioned model
     (transforms/linkage_model.json), a name's weight adjusted by its frequency in the registry;
     the residence is a comparison (same ward / same province / other), never a blocking key
     nor a veto, so a patient who moved is still found
  4. decide: candidates that no field separates (every comparison at the same level) are
     many_match; a probabilistic match needs a weight above the threshold AND a margin over the
     runner-up that a field explains (deciding_field); otherwise potential_match or no_match
  5. reviewers' decisions (review/decisions/*.csv) replace the automatic outcome of the
     encounters they name, on every later night (README "Review decisions").

Only `match` loads. The fixed SQL of every step is in sql/reconcile/, in the order above.

Besides tonight's versions, the night re-links the versions of earlier nights still pending for
their patient's identity (`retry_versions`: no_match, potential_match, many_match) against
tonight's registry: a citizen registered or corrected since is then found, and the load, which
retries every pending version with its newest link, publishes it. Their links are written with
tonight's; the manifest counts them apart (`retried`); the review queue lists them again while
they still need a person.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd
import pyarrow as pa

from transforms.core import csv_safe, parquet_io
from transforms.reconcile.identity import identity_macros_sql
from transforms.synth.train_linkage import MODEL_PATH, load_model

if TYPE_CHECKING:
    from transforms.core.context import NightContext

SQL_DIR = Path(__file__).resolve().parents[2] / "sql" / "reconcile"

# `rejected`: a reviewer said no candidate is the patient (review/decisions/); ledger reason
# not_reconciled, and the version is not retried
OUTCOMES = ("match", "potential_match", "no_match", "many_match", "rejected")
TIERS = ("citizen_id", "social_insurance", "old_id", "probabilistic", "reviewer")
# ledger reason of every outcome that does not load (transforms/core/reasons.py)
OUTCOME_REASONS = {
    "no_match": "patient_not_in_registry",
    "many_match": "many_match",
    "potential_match": "potential_match",
}

# What the night records of the versions it re-links (runs/<D>/reconcile_retry.parquet).
RETRY_COLUMNS = ("facility_code", "encounter_id", "version", "night")

# The staged XML1 columns reconciliation reads (transforms/core/schema.py ENCOUNTERS + lineage).
ENCOUNTER_COLUMNS = (
    "facility_code",
    "encounter_id",
    "version",
    "patient_name",
    "citizen_id",
    "birth_date",
    "birth_date_precision",
    "sex_code",
    "insurance_card",
    "province_code",
    "ward_code",
)
REGISTRY_COLUMNS = (
    "citizen_id",
    "old_id_number",
    "social_insurance_number",
    "full_name",
    "birth_date",
    "sex",
    "province_code",
    "ward_code",
)
LINK_COLUMNS = (
    "facility_code",
    "encounter_id",
    "version",
    "outcome",
    "citizen_id",
    "tier",
    "match_weight",
    "margin",
    "differences",
    "candidate_citizen_id",
    "reason",
    # the field that explains the margin over the runner-up (a comparison of the model, or the
    # identifier when one citizen alone agrees; "only_candidate" when no runner-up; "reviewer")
    "deciding_field",
    # a reviewer's decision (review/decisions/*.csv): who and when; null for automatic links
    "decided_by",
    "decided_at",
)


@dataclass(frozen=True)
class ReconcileSettings:
    """Knobs of one reconciliation run; the defaults are the calibrated production values.

    Weights are Splink match weights (log2 of the odds, prior included). The margin is over the
    runner-up candidate: two citizens closer than that are never told apart automatically.
    """

    model_path: Path = MODEL_PATH
    # 6 = odds of 64 to 1 against a chance lookalike in the registry; margin 6 = the best candidate
    # 64 times likelier than the next, and explained by a field where only the best agrees (a
    # namesake told apart by the province alone, 5.7, is not enough: a mover into that province
    # would be linked to the namesake). Chosen on the hard night (issue #18,
    # benchmarks/results/reconcile_hard_20k_vs_1000k.md): 10 missed most patients who moved
    # province; below 6 the chance of linking an absent patient to a lookalike grows as 2^-weight.
    match_weight: float = 6.0
    review_weight: float = 4.0
    margin: float = 6.0
    # predictions below this weight are not kept (they can be neither best nor runner-up that matters)
    floor_weight: float = -10.0
    review_candidates: int = 3
    # 3GB: at 1M encounters against a 10M registry DuckDB spills and peaks at ~3.1 GB RSS in 33 s,
    # against 5.1 GB and 54 s with 8GB (benchmarks/results/reconcile_scale_1000k_vs_10000k_mem3GB.md)
    memory_limit: str = "3GB"
    threads: int = 2
    temp_directory: Path | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> ReconcileSettings:
        """The defaults, with DuckDB's sizing overridden by HEALTHBOOK_RECONCILE_MEMORY_LIMIT
        (e.g. "16GB"), HEALTHBOOK_RECONCILE_THREADS and HEALTHBOOK_RECONCILE_TEMP_DIR (spill)."""
        base = cls()
        temp = environ.get("HEALTHBOOK_RECONCILE_TEMP_DIR")
        return replace(
            base,
            memory_limit=environ.get("HEALTHBOOK_RECONCILE_MEMORY_LIMIT", base.memory_limit),
            threads=int(environ.get("HEALTHBOOK_RECONCILE_THREADS", base.threads)),
            temp_directory=Path(temp) if temp else None,
        )


# A reviewer's decision file: <warehouse>/review/decisions/*.csv with this header (README
# "Review decisions"); decision is `link` (citizen_id required) or `reject`.
DECISION_COLUMNS = ("facility_code", "encounter_id", "decision", "citizen_id", "reviewer", "decided_at")


def decisions_folder(warehouse) -> Path:
    return warehouse.review_decisions


def decisions_state_path(warehouse) -> Path:
    """Every valid decision ever read, kept in the warehouse even if its CSV is removed."""
    return warehouse.state / "review_decisions.parquet"


def _empty_decisions() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="str") for c in DECISION_COLUMNS})
    frame["decided_at"] = pd.Series(dtype="datetime64[us]")
    return frame


def read_review_decisions(warehouse) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(valid, invalid) reviewer decisions: the CSV files of review/decisions/ and the decisions
    kept from earlier nights. Every row is hostile text: a row is valid when its decision is
    `link` with a 12-digit citizen ID or `reject`, and it names the facility, the encounter, the
    reviewer and an ISO date-time. Invalid rows are returned with a `problem` (never dropped
    silently: the night's record lists them). Valid: the newest decision per encounter."""
    rows, invalid = [], []
    folder = decisions_folder(warehouse)
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        frame.columns = [str(c).strip() for c in frame.columns]
        if set(DECISION_COLUMNS) - set(frame.columns):
            invalid.append(pd.DataFrame({"source_file": [path.name], "problem": ["bad_header"]}))
            continue
        frame = frame[list(DECISION_COLUMNS)].apply(lambda c: c.str.strip())
        frame["source_file"] = path.name
        frame["decision"] = frame["decision"].str.lower()
        decided_at = pd.to_datetime(frame["decided_at"], errors="coerce", format="ISO8601", utc=True)
        problem = pd.Series(None, index=frame.index, dtype="object")
        checks = [
            (frame["facility_code"].eq("") | frame["encounter_id"].eq(""), "missing_encounter"),
            (~frame["decision"].isin(["link", "reject"]), "unknown_decision"),
            (
                frame["decision"].eq("link") & ~frame["citizen_id"].str.fullmatch(r"[0-9]{12}"),
                "invalid_citizen_id",
            ),
            (frame["reviewer"].eq(""), "missing_reviewer"),
            (decided_at.isna(), "invalid_decided_at"),
        ]
        for failed, name in reversed(checks):  # the first failing check names the problem
            problem[failed] = name
        frame["decided_at"] = decided_at.dt.tz_localize(None).astype("datetime64[us]")
        frame.loc[frame["decision"].eq("reject"), "citizen_id"] = None
        invalid.append(frame[problem.notna()].assign(problem=problem[problem.notna()]))
        rows.append(frame[problem.isna()][list(DECISION_COLUMNS)])
    state = decisions_state_path(warehouse)
    if state.exists():
        rows.append(pd.read_parquet(state)[list(DECISION_COLUMNS)])
    valid = pd.concat([_empty_decisions(), *rows], ignore_index=True) if rows else _empty_decisions()
    valid["decided_at"] = valid["decided_at"].astype("datetime64[us]")
    valid = valid.drop_duplicates().sort_values(["decided_at", "reviewer"], kind="stable")
    invalid_frame = pd.concat(invalid, ignore_index=True) if invalid else pd.DataFrame(columns=["problem"])
    return valid.reset_index(drop=True), invalid_frame


def newest_decisions(valid: pd.DataFrame) -> pd.DataFrame:
    """The decision in force for each encounter: the newest (a reviewer may change their mind)."""
    return valid.drop_duplicates(["facility_code", "encounter_id"], keep="last").reset_index(drop=True)


def read_sql(name: str) -> str:
    """The text of one fixed statement of sql/reconcile/."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def connect(settings: ReconcileSettings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection sized by the settings, with the identity macros installed."""
    config: dict[str, Any] = {"memory_limit": settings.memory_limit, "threads": settings.threads}
    if settings.temp_directory is not None:
        config["temp_directory"] = str(settings.temp_directory)
    con = duckdb.connect(config=config)
    for statement in identity_macros_sql():
        con.execute(statement)
    return con


def parquet_files(path: Path) -> list[str]:
    """One Parquet file, or every Parquet file under a folder (sorted, so runs are repeatable)."""
    path = Path(path)
    if path.is_file():
        return [str(path)]
    files = sorted(str(p) for p in path.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet file under {path}")
    return files


def register_source(con: duckdb.DuckDBPyConnection, view: str, data: pd.DataFrame | Path | str) -> None:
    """Expose a frame or Parquet file(s) to the SQL under a fixed view name."""
    if isinstance(data, pd.DataFrame):
        con.register(view, data)
    else:
        con.read_parquet(parquet_files(Path(data)), union_by_name=True, hive_partitioning=False).create_view(
            view, replace=True
        )


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


def probabilistic_decisions_sql(comparisons: list[str]) -> str:
    """One row per encounter with probabilistic candidates: the best and the runner-up, the
    margin between them, the field that explains it and how many candidates tie with the best.

    A field separates the best from the runner-up when the best agrees with the record at a
    closer level (Splink's comparison level) than the runner-up does; among those, the deciding
    field is the one whose weight differs most. Candidates whose every field agrees at the same
    level as the best's (`tied`) cannot be told apart by any evidence on the record."""
    gaps = ", ".join(
        f"case when t.level_{n} > s.level_{n} then {{'gap': t.weight_{n} - s.weight_{n}, 'field': '{n}'}} end"
        for n in comparisons
    )
    same_levels = " and ".join(f"p.level_{n} is not distinct from t.level_{n}" for n in comparisons)
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


def _blocking_rules(model: dict[str, Any]) -> list[str]:
    return [
        rule["blocking_rule"] if isinstance(rule, dict) else rule
        for rule in model["blocking_rules_to_generate_predictions"]
    ]


def _comparison_names(model: dict[str, Any]) -> tuple[list[str], list[str]]:
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
    against the registry (name frequencies and prior odds from the whole registry, pairs only
    with the citizens that share a blocking key); writes table probabilistic_pairs."""
    comparisons, tf_comparisons = _comparison_names(model)
    con.execute(read_sql("linkage_encounters"))
    con.execute(read_sql("linkage_registry"))
    (pending,) = con.execute("select count(*) from linkage_encounters").fetchall()[0]
    if pending == 0:
        con.execute(empty_probabilistic_pairs_sql(comparisons))
        return
    con.execute(read_sql("name_frequencies"))
    con.execute(registry_candidates_sql(_blocking_rules(model)))

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
    linker = Linker([encounters, registry], model, log_level=logging.WARNING)
    frequencies = db_api.register("name_frequencies", table_name="tf_name_fold_registry")
    linker.table_management.register_term_frequency_lookup(frequencies, "name_fold")
    predictions = linker.inference.predict(threshold_match_weight=settings.floor_weight, warning_mode="never")
    con.execute(probabilistic_pairs_sql(predictions.physical_name, comparisons, tf_comparisons))
    predictions.drop_table_from_database_and_remove_from_cache()


def reconcile_tables(con: duckdb.DuckDBPyConnection, settings: ReconcileSettings) -> dict[str, float]:
    """Run every step on the views encounters_source and registry_source of `con`; leaves the
    tables patient_links and review_queue. Returns the seconds spent in each step."""
    model = load_model(settings.model_path)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = round(now - clock, 3)
        clock = now

    con.execute(read_sql("registry_identities"))
    con.execute(read_sql("encounter_identities"))
    lap("standardize")
    con.execute(read_sql("identifier_candidates"))
    con.execute(read_sql("deterministic_links"))
    lap("identifiers")
    score_candidates(con, model, settings)
    con.execute(probabilistic_decisions_sql(_comparison_names(model)[0]))
    lap("probabilistic")
    thresholds = {"match_weight": settings.match_weight, "review_weight": settings.review_weight}
    con.execute(read_sql("patient_links"), thresholds | {"margin": settings.margin})
    if not _has_table(con, "review_decisions"):
        con.register("review_decisions", newest_decisions(_empty_decisions()))
    con.execute(read_sql("review_decisions"))
    lap("decide")
    con.execute(
        candidate_fields_sql(_comparison_names(model)[0]), {"max_candidates": settings.review_candidates}
    )
    con.execute(
        read_sql("review_queue"),
        {"max_candidates": settings.review_candidates, "review_weight": settings.review_weight},
    )
    lap("review_queue")
    return seconds


def match_to_registry(
    encounters: pd.DataFrame,
    registry: pd.DataFrame | Path | str,
    settings: ReconcileSettings | None = None,
) -> pd.DataFrame:
    """One row per encounter version of `encounters` (staged XML1 columns): its outcome, the
    citizen when matched, the tier that decided, weight, margin and differences (LINK_COLUMNS)."""
    settings = settings or ReconcileSettings()
    con = connect(settings)
    try:
        register_source(con, "encounters_source", encounters[list(ENCOUNTER_COLUMNS)])
        register_source(con, "registry_source", registry)
        reconcile_tables(con, settings)
        return con.execute(f"select {', '.join(LINK_COLUMNS)} from patient_links order by enc_key").df()
    finally:
        con.close()


def _write(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    """Write a query's result to `path`, Parquet (zstd) or CSV with a header by the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        csv_safe.write_csv(con.sql(query).df(), path)  # for people: formula cells escaped (csv_safe)
    else:
        con.sql(query).write_parquet(str(path), compression="zstd")


def reconcile_night(ctx: NightContext, settings: ReconcileSettings | None = None) -> Path:
    """Reconcile the night's staged encounter versions; writes patient_links, the review queue
    (Parquet and CSV) and the manifest runs/<D>/reconcile.json; returns the manifest path.
    Without `settings`, DuckDB's sizing comes from the environment (ReconcileSettings.from_environment)."""
    settings = settings or ReconcileSettings.from_environment(os.environ)
    started = time.perf_counter()
    warehouse, night = ctx.warehouse, ctx.night
    spill = warehouse.scratch("reconcile", night)
    if settings.temp_directory is None:  # spill inside the warehouse, never into the working folder
        settings = replace(settings, temp_directory=spill)
    # DuckDB creates only the last folder of the path, and only when it first spills
    settings.temp_directory.mkdir(parents=True, exist_ok=True)
    con = connect(settings)
    try:
        retry = retry_versions(warehouse, night)
        con.register("retry_keys", retry[list(RETRY_COLUMNS)])
        sources = []
        night_dir = warehouse.staging_night("encounters", night)
        if list(night_dir.rglob("*.parquet")):
            register_source(con, "staged_encounters", night_dir)
            sources.append(f"select {', '.join(ENCOUNTER_COLUMNS)} from staged_encounters")
        for n, (retry_night, _) in enumerate(retry.groupby("night", sort=True)):
            folder = warehouse.staging_night("encounters", retry_night)
            if not list(folder.rglob("*.parquet")):
                continue
            register_source(con, f"retry_encounters_{n}", folder)
            sources.append(
                f"select {', '.join(f'e.{c}' for c in ENCOUNTER_COLUMNS)} from retry_encounters_{n} as e "
                f"semi join retry_keys as r on {_key_match('e', 'r')} and r.night = date '{retry_night}'"
            )
        if sources:
            con.execute("create or replace view encounters_source as " + " union all by name ".join(sources))
        else:
            con.execute(read_sql("empty_encounters"))
        register_source(con, "registry_source", ctx.registry_path)
        decisions, invalid_decisions = read_review_decisions(warehouse)
        in_force = newest_decisions(decisions)
        con.register("review_decisions", in_force)
        seconds = reconcile_tables(con, settings)
        decision_record = _record_decisions(con, warehouse, night, decisions, in_force, invalid_decisions)

        links_path = warehouse.staging_night("patient_links", night) / "part-0.parquet"
        # the night is the partition folder, not a column: a column too would clash with it
        # when the dataset root is read with hive partitioning
        _write(con, f"select {', '.join(LINK_COLUMNS)} from patient_links order by enc_key", links_path)
        review_dir = warehouse.review(night)
        _write(con, "select * from review_queue", review_dir / "review_queue.parquet")
        _write(
            con,
            "select * replace (round(match_weight, 3) as match_weight) from review_queue",
            review_dir / "review_queue.csv",
        )
        _write_retry_record(warehouse, night, retry)
        manifest = night_manifest(con) | {
            "night": night.isoformat(),
            "stage": "reconcile",
            "model": str(settings.model_path.name),
            "seconds": seconds | {"total": round(time.perf_counter() - started, 3)},
            "review_decisions": decision_record,
        }
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    path = warehouse.manifest(night, "reconcile")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _record_decisions(
    con: duckdb.DuckDBPyConnection,
    warehouse,
    night,
    decisions: pd.DataFrame,
    in_force: pd.DataFrame,
    invalid: pd.DataFrame,
) -> dict[str, Any]:
    """Keep every valid decision in the warehouse (state/review_decisions.parquet, so a decision
    outlives its CSV file and binds every later night), write what the night did with each one
    (runs/<D>/review_decisions.parquet: applied, waiting, citizen_not_in_registry, superseded,
    or the problem of an invalid row) and return the counts for the manifest."""
    state = decisions_state_path(warehouse)
    state.parent.mkdir(parents=True, exist_ok=True)
    parquet_io.write_table(pa.Table.from_pandas(decisions, preserve_index=False), state)
    applied = con.execute(
        "select facility_code, encounter_id, count(*) from patient_links where tier = 'reviewer' group by all"
    ).fetchall()
    applied_keys = {(f, e) for f, e, _ in applied}
    (versions,) = con.execute("select count(*) from patient_links where tier = 'reviewer'").fetchall()[0]
    known = con.execute(
        "select citizen_id from registry_identities semi join review_decisions using (citizen_id)"
    ).fetchall()
    known_ids = {c for (c,) in known}
    newest = {
        (r.facility_code, r.encounter_id): (r.decided_at, r.reviewer, r.decision)
        for r in in_force.itertuples(index=False)
    }
    status = []
    for r in decisions.itertuples(index=False):
        key = (r.facility_code, r.encounter_id)
        if newest.get(key) != (r.decided_at, r.reviewer, r.decision):
            status.append("superseded")
        elif key in applied_keys:
            status.append("applied")
        elif r.decision == "link" and r.citizen_id not in known_ids:
            status.append("citizen_not_in_registry")
        else:
            status.append("waiting")  # the encounter was not reconciled tonight
    record = decisions.assign(status=status)
    if len(invalid):
        record = pd.concat([record, invalid.rename(columns={"problem": "status"})], ignore_index=True)
    record = record.reindex(columns=[*DECISION_COLUMNS, "status"]).astype({"decided_at": "datetime64[us]"})
    record = record.astype({c: "str" for c in DECISION_COLUMNS if c != "decided_at"}).replace(
        {"None": None, "nan": None}
    )
    parquet_io.write_table(
        pa.Table.from_pandas(record, preserve_index=False),
        warehouse.run_file(night, "review_decisions.parquet"),
    )
    return {
        "read": len(decisions) + len(invalid),
        "versions_decided": int(versions),
        "status": {k: int(v) for k, v in record["status"].value_counts().sort_index().items()},
    }


def night_manifest(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Counts of the night: tonight's encounter versions, per outcome, per tier, per (tier,
    outcome); the re-linked versions of earlier nights apart (`retried`). Reads the table
    retry_keys (the re-linked versions)."""
    rows = con.execute(
        "select p.tier, p.outcome, (r.facility_code is not null) as is_retry, count(*) "
        f"from patient_links as p left join retry_keys as r on {_key_match('p', 'r')} group by all"
    ).fetchall()
    outcomes = dict.fromkeys(OUTCOMES, 0)
    tiers = dict.fromkeys(TIERS, 0)
    by_tier: dict[str, dict[str, int]] = {t: {} for t in TIERS}
    retried = dict.fromkeys(OUTCOMES, 0)
    for tier, outcome, is_retry, n in rows:
        if is_retry:
            retried[outcome] += n
            continue
        outcomes[outcome] += n
        tiers[tier] += n
        by_tier[tier][outcome] = n
    (registry_rows,) = con.execute("select count(*) from registry_identities").fetchall()[0]
    (review_rows,) = con.execute("select count(*) from review_queue").fetchall()[0]
    return {
        "encounters": sum(outcomes.values()),
        "outcomes": outcomes,
        "tiers": tiers,
        "tier_outcomes": by_tier,
        "retried": {"versions": sum(retried.values()), "outcomes": retried},
        "registry_rows": registry_rows,
        "review_queue_rows": review_rows,
    }


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        con.execute("select count(*) from duckdb_views() where view_name = ?", [name]).fetchall()[0][0]
    )


def _key_match(a: str, b: str) -> str:
    return " and ".join(f"{a}.{c} = {b}.{c}" for c in ("facility_code", "encounter_id", "version"))


def retry_record_path(warehouse, night) -> Path:
    return warehouse.run_file(night, "reconcile_retry.parquet")


def retry_versions(warehouse, night) -> pd.DataFrame:
    """The versions of earlier nights the night re-links: pending for their patient's identity
    (OUTCOME_REASONS) when the night is first reconciled, with the night they came in.

    The night's load changes the pending list; a re-run of the night must link the same versions
    (the same outputs), so the set is recorded in runs/<D>/reconcile_retry.parquet the first time
    and read from there after."""
    record = retry_record_path(warehouse, night)
    if record.exists():
        return pd.read_parquet(record)
    empty = pd.DataFrame(
        {
            "facility_code": pd.Series(dtype="str"),
            "encounter_id": pd.Series(dtype="str"),
            "version": pd.Series(dtype="int64"),
            "night": pd.Series(dtype="object"),
        }
    )
    if not warehouse.pending.exists():
        return empty
    pending = pd.read_parquet(warehouse.pending)
    if pending.empty:
        return empty
    pending["night"] = pd.to_datetime(pending["night"]).dt.date
    # a version a reviewer rejected (not_reconciled) comes back when a newer decision links it
    decided = newest_decisions(read_review_decisions(warehouse)[0])
    decided = decided[decided["decision"] == "link"]
    decided_keys = set(zip(decided["facility_code"], decided["encounter_id"], strict=True))
    is_decided = pd.Series(
        [k in decided_keys for k in zip(pending["facility_code"], pending["encounter_id"], strict=True)],
        index=pending.index,
        dtype=bool,
    )
    retried = pending["reason"].isin(set(OUTCOME_REASONS.values())) | (
        pending["reason"].eq("not_reconciled") & is_decided
    )
    waiting = pending[retried & (pending["night"] < night)]
    waiting = waiting.astype({"version": "int64"})
    return waiting[list(RETRY_COLUMNS)].sort_values(list(RETRY_COLUMNS)).reset_index(drop=True)


def _write_retry_record(warehouse, night, retry: pd.DataFrame) -> None:
    record = retry_record_path(warehouse, night)
    if record.exists():
        return
    parquet_io.write_table(pa.Table.from_pandas(retry, preserve_index=False), record)
