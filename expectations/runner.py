"""The quality stage: run every check on the night's staged rows, write findings and the manifest.

The night is never held in memory whole. `validate_source` reads each dataset in batches of at
most `batch_rows` rows, only the columns its checks read plus the keys, and keeps from each batch
only what is small: the findings (with their keys), the evaluated counts and each rule's failing
row ids. Checks that join datasets on the encounter version key (row_checks.CROSS_TABLE_CHECKS)
get one facility partition at a time, with only their columns (the key starts with
facility_code). Great Expectations validates, per dataset, the same verdict frame as a whole-night
run would (one boolean per row and check, rebuilt from the failing row ids: one byte per row and
check), so its results and the Data Docs do not depend on the batch size.

`validate_frames` runs the same on in-memory frames (tests); `validate_night` is the stage function
(reads staging, writes `quarantine/findings/night=<D>/quality.parquet`, the Data Docs and the
manifest `runs/<D>/quality.json`; the report stage builds the report from them).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import shutil
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from expectations.checks import Check, CheckConfig, load_checks
from expectations.gx_import import import_gx
from expectations.report import check_matrix
from expectations.row_checks import CROSS_TABLE_CHECKS, ROW_CHECK_COLUMNS, ROW_CHECKS, VERSION_KEY
from expectations.rules import RuleVerdict, evaluate_rule
from expectations.suites import (
    DATASETS,
    FHIR_DATASETS,
    PAIR_A_GREATER_THAN_B,
    SUITE_BUILDERS,
    Rule,
    suite_columns,
    verdict_column,
    verdict_suite,
)
from transforms.core import schema
from transforms.core.forking import can_fork, start_forked
from transforms.core.schema import FINDINGS_SCHEMA
from transforms.core.warehouse import Warehouse

if TYPE_CHECKING:
    from transforms.core.context import NightContext

log = logging.getLogger(__name__)

STAGE = "quality"
DATA_DOCS_STAGE = "data_docs"
# what gx_summary keeps of each GX result, in its order
GX_SUMMARY_FIELDS = (
    "check_id",
    "success",
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "missing_count",
)
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
# the failing rows come from the vectorised rules; GX records counts and a sample for the Data Docs.
# BASIC, not SUMMARY: SUMMARY adds the counts of each unexpected value, which for a verdict column
# is always one line ("False: n", the unexpected count again), and cost 25-50% of GX's validation
# time (11 suites of 10 expectations on 1,000 rows: 2.5-3.5 s against 1.6-2.0 s, session 10)
GX_RESULT_FORMAT = {"result_format": "BASIC"}
# date-kind columns become timestamps before validation so one comparison serves every date
_DATE_KINDS = ("date", "birth")
# rows per batch. 100k night, peak RSS of the stage: 593 MB at 50k rows, 555 MB at 20k, same time
# within noise (the imports alone are ~310 MB; 10k night: 430 MB)
DEFAULT_BATCH_ROWS = 20_000
# a group of facility partitions for the cross-table checks holds up to this many batches' rows: they
# read only keys and amounts (a few columns), and fewer, larger groups save a merge per group
CROSS_TABLE_BATCHES = 5
# the columns a finding's keys come from (FHIR rows: resource_id and line_number)
KEY_COLUMNS = ("facility_code", "encounter_id", "version", "row_index", "resource_id", "line_number")
SORT_KEY = ["facility_code", "encounter_id", "version", "dataset", "row_index", "check_id", "column"]
RAW_FAILURE_COLUMNS = ["check_id", "dataset", "_row_id", "column", "value"]


@dataclass
class QualityResult:
    """findings: one row per failing row per check (no cap); checks: one row per check and dataset."""

    findings: pd.DataFrame
    checks: pd.DataFrame
    gx_seconds: float = 0.0
    gx_results: dict = field(default_factory=dict)  # {dataset: what GX recorded per check} (gx_summary)
    rows_seconds: float = 0.0
    suite_rules_seconds: float = 0.0


# --- preparing frames -------------------------------------------------------------------------------


def prepare_frame(dataset: str, frame: pd.DataFrame, row_ids: np.ndarray | None = None) -> pd.DataFrame:
    """The staged frame with `_row_id` as column and index, and date columns as timestamps.

    `_row_id` is the row's position in the night's dataset: `row_ids`, else the frame's own
    `_row_id` column when it has one (a batch read by `NightRows`; then the frame itself is
    changed and returned, no copy of a batch), else the row's position in `frame`."""
    owned = row_ids is None and "_row_id" in frame.columns
    out = frame if owned else frame.copy()
    if owned:
        row_ids = frame["_row_id"].to_numpy()
    ids = np.arange(len(out), dtype="int64") if row_ids is None else np.asarray(row_ids, dtype="int64")
    out.index = pd.Index(ids)
    out["_row_id"] = ids
    table = schema.TABLES_BY_DATASET.get(dataset)
    if table is not None:
        for column in table.columns:
            if column.kind in _DATE_KINDS and column.name in out.columns:
                out[column.name] = pd.to_datetime(out[column.name], errors="coerce")
    return out


