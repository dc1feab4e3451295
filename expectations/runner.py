"""The quality stage: run every check on the night's staged frames, write findings and the manifest.

`validate_frames` is the core (frames in, findings and per-check results out); `validate_night` is
the stage function (reads staging, writes `quarantine/findings/night=<D>/quality.parquet`, the
Data Docs, the manifest `runs/<D>/quality.json` and the report).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from expectations.checks import CheckConfig, load_checks
from expectations.report import check_matrix
from expectations.row_checks import ROW_CHECKS, VERSION_KEY
from expectations.rules import evaluate_rule
from expectations.suites import (
    DATASETS,
    FHIR_DATASETS,
    PAIR_A_GREATER_THAN_B,
    SUITE_BUILDERS,
    Rule,
    verdict_column,
    verdict_suite,
)
from transforms import schema
from transforms.schema import FINDINGS_SCHEMA
from transforms.warehouse import Warehouse

if TYPE_CHECKING:
    from transforms.pipeline import NightContext

log = logging.getLogger(__name__)

STAGE = "quality"
FINDINGS_COLUMNS = FINDINGS_SCHEMA.names
CHECK_RESULT_COLUMNS = [
    "check_id",
    "dataset",
    "category",
    "severity",
    "reason",
    "engine",
    "threshold",
    "evaluated",
    "failed_rows",
    "failed_encounters",
    "failure_rate",
    "status",
]
# the failing rows come from the vectorised rules; GX records counts and a sample for the Data Docs
GX_RESULT_FORMAT = {"result_format": "SUMMARY"}
# date-kind columns become timestamps before validation so one comparison serves every date
_DATE_KINDS = ("date", "birth")


@dataclass
class QualityResult:
    """findings: one row per failing row per check (no cap); checks: one row per check and dataset."""

    findings: pd.DataFrame
    checks: pd.DataFrame
    gx_seconds: float = 0.0
    rows_seconds: float = 0.0
    suite_rules_seconds: float = 0.0


# --- preparing frames -------------------------------------------------------------------------------


def prepare_frame(dataset: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The staged frame with `_row_id` (= its positional index) and date columns as timestamps."""
    out = frame.reset_index(drop=True)
    out["_row_id"] = np.arange(len(out), dtype="int64")
    table = schema.TABLES_BY_DATASET.get(dataset)
    if table is not None:
        for column in table.columns:
            if column.kind in _DATE_KINDS and column.name in out.columns:
                out[column.name] = pd.to_datetime(out[column.name], errors="coerce")
    return out


def empty_frame(dataset: str) -> pd.DataFrame:
    """A night without rows of a dataset still has its columns, typed as ingest writes them
    (cross-table checks rely on them: a date column of no rows is still a datetime column)."""
    from transforms.parquet_io import known_schema

    arrow = known_schema(dataset)
    if arrow is not None:
        return arrow.empty_table().to_pandas()
    table = schema.TABLES_BY_DATASET.get(dataset)
    names = list(schema.LINEAGE_COLUMNS) + ([c.name for c in table.columns] if table else [])
    return pd.DataFrame({name: pd.Series([], dtype="object") for name in dict.fromkeys(names)})


# --- the suites' column rules (vectorised) and Great Expectations ---------------------------------


@dataclass
class RuleOutcome:
    """The suites' rules on the night's frames: failing rows, evaluated counts, errors and, per
    dataset, the verdict frame GX validates (`_row_id` + one boolean `ok__<check>` per check)."""

    failures: list[pd.DataFrame]
    evaluated: dict[tuple[str, str], int]
    errors: list[dict]
    verdicts: dict[str, pd.DataFrame]
    rules: dict[str, list[Rule]]


def evaluate_suites(frames: dict[str, pd.DataFrame], config: CheckConfig, night: dt.date) -> RuleOutcome:
    """Every rule of every non-empty dataset's suite: all failing rows (no cap) and the verdicts."""
    outcome = RuleOutcome([], {}, [], {}, {})
    for dataset, build in SUITE_BUILDERS.items():
        frame = frames.get(dataset)
        if frame is None or frame.empty:
            continue
        rules = build(config, night)
        ok: dict[str, np.ndarray] = {}
        row_ids = frame["_row_id"].to_numpy()
        for rule in rules:
            try:
                verdict = evaluate_rule(rule, frame)
            except (KeyError, TypeError, ValueError) as e:
                outcome.errors.append(
                    {"check_id": rule.check_id, "dataset": dataset, "message": f"{rule.describe()}: {e!r}"}
                )
                continue
            key = (rule.check_id, dataset)
            outcome.evaluated[key] = outcome.evaluated.get(key, 0) + verdict.evaluated
            ok[rule.check_id] = ok.get(rule.check_id, np.ones(len(frame), dtype=bool)) & ~verdict.failing
            if verdict.failing.any():
                outcome.failures.append(_rule_failures(rule, frame, row_ids[verdict.failing]))
        outcome.rules[dataset] = [r for r in rules if r.check_id in ok]
        outcome.verdicts[dataset] = pd.DataFrame(
            {"_row_id": row_ids, **{verdict_column(check_id): mask for check_id, mask in ok.items()}}
        )
    return outcome


