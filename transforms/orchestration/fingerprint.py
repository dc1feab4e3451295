"""Fingerprints of a night's stages: a re-run of an unchanged night skips the stages whose inputs,
code and outputs are all as they were when the stage last finished.

A stage's *key* is a SHA-256 over what its outputs depend on: its code (the files of its own room,
of the core and its own SQL and data, as its declaration says, and the versions of the libraries
that shape the output: editing the PDF code, the CLI or the generator re-runs no stage), the
upstream stages' output digests, and the stage's own inputs (the extract files'
content, the registry files' content, the earlier nights' encounter versions, the serving database
it loads into, a check value of the pseudonym key). Its *record* `runs/<D>/fingerprints/<stage>.json`
holds that key and a listing of the stage's outputs (path, size, mtime, inode); it is written only
after the stage's outputs are complete and deleted before the stage starts, so a stage that failed
or was killed has no record and runs again. The listing's digest is what downstream keys hash: an
upstream stage that ran again rewrote its files, so everything downstream runs again.

Extract and registry files are hashed by content (a legal record: a file replaced by one of the
same size and mtime must be read again); the stages' own outputs are listed by stat, since only
the pipeline writes them and hashing gigabytes of Parquet on every run would cost what skipping saves.

The load is decided by the serving database itself: the `load_fingerprints` table holds the last
recorded load, and a trigger on `load_history` empties it inside any load's transaction (this
night's, a later night's, one run outside the pipeline). A database restored, wiped or loaded since
has no matching row, and the night loads again.
"""

from __future__ import annotations

import copy
import datetime as dt
import hmac
import importlib.metadata
import json
import time
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import sqlalchemy as sa

from transforms.core.datasets import STAGED_DATASETS
from transforms.core.digest import (
    content_digest,
    file_sha256,
    files_under,
    listing,
    registry_digest,
    sha256_of,
)
from transforms.core.safe_io import write_json_atomic
from transforms.core.stage import PROJECT_ROOT, code_location
from transforms.orchestration.stages import BY_NAME

# Libraries whose version can change the bytes or rows a stage writes.
LIBRARIES = ("numpy", "pandas", "pyarrow", "duckdb", "great_expectations", "splink", "sqlalchemy", "lxml")
RECORD_DIR = "fingerprints"
# The serving table holding the last recorded load (sql/serving/load_fingerprints.sql).
LOAD_FINGERPRINTS_TABLE = "load_fingerprints"
# A check value stored instead of the pseudonym key: a new key gives a new value, the key stays secret.
KEY_CHECK_MESSAGE = b"fingerprint-check"

# The upstream stages whose output digests are part of a stage's key (the stages' declarations).
UPSTREAM: dict[str, tuple[str, ...]] = {name: stage.upstream for name, stage in BY_NAME.items()}


# Ingest's own input is the night's extracts (16 GB at 1M files, hashed in one thread before the
# stage could start). When a run does not need the key to decide (no record of a finished ingest,
# or forced), that input is digested after the stage (`remember`), from the SHA-256 ingest's
# workers took of each file as they read it (Warehouse.extracts_digest_memo), not by reading the
# night a second time. A file changed after the stage started makes the digest equal to nothing
# (content_digest's changed_since_ns): the next run reads the night again.
DEFERRED_INPUT = {"ingest": "extracts"}


@dataclass(frozen=True)
class Decision:
    """Whether one stage of the night can be skipped; `key` is recorded once the stage has run."""

    stage: str
    key: str | None  # None: an input is digested once the stage has run (DEFERRED_INPUT)
    skip: bool
    reason: str  # why the stage runs ("unchanged" when it is skipped)
    parts: dict  # what the key was made of (kept in the record: why a later run did not skip)
    since_ns: int | None = None  # with a deferred input: time.time_ns() when the stage was decided


# --- hashing -------------------------------------------------------------------------------------


