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
     runner-up that a field explains (deciding_field), and a best candidate the registry
     records as dead before the admission goes to review; otherwise potential_match or no_match
  5. reviewers' decisions (review/decisions/*.csv) replace the automatic outcome of the
     encounters they name, on every later night (README "Review decisions").

Only `match` loads. The fixed SQL of every step is in sql/reconcile/, in the order above.
The Python is split by job: this module (settings, the steps in order, the night's files and
manifest, retries), database.py (the sized DuckDB connection, the SQL text, the sources),
scoring.py (step 3's Splink scoring and the SQL of step 4's decision and the review queue's
fields), review.py (step 5: reviewers' decision files and the night's record of them).

Besides tonight's versions, the night re-links the versions of earlier nights still pending for
their patient's identity (`retry_versions`: no_match, potential_match, many_match) against
tonight's registry: a citizen registered or corrected since is then found, and the load, which
retries every pending version with its newest link, publishes it. Their links are written with
tonight's; the manifest counts them apart (`retried`); the review queue lists them again while
they still need a person.
"""

from __future__ import annotations

import json
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
from transforms.core.settings import Settings
from transforms.reconcile.database import (
    connect,
    has_table,
    key_match,
    read_sql,
    register_source,
)
from transforms.reconcile.model import MODEL_PATH, load_model
from transforms.reconcile.registry_cache import RegistryCache, registry_cache_key, standardize_registry
from transforms.reconcile.review import (
    empty_decisions,
    newest_decisions,
    read_review_decisions,
    record_decisions,
)
from transforms.reconcile.scoring import (
    candidate_fields_sql,
    comparison_names,
    probabilistic_decisions_sql,
    score_candidates,
)

if TYPE_CHECKING:
    from transforms.core.context import NightContext

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
    "admitted_at",  # NGAY_VAO: no automatic link to a citizen recorded dead before it
)
# Columns that may be missing from the rows given (then null, of this type): without the
# admission no death date can hold a link back
OPTIONAL_ENCOUNTER_COLUMNS = {"admitted_at": "timestamp"}
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
    # the weight the thresholds apply to: match_weight with a residence that differs counted as
    # no evidence (scoring.WEAK_EVIDENCE); null for an identifier's or a reviewer's link
    "decision_weight",
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


_DEFAULTS = Settings().reconcile


@dataclass(frozen=True)
class ReconcileSettings:
    """Knobs of one reconciliation run; the defaults are the calibrated production values.

    Weights are Splink match weights (log2 of the odds, prior included). The margin is over the
    runner-up candidate: two citizens closer than that are never told apart automatically.
    """

    model_path: Path = MODEL_PATH
    # The thresholds apply to the decision weight (scoring.WEAK_EVIDENCE): Splink's weight with a
    # residence that differs counted as no evidence, so that a patient who moved to another
    # province keeps what the name, birth date and sex weigh (issue #18: weak evidence, not a
    # veto; the residence still ranks the candidates and may explain the margin). It counts the
    # registry's prior (1 in its size): 4 = odds of 16 to 1 against a chance lookalike in the
    # registry. On both hard nights (benchmarks/results/reconcile_hard_*_vs_1000k.md) 4 is the
    # lowest threshold that links no record among candidates no field separates (2 links 2 on the
    # 100k night), and the decision weight links no more wrong records than Splink's weight did at
    # 4 while no-ID recall rises 0.964 -> 0.978 (20k) and 0.963 -> 0.977 (100k). What it costs is
    # absent patients with a namesake elsewhere: their evidence is a mover's; 25.7% of them are
    # linked against 15.5% with Splink's weight (reconcile_absent_namesakes.md; the registry is the
    # national population database, where a patient is absent only as a foreigner or an
    # unregistered newborn).
    # Between the review weight (-6) and 4 a best candidate goes to review, not to no_match (out of
    # every reviewer's sight): the hard nights leave 0 of 1,879 (20k) and 2 of 9,817 (100k)
    # matchable patients with no ID as no_match, against 15 and 84 at 2; their absent patients,
    # who have no candidate there, stay no_match (benchmarks/results/reconcile_review_weight.md).
    # Margin 5.5 = the best candidate 45 times likelier than the runner-up, explained by a field
    # where only the best agrees. It lets the province alone tell a patient who moved ward from a
    # namesake in another province (the model's same-province against other-province step is 5.7:
    # 52 to 1); a margin of 6 left all 89 such patients of the hard night to review. The same
    # evidence arises when a patient moves into their namesake's province: 2 such links on that
    # night (the truth's closer_namesake: the evidence points at the namesake), for 89 right.
    # The run's values and these defaults come from transforms/core/settings.py (written once there).
    match_weight: float = _DEFAULTS.match_weight
    # below it a best candidate is no_match, not a review: the review queue stays a worklist
    review_weight: float = _DEFAULTS.review_weight
    margin: float = _DEFAULTS.margin
    # predictions below this weight are not kept (they can be neither best nor runner-up that matters)
    floor_weight: float = -10.0
    review_candidates: int = _DEFAULTS.review_candidates
    # 3GB: at 1M encounters against a 10M registry DuckDB spills and peaks at ~3.1 GB RSS in 33 s,
    # against 5.1 GB and 54 s with 8GB (benchmarks/results/reconcile_scale_1000k_vs_10000k_mem3GB.md)
    memory_limit: str = _DEFAULTS.memory_limit
    threads: int = _DEFAULTS.threads
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


def reconcile_tables(
    con: duckdb.DuckDBPyConnection,
    settings: ReconcileSettings,
    registry_cache: RegistryCache | None = None,
) -> dict[str, float]:
    """Run every step on the views encounters_source and registry_source of `con`; leaves the
    tables patient_links and review_queue. Returns the seconds spent in each step. With
    `registry_cache`, the standardized registry is read from it when it holds tonight's
    registry, and written to it otherwise (registry_cache.py)."""
    model = load_model(settings.model_path)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = round(now - clock, 3)
        clock = now

    _, cache_write = standardize_registry(con, registry_cache)
    lap("standardize_registry")
    try:
        con.execute(read_sql("encounter_identities"))
        lap("standardize")
        con.execute(read_sql("identifier_candidates"))
        con.execute(read_sql("deterministic_links"))
        lap("identifiers")
        score_candidates(con, model, settings)
        con.execute(probabilistic_decisions_sql(comparison_names(model)[0]))
        lap("probabilistic")
        thresholds = {"match_weight": settings.match_weight, "review_weight": settings.review_weight}
        con.execute(read_sql("patient_links"), thresholds | {"margin": settings.margin})
        if not has_table(con, "review_decisions"):
            con.register("review_decisions", newest_decisions(empty_decisions()))
        con.execute(read_sql("review_decisions"))
        lap("decide")
        con.execute(
            candidate_fields_sql(comparison_names(model)[0]), {"max_candidates": settings.review_candidates}
        )
        con.execute(
            read_sql("review_queue"),
            {"max_candidates": settings.review_candidates, "review_weight": settings.review_weight},
        )
        lap("review_queue")
    finally:
        cache_write.wait()  # a new entry is written beside the steps above, on a cursor of `con`
        lap("registry_cache_write")
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
        register_source(con, "given_encounters", encounters)
        con.execute(
            "create view encounters_source as "
            f"select {_encounter_columns(con, 'given_encounters')} from given_encounters"
        )
        register_source(con, "registry_source", registry)
        reconcile_tables(con, settings)
        return con.execute(f"select {', '.join(LINK_COLUMNS)} from patient_links order by enc_key").df()
    finally:
        con.close()


def _encounter_columns(con: duckdb.DuckDBPyConnection, view: str, alias: str | None = None) -> str:
    """The select list of ENCOUNTER_COLUMNS from a view of staged XML1 rows; an OPTIONAL column
    the rows lack is null (a night staged by hand or by a release before it was read)."""
    have = {column[0] for column in con.execute(f"select * from {view} limit 0").description}
    prefix = f"{alias}." if alias else ""
    return ", ".join(
        f"null::{OPTIONAL_ENCOUNTER_COLUMNS[c]} as {c}"
        if c in OPTIONAL_ENCOUNTER_COLUMNS and c not in have
        else f"{prefix}{c}"
        for c in ENCOUNTER_COLUMNS
    )


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
    Without `settings`, the run's (ctx.settings.reconcile: thresholds and DuckDB's sizing)."""
    settings = settings or replace(ReconcileSettings(), **ctx.settings.reconcile.overrides())
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
            sources.append(f"select {_encounter_columns(con, 'staged_encounters')} from staged_encounters")
        for n, (retry_night, _) in enumerate(retry.groupby("night", sort=True)):
            folder = warehouse.staging_night("encounters", retry_night)
            if not list(folder.rglob("*.parquet")):
                continue
            register_source(con, f"retry_encounters_{n}", folder)
            sources.append(
                f"select {_encounter_columns(con, f'retry_encounters_{n}', 'e')} from retry_encounters_{n} as e "
                f"semi join retry_keys as r on {key_match('e', 'r')} and r.night = date '{retry_night}'"
            )
        if sources:
            con.execute("create or replace view encounters_source as " + " union all by name ".join(sources))
        else:
            con.execute(read_sql("empty_encounters"))
        register_source(con, "registry_source", ctx.registry_path)
        decisions, invalid_decisions = read_review_decisions(warehouse)
        in_force = newest_decisions(decisions)
        con.register("review_decisions", in_force)
        registry_cache = RegistryCache(
            warehouse.cache("reconcile_registry"), registry_cache_key(ctx.registry_path)
        )
        seconds = reconcile_tables(con, settings, registry_cache)
        decision_record = record_decisions(con, warehouse, night, decisions, in_force, invalid_decisions)

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


def night_manifest(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Counts of the night: tonight's encounter versions, per outcome, per tier, per (tier,
    outcome); the re-linked versions of earlier nights apart (`retried`). Reads the table
    retry_keys (the re-linked versions)."""
    rows = con.execute(
        "select p.tier, p.outcome, (r.facility_code is not null) as is_retry, count(*) "
        f"from patient_links as p left join retry_keys as r on {key_match('p', 'r')} group by all"
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
