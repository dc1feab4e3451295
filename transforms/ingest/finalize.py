"""Finalize: versions, staged datasets, findings, rejected files, FHIR and the manifest
`runs/<D>/ingest.json` from every shard's results."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from collections import Counter, defaultdict
from concurrent.futures import Executor, Future
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.core import parquet_io, schema
from transforms.core.digest import DigestMemo
from transforms.ingest import late
from transforms.ingest.common import (
    _UID_SHIFT,
    REJECTED_FILE_SCHEMA,
    STAGE,
    XML_DATASETS,
    FileResult,
    IngestSettings,
    _write_json,
)
from transforms.ingest.discovery import _read_plan, _shard_dir
from transforms.ingest.parse import _HOSO_FACTS_SCHEMA
from transforms.ingest.pool import _SHARD_RESULTS, _read_shard_results
from transforms.ingest.versions import (
    _tonight_versions_chunks,
    _write_versions,
    earlier_versions_table,
    tonight_versions,
)
from transforms.ingest.writers import finalize_dataset, ingest_fhir

log = logging.getLogger(__name__)

RECEIVED_FILES = "received_files.parquet"  # runs/<D>/: every accepted envelope, one row each
RECEIVED_FILES_SCHEMA = pa.schema(
    [("file", pa.string()), ("facility_code", pa.string()), ("signed", pa.bool_())]
)


def received_files_table(results: list[FileResult]) -> pa.Table:
    """Every accepted envelope with its facility and whether it carries a non-empty CHUKYDONVI
    (`signed`, recorded, not verified), in file order."""
    accepted = [r for r in results if not r.rejection]
    return pa.table(
        {
            "file": pa.array([r.source_file for r in accepted], pa.string()),
            "facility_code": pa.array([r.facility_code for r in accepted], pa.string()),
            "signed": pa.array([bool(r.signed) for r in accepted], pa.bool_()),
        },
        schema=RECEIVED_FILES_SCHEMA,
    )


def _finalize(
    ctx, settings: IngestSettings, pool: Executor, fhir: Future | None = None, plan: dict | None = None
) -> Path:
    """`fhir`: the night's FHIR already submitted to `pool` (ingest_fhir), else submitted here;
    `plan`: the night's plan when the caller holds it, else read from its file."""
    night, warehouse, night_dir = ctx.night, ctx.warehouse, ctx.night_dir
    started = time.perf_counter()
    plan = plan if plan is not None else _read_plan(ctx)
    scratch = warehouse.scratch(STAGE, night)
    missing = [s for s in plan["shards"] if not (_shard_dir(ctx, s) / _SHARD_RESULTS).exists()]
    if missing:
        raise RuntimeError(
            f"ingest of {night} cannot finalize: planned shard(s) {missing} have no results "
            f"under {scratch} (ingest_shard did not run or did not finish)"
        )
    results: list[FileResult] = []
    fact_parts: list[pa.Table] = []
    unknown_fields: dict[str, Counter] = defaultdict(Counter)
    for shard in plan["shards"]:
        shard_results, shard_facts, unknown = _read_shard_results(_shard_dir(ctx, shard))
        results.extend(shard_results)
        rejected = [r.file_no for r in shard_results if r.rejection]
        if rejected:  # drop a rejected file's HOSOs shard by shard (never a copy of the night's)
            keep = pc.invert(pc.is_in(shard_facts.column("file_no"), pa.array(rejected, pa.int64())))
            shard_facts = shard_facts.filter(keep)
        fact_parts.append(shard_facts)
        for kind, counts in unknown.items():
            unknown_fields[kind].update(counts)
    results.sort(key=lambda r: r.file_no)
    facts = _accepted_facts(
        results, pa.concat_tables(fact_parts) if fact_parts else _HOSO_FACTS_SCHEMA.empty_table()
    )
    del fact_parts

    received = _received_table(results, facts)
    # arrival order: files by (NGAYLAP, path), then HOSO position (integers, no string sort)
    by_arrival = sorted(
        range(len(results)), key=lambda i: (results[i].created_on or "", results[i].source_file)
    )
    file_rank = np.empty(len(results), dtype=np.int64)
    file_rank[by_arrival] = np.arange(len(results))
    arrival = (
        file_rank[facts.column("file_pos").to_numpy()] << _UID_SHIFT | facts.column("hoso_index").to_numpy()
    )
    versions = tonight_versions(earlier_versions_table(warehouse, night, received), received, arrival)
    codes = sorted({r.facility_code for r in results if not r.rejection and r.facility_code is not None})
    facilities = [*codes, None]  # a file without a facility code takes the last entry
    position = {code: i for i, code in enumerate(codes)}
    code_of_file = np.array([position.get(r.facility_code, len(codes)) for r in results], dtype=np.int64)
    # every HOSO received tonight by uid (sorted), with its version and facility
    uids = received.column("hoso_uid").to_numpy()
    by_uid = np.argsort(uids, kind="stable")
    uids, version_values = uids[by_uid], versions[by_uid]
    facility_of = code_of_file[facts.column("file_pos").to_numpy()][by_uid]

    # Tonight's registry file and findings now, so that the per-HOSO tables are gone while the
    # pool writes the datasets (the manifest, written last, still marks the stage as done).
    _write_versions(warehouse, night, _tonight_versions_chunks(received, versions, night))
    findings = _findings_table(results, facts, uids, version_values, night)
    watch, watch_keys = _partial_candidates(results, facts, uids, version_values)
    findings_dir = warehouse.quarantine("findings", night)
    findings_dir.mkdir(parents=True, exist_ok=True)
    parquet_io.write_table(findings, findings_dir / "ingest.parquet")
    n_received = received.num_rows
    del received, facts
    pa.default_memory_pool().release_unused()

    facts_done = time.perf_counter()
    shard_of_file = {f["file_no"]: f["shard"] for f in plan["files"]}
    last_shard: dict[str | None, int] = {}
    for r in results:
        if not r.rejection:
            last_shard[r.facility_code] = max(last_shard.get(r.facility_code, -1), shard_of_file[r.file_no])
    for dataset in XML_DATASETS:
        parquet_io.replace_partition(warehouse.staging_night(dataset, night))
    # FHIR is independent of the XML datasets: read it in the pool beside them, not after them.
    fhir_future = fhir or pool.submit(ingest_fhir, night_dir, night, warehouse, settings.limits)
    futures = {
        ds: pool.submit(
            finalize_dataset,
            ds,
            str(scratch),
            str(warehouse.staging_night(ds, night)),
            night,
            uids,
            version_values,
            facility_of,
            facilities,
            last_shard,
            watch,
        )
        for ds in XML_DATASETS
    }
    # while the pool writes the datasets: the extracts' SHA-256 as the workers read them, so that
    # the ingest fingerprint, taken after a first run, reads none of the night's files again
    remember_extract_digests(warehouse.extracts_digest_memo(night), night_dir, results)
    dataset_rows, carried = {}, {key: set() for key in watch_keys}
    for ds, future in futures.items():
        dataset_rows[ds], seen = future.result()
        for uid in seen.tolist():
            carried[watch_keys[np.searchsorted(watch, uid)]].add(ds)
    datasets_done = time.perf_counter()
    fhir_counts, fhir_rejected = fhir_future.result()

    rejected = _rejected_files_table([*results, *fhir_rejected], night)
    parquet_io.replace_partition(warehouse.quarantine("files", night))
    parquet_io.write_table(rejected, warehouse.quarantine("files", night) / "part-0.parquet")
    shutil.rmtree(scratch, ignore_errors=True)
    # Partial re-sends (XML7/XML8 alone for a known stay) become complete versions (transforms/ingest/late.py).
    findings, completed = late.complete_partial_resends(warehouse, night, findings, carried)
    if completed:
        parquet_io.write_table(findings, findings_dir / "ingest.parquet")

    manifest = build_manifest(
        night, results, n_received, findings, dataset_rows, unknown_fields, fhir_counts, fhir_rejected
    )
    manifest["partial_resends_completed"] = completed
    received = warehouse.run_file(night, RECEIVED_FILES)
    parquet_io.write_table(received_files_table(results), received)
    manifest["received_files"] = received.relative_to(warehouse.root).as_posix()
    path = _write_json(warehouse.manifest(night, STAGE), manifest)
    log.info(
        "ingest finalize %s: facts, versions and findings %.2f s, datasets %.2f s, the rest %.2f s",
        night,
        facts_done - started,
        datasets_done - facts_done,
        time.perf_counter() - datasets_done,
    )
    return path