def code_files(stage: str) -> list[tuple[str, Path]]:
    """The files of the stage's code key, each with its name in the repository: its declared code,
    SQL and data, and the core (not caches). Found where the package is installed (a checkout, or
    site-packages where sql/ ships inside transforms/), named the same in both."""
    files: dict[str, Path] = {}
    for d in BY_NAME[stage].code_paths:
        base = code_location(d, PROJECT_ROOT)
        for p in files_under(base):
            if "__pycache__" not in p.parts and p.suffix != ".pyc":
                files[d if p == base else f"{d}/{p.relative_to(base).as_posix()}"] = p
    return sorted(files.items())


@cache
def library_versions() -> dict[str, str | None]:
    libraries = {}
    for name in LIBRARIES:
        try:
            libraries[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            libraries[name] = None
    return libraries


@cache
def code_digest(stage: str) -> str:
    """The stage's code version: the files of its declaration's code paths and the library versions."""
    return sha256_of(
        {
            "files": [[name, file_sha256(p)] for name, p in code_files(stage)],
            "libraries": library_versions(),
        }
    )


def versions_digests(warehouse, night: dt.date) -> tuple[str, str]:
    """Digests of the encounter versions of the nights before `night` (ingest's input: tonight's
    versions follow them) and of `night` itself (ingest's output), from the SHA-256 that ingest
    records beside each night's version file (hashed again when it is missing)."""
    from transforms.ingest.stage import version_nights, versions_digest_file, versions_file

    def digest_of(n: dt.date) -> str:
        recorded = versions_digest_file(warehouse, n)
        return recorded.read_text().strip() if recorded.exists() else file_sha256(versions_file(warehouse, n))

    nights = version_nights(warehouse)
    earlier = [[n.isoformat(), digest_of(n)] for n in nights if n < night]
    tonight = [[night.isoformat(), digest_of(night)]] if night in nights else []
    return sha256_of(earlier), sha256_of(tonight)


# --- what each stage reads and writes ------------------------------------------------------------


def _partitions_until(warehouse, night: dt.date) -> list[Path]:
    """Every night partition of every staged dataset up to and including `night` (snapshot's input)."""
    root = warehouse.staging_root
    datasets = [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    return sorted(part for name in datasets for n, part in warehouse.staged_nights(name) if n <= night)


def outputs(ctx, stage: str) -> list[Path]:
    """The files and folders a stage writes for the night (what must still be there to skip it),
    as its declaration says.

    Not the files every night rewrites (quality/index.html, snapshots/latest.json, the state
    folder): a later night's run must not make this night's stage look changed."""
    return BY_NAME[stage].output_paths(ctx.warehouse.root, ctx.night, STAGED_DATASETS)


def _own_inputs(ctx, stage: str, deferred: bool = False) -> dict:
    """The stage's inputs beyond its upstream stages' outputs and the code; `deferred`: the one
    DEFERRED_INPUT names is None (digested after the stage: `_deferred_input`)."""
    wh, night = ctx.warehouse, ctx.night
    if stage == "ingest":
        return {
            "extracts": None if deferred else _extracts_digest(ctx),
            "earlier_versions": versions_digests(wh, night)[0],
        }
    if stage == "reconcile":
        from transforms.reconcile.stage import retry_versions

        retry = retry_versions(wh, night)  # the night's recorded set once it has one
        return {
            "registry": registry_digest(ctx.registry_path),
            "retry": sha256_of(retry.astype("str").to_numpy().tolist()),
        }
    if stage == "load":
        return {
            "registry": registry_digest(ctx.registry_path),
            "serving": sa.make_url(ctx.serving_url).render_as_string(hide_password=True),
        }
    if stage == "report":
        from expectations.history import HISTORY_NIGHTS
        from expectations.i18n import resolve_language
        from expectations.report import previous_findings_night

        previous = previous_findings_night(wh, night)
        # the 30 nights' ledgers and findings (trends, alerts), the reviewers' decisions, the language
        earlier = [night - dt.timedelta(days=k) for k in range(1, HISTORY_NIGHTS)]
        history = [wh.ledger(d) for d in earlier] + [wh.quarantine("findings", d) for d in earlier]
        return {
            "previous_findings": None
            if previous is None
            else listing(wh.root, [wh.quarantine("findings", previous)]),
            "history": sha256_of(listing(wh.root, history)),
            "decisions": listing(wh.root, [wh.review_decisions]),
            "language": resolve_language(ctx.settings.quality.report_language),
        }
    if stage == "snapshot":
        from transforms.snapshot.stage import outcome_files

        return {
            "registry": registry_digest(ctx.registry_path),
            "key_check": hmac.new(ctx.pseudonym_key(), KEY_CHECK_MESSAGE, "sha256").hexdigest(),
            "staged": sha256_of(listing(wh.root, _partitions_until(wh, night))),
            "outcomes": sha256_of(listing(wh.root, [Path(p) for p in outcome_files(wh, night)])),
        }
    return {}


def _state(ctx, stage: str) -> dict:
    """Shared state a stage leaves behind that later nights rewrite as a whole, checked by content."""
    if stage == "ingest":
        return {"versions_tonight": versions_digests(ctx.warehouse, ctx.night)[1]}
    if stage == "load":
        pending = ctx.warehouse.pending
        return {"pending": file_sha256(pending) if pending.exists() else None}
    return {}


# --- records -------------------------------------------------------------------------------------


def record_path(ctx, stage: str) -> Path:
    return ctx.warehouse.run_dir(ctx.night) / RECORD_DIR / f"{stage}.json"


def read_record(ctx, stage: str) -> dict | None:
    path = record_path(ctx, stage)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _extracts_digest(ctx, changed_since_ns: int | None = None) -> str:
    # each extract's SHA-256 kept with its stat: a re-run reads none of an unchanged night
    return content_digest(
        ctx.night_dir, ctx.warehouse.extracts_digest_memo(ctx.night), changed_since_ns=changed_since_ns
    )


def _deferred_input(ctx, stage: str, since_ns: int) -> str:
    """The input DEFERRED_INPUT names, digested after the stage that started at `since_ns`."""
    if stage == "ingest":
        return _extracts_digest(ctx, changed_since_ns=since_ns)
    raise ValueError(f"{stage} has no deferred input")


def stage_key(ctx, stage: str, deferred: bool = False) -> tuple[str | None, dict]:
    """The stage's key and what it was made of (upstream digests, own inputs, code); `deferred`:
    no key yet, the input DEFERRED_INPUT names is None in the parts (`remember` completes them)."""
    upstream = {}
    for name in UPSTREAM[stage]:
        record = read_record(ctx, name)
        upstream[name] = record["output_digest"] if record else None
    # the settings that change the stage's outputs (e.g. the load's grace period) are inputs too
    inputs = _own_inputs(ctx, stage, deferred) | ctx.settings.affecting(stage)
    parts = {"code": code_digest(stage), "upstream": upstream, "inputs": inputs}
    return (None if deferred else sha256_of(parts)), parts


def decide(ctx, stage: str, force: bool = False) -> Decision:
    """Whether `stage` of the night can be skipped: same key as its record, outputs as it left them
    (and, for the load, the serving database says this load is still the last one). A stage with
    a DEFERRED_INPUT that runs anyway (forced, or no record) gets its key when it is remembered."""
    record = read_record(ctx, stage)
    if stage in DEFERRED_INPUT and (force or record is None):
        since_ns = time.time_ns()
        _, parts = stage_key(ctx, stage, deferred=True)
        reason = "forced" if force else "no record of a finished run"
        return Decision(stage, None, False, reason, parts, since_ns)
    key, parts = stage_key(ctx, stage)
    if force:
        reason = "forced"
    elif record is None:
        reason = "no record of a finished run"
    elif record.get("key") != key:
        reason = "inputs or code changed"
    elif record.get("outputs") != listing(ctx.warehouse.root, outputs(ctx, stage)):
        reason = "outputs changed or missing"
    elif record.get("state") != _state(ctx, stage):
        reason = "shared state changed"
    elif not (ctx.warehouse.root / record.get("manifest", "")).is_file():
        reason = "manifest missing"
    elif stage == "load" and not serving_has_load(ctx.serving_url, ctx.night, key):
        reason = "serving database does not hold this load"
    else:
        return Decision(stage, key, True, "unchanged", parts)
    return Decision(stage, key, False, reason, parts)


def forget(ctx, stage: str) -> None:
    """Delete the stage's record before it runs: until it finishes, it must not be skipped."""
    record_path(ctx, stage).unlink(missing_ok=True)


def manifest_of(ctx, stage: str) -> Path:
    """The path the stage returned when it last ran (its manifest), from its record."""
    return ctx.warehouse.root / read_record(ctx, stage)["manifest"]


def remember(ctx, decision: Decision, manifest: Path) -> Path:
    """Record a stage that has just finished with its outputs complete (`manifest`: what the stage
    returned); returns the record's path."""
    stage = decision.stage
    if decision.key is None:  # its deferred input, digested now that the stage has run
        parts = copy.deepcopy(decision.parts)
        parts["inputs"][DEFERRED_INPUT[stage]] = _deferred_input(ctx, stage, decision.since_ns)
        decision = replace(decision, key=sha256_of(parts), parts=parts)
    if stage == "load":
        record_serving_load(ctx.serving_url, ctx.night, decision.key)
    found = listing(ctx.warehouse.root, outputs(ctx, stage))
    state = _state(ctx, stage)
    record = {
        "night": ctx.night.isoformat(),
        "stage": stage,
        "key": decision.key,
        "key_parts": decision.parts,
        "ran_because": decision.reason,
        "manifest": Path(manifest).resolve().relative_to(ctx.warehouse.root.resolve()).as_posix(),
        "outputs": found,
        "state": state,
        "output_digest": sha256_of({"outputs": found, "state": state}),
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    if decision.since_ns is not None:
        record["since_ns"] = decision.since_ns  # the DAG's finalize knows its plan's record by it
    path = record_path(ctx, stage)
    return write_json_atomic(path, record, sort_keys=True)


# --- the serving database's side of the load -----------------------------------------------------

_TRIGGER_DDL = {
    "sqlite": ("load_fingerprints_clear_on_insert.sql", "load_fingerprints_clear_on_update.sql"),
    "postgresql": ("load_fingerprints_clear_function.sql", "load_fingerprints_clear_trigger.sql"),
}


def _night_param(night: dt.date, dialect: str):
    return night if dialect == "postgresql" else night.isoformat()


def record_serving_load(url: str, night: dt.date, key: str) -> None:
    """Make `key` the serving database's last recorded load (the table and its trigger created
    when missing). Written after the load committed: a crash in between costs a re-load only."""
    from transforms.serving.db import ensure_schema, serving_engine, sql_file

    engine = serving_engine(url)
    dialect = engine.dialect.name
    ensure_schema(engine)  # load_history must exist for the trigger
    with engine.begin() as conn:
        conn.exec_driver_sql(sql_file("load_fingerprints.sql", dialect))
        for name in _TRIGGER_DDL[dialect]:
            conn.exec_driver_sql(sql_file(name, dialect))
        conn.execute(sa.text(sql_file("queries/delete_load_fingerprints.sql", dialect)))
        conn.execute(
            sa.text(sql_file("queries/insert_load_fingerprint.sql", dialect)),
            {
                "night": _night_param(night, dialect),
                "fingerprint": key,
                "recorded_at": dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0),
            },
        )


def serving_has_load(url: str, night: dt.date, key: str) -> bool:
    """True when the serving database's last recorded load is this night's with this key (no load
    of any night since). Any failure to tell (unreachable, no table) counts as False: the load
    stage then runs and reports the problem itself."""
    from transforms.serving.db import serving_engine, sql_file

    try:
        engine = serving_engine(url)
        dialect = engine.dialect.name
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(LOAD_FINGERPRINTS_TABLE):
                return False
            found = conn.execute(
                sa.text(sql_file("queries/load_fingerprint_of_night.sql", dialect)),
                {"night": _night_param(night, dialect)},
            ).scalar()
    except sa.exc.SQLAlchemyError:
        return False
    return found == key