def empty_frame(dataset: str) -> pd.DataFrame:
    """A night without rows of a dataset still has its columns, typed as ingest writes them
    (cross-table checks rely on them: a date column of no rows is still a datetime column)."""
    from transforms.core.parquet_io import known_schema

    arrow = known_schema(dataset)
    if arrow is not None:
        return arrow.empty_table().to_pandas()
    table = schema.TABLES_BY_DATASET.get(dataset)
    names = list(schema.LINEAGE_COLUMNS) + ([c.name for c in table.columns] if table else [])
    return pd.DataFrame({name: pd.Series([], dtype="object") for name in dict.fromkeys(names)})


# --- where the night's rows come from ---------------------------------------------------------------


class NightRows(Protocol):
    """The staged rows of one night, read a part at a time. Every frame carries `_row_id`: the
    row's position in the night's dataset (files in path order, rows in file order)."""

    def batches(self, dataset: str, columns: list[str], batch_rows: int) -> Iterator[pd.DataFrame]:
        """All rows of `dataset` in order, at most `batch_rows` a frame, only those of `columns`
        the dataset has; a dataset without rows gives one empty frame (its columns typed)."""
        ...

    def partitions(self) -> list[tuple[str, int]]:
        """The night's facility partitions in order (every XML dataset is partitioned by
        facility_code), each with its number of rows over the XML datasets."""
        ...

    def partition(self, dataset: str, names: list[str], columns: list[str]) -> pd.DataFrame:
        """The rows of `dataset` in the named facility partitions, in order, only those of
        `columns` (no names: no rows, the columns typed)."""
        ...


def _project(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in dict.fromkeys(columns) if c in frame.columns]


def partition_groups(partitions: list[tuple[str, int]], batch_rows: int) -> list[list[str]]:
    """Consecutive partitions grouped up to `batch_rows` rows a group (a larger one alone)."""
    groups: list[list[str]] = []
    rows = 0
    for name, n in partitions:
        if not groups or (rows + n > batch_rows and groups[-1]):
            groups.append([])
            rows = 0
        groups[-1].append(name)
        rows += n
    return groups


class FrameRows:
    """Night rows held in memory as staged frames (the tests' night; absent datasets are empty)."""

    def __init__(self, staged: dict[str, pd.DataFrame]):
        self.frames = {
            ds: (staged[ds] if staged.get(ds) is not None else empty_frame(ds)).reset_index(drop=True)
            for ds in DATASETS
        }

    def batches(self, dataset: str, columns: list[str], batch_rows: int) -> Iterator[pd.DataFrame]:
        frame = self.frames[dataset]
        part = frame[_project(frame, columns)]
        for start in range(0, max(len(part), 1), batch_rows):
            yield part.iloc[start : start + batch_rows].assign(
                _row_id=np.arange(start, min(start + batch_rows, len(part)), dtype="int64")
            )

    def _facilities(self, dataset: str) -> pd.Series:
        """Each row's partition name: its facility_code (None when it has none)."""
        frame = self.frames[dataset]
        if "facility_code" not in frame.columns:
            return pd.Series(np.full(len(frame), "\x00none", dtype=object))
        return frame["facility_code"].astype("object").where(frame["facility_code"].notna(), None)

    def partitions(self) -> list[tuple[str, int]]:
        counts: dict = {}
        for dataset in schema.TABLES_BY_DATASET:
            for name, n in self._facilities(dataset).value_counts(dropna=False).items():
                name = None if pd.isna(name) else name
                counts[name] = counts.get(name, 0) + int(n)
        return sorted(counts.items(), key=lambda item: (item[0] is not None, item[0] or ""))

    def partition(self, dataset: str, names: list[str], columns: list[str]) -> pd.DataFrame:
        frame = self.frames[dataset]
        facilities = self._facilities(dataset)
        mine = facilities.isin([n for n in names if n is not None]).to_numpy()
        if None in names:
            mine |= facilities.isna().to_numpy()
        return frame.loc[mine, _project(frame, columns)].assign(_row_id=np.flatnonzero(mine))


