"""The ingest stage: a night's XML 130 envelopes and FHIR NDJSON into typed, partitioned Parquet.

The stage is shardable so that the Airflow DAG can map it over facility shards; `ingest_night`
is exactly the same three steps with the shards read in one local process pool:
  1. `plan_ingest(ctx)` (discovery.py): discover `<extracts>/<D>/**/*.xml` (os.scandir), take
     each file's facility from its folder (`<province>/<facility>/`), else a hint from its
     first 64 KB (a byte regex, no parsing), put every file in shard
     hash(facility) mod n_shards (all files of a facility in one shard) and write
     `runs/<D>/ingest_plan.json`; returns the shard numbers;
  2. `ingest_shard(ctx, shard)` (pool.py, parse.py, inner.py): stream the shard's envelopes HOSO by HOSO
     (extract.EnvelopeReader), decode and type rows in batches (at most `batch_hosos` HOSOs
     and `batch_bytes` of payload; normalize.py) into scratch parts under
     `scratch/ingest/<D>/shard-<nnn>/`, and write the shard's small per-file and per-HOSO facts
     (key, content hash, findings) beside them;
  3. `finalize_ingest(ctx)` (finalize.py, versions.py, writers.py): read every shard's facts, assign encounter versions
     (state/encounter_versions/<D>.parquet, one file per night), turn the scratch parts into
     `staging/<dataset>/night=<D>/facility_code=<F>/part-0.parquet` (zstd, large row groups),
     dropping rows of rejected files (a file is received whole or not at all); then findings,
     rejected files, FHIR and the manifest `runs/<D>/ingest.json`.

Every received HOSO has exactly one row in `staging/encounters` (a HOSO whose XML1 is missing or
unreadable gets a row with lineage only), so "received" = rows of `staging/encounters` tonight =
HOSOs read from accepted files. Re-running a night replaces its partitions and its versions; the
sharding never changes what is staged (the facility hint only places a file).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

from transforms.core.warehouse import Warehouse
from transforms.ingest.common import (  # noqa: F401 - the stage's public names
    FINALIZE_BUFFER_BYTES,
    REJECTED_FILE_SCHEMA,
    STAGE,
    XML_DATASETS,
    FileResult,
    IngestSettings,
    NightInput,
    _pool,
    _write_json,
)
from transforms.ingest.discovery import (  # noqa: F401
    PLAN_FILE,
    _read_plan,
    facility_hint,
    make_plan,
    plan_ingest,
    shard_count,
)
from transforms.ingest.finalize import _finalize, build_manifest  # noqa: F401
from transforms.ingest.parse import read_envelope_group  # noqa: F401
from transforms.ingest.pool import _read_shards
from transforms.ingest.versions import (  # noqa: F401
    VERSION_COLUMNS,
    assign_versions,
    earlier_versions,
    earlier_versions_table,
    tonight_versions,
    version_nights,
    versions_digest_file,
    versions_dir,
    versions_file,
)
from transforms.ingest.writers import finalize_dataset, ingest_fhir  # noqa: F401

log = logging.getLogger(__name__)


def ingest_shard(ctx, shard: int, workers: int = 1, settings: IngestSettings | None = None) -> Path:
    """Read one planned shard into its scratch (`scratch/ingest/<D>/shard-<nnn>/`); returns the
    path of its results file. Idempotent: a re-run replaces the shard's scratch. One process by
    default (an Airflow task); `workers` > 1 reads its file groups in a local process pool."""
    settings = settings or IngestSettings(**ctx.settings.ingest.overrides())
    plan = _read_plan(ctx)
    if shard not in plan["shards"]:
        raise ValueError(f"shard {shard} is not in the ingest plan of {ctx.night} (shards {plan['shards']})")
    if workers <= 1:
        return _read_shards(ctx, plan, [shard], settings, None)[0]
    with _pool(settings, workers) as pool:
        return _read_shards(ctx, plan, [shard], settings, pool)[0]


def finalize_ingest(ctx, settings: IngestSettings | None = None) -> Path:
    """Versions, staged datasets, findings, rejected files, FHIR and `ingest.json` from every
    planned shard's results; returns the manifest path. Raises when a planned shard has no
    results (its ingest_shard did not run or did not finish)."""
    settings = settings or IngestSettings(**ctx.settings.ingest.overrides())
    with _pool(settings, max(1, settings.workers)) as pool:
        return _finalize(ctx, settings, pool)


def ingest_night(ctx, settings: IngestSettings | None = None) -> Path:
    """The ingest stage of one night (ctx: transforms.core.context.NightContext); returns ingest.json.

    Exactly plan_ingest + ingest_shard of every shard + finalize_ingest, the shards' file groups
    read in one process pool (the night's FHIR read in it beside them, not after them).
    """
    settings = settings or IngestSettings(**ctx.settings.ingest.overrides())
    started = time.perf_counter()
    plan = make_plan(ctx, settings.max_shards, settings.shard_bytes_target)  # in memory: not read back
    shards = plan["shards"]
    planned = time.perf_counter()
    with _pool(settings, max(1, settings.workers)) as pool:
        # FHIR is independent of the envelopes: read while they are, not after them at finalize
        fhir = pool.submit(ingest_fhir, ctx.night_dir, ctx.night, ctx.warehouse, settings.limits)
        _read_shards(ctx, plan, shards, settings, pool)
        read = time.perf_counter()
        manifest = _finalize(ctx, settings, pool, fhir, plan)
    # the phases an operator (and benchmarks/ingest_phases.py) needs to tell discovery, parsing
    # and the night-wide finalize apart on a night of a million files
    log.info(
        "ingest %s: plan %.2f s (%d files, %d shards), read %.2f s, finalize %.2f s",
        ctx.night,
        planned - started,
        len(plan["files"]),
        len(shards),
        read - planned,
        time.perf_counter() - read,
    )
    return manifest


def ingest_extracts(
    night_dir: Path, night: dt.date, warehouse: Warehouse, settings: IngestSettings | None = None
) -> Path:
    """Ingest one night's extracts folder into the warehouse; returns the manifest path."""
    return ingest_night(NightInput(night, night_dir, warehouse), settings)