def remember_extract_digests(memo_path: Path, night_dir: Path, results: list[FileResult]) -> None:
    """Put each file's stat and SHA-256 as a worker read it (FileResult.content) into the night's
    digest memo (core.digest.DigestMemo, keyed by the path under the night's folder): the memo
    trusts an entry only while the file's stat is unchanged, and content_digest gives the same
    digest with or without it."""
    memo = DigestMemo(memo_path, Path(night_dir).resolve())
    for r in results:
        if r.content:
            memo.put_key(r.source_file, tuple(r.content[:5]), r.content[5])
    memo.save()


def _accepted_facts(results: list[FileResult], facts: pa.Table) -> pa.Table:
    """The per-HOSO facts of the accepted files (in shard order: not sorted, which would copy
    them), with `hoso_uid` and the position of each HOSO's file in `results` (`file_pos`)."""
    file_nos = np.array([r.file_no for r in results], dtype=np.int64)  # sorted
    accepted = np.array([not r.rejection for r in results], dtype=bool)
    file_no = facts.column("file_no").to_numpy()
    pos = np.searchsorted(file_nos, file_no)
    keep = accepted[pos] if len(pos) else np.zeros(0, dtype=bool)
    if not keep.all():
        facts, pos, file_no = facts.filter(pa.array(keep)), pos[keep], file_no[keep]
    uid = file_no << _UID_SHIFT | facts.column("hoso_index").to_numpy()
    return facts.append_column("hoso_uid", pa.array(uid, pa.int64())).append_column(
        "file_pos", pa.array(pos, pa.int64())
    )