def _rule_failures(rule: Rule, frame: pd.DataFrame, row_ids: np.ndarray) -> pd.DataFrame:
    """The failing rows of one rule: (check_id, dataset, _row_id, column, value)."""
    if rule.expectation_type == PAIR_A_GREATER_THAN_B:
        a, b = rule.column, rule.kwargs["column_B"]
        values = [
            f"{a}={_text(x)} < {b}={_text(y)}"
            for x, y in zip(frame[a].to_numpy()[row_ids], frame[b].to_numpy()[row_ids], strict=True)
        ]
    else:
        values = [_text(v) for v in frame[rule.column].to_numpy()[row_ids]]
    return pd.DataFrame(
        {
            "check_id": rule.check_id,
            "dataset": rule.dataset,
            "_row_id": row_ids,
            "column": rule.column,
            "value": pd.Series(values, dtype="object"),
        }
    )


def new_gx_context(data_docs_dir: Path | None):
    """An ephemeral GX context, progress bars off, Data Docs (if asked) under `data_docs_dir`."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    if data_docs_dir is not None:
        site = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(data_docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
        context.update_data_docs_site("local_site", site)
    return context


def run_gx(outcome: RuleOutcome, config: CheckConfig, night: dt.date, data_docs_dir: Path | None) -> dict:
    """GX validates each dataset's verdict frame with its verdict suite (one batch, one validation
    run per dataset, one expectation per check) and builds the Data Docs.

    Returns {dataset: suite validation result}.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    context = new_gx_context(data_docs_dir)
    source = context.data_sources.add_pandas("staged")
    run_id = RunIdentifier(run_name=f"night-{night.isoformat()}", run_time=dt.datetime.now(dt.UTC))
    results = {}
    for dataset, verdicts in outcome.verdicts.items():
        if len(verdicts.columns) == 1:
            continue
        suite = context.suites.add(verdict_suite(dataset, outcome.rules[dataset], config, night))
        batch_definition = source.add_dataframe_asset(dataset).add_batch_definition_whole_dataframe("night")
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=dataset, data=batch_definition, suite=suite)
        )
        results[dataset] = validation.run(
            batch_parameters={"dataframe": verdicts}, result_format=GX_RESULT_FORMAT, run_id=run_id
        )
    if data_docs_dir is not None and results:
        context.build_data_docs()
    return results


def gx_errors(results: dict, outcome: RuleOutcome) -> list[dict]:
    """Checks GX could not validate, and a refusal of any GX count that disagrees with the rules.

    GX's unexpected count of a verdict column must equal the rows the vectorised rules failed:
    a disagreement means a finding was lost or invented, so it raises instead of reporting.
    """
    errors = []
    for dataset, result in results.items():
        verdicts = outcome.verdicts[dataset]
        for r in result.results:
            check_id = r.expectation_config.meta["check_id"]
            if r.exception_info and r.exception_info.get("raised_exception"):
                errors.append(
                    {
                        "check_id": check_id,
                        "dataset": dataset,
                        "message": r.exception_info["exception_message"],
                    }
                )
                continue
            counted = int(r.result.get("unexpected_count") or 0)
            failing = int((~verdicts[verdict_column(check_id)]).sum())
            if counted != failing:
                raise RuntimeError(
                    f"{check_id} on {dataset}: GX counted {counted} failing rows, rules {failing}"
                )
    return errors


