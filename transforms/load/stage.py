"""The load stage: complete encounter versions of a night into the serving database.

The stage itself: which versions are candidates tonight (received, or pending and retried),
the batches, the retry and pending rules, the manifest. Deciding what loads and shaping the rows is
pure and lives in `assemble.py`; the warehouse files are read and written by `files.py`; the
serving database is written by `writer.py` (NightWriter) through `transforms.serving`.

Bounded memory: night-wide the load keeps only what has one row per version (tonight's keys,
findings, links, pending, outcomes). The staged rows are read load.batch_encounters (a setting) encounters at a time
(the facilities' partitions only, the columns serving needs only), decided, assembled and written;
nothing of a batch stays in Python after it.

Write, audit, publish, all in ONE transaction (`NightWriter`, `load_night` holds the transaction):
  1. write   each batch: give each version its version_id (the one it was published under, else
             the next in publish order), audit its rows (no orphan line item; LoadAuditFailed
             otherwise), delete the rows of any of its versions already published (a re-run
             replaces them by version_id) and COPY its rows straight into the serving tables (SQLite:
             executemany), each append audited against the row count the database reports; then
             the citizens' registry rows in place of their serving rows (delete by key, COPY), a
             chunk at a time. Readers see no change: nothing is committed yet.
  2. audit   every version written tonight has its citizen's registry row,
  3. publish retire the previous current versions, apply the FHIR changes, replace the touched
             citizens' illnesses (tonight's figures, computed per batch while it was written, plus
             one query for their versions published before), write the load_history row, commit. A failure anywhere rolls the night back; the
             temp tables vanish with the connection.
Each row is written once (an earlier design staged into temp tables and moved the rows with
INSERT ... SELECT: every row written twice, 0.8x the throughput on PostgreSQL). On PostgreSQL a
batch's writes run in one background thread while the next batch is read and assembled (the server
does the work; at most one batch waits): 0.74x the load stage's time on the 100k night.
The warehouse files (outcomes, pending list, manifest) are written only after the commit, so a
re-run after a crash redoes the night; a re-run after success rewrites identical rows.

The serving database's engine, schema and SQL files (both dialects) are `transforms.serving.db`'s.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from transforms.core.safe_io import write_json_atomic, write_table_atomic
from transforms.core.warehouse import Warehouse
from transforms.load import assemble
from transforms.load.files import (
    OUTCOMES_SCHEMA,
    PENDING_COLUMNS,
    PENDING_SCHEMA,
    STAGED_DATASETS,
    arrow_table,
    read_fhir_night,
    read_fhir_other_nights,
    read_findings,
    read_links,
    read_pending,
    read_staged_batch,
    read_staged_keys,
    registry_ids,
    write_parquet_atomic,
)
from transforms.load.writer import NightWriter
from transforms.serving.db import apply_roles, check_reachable, ensure_schema, serving_engine
from transforms.serving.schema import (
    ALLERGIES,
    CITIZENS,
    FHIR_TABLES,
    IMMUNIZATIONS,
)

KEY = assemble.KEY


def _received_tonight(staged_encounters: pd.DataFrame | None, findings: pd.DataFrame) -> pd.DataFrame:
    """Every encounter version received tonight: its staged XML1 row or its ingest findings.

    (Patient links are not receipts: a link of tonight for an earlier night's version is a retry.)
    """
    frames = [findings[KEY]]
    if staged_encounters is not None:
        frames.append(staged_encounters[KEY])
    keys = pd.concat(frames, ignore_index=True).dropna().drop_duplicates()
    keys["version"] = keys["version"].astype("int64")
    return keys.sort_values(KEY).reset_index(drop=True)


def _presence(staged: dict[str, pd.DataFrame]) -> pd.DataFrame:
    parts = []
    for dataset, frame in staged.items():
        if frame is None or frame.empty:
            continue
        part = frame[KEY].drop_duplicates().assign(dataset=dataset)
        if dataset == "encounters" and "visit_type" in frame.columns:
            visit = frame.drop_duplicates(KEY)[[*KEY, "visit_type"]]
            part = part.merge(visit, on=KEY, how="left")
        else:
            part["visit_type"] = None
        parts.append(part)
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in [*KEY, "dataset", "visit_type"]})
    return pd.concat(parts, ignore_index=True)


def _filter_keys(frame: pd.DataFrame | None, keys: pd.DataFrame) -> pd.DataFrame | None:
    if frame is None:
        return None
    frame = frame.copy()
    frame["version"] = frame["version"].astype("int64")
    return assemble.rows_of_versions(frame, keys)


# Encounters per batch: the setting load.batch_encounters (transforms/core/settings.py). The load
# holds the staged rows, decisions and serving rows of one batch at a time (all versions of an
# encounter are in the same batch), so its memory follows that number, not the size of the night;
# each batch also has a fixed cost (~1 s of pandas calls).
# Registry rows turned into citizen rows (Python per-row date parsing) at a time.
CITIZEN_CHUNK_ROWS = 10_000


def encounter_batches(candidates: pd.DataFrame, size: int) -> pd.DataFrame:
    """Every candidate encounter (facility_code, encounter_id) with its batch number: at most
    `size` encounters per batch, in key order (small facilities share a batch, a large one is
    split); every version of an encounter falls in the same batch."""
    encounters = candidates[assemble.ENCOUNTER_KEY].drop_duplicates()
    encounters = encounters.sort_values(assemble.ENCOUNTER_KEY).reset_index(drop=True)
    return encounters.assign(batch=np.arange(len(encounters)) // size)


def split_by_batch(frame: pd.DataFrame, batches: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """The rows of a frame keyed by encounter, per batch number (rows of no batch are dropped)."""
    joined = frame.merge(batches, on=assemble.ENCOUNTER_KEY, how="inner")
    return {int(n): group.drop(columns="batch") for n, group in joined.groupby("batch", sort=True)}


def _load_batch(
    ctx,
    writer: NightWriter,
    newest: pd.DataFrame,
    encounters: dict[str, pa.Array],
    batch: pd.DataFrame,
    findings: pd.DataFrame,
    links: pd.DataFrame,
    pending: pd.DataFrame,
):
    """Decide, assemble and stage one batch: `encounters` (facility_code -> encounter_ids) and
    its candidate versions, findings, links and pending versions; `newest`: the newest published
    version of every candidate encounter of the night. Returns (outcomes, published)."""
    wh, night = ctx.warehouse, ctx.night
    nights = sorted({night, *batch.loc[batch["is_retry"].astype(bool), "night"]})
    staged: dict[str, pd.DataFrame] = {}
    for dataset in STAGED_DATASETS:
        frames = [_filter_keys(read_staged_batch(wh, dataset, n, encounters), batch) for n in nights]
        frames = [f for f in frames if f is not None and not f.empty]
        if frames:
            staged[dataset] = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    newest_published = newest.merge(
        batch[assemble.ENCOUNTER_KEY].drop_duplicates(), on=assemble.ENCOUNTER_KEY
    )
    known = pd.concat([batch[KEY], pending[KEY], newest_published], ignore_index=True)
    known["version"] = known["version"].astype("int64")
    outcomes = assemble.decide_outcomes(
        batch,
        _presence(staged),
        findings,
        links,
        known,
        tonight=night,
        grace_nights=ctx.settings.load.grace_nights,
        published_encounters=newest_published,
    )
    published = outcomes[outcomes["is_published"]][[*KEY, "incomplete"]].merge(
        links[[*KEY, "citizen_id", "tier", "match_weight"]].rename(columns={"tier": "link_tier"}),
        on=KEY,
        how="left",
    )
    writer.stage_versions(assemble.serving_rows(staged, published), newest_published)
    return outcomes, published


def stage_citizens(writer: NightWriter, registry_path: Path, citizen_ids: pa.Array, night: dt.date) -> None:
    """The registry rows of the given citizens, staged a chunk at a time (each citizen once: its
    first registry row, in citizen_id order)."""
    if not len(citizen_ids):
        writer.stage_citizens(assemble.empty_rows(CITIZENS))
        return
    registry = pads.dataset(registry_path, format="parquet")
    # a national registry: scanned a record batch at a time without read-ahead, so only the
    # matching rows are ever held, not the decoded row groups
    scanner = registry.scanner(
        filter=pads.field("citizen_id").isin(citizen_ids), batch_readahead=0, fragment_readahead=0
    )
    rows = pa.Table.from_batches(scanner.to_batches(), schema=scanner.projected_schema)
    first = pc.index_in(pc.unique(rows["citizen_id"]), value_set=rows["citizen_id"])
    rows = rows.take(first).sort_by("citizen_id")
    for start in range(0, rows.num_rows, CITIZEN_CHUNK_ROWS):
        chunk = rows.slice(start, CITIZEN_CHUNK_ROWS).to_pandas()
        writer.stage_citizens(assemble.citizen_rows(chunk, night))


def load_night(ctx) -> Path:
    """Load the night's complete encounter versions; write outcomes, the pending list, the manifest.

    ctx: transforms.core.context.NightContext. Returns the manifest path `runs/<D>/load.json`.
    Raises ServingDatabaseUnreachable when the serving database does not answer.

    Night-wide only what has one row per version (tonight's keys, findings, links, pending,
    outcomes); the staged rows are read, decided, assembled and staged in the database
    ctx.settings.load.batch_encounters encounters at a time, then published in one transaction (NightWriter).
    """
    wh: Warehouse = ctx.warehouse
    night: dt.date = ctx.night
    engine = serving_engine(ctx.serving_url)
    check_reachable(engine)
    ensure_schema(engine)
    if engine.dialect.name == "postgresql":
        # every load (re)applies the grants, and the default privileges that cover tables made later
        apply_roles(engine)

    findings_by_night = {night: read_findings(wh, night)}
    received = _received_tonight(read_staged_keys(wh, "encounters", night), findings_by_night[night]).assign(
        night=night, is_retry=False
    )

    # Pending versions of earlier nights are tried again (a registry update, a resolved review).
    pending = read_pending(wh)
    retry = pending[pd.to_datetime(pending["night"]).dt.date < night] if not pending.empty else pending
    retry = retry.merge(received[KEY], on=KEY, how="left", indicator=True)
    retry = retry[retry["_merge"] == "left_only"].drop(columns="_merge")
    retry = retry.assign(
        night=pd.to_datetime(retry["night"]).dt.date,
        waiting_since=pd.to_datetime(retry["waiting_since"]).dt.date,
        is_retry=True,
    )[[*KEY, "night", "is_retry", "waiting_since"]]
    # tonight's versions of an encounter already waiting keep its start (a re-send does not
    # restart the grace period)
    received["waiting_since"] = received["night"]
    links = read_links(wh, min([night, *retry["night"]]), night)
    candidates = pd.concat([received, retry], ignore_index=True)
    candidates["version"] = candidates["version"].astype("int64")
    for retry_night in sorted(set(retry["night"])):
        findings_by_night[retry_night] = read_findings(wh, retry_night)
    findings = pd.concat(findings_by_night.values(), ignore_index=True)
    batches = encounter_batches(candidates, ctx.settings.load.batch_encounters)
    per_batch = {
        name: (split_by_batch(frame, batches), list(frame.columns))
        for name, frame in (
            ("candidates", candidates),
            ("findings", findings),
            ("links", links),
            ("pending", pending),
        )
    }
    del findings, links

    def of_batch(name: str, number: int) -> pd.DataFrame:
        parts, columns = per_batch[name]
        return parts.get(number, pd.DataFrame({c: pd.Series(dtype="object") for c in columns}))

    outcome_parts: list[pa.Table] = []
    people: list[pa.Array] = []
    with engine.connect() as conn, conn.begin():  # the whole night: one transaction
        writer = NightWriter(conn)
        newest = writer.newest_published(candidates)  # before any write: batches never share an encounter
        try:
            for number, members in batches.groupby("batch", sort=True):
                encounters = {
                    facility: pa.array(group["encounter_id"].to_numpy(), pa.string())
                    for facility, group in members.groupby("facility_code", sort=True)
                }
                outcomes, published = _load_batch(
                    ctx,
                    writer,
                    newest,
                    encounters,
                    *(of_batch(name, number) for name in ("candidates", "findings", "links", "pending")),
                )
                outcome_parts.append(arrow_table(outcomes, OUTCOMES_SCHEMA))
                people.append(
                    pa.array(published["citizen_id"].astype("object"), pa.string(), from_pandas=True)
                )
                del outcomes, published
                pa.default_memory_pool().release_unused()  # the batch's Arrow buffers back to the OS
            per_batch.clear()  # the per-batch frames are not needed past here

            fhir_staged = {
                IMMUNIZATIONS.name: read_fhir_night(wh, "immunizations", night),
                ALLERGIES.name: read_fhir_night(wh, "allergies", night),
            }
            fhir_others = {
                table.name: read_fhir_other_nights(
                    wh, table.name, night, set(fhir_staged[table.name]["resource_id"].dropna())
                )
                for table in FHIR_TABLES
            }
            fhir_people = set()
            for frame in [*fhir_staged.values(), *(f for f in fhir_others.values() if f is not None)]:
                fhir_people |= set(frame["citizen_id"].dropna())
            in_registry = registry_ids(ctx.registry_path, fhir_people) if fhir_people else set()
            fhir_upserts, fhir_removed, fhir_counts = {}, {}, {}
            for table in FHIR_TABLES:
                fhir_upserts[table.name], fhir_removed[table.name], fhir_counts[table.name] = (
                    assemble.fhir_changes(
                        fhir_staged[table.name], in_registry, table, fhir_others[table.name]
                    )
                )
            for frame in fhir_upserts.values():
                people.append(pa.array(frame["citizen_id"].astype("object"), pa.string(), from_pandas=True))
            people_ids = pc.unique(pa.chunked_array(people, pa.string()).combine_chunks().drop_null())
            stage_citizens(writer, ctx.registry_path, people_ids, night)

            outcomes = (
                pa.concat_tables(outcome_parts) if outcome_parts else OUTCOMES_SCHEMA.empty_table()
            ).sort_by([(c, "ascending") for c in KEY])
            del outcome_parts
            is_retry = outcomes["is_retry"]
            tonight = outcomes.filter(pc.invert(is_retry))
            retried = outcomes.filter(is_retry)
            outcome_counts = _count(outcomes["outcome"])
            history = {
                "versions_received": tonight.num_rows,
                "versions_retried": retried.num_rows,
                "versions_loaded": outcome_counts.get("loaded", 0),
                "versions_quarantined": outcome_counts.get("quarantined", 0),
                "versions_superseded": outcome_counts.get("superseded", 0),
                "rows_published": writer.rows_staged,
                "fhir_upserted": sum(c["upserted"] for c in fhir_counts.values()),
                "fhir_removed": sum(c["removed"] for c in fhir_counts.values()),
            }
            written = writer.publish(night, fhir_upserts, fhir_removed, history)
        except BaseException:
            writer.close(cancel=True)  # the queued writes are skipped; the transaction rolls back
            raise
        writer.close()

    # After the commit: the warehouse files of the night (a crash before this point re-runs cleanly).
    write_table_atomic(wh.outcomes(night), tonight)
    write_table_atomic(wh.retried(night), retried)
    quarantined = outcomes.filter(pc.equal(outcomes["outcome"], "quarantined"))
    still_pending = quarantined.select(PENDING_COLUMNS).to_pandas()
    late_figures = _late_tables(tonight, retried, quarantined, ctx.settings.load.grace_nights)
    untouched = pending.merge(outcomes.select(KEY).to_pandas(), on=KEY, how="left", indicator=True)
    untouched = untouched[untouched["_merge"] == "left_only"].drop(columns="_merge")
    new_pending = pd.concat([untouched[PENDING_COLUMNS], still_pending], ignore_index=True)
    new_pending["night"] = pd.to_datetime(new_pending["night"]).dt.date
    new_pending["waiting_since"] = pd.to_datetime(new_pending["waiting_since"]).dt.date
    write_parquet_atomic(new_pending.sort_values(KEY).reset_index(drop=True), wh.pending, PENDING_SCHEMA)

    tonight_counts, retried_counts = _count(tonight["outcome"]), _count(retried["outcome"])
    quarantined_tonight = tonight.filter(pc.equal(tonight["outcome"], "quarantined"))
    manifest = {
        "night": night.isoformat(),
        "serving": engine.url.render_as_string(hide_password=True),
        "versions": {
            "received": tonight.num_rows,
            "loaded": tonight_counts.get("loaded", 0),
            "quarantined": tonight_counts.get("quarantined", 0),
            "superseded": tonight_counts.get("superseded", 0),
            "quarantined_by_reason": dict(sorted(_count(quarantined_tonight["reason"]).items())),
        },
        "retried": {
            "versions": retried.num_rows,
            "loaded": retried_counts.get("loaded", 0),
            "superseded": retried_counts.get("superseded", 0),
            "still_pending": retried_counts.get("quarantined", 0),
        },
        "pending": len(new_pending),
        "late_tables": late_figures,
        "rows": written,
        "fhir": _fhir_ledger(wh, night, fhir_counts),
    }
    return write_json_atomic(wh.manifest(night, "load"), manifest, ensure_ascii=False, default=str)


def _late_tables(tonight: pa.Table, retried: pa.Table, quarantined: pa.Table, grace_nights: int) -> dict:
    """The late-table figures of the night (manifest and ledger): stays waiting for XML7/XML8
    (pending, tonight's receipts and all), and stays published marked incomplete tonight."""
    late_reasons = pa.array(list(assemble.LATE_REASONS), pa.string())

    def waiting(table: pa.Table) -> pa.Table:
        return table.filter(
            pc.and_(pc.equal(table["outcome"], "quarantined"), pc.is_in(table["reason"], late_reasons))
        )

    def incomplete(table: pa.Table) -> pa.Table:
        return table.filter(pc.and_(table["is_published"], pc.is_valid(table["incomplete"])))

    return {
        "grace_nights": grace_nights,
        "waiting_received_tonight": waiting(tonight).num_rows,
        "waiting_retried": waiting(retried).num_rows,
        "published_incomplete_received_tonight": incomplete(tonight).num_rows,
        "published_incomplete_retried": incomplete(retried).num_rows,
        "by_facility": _late_by_facility(waiting(tonight), incomplete(tonight)),
    }


def _late_by_facility(waiting: pa.Table, incomplete: pa.Table) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for key, table in (("waiting_late_tables", waiting), ("published_incomplete", incomplete)):
        for code, n in _count(table["facility_code"]).items():
            out.setdefault(code, {"waiting_late_tables": 0, "published_incomplete": 0})[key] = n
    return dict(sorted(out.items()))


def _count(values: pa.ChunkedArray) -> dict[str, int]:
    """How many times each non-null value occurs."""
    counts = pc.value_counts(values.combine_chunks() if values.num_chunks else pa.array([], values.type))
    return {
        v: n
        for v, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
        if v is not None
    }


FHIR_KINDS = {IMMUNIZATIONS.name: "Immunization", ALLERGIES.name: "AllergyIntolerance"}


def _fhir_ledger(wh: Warehouse, night: dt.date, counts: dict[str, dict]) -> dict:
    """The ledger's FHIR figures: ingest's (received, its quarantine, skipped) completed by the load.

    A staged line counts as loaded when it was applied (upserted, removed as entered-in-error or
    refuted) or replaced by a later copy of the same resource; an active line whose citizen is not
    in the registry is quarantined `patient_not_in_registry`.
    """
    ingest_path = wh.manifest(night, "ingest")
    ingest = json.loads(ingest_path.read_text()).get("fhir", {}) if ingest_path.exists() else {}
    out = {}
    for table, kind in FHIR_KINDS.items():
        c = counts[table]
        from_ingest = ingest.get(kind, {}) if isinstance(ingest.get(kind), dict) else {}
        quarantined = dict(from_ingest.get("quarantined", {}) or {})
        for reason, n in c["quarantined"].items():
            quarantined[reason] = quarantined.get(reason, 0) + n
        staged_quarantined = sum((from_ingest.get("quarantined") or {}).values())
        out[kind] = {
            "received": int(from_ingest.get("received", c["received"] + staged_quarantined)),
            "loaded": c["upserted"] + c["removed"] + c["replaced"],
            "quarantined": quarantined,
            "skipped": int(from_ingest.get("skipped", 0)),
            "upserted": c["upserted"],
            "removed": c["removed"],
            "replaced": c["replaced"],
        }
    # Every other line ingest counted stays in the ledger, so that received = loaded +
    # quarantined + skipped holds for the whole of the FHIR input: "unknown" (lines that are not
    # a FHIR resource: json_invalid, line_too_large...) and the resource types skipped.
    for kind, figures in sorted(ingest.items()):
        if kind in out or not isinstance(figures, dict):
            continue
        out[kind] = {
            "received": int(figures.get("received", 0)),
            "loaded": int(figures.get("loaded", 0)),
            "quarantined": dict(figures.get("quarantined", {}) or {}),
            "skipped": int(figures.get("skipped", 0)),
        }
    return out