class StagedRows:
    """The night's rows in staging (Parquet, one folder per facility partition), read in batches."""

    def __init__(self, warehouse: Warehouse, night: dt.date):
        from transforms.core.parquet_io import parquet_rows, staged_files

        # per dataset: (file, its first row's _row_id, its rows)
        self.files: dict[str, list[tuple[Path, int, int]]] = {}
        for dataset in DATASETS:
            first, files = 0, []
            for path in staged_files(warehouse, dataset, night):
                n = parquet_rows(path)
                files.append((path, first, n))
                first += n
            self.files[dataset] = files

    def _read(self, dataset: str, files: list, columns: list[str], batch_rows: int) -> Iterator[pd.DataFrame]:
        """The files' rows in order, in frames of `batch_rows` rows (the last one fewer), however
        small the files (a facility's file of a small dataset shares its batch with the next)."""
        from transforms.core.parquet_io import iter_staged_file

        tables: list[pa.Table] = []
        ids: list[np.ndarray] = []
        buffered = 0
        for path, first, _ in files:
            for table in iter_staged_file(path, dataset, columns, batch_rows):
                tables.append(table)
                ids.append(np.arange(first, first + table.num_rows, dtype="int64"))
                first += table.num_rows
                buffered += table.num_rows
                while buffered >= batch_rows:
                    whole, whole_ids = pa.concat_tables(tables), np.concatenate(ids)
                    yield whole.slice(0, batch_rows).to_pandas().assign(_row_id=whole_ids[:batch_rows])
                    tables, ids = [whole.slice(batch_rows)], [whole_ids[batch_rows:]]
                    buffered -= batch_rows
        if buffered:
            yield pa.concat_tables(tables).to_pandas().assign(_row_id=np.concatenate(ids))

    def _empty(self, dataset: str, columns: list[str]) -> pd.DataFrame:
        frame = empty_frame(dataset)
        return frame[_project(frame, columns)].assign(_row_id=np.zeros(0, dtype="int64"))

    def batches(self, dataset: str, columns: list[str], batch_rows: int) -> Iterator[pd.DataFrame]:
        empty = True
        for frame in self._read(dataset, self.files[dataset], columns, batch_rows):
            empty = False
            yield frame
        if empty:
            yield self._empty(dataset, columns)

    def partitions(self) -> list[tuple[str, int]]:
        counts: dict[str, int] = {}
        for dataset in schema.TABLES_BY_DATASET:
            for path, _, n in self.files.get(dataset, []):
                counts[path.parent.name] = counts.get(path.parent.name, 0) + n
        return sorted(counts.items())

    def partition(self, dataset: str, names: list[str], columns: list[str]) -> pd.DataFrame:
        files = [f for f in self.files[dataset] if f[0].parent.name in names]
        parts = list(self._read(dataset, files, columns, 1 << 62))
        return parts[0] if parts else self._empty(dataset, columns)


# --- the suites' column rules (vectorised) and Great Expectations ---------------------------------


def _rule_error(rule: Rule, error: Exception) -> dict:
    return {"check_id": rule.check_id, "dataset": rule.dataset, "message": f"{rule.describe()}: {error!r}"}


