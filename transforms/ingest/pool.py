"""The shards' tasks in the process pool and each shard's results (the small per-file facts a
shard hands to finalize)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa

from transforms.core import parquet_io
from transforms.ingest.common import (
    FileResult,
    IngestSettings,
    _write_json,
)
from transforms.ingest.discovery import _shard_dir, _shard_groups
from transforms.ingest.parse import _HOSO_FACTS_DIR, _HOSO_FACTS_SCHEMA, read_envelope_group

# --- shard results: the small per-file facts a shard hands to finalize -----------------------

_SHARD_RESULTS = "results.json"


def _write_shard_results(shard_dir: Path, shard: int, rows: list[tuple], unknown: dict[str, Counter]) -> Path:
    """Per-file facts (`FileResult.row()`s, in file order) as JSON (the workers wrote the per-HOSO
    facts as Parquet beside it); the JSON is written last (it marks the shard as done)."""
    payload = {
        "shard": shard,
        "columns": FileResult.ROW,
        "files": rows,
        "unknown_fields": {k: dict(sorted(v.items())) for k, v in sorted(unknown.items())},
    }
    return _write_json(shard_dir / _SHARD_RESULTS, payload, compact=True)


def _read_shard_results(shard_dir: Path) -> tuple[list[FileResult], pa.Table, dict[str, Counter]]:
    """A shard's per-file facts, its per-HOSO facts (Arrow, one row per HOSO) and unknown fields."""
    payload = json.loads((shard_dir / _SHARD_RESULTS).read_text())
    if tuple(payload.get("columns", ())) != FileResult.ROW:
        raise ValueError(
            f"{shard_dir / _SHARD_RESULTS}: written by another version of ingest (re-run the shard)"
        )
    results = [FileResult.from_row(row) for row in payload["files"]]
    parts = sorted((shard_dir / _HOSO_FACTS_DIR).glob(f"*{parquet_io.SCRATCH_SUFFIX}"))
    facts = (
        pa.concat_tables([parquet_io.read_scratch(p) for p in parts])
        if parts
        else _HOSO_FACTS_SCHEMA.empty_table()
    )
    unknown = {k: Counter(v) for k, v in payload["unknown_fields"].items()}
    return results, facts, unknown


def _read_shards(ctx, plan: dict, shards: list[int], settings: IngestSettings, pool) -> list[Path]:
    """Read every group of `shards` (in `pool`, largest groups first, or inline when None) and
    write each shard's results; returns the results paths in the order of `shards`."""
    tasks = []
    planned_bytes = {f["file_no"]: f["bytes"] for f in plan["files"]}  # never stat a symlink's target
    groups = _shard_groups(ctx, plan, shards, settings.group_bytes)
    for shard in shards:
        shard_dir = _shard_dir(ctx, shard)
        parquet_io.replace_partition(shard_dir)  # a re-run replaces the shard's scratch
        shard_dir.mkdir(parents=True)
        for group_no, files in groups[shard]:
            tasks.append((shard, group_no, files, sum(planned_bytes[n] for n, _, _ in files)))
    tasks.sort(key=lambda t: -t[3])
    if pool is None:
        outputs = [
            read_envelope_group(g, files, str(_shard_dir(ctx, s)), settings, str(ctx.night_dir))
            for s, g, files, _ in tasks
        ]
    else:
        futures = [
            pool.submit(read_envelope_group, g, files, str(_shard_dir(ctx, s)), settings, str(ctx.night_dir))
            for s, g, files, _ in tasks
        ]
        outputs = [f.result() for f in futures]
    by_shard: dict[int, tuple[list[tuple], dict[str, Counter]]] = {
        s: ([], defaultdict(Counter)) for s in shards
    }
    for (shard, *_), (rows, unknown) in zip(tasks, outputs, strict=True):
        by_shard[shard][0].extend(rows)
        for kind, counts in unknown.items():
            by_shard[shard][1][kind].update(counts)
    paths = []
    for shard in shards:
        rows, unknown = by_shard[shard]
        rows.sort(key=lambda row: row[0])  # by file number
        paths.append(_write_shard_results(_shard_dir(ctx, shard), shard, rows, unknown))
    return paths