def _text(value) -> str | None:
    """An offending value as text: instants to the minute, dates as dates, lists ';'-joined."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return ";".join(str(v) for v in value)
    if isinstance(value, (pd.Timestamp, np.datetime64, dt.datetime)):
        ts = pd.Timestamp(value)
        if pd.isna(ts):
            return None
        return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.strftime("%Y-%m-%dT%H:%M")
    if isinstance(value, float) and np.isnan(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


# --- the core ------------------------------------------------------------------------------------------


def validate_frames(
    staged: dict[str, pd.DataFrame],
    night: dt.date,
    config: CheckConfig | None = None,
    data_docs_dir: Path | None = None,
) -> QualityResult:
    """Every check on one night's staged frames: all failing rows (no cap) and per-check results."""
    config = config or load_checks()
    frames = {
        ds: prepare_frame(ds, staged[ds] if staged.get(ds) is not None else empty_frame(ds))
        for ds in DATASETS
    }
    started = time.perf_counter()
    outcome = evaluate_suites(frames, config, night)
    suite_rules_seconds = time.perf_counter() - started
    started = time.perf_counter()
    gx_results = run_gx(outcome, config, night, data_docs_dir)
    gx_seconds = time.perf_counter() - started
    parts, evaluated = list(outcome.failures), dict(outcome.evaluated)
    errors = outcome.errors + gx_errors(gx_results, outcome)

    started = time.perf_counter()
    for check_id, check in config.checks.items():
        if check.engine != "rows":
            continue
        outcome = ROW_CHECKS[check_id](frames, night, check)
        for dataset, n in outcome.evaluated.items():
            evaluated[(check_id, dataset)] = evaluated.get((check_id, dataset), 0) + n
        if len(outcome.failures):
            parts.append(outcome.failures.assign(check_id=check_id))
    rows_seconds = time.perf_counter() - started

    raw = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["check_id", "dataset", "_row_id", "column", "value"])
    )
    findings = _with_keys(raw, frames, config, night)
    for e in errors:  # a check that could not run still has its row, with status "error"
        evaluated.setdefault((e["check_id"], e["dataset"]), 0)
    checks = _check_results(findings, evaluated, config)
    if errors:
        log.error("quality checks that could not run: %s", errors)
        for e in errors:
            checks.loc[(checks.check_id == e["check_id"]) & (checks.dataset == e["dataset"]), "status"] = (
                "error"
            )
    return QualityResult(
        findings=findings,
        checks=checks,
        gx_seconds=gx_seconds,
        rows_seconds=rows_seconds,
        suite_rules_seconds=suite_rules_seconds,
    )


def _with_keys(
    raw: pd.DataFrame, frames: dict[str, pd.DataFrame], config: CheckConfig, night: dt.date
) -> pd.DataFrame:
    """Findings in the ARCHITECTURE.md "Findings" shape: each failing row with its encounter keys."""
    pieces = []
    for dataset, part in raw.groupby("dataset", sort=False):
        frame = frames[dataset]
        row_ids = part["_row_id"].to_numpy(dtype="int64")

        def col(name: str, frame=frame, row_ids=row_ids):
            return frame[name].to_numpy()[row_ids] if name in frame.columns else np.full(len(row_ids), None)

        if dataset in FHIR_DATASETS:
            encounter_id, version, row_index = (
                col("resource_id"),
                np.full(len(row_ids), None),
                col("line_number"),
            )
        else:
            encounter_id, version = col("encounter_id"), col("version")
            row_index = np.full(len(row_ids), None) if dataset == "encounters" else col("row_index")
        pieces.append(
            pd.DataFrame(
                {
                    "facility_code": col("facility_code"),
                    "encounter_id": encounter_id,
                    "version": version,
                    "dataset": dataset,
                    "row_index": row_index,
                    "check_id": part["check_id"].to_numpy(),
                    "column": part["column"].to_numpy(),
                    "value": part["value"].to_numpy(),
                }
            )
        )
    if not pieces:
        return pa.Table.from_pylist([], schema=FINDINGS_SCHEMA).to_pandas()
    out = pd.concat(pieces, ignore_index=True)
    out["night"] = night
    out["stage"] = STAGE
    out["reason"] = out["check_id"].map({c.id: c.reason for c in config.checks.values()})
    out["severity"] = out["check_id"].map({c.id: c.severity for c in config.checks.values()})
    out["value"] = [_text(v) for v in out["value"]]
    out = out[FINDINGS_COLUMNS].sort_values(
        ["facility_code", "encounter_id", "version", "dataset", "row_index", "check_id", "column"],
        na_position="first",
        kind="stable",
    )
    return findings_table(out.reset_index(drop=True)).to_pandas()


def findings_table(findings: pd.DataFrame) -> pa.Table:
    """The findings as an Arrow table of the fixed findings schema."""
    frame = findings[FINDINGS_COLUMNS].copy()
    frame["version"] = pd.array(frame["version"], dtype="Int64")
    frame["row_index"] = pd.array(frame["row_index"], dtype="Int64")
    return pa.Table.from_pandas(frame, schema=FINDINGS_SCHEMA, preserve_index=False)