class SuiteRun:
    """One dataset's suite rules over the batches of the night: evaluated counts, each rule's
    failing row ids, and the rules that could not run (a rule that fails on any batch is an
    error for the whole night, as if it had run on the whole frame)."""

    def __init__(self, dataset: str, rules: list[Rule]):
        self.dataset = dataset
        self.rules = rules
        self.rows = 0
        self.evaluated = [0] * len(rules)
        self.failing: list[list[np.ndarray]] = [[] for _ in rules]
        self.errors: dict[int, dict] = {}

    def add(self, frame: pd.DataFrame) -> list[pd.DataFrame]:
        """Evaluate every rule on one prepared batch; returns the failing rows of each rule that
        has some (RAW_FAILURE_COLUMNS and `_rule`, the rule's position in the suite)."""
        if frame.empty:
            return []
        self.rows += len(frame)
        row_ids = frame["_row_id"].to_numpy()
        parts = []
        for i, rule in enumerate(self.rules):
            if i in self.errors:
                continue
            try:
                verdict: RuleVerdict = evaluate_rule(rule, frame)
            except (KeyError, TypeError, ValueError) as e:
                self.errors[i] = _rule_error(rule, e)
                continue
            self.evaluated[i] += verdict.evaluated
            if verdict.failing.any():
                positions = np.flatnonzero(verdict.failing)
                self.failing[i].append(row_ids[positions])
                parts.append(_rule_failures(rule, frame, positions).assign(_rule=i))
        return parts

    def evaluated_by_check(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for i, rule in enumerate(self.rules):
            if i not in self.errors:
                key = (rule.check_id, self.dataset)
                out[key] = out.get(key, 0) + self.evaluated[i]
        return out

    def verdict_rules(self) -> list[Rule]:
        """The rules of the checks that have a verdict (at least one of their rules ran)."""
        checks = {r.check_id for i, r in enumerate(self.rules) if i not in self.errors}
        return [r for r in self.rules if r.check_id in checks]

    def verdicts(self) -> pd.DataFrame:
        """`_row_id` + one boolean `ok__<check>` per check: False where any of its rules failed."""
        ok: dict[str, np.ndarray] = {}
        for i, rule in enumerate(self.rules):
            if i in self.errors:
                continue
            mask = ok.setdefault(rule.check_id, np.ones(self.rows, dtype=bool))
            for ids in self.failing[i]:
                mask[ids] = False
        return pd.DataFrame(
            {
                "_row_id": np.arange(self.rows, dtype="int64"),
                **{verdict_column(check_id): mask for check_id, mask in ok.items()},
            }
        )


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
    """Every rule of every non-empty dataset's suite on whole prepared frames: all failing rows
    (no cap) and the verdicts."""
    outcome = RuleOutcome([], {}, [], {}, {})
    for dataset, build in SUITE_BUILDERS.items():
        frame = frames.get(dataset)
        if frame is None or frame.empty:
            continue
        run = SuiteRun(dataset, build(config, night))
        outcome.failures.extend(run.add(frame))
        outcome.evaluated.update(run.evaluated_by_check())
        outcome.errors.extend(run.errors.values())
        outcome.rules[dataset] = run.verdict_rules()
        outcome.verdicts[dataset] = run.verdicts()
    return outcome


def _rule_failures(rule: Rule, frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """The failing rows of one rule (at `positions` in `frame`): RAW_FAILURE_COLUMNS."""
    if rule.expectation_type == PAIR_A_GREATER_THAN_B:
        a, b = rule.column, rule.kwargs["column_B"]
        values = [
            f"{a}={_text(x)} < {b}={_text(y)}"
            for x, y in zip(frame[a].to_numpy()[positions], frame[b].to_numpy()[positions], strict=True)
        ]
    else:
        values = [_text(v) for v in frame[rule.column].to_numpy()[positions]]
    return pd.DataFrame(
        {
            "check_id": rule.check_id,
            "dataset": rule.dataset,
            "_row_id": frame["_row_id"].to_numpy()[positions],
            "column": rule.column,
            "value": pd.Series(values, dtype="object"),
        }
    )


def import_great_expectations() -> None:
    """Import Great Expectations and what its validation loads on first use (2-4 s of imports
    before any check runs, half again as much before `import_gx` deferred the modules no check of
    ours uses: expectations/gx_import.py). The data_docs stage's declared warm-up, run in its worker when the
    night starts (the stage declares `early`): the import overlaps ingest, quality and reconcile."""
    import_gx()
    import great_expectations.expectations  # noqa: F401
    from great_expectations.core.run_identifier import RunIdentifier  # noqa: F401
    from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: F401


def new_gx_context(data_docs_dir: Path | None):
    """An ephemeral GX context, progress bars off, Data Docs (if asked) under `data_docs_dir`."""
    gx = import_gx()
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


class GxRun:
    """One Great Expectations run of the night: each dataset's verdict frame validated with its
    verdict suite as soon as the dataset is done (one validation per dataset, one expectation per
    check), then the Data Docs."""

    def __init__(self, config: CheckConfig, night: dt.date, data_docs_dir: Path | None):
        self.config, self.night, self.data_docs_dir = config, night, data_docs_dir
        self.results: dict = {}
        self._context = self._source = self._run_id = None

    def validate(self, dataset: str, rules: list[Rule], verdicts: pd.DataFrame):
        """The suite validation result of one dataset (None when it has no verdict column)."""
        gx = import_gx()

        if len(verdicts.columns) == 1:
            return None
        if self._context is None:
            from great_expectations.core.run_identifier import RunIdentifier

            self._context = new_gx_context(self.data_docs_dir)
            self._source = self._context.data_sources.add_pandas("staged")
            self._run_id = RunIdentifier(
                run_name=f"night-{self.night.isoformat()}", run_time=dt.datetime.now(dt.UTC)
            )
        suite = self._context.suites.add(verdict_suite(dataset, rules, self.config, self.night))
        batch_definition = self._source.add_dataframe_asset(dataset).add_batch_definition_whole_dataframe(
            "night"
        )
        validation = self._context.validation_definitions.add(
            gx.ValidationDefinition(name=dataset, data=batch_definition, suite=suite)
        )
        self.results[dataset] = validation.run(
            batch_parameters={"dataframe": verdicts}, result_format=GX_RESULT_FORMAT, run_id=self._run_id
        )
        return self.results[dataset]

    def build_data_docs(self) -> None:
        if self.data_docs_dir is not None and self.results:
            self._context.build_data_docs()

    def finish(self, failing: dict[str, dict[str, int]]) -> tuple[dict, list[dict], float]:
        """Build the Data Docs; (`gx_summary` of the results, `_gx_errors` against the rules'
        failing counts per dataset and verdict column, 0.0: no seconds spent elsewhere)."""
        self.build_data_docs()
        return gx_summary(self.results), _gx_errors(self.results, failing), 0.0


def gx_summary(results: dict) -> dict[str, list[tuple]]:
    """What GX recorded, as plain values: per dataset, per check (sorted) its (check_id, success,
    element_count, unexpected_count, unexpected_percent, missing_count)."""
    return {
        dataset: sorted(
            (
                r.expectation_config.meta["check_id"],
                bool(r.success),
                r.result.get("element_count"),
                r.result.get("unexpected_count"),
                r.result.get("unexpected_percent"),
                r.result.get("missing_count"),
            )
            for r in result.results
        )
        for dataset, result in results.items()
    }


class VerdictFiles:
    """Where the quality stage leaves each dataset's verdict frame for the data_docs stage: one
    Parquet file per dataset with a verdict column (`_row_id` and one boolean per check: no
    identity, a few bits per row). Great Expectations then validates them beside the load, not
    before it: the findings the load acts on come from the vectorised rules, and GX's import,
    validation and Data Docs (issue #19: ~half of the quality stage on a 10k night, 4 of 8 s) no
    longer hold the night's books back. Same interface as GxRun for validate_rows."""

    def __init__(self, folder: Path):
        self.folder = folder
        if folder.exists():
            shutil.rmtree(folder)  # an earlier run's datasets that have no verdicts tonight
        folder.mkdir(parents=True)

    def validate(self, dataset: str, rules: list[Rule], verdicts: pd.DataFrame) -> None:
        if len(verdicts.columns) == 1:
            return
        pq.write_table(
            pa.Table.from_pandas(verdicts, preserve_index=False), self.folder / f"{dataset}.parquet"
        )

    def finish(self, failing: dict[str, dict[str, int]]) -> tuple[dict, list[dict], float]:
        """Nothing validated here: no summary, no errors (the data_docs stage has them)."""
        return {}, [], 0.0


def read_verdicts(
    folder: Path, config: CheckConfig, night: dt.date
) -> Iterator[tuple[str, list[Rule], pd.DataFrame]]:
    """The verdict frames VerdictFiles wrote, in the night's dataset order, each with its verdict
    rules: the rules of the checks that have a verdict column (SuiteRun.verdict_rules), rebuilt
    from the checks' definitions rather than read back from a file."""
    for dataset in DATASETS:
        path = folder / f"{dataset}.parquet"
        if not path.exists():
            continue
        verdicts = pq.read_table(path).to_pandas()
        columns = set(verdicts.columns)
        rules = [r for r in SUITE_BUILDERS[dataset](config, night) if verdict_column(r.check_id) in columns]
        yield dataset, rules, verdicts


def validate_verdicts(
    folder: Path, config: CheckConfig, night: dt.date, data_docs_dir: Path | None
) -> tuple[dict, list[dict], float]:
    """Great Expectations on the verdict frames in `folder`, then the Data Docs: (gx_summary,
    errors: checks GX could not validate, seconds). A GX count that disagrees with the rules'
    failing rows raises (a finding lost or invented)."""
    started = time.perf_counter()
    run = GxRun(config, night, data_docs_dir)
    failing: dict[str, dict[str, int]] = {}
    for dataset, rules, verdicts in read_verdicts(folder, config, night):
        failing[dataset] = failing_counts(verdicts)
        run.validate(dataset, rules, verdicts)
    summary, errors, _ = run.finish(failing)
    return summary, errors, time.perf_counter() - started


def run_gx(outcome: RuleOutcome, config: CheckConfig, night: dt.date, data_docs_dir: Path | None) -> dict:
    """GX validates each dataset's verdict frame with its verdict suite and builds the Data Docs.

    Returns {dataset: suite validation result}.
    """
    run = GxRun(config, night, data_docs_dir)
    for dataset, verdicts in outcome.verdicts.items():
        run.validate(dataset, outcome.rules[dataset], verdicts)
    run.build_data_docs()
    return run.results


def gx_errors(results: dict, outcome: RuleOutcome) -> list[dict]:
    """Checks GX could not validate, and a refusal of any GX count that disagrees with the rules.

    GX's unexpected count of a verdict column must equal the rows the vectorised rules failed:
    a disagreement means a finding was lost or invented, so it raises instead of reporting.
    """
    return _gx_errors(results, {dataset: failing_counts(v) for dataset, v in outcome.verdicts.items()})


def failing_counts(verdicts: pd.DataFrame) -> dict[str, int]:
    """Per verdict column of a dataset's verdict frame: its failing rows."""
    return {c: int((~verdicts[c]).sum()) for c in verdicts.columns if c != "_row_id"}


def _gx_errors(results: dict, failing_by_dataset: dict[str, dict[str, int]]) -> list[dict]:
    errors = []
    for dataset, result in results.items():
        failing_by_column = failing_by_dataset[dataset]
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
            failing = failing_by_column[verdict_column(check_id)]
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


def dataset_columns(dataset: str, rules: list[Rule], checks: list[str]) -> list[str]:
    """The columns of `dataset` the quality stage reads: the keys, the suite rules' columns and
    those the given row checks read."""
    extra = [c for check_id in checks for c in ROW_CHECK_COLUMNS[check_id].get(dataset, ())]
    return list(dict.fromkeys([*KEY_COLUMNS, *sorted(suite_columns(rules)), *extra]))


def keyed_failures(raw: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Failing rows of one frame (RAW_FAILURE_COLUMNS) with their encounter keys, as the findings
    hold them (ARCHITECTURE.md "Findings"), plus `_row_id` to keep the night's row order."""
    dataset = raw["dataset"].iloc[0]
    positions = frame.index.get_indexer(raw["_row_id"].to_numpy(dtype="int64"))
    n = len(positions)

    def col(name: str):
        return frame[name].to_numpy()[positions] if name in frame.columns else np.full(n, None)

    if dataset in FHIR_DATASETS:
        encounter_id, version, row_index = col("resource_id"), np.full(n, None), col("line_number")
    else:
        encounter_id, version = col("encounter_id"), col("version")
        row_index = np.full(n, None) if dataset == "encounters" else col("row_index")
    return pd.DataFrame(
        {
            "facility_code": col("facility_code"),
            "encounter_id": encounter_id,
            "version": pd.array(pd.Series(version, dtype="object"), dtype="Int64"),
            "dataset": dataset,
            "row_index": pd.array(pd.Series(row_index, dtype="object"), dtype="Int64"),
            "check_id": raw["check_id"].to_numpy(),
            "column": raw["column"].to_numpy(),
            "value": [_text(v) for v in raw["value"]],
            "_row_id": raw["_row_id"].to_numpy(dtype="int64"),
        }
    )


@dataclass
class _Collected:
    """What the stage keeps of the night while it reads it: small."""

    findings: list[pd.DataFrame] = field(default_factory=list)
    evaluated: dict[tuple[str, str], int] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: {"rules": 0.0, "gx": 0.0, "rows": 0.0})

    def add(self, other: _Collected) -> None:
        """What another part of the night kept, after this part's (findings in that order)."""
        self.findings.extend(other.findings)
        self.count(other.evaluated)
        self.errors.extend(other.errors)
        for key, seconds in other.seconds.items():
            self.seconds[key] += seconds

    def count(self, evaluated: dict[tuple[str, str], int]) -> None:
        for key, n in evaluated.items():
            self.evaluated[key] = self.evaluated.get(key, 0) + int(n)

    def run_row_check(self, check_id: str, check: Check, frames: dict[str, pd.DataFrame], night: dt.date):
        started = time.perf_counter()
        outcome = ROW_CHECKS[check_id](frames, night, check)
        self.count({(check_id, ds): n for ds, n in outcome.evaluated.items()})
        for dataset, part in outcome.failures.groupby("dataset", sort=False) if len(outcome.failures) else []:
            raw = part.assign(check_id=check_id)[RAW_FAILURE_COLUMNS]
            self.findings.append(keyed_failures(raw, frames[dataset]))
        self.seconds["rows"] += time.perf_counter() - started


def _cross_table_checks(
    rows: NightRows, cross: list[str], config: CheckConfig, night: dt.date, batch_rows: int
) -> _Collected:
    """The cross-table checks: whole facility partitions, grouped up to CROSS_TABLE_BATCHES
    batches' rows; once more on no rows, so an empty night lists the datasets they cover as a
    whole-night run does."""
    kept = _Collected()
    cross_columns = {
        ds: list(
            dict.fromkeys(
                [*KEY_COLUMNS, *(c for check_id in cross for c in ROW_CHECK_COLUMNS[check_id].get(ds, ()))]
            )
        )
        for ds in schema.TABLES_BY_DATASET
    }
    for names in [*partition_groups(rows.partitions(), CROSS_TABLE_BATCHES * batch_rows), []]:
        frames = {
            ds: prepare_frame(ds, part)
            for ds, columns in cross_columns.items()
            for part in [rows.partition(ds, names, columns)]
        }
        for check_id in cross:
            kept.run_row_check(check_id, config[check_id], frames, night)
    return kept


def _serve_cross_table(conn, rows, cross, config, night, batch_rows) -> None:
    try:
        conn.send(("done", _cross_table_checks(rows, cross, config, night, batch_rows)))
    except BaseException:  # noqa: BLE001  (the stage raises it)
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class CrossTableBeside:
    """The cross-table checks (`_cross_table_checks`) in a forked process beside the datasets'
    loop; `result` waits for what they kept (findings, counts, errors), or raises their failure;
    `stop` ends the process when the stage fails first. Same results as in-process: the findings
    are sorted when assembled, and these come after the datasets' as before."""

    def __init__(self, rows, cross, config, night, batch_rows):
        self._conn, child = multiprocessing.Pipe(duplex=False)
        self._process = start_forked(
            _serve_cross_table, (child, rows, cross, config, night, batch_rows), "healthbook-quality-cross"
        )
        child.close()

    def result(self) -> _Collected:
        try:
            message = self._conn.recv()
        except EOFError:
            self._process.join()
            raise RuntimeError(
                f"the cross-table checks' process ended without a result (exit code {self._process.exitcode})"
            ) from None
        finally:
            self._conn.close()
        self._process.join()
        if message[0] == "error":
            raise RuntimeError(f"the cross-table checks failed:\n{message[1]}")
        return message[1]

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._conn.close()


def validate_rows(
    rows: NightRows,
    night: dt.date,
    config: CheckConfig | None = None,
    data_docs_dir: Path | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    verdicts_dir: Path | None = None,
) -> QualityResult:
    """Every check on one night's staged rows, read a batch (or a facility partition) at a time:
    all failing rows (no cap) and per-check results, the same whatever `batch_rows`. Great
    Expectations validates each dataset's verdicts here, or, with `verdicts_dir` (the stage), they
    are written there for the data_docs stage (VerdictFiles)."""
    config = config or load_checks()
    gx = VerdictFiles(verdicts_dir) if verdicts_dir is not None else None
    row_checks = [c for c, check in config.checks.items() if check.engine == "rows"]
    local = [c for c in row_checks if c not in CROSS_TABLE_CHECKS]
    cross = [c for c in row_checks if c in CROSS_TABLE_CHECKS]
    kept = _Collected()
    gx = gx or GxRun(config, night, data_docs_dir)
    failing: dict[str, dict[str, int]] = {}
    # the stage (verdicts_dir): the cross-table checks in a forked process while this one runs the
    # datasets' rules and row checks (about half of the work each: 10k night 0.71 and 0.83 s)
    cross_table = (
        CrossTableBeside(rows, cross, config, night, batch_rows)
        if verdicts_dir is not None and can_fork()
        else None
    )

    try:
        for dataset in DATASETS:
            rules = SUITE_BUILDERS[dataset](config, night) if dataset in SUITE_BUILDERS else []
            suite = SuiteRun(dataset, rules)
            rule_findings = []
            for raw in rows.batches(dataset, dataset_columns(dataset, rules, local), batch_rows):
                frame = prepare_frame(dataset, raw)
                started = time.perf_counter()
                for failures in suite.add(frame):
                    rule_findings.append(
                        keyed_failures(failures, frame).assign(_rule=failures["_rule"].to_numpy())
                    )
                kept.seconds["rules"] += time.perf_counter() - started
                for check_id in local:
                    if dataset in ROW_CHECK_COLUMNS[check_id]:
                        kept.run_row_check(check_id, config[check_id], {dataset: frame}, night)
            if not suite.rows:  # as on a whole frame: a dataset without rows has no suite results
                continue
            # a rule that could not run on some batch is an error for the night: none of its findings
            kept.findings.extend(
                f[~f["_rule"].isin(suite.errors)].drop(columns="_rule") for f in rule_findings
            )
            kept.count(suite.evaluated_by_check())
            kept.errors.extend(suite.errors.values())
            started = time.perf_counter()
            verdicts = suite.verdicts()
            failing[dataset] = failing_counts(verdicts)
            gx.validate(dataset, suite.verdict_rules(), verdicts)
            del verdicts
            kept.seconds["gx"] += time.perf_counter() - started

        kept.add(
            cross_table.result()
            if cross_table is not None
            else _cross_table_checks(rows, cross, config, night, batch_rows)
        )
    except BaseException:
        if cross_table is not None:  # the night fails: the process beside it ends too
            cross_table.stop()
        raise

    started = time.perf_counter()
    gx_results, gx_errors_found, _ = gx.finish(failing)  # the Data Docs too (GxRun)
    kept.seconds["gx"] += time.perf_counter() - started
    kept.errors.extend(gx_errors_found)
    findings = _assemble_findings(kept.findings, config, night)
    evaluated, errors = kept.evaluated, kept.errors
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
        gx_seconds=kept.seconds["gx"],
        gx_results=gx_results,
        rows_seconds=kept.seconds["rows"],
        suite_rules_seconds=kept.seconds["rules"],
    )


def validate_frames(
    staged: dict[str, pd.DataFrame],
    night: dt.date,
    config: CheckConfig | None = None,
    data_docs_dir: Path | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> QualityResult:
    """Every check on one night's staged frames: all failing rows (no cap) and per-check results."""
    return validate_rows(FrameRows(staged), night, config, data_docs_dir, batch_rows)


def _assemble_findings(parts: list[pd.DataFrame], config: CheckConfig, night: dt.date) -> pd.DataFrame:
    """The findings in the ARCHITECTURE.md "Findings" shape, sorted by their keys; rows with equal
    keys (several bad codes in one list) keep the night's row order."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pa.Table.from_pylist([], schema=FINDINGS_SCHEMA).to_pandas()
    out = pd.concat(parts, ignore_index=True)
    out["night"] = night
    out["stage"] = STAGE
    out["reason"] = out["check_id"].map({c.id: c.reason for c in config.checks.values()})
    out["severity"] = out["check_id"].map({c.id: c.severity for c in config.checks.values()})
    out = out.sort_values([*SORT_KEY, "_row_id"], na_position="first", kind="stable")
    return findings_table(out[FINDINGS_COLUMNS].reset_index(drop=True)).to_pandas()


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
            # GX's validation and Data Docs, or writing the verdicts for the data_docs stage
            "great_expectations" if result.gx_results else "verdicts": round(result.gx_seconds, 3),
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


def validate_night(ctx: NightContext, batch_rows: int | None = None) -> Path:
    """The quality stage: validate the night's staged rows (a batch at a time, `batch_rows` else
    the setting quality.batch_rows), write findings, the verdicts (for the data_docs stage) and
    the manifest.

    The report is not built here: the report stage (report.report_night) builds it once the load's
    outcomes and the ledger exist, and every page, chart and feedback file it writes would replace
    one written here (building it twice cost a third of this stage, issue #19)."""
    config = load_checks()
    result = validate_rows(
        StagedRows(ctx.warehouse, ctx.night),
        ctx.night,
        config,
        batch_rows=batch_rows or ctx.settings.quality.batch_rows,
        verdicts_dir=ctx.warehouse.verdicts(ctx.night),
    )
    return write_quality(ctx.warehouse, ctx.night, result, config)


def data_docs_night(ctx: NightContext) -> Path:
    """The data_docs stage: Great Expectations validates the verdicts the quality stage wrote and
    builds the Data Docs (`quality/data_docs`); the manifest `runs/<D>/data_docs.json` lists what
    GX recorded per dataset and check and the checks it could not validate (the report shows
    those as errors)."""
    config = load_checks()
    summary, errors, seconds = validate_verdicts(
        ctx.warehouse.verdicts(ctx.night), config, ctx.night, ctx.warehouse.quality / "data_docs"
    )
    manifest = ctx.warehouse.manifest(ctx.night, DATA_DOCS_STAGE)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "night": ctx.night.isoformat(),
        "stage": DATA_DOCS_STAGE,
        "checks_version": config.version,
        "errors": errors,
        "results": {
            dataset: [dict(zip(GX_SUMMARY_FIELDS, row, strict=True)) for row in rows]
            for dataset, rows in summary.items()
        },
        "seconds": {"great_expectations": round(seconds, 3)},
    }
    manifest.write_text(json.dumps(body, indent=1, default=str))
    return manifest