def _partial_candidates(
    results: list[FileResult], facts: pa.Table, uids: np.ndarray, versions: np.ndarray
) -> tuple[np.ndarray, list[tuple[str | None, str, int]]]:
    """The HOSOs that may be partial re-sends (late.py): those whose only finding is
    `missing_xml1`, as sorted uids and their (facility_code, encounter_id, version) keys."""
    lists = facts.column("findings").combine_chunks()
    reasons = pc.list_flatten(lists).field("reason")
    parent = pc.list_parent_indices(lists).to_numpy()
    n = facts.num_rows
    missing = np.bincount(
        parent, weights=pc.equal(reasons, "missing_xml1").to_numpy(zero_copy_only=False), minlength=n
    )
    total = np.bincount(parent, minlength=n)
    rows = np.flatnonzero((missing > 0) & (missing == total))
    if not rows.size:
        return np.empty(0, dtype=np.int64), []
    uid = facts.column("hoso_uid").to_numpy()[rows]
    order = np.argsort(uid)
    rows, uid = rows[order], uid[order]
    facility = [results[i].facility_code for i in facts.column("file_pos").to_numpy()[rows]]
    encounter = facts.column("encounter_id").take(pa.array(rows)).to_pylist()
    version = versions[np.searchsorted(uids, uid)].tolist()
    return uid, list(zip(facility, encounter, version, strict=True))


def _per_file(results: list[FileResult], attribute: str, file_pos) -> pa.DictionaryArray:
    """A per-file text attribute for each position in `results` (a `file_pos` column), as a
    dictionary column: an index per HOSO, not a copy of the text per HOSO."""
    values = pa.array([getattr(r, attribute) for r in results], pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(file_pos), pa.int32()), values)


def _received_table(results: list[FileResult], facts: pa.Table) -> pa.Table:
    """One row per HOSO received tonight (accepted files only), in (file, HOSO) order."""
    file_pos = facts.column("file_pos")

    def per_file(attribute: str) -> pa.DictionaryArray:
        return _per_file(results, attribute, file_pos)

    return pa.table(
        {
            "hoso_uid": facts.column("hoso_uid"),
            "facility_code": per_file("facility_code"),
            "encounter_id": facts.column("encounter_id"),
            "created_on": per_file("created_on"),
            "source_file": per_file("source_file"),
            "hoso_index": facts.column("hoso_index"),
            "content_hash": facts.column("content_hash"),
        }
    )


def _findings_table(
    results: list[FileResult], facts: pa.Table, uids: np.ndarray, versions: np.ndarray, night: dt.date
) -> pa.Table:
    """Encounter-level findings of ingest: one row per (HOSO, reason, table), severity blocking.

    `uids` (sorted) and `versions`: the version of every HOSO received tonight."""
    lists = facts.column("findings").combine_chunks()
    flat = pc.list_flatten(lists)
    if not len(flat):
        return schema.FINDINGS_SCHEMA.empty_table()
    parent = pa.array(pc.list_parent_indices(lists).to_numpy().astype(np.int64))
    reason, kind, detail = (flat.field(name) for name in ("reason", "loaihoso", "detail"))
    kinds = pc.unique(kind).to_pylist()
    dataset_of = {k: (t.dataset if (t := schema.TABLES_BY_LOAIHOSO.get(k)) else "raw_tables") for k in kinds}
    dataset = pa.array([dataset_of[k] for k in kinds], pa.string()).take(
        pc.index_in(kind, pa.array(kinds, pa.string()))
    )
    uid = facts.column("hoso_uid").take(parent).to_numpy()
    n = len(flat)
    columns = {
        "night": pa.array(np.full(n, (night - dt.date(1970, 1, 1)).days, dtype=np.int32)).cast(pa.date32()),
        "facility_code": _per_file(results, "facility_code", facts.column("file_pos").take(parent)),
        "encounter_id": facts.column("encounter_id").take(parent),
        "version": pa.array(versions[np.searchsorted(uids, uid)], pa.int64()),
        "dataset": dataset,
        "row_index": pa.nulls(n, pa.int64()),
        "stage": pa.array(np.full(n, STAGE, dtype=object), pa.string()),
        "check_id": pc.binary_join_element_wise("ingest.", reason, ""),
        "reason": reason,
        "severity": pa.array(np.full(n, "blocking", dtype=object), pa.string()),
        "column": pa.array(np.full(n, "LOAIHOSO", dtype=object), pa.string()),
        "value": pc.utf8_slice_codeunits(
            pc.binary_join_element_wise(kind, detail, ": ", null_handling="replace", null_replacement="None"),
            0,
            500,
        ),
    }
    return pa.table(
        {f.name: columns[f.name].cast(f.type) for f in schema.FINDINGS_SCHEMA}, schema=schema.FINDINGS_SCHEMA
    )