def _check_results(findings: pd.DataFrame, evaluated: dict, config: CheckConfig) -> pd.DataFrame:
    """One row per (check, dataset) it applies to: evaluated rows, failing rows and encounters, status."""
    failed = findings.groupby(["check_id", "dataset"]).size().to_dict() if len(findings) else {}
    enc = (
        findings.drop_duplicates(["check_id", "dataset", *VERSION_KEY])
        .groupby(["check_id", "dataset"])
        .size()
        .to_dict()
        if len(findings)
        else {}
    )
    rows = []
    keys = sorted(set(evaluated) | set(failed))
    for check_id, check in config.checks.items():
        datasets = [d for c, d in keys if c == check_id] or [None]
        for dataset in datasets:
            n = int(evaluated.get((check_id, dataset), 0))
            bad = int(failed.get((check_id, dataset), 0))
            rate = bad / n if n else (1.0 if bad else 0.0)
            status = (
                "not_applicable"
                if n == 0 and bad == 0
                else ("failed" if rate > check.threshold else "passed")
            )
            rows.append(
                {
                    "check_id": check_id,
                    "dataset": dataset,
                    "category": check.category,
                    "severity": check.severity,
                    "reason": check.reason,
                    "engine": check.engine,
                    "threshold": check.threshold,
                    "evaluated": n,
                    "failed_rows": bad,
                    "failed_encounters": int(enc.get((check_id, dataset), 0)),
                    "failure_rate": rate,
                    "status": status,
                }
            )
    return pd.DataFrame(rows, columns=CHECK_RESULT_COLUMNS)


# --- the stage -------------------------------------------------------------------------------------------


def read_night_frames(warehouse: Warehouse, night: dt.date) -> dict[str, pd.DataFrame]:
    """The night's staged frames, one per dataset that has a partition for the night."""
    from transforms.parquet_io import read_staged

    frames = {}
    for dataset in DATASETS:
        if warehouse.staging_night(dataset, night).exists():
            frames[dataset] = read_staged(warehouse, dataset, night)
    return frames


def manifest_dict(result: QualityResult, night: dt.date, config: CheckConfig, findings_path: Path) -> dict:
    """The quality manifest: counts per check, category and severity (small: counts only)."""
    f, c = result.findings, result.checks
    by_severity = {}
    for severity in ("blocking", "warning"):
        part = f[f["severity"] == severity]
        by_severity[severity] = {
            "findings": len(part),
            "encounters": len(part.drop_duplicates(VERSION_KEY)) if len(part) else 0,
        }
    # one status per check over its datasets, as the report's matrix shows it
    categories = check_matrix(c)
    blocking = f[f["severity"] == "blocking"]
    quarantined = blocking.drop_duplicates(VERSION_KEY)
    return {
        "night": night.isoformat(),
        "stage": STAGE,
        "checks_version": config.version,
        "findings_path": str(findings_path),
        "findings": len(f),
        "severity": by_severity,
        "categories": categories,
        "quarantined_by_reason": {str(k): int(v) for k, v in quarantined.groupby("reason").size().items()},
        "seconds": {
            "suite_rules": round(result.suite_rules_seconds, 3),
            "great_expectations": round(result.gx_seconds, 3),
            "row_checks": round(result.rows_seconds, 3),
        },
        "checks": [
            {k: (v if not isinstance(v, (np.integer, np.floating)) else v.item()) for k, v in row.items()}
            for row in c.to_dict("records")
        ],
    }


def write_quality(warehouse: Warehouse, night: dt.date, result: QualityResult, config: CheckConfig) -> Path:
    """Write findings Parquet and the manifest; returns the manifest path."""
    findings_path = warehouse.quarantine("findings", night) / "quality.parquet"
    findings_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(findings_table(result.findings), findings_path, compression="zstd")
    manifest = warehouse.manifest(night, STAGE)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(
        json.dumps(manifest_dict(result, night, config, findings_path), indent=1, default=str)
    )
    return manifest


def validate_night(ctx: NightContext) -> Path:
    """The quality stage: validate the night's staged rows, write findings, manifest and report."""
    from expectations.report import build_report

    config = load_checks()
    frames = read_night_frames(ctx.warehouse, ctx.night)
    result = validate_frames(frames, ctx.night, config, data_docs_dir=ctx.warehouse.quality / "data_docs")
    manifest = write_quality(ctx.warehouse, ctx.night, result, config)
    build_report(ctx.warehouse, ctx.night)
    return manifest