def _rejected_files_table(results: list[FileResult], night: dt.date) -> pa.Table:
    rows = [
        {
            "night": night,
            "file": r.source_file,
            "reason": r.rejection[0],
            "detail": r.rejection[1],
            "facility_code": r.facility_code,
            "declared": r.declared,
        }
        for r in results
        if r.rejection
    ]
    return pa.Table.from_pylist(rows, schema=REJECTED_FILE_SCHEMA)


def build_manifest(
    night: dt.date,
    results: list[FileResult],
    n_received: int,
    findings: pa.Table,
    dataset_rows: dict[str, dict[str, int]],
    unknown_fields: dict[str, Counter],
    fhir_counts: dict[str, dict],
    fhir_rejected: list[FileResult] = (),
) -> dict:
    """The ingest figures of the ledger (small: counts only). See ARCHITECTURE.md "Ingest".

    `rejected_files` also lists the NDJSON files refused whole (they hold no encounter: no
    facility counts them). The accepted envelopes, one row each, are `received_files_table`'s
    (runs/<D>/received_files.parquet), not the manifest's: at a million files they were 100 MB
    of JSON that every reader of the manifest parsed."""
    facilities: dict[str, dict] = {}

    def entry(code: str | None) -> dict:
        return facilities.setdefault(
            code or "unknown",
            {
                "files": 0,
                "files_rejected": 0,
                "files_signed": 0,
                "declared": 0,
                "received": 0,
                "quarantined_at_ingest": {},
            },
        )

    mismatches = []
    raw_tables: Counter = Counter()
    for r in results:
        e = entry(r.facility_code)
        e["files"] += 1
        e["declared"] += r.declared or 0
        if r.rejection:
            e["files_rejected"] += 1
            continue
        e["files_signed"] += int(r.signed)
        e["received"] += r.hoso_count
        raw_tables.update(r.raw_tables)
        if r.declared != r.hoso_count:
            mismatches.append(
                {
                    "file": r.source_file,
                    "facility_code": r.facility_code,
                    "declared": r.declared,
                    "received": r.hoso_count,
                }
            )
    by_reason: dict[str, Counter] = defaultdict(Counter)
    seen = set()
    for fac, key, version, reason in zip(
        findings.column("facility_code").to_pylist(),
        findings.column("encounter_id").to_pylist(),
        findings.column("version").to_pylist(),
        findings.column("reason").to_pylist(),
        strict=True,
    ):
        if (fac, key, version) not in seen:  # count each version once, under its first reason
            seen.add((fac, key, version))
            by_reason[fac][reason] += 1
    for fac, counts in by_reason.items():
        entry(fac)["quarantined_at_ingest"] = dict(sorted(counts.items()))
    totals = {
        k: sum(f[k] for f in facilities.values()) for k in ("files", "files_rejected", "declared", "received")
    }
    return {
        "night": night.isoformat(),
        "stage": STAGE,
        "facilities": dict(sorted(facilities.items())),
        "totals": totals,
        "rejected_files": [
            {
                "file": r.source_file,
                "reason": r.rejection[0],
                "detail": r.rejection[1],
                "declared": r.declared,
            }
            for r in [*results, *fhir_rejected]
            if r.rejection
        ],
        "declared_vs_received": mismatches,
        "encounter_versions": n_received,
        "raw_tables": dict(sorted(raw_tables.items())),
        "unknown_fields": {k: dict(sorted(v.items())) for k, v in sorted(unknown_fields.items()) if v},
        "datasets": {ds: sum(rows.values()) for ds, rows in dataset_rows.items()},
        "fhir": fhir_counts,
    }
