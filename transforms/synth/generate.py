"""The synthetic night generator behind `healthbook generate`.

One call of `generate_night` writes, under `out`:

    extracts/<D>/<province>/<facility>/<facility>_<D>_<seq>.xml   XML 130 envelopes (GIAMDINHHS)
    extracts/<D>/fhir/*.ndjson                                      FHIR R4 Immunization / AllergyIntolerance
    registry/part-00000.parquet ...                                 the identity-registry snapshot
    truth/encounters.parquet                                        one row per HOSO written (encounter version)
    truth/files.parquet                                             one row per envelope file
    truth/fhir.parquet                                              one row per NDJSON line
    truth/summary.json                                              counts by defect/noise kind, arguments, seed

Everything is a pure function of the arguments: the same arguments give byte-identical files.
Memory stays bounded: the registry is written in fixed-size chunks (`generate_citizens`), an
encounter re-derives its patient from (seed, index), and each facility's files are written as they
are built. Facilities run in a process pool when the night is large; each facility's output
depends only on (seed, facility index), so the pool does not change a byte.

The truth says what the pipeline must do with each encounter: `load`, `quarantine` with one reason
(each encounter carries at most one blocking defect), or `rejected_file`. Quirks of real files
(BOM, CDATA, NaN/null/undefined, comma decimals, old XML13 field names, unknown tables, inner XML
without declaration, a malformed xmlns declaration) never change the expected outcome.

Small building blocks for hand-made test files: `inner_xml` and `envelope_bytes`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import json
import multiprocessing
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.synth.citizens import identity_profile as _identity_profile
from transforms.synth.citizens import write_registry
from transforms.synth.facility import build_facility
from transforms.synth.fhir_night import write_fhir
from transforms.synth.identity_truth import non_separable_records
from transforms.synth.patients import FacilityJob, identity_pools, make_facilities, split_evenly
from transforms.synth.rates import FILE_DEFECTS, FILE_QUIRKS, GUARANTEED, SETTINGS, GeneratorSettings

# ---------------------------------------------------------------------------------------------
# The night
# ---------------------------------------------------------------------------------------------

ENCOUNTER_TRUTH_SCHEMA = pa.schema(
    [
        ("facility_code", pa.string()),
        ("encounter_id", pa.string()),
        ("version", pa.int64()),
        ("source_file", pa.string()),
        ("hoso_index", pa.int64()),
        ("visit_type", pa.string()),
        ("citizen_id", pa.string()),
        ("identity_noise", pa.list_(pa.string())),
        ("defects", pa.list_(pa.string())),
        ("is_superseded", pa.bool_()),
        ("expected_outcome", pa.string()),
        ("expected_reason", pa.string()),
        # issue #15 (additions): the outcome once the grace period is over (a stay waiting for
        # XML7/XML8 loads), the warning reasons it must raise, what it lacks when published
        # incomplete ("discharge_paper;summary"), the night its late tables arrive
        ("expected_after_grace", pa.string()),
        ("warnings", pa.list_(pa.string())),
        ("expected_incomplete", pa.string()),
        ("late_resend_night", pa.date32()),
    ]
)
FILE_TRUTH_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("facility_code", pa.string()),
        ("declared", pa.int64()),
        ("hoso_written", pa.int64()),
        ("file_defect", pa.string()),
        ("has_bom", pa.bool_()),
        ("has_malformed_xmlns", pa.bool_()),
    ]
)
LATE_TRUTH_SCHEMA = pa.schema(
    [
        ("facility_code", pa.string()),
        ("encounter_id", pa.string()),
        ("night", pa.date32()),  # the later night whose extracts folder holds the re-send
        ("source_file", pa.string()),
        ("kind", pa.string()),  # partial (XML7/XML8 alone) | full
        ("tables", pa.list_(pa.string())),
        ("expected_outcome", pa.string()),  # load: completes the stay as a new version
    ]
)
FHIR_TRUTH_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("line_number", pa.int64()),
        ("resource_type", pa.string()),
        ("resource_id", pa.string()),
        ("citizen_id", pa.string()),
        ("expected", pa.string()),
    ]
)


def _assign_guarantees(
    rng: random.Random, counts: list[int], settings: GeneratorSettings
) -> tuple[list[dict[int, list[tuple[str, str]]]], list[list[str]], list[list[str]]]:
    """Which encounter slot of which facility carries each guaranteed kind, and which facility
    writes each special file."""
    forced: list[dict[int, list[tuple[str, str]]]] = [{} for _ in counts]
    file_defects: list[list[str]] = [[] for _ in counts]
    file_quirks: list[list[str]] = [[] for _ in counts]
    total = sum(counts)
    if total < settings.guarantee_from_encounters:
        return forced, file_defects, file_quirks
    slots = [(f, k) for f, n in enumerate(counts) for k in range(n)]
    # keep the first slots of each facility free: special files take plain encounters from the front
    slots = [(f, k) for f, k in slots if k >= 12]
    chosen = rng.sample(slots, len(GUARANTEED))
    for (f, k), kind in zip(chosen, GUARANTEED, strict=True):
        forced[f].setdefault(k, []).append(kind)
    for j, defect in enumerate(FILE_DEFECTS):
        file_defects[j % len(counts)].append(defect)
    for j, quirk in enumerate(FILE_QUIRKS):
        file_quirks[(j + 1) % len(counts)].append(quirk)
    return forced, file_defects, file_quirks


def generate_night(
    out: Path,
    night: dt.date,
    facilities: int = 10,
    encounters: int = 1000,
    citizens: int = 20000,
    seed: int = 42,
    settings: GeneratorSettings = SETTINGS,
    workers: int | None = None,
    identity_profile: str | None = None,
) -> dict:
    """Write one synthetic night under `out` (layout in the module docstring); return the summary
    (also written to truth/summary.json). `identity_profile="hard"` makes the night of issue #18
    (generate_citizens.IDENTITY_PROFILES): namesakes in the registry, 10% of patients with no ID."""
    if identity_profile is not None:
        shape = _identity_profile(identity_profile)
        settings = dataclasses.replace(
            settings, identity_profile=identity_profile, self_pay_rate=shape.self_pay_rate
        )
    if facilities < 1 or encounters < 0 or citizens < 100:
        raise ValueError("need at least 1 facility and 100 citizens")
    out = Path(out)
    night_dir = out / "extracts" / night.isoformat()
    if night_dir.exists():
        shutil.rmtree(night_dir)  # a re-generated night replaces the old one, no stale files
    night_dir.mkdir(parents=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    registry_dir = out / "registry"
    for old in registry_dir.glob("part-*.parquet"):
        old.unlink()
    registry_files = write_registry(registry_dir, seed, citizens, profile=settings.identity_profile)

    rng = random.Random(f"night:{seed}:{night.isoformat()}")
    sites = make_facilities(seed, facilities)
    counts = split_evenly(encounters, facilities)
    forced, file_defects, file_quirks = _assign_guarantees(rng, counts, settings)
    need = max(encounters, 1)
    self_pay, twins, absent = identity_pools(
        registry_dir,
        seed,
        citizens,
        int(need * settings.self_pay_rate) + 4,
        int(need * settings.twin_rate) + 2,
        int(need * settings.not_in_registry_rate) + 4,
        settings.identity_profile,
    )
    jobs = [
        FacilityJob(
            seed=seed,
            night=night,
            night_dir=night_dir,
            facility=site,
            facility_index=f,
            encounters=counts[f],
            citizens=citizens,
            forced=forced[f],
            file_defects=file_defects[f],
            file_quirks=file_quirks[f],
            self_pay_pool=self_pay[f::facilities] or self_pay,
            twin_pool=twins,
            absent_pool=absent[f::facilities] or absent,
            settings=settings,
        )
        for f, site in enumerate(sites)
    ]
    if workers is None:
        workers = 2 if encounters >= settings.parallel_from_encounters and facilities > 1 else 1
    if workers > 1:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            results = list(pool.map(build_facility, jobs))
    else:
        results = [build_facility(job) for job in jobs]
    encounter_rows = [row for rows, _, _ in results for row in rows]
    file_rows = [row for _, rows, _ in results for row in rows]
    late_rows = [row for _, _, rows in results for row in rows]
    fhir_rows = write_fhir(night_dir, seed, night, citizens, encounters, sites, settings)
    _mark_non_separable(registry_dir, encounter_rows)

    for name, rows, truth_schema in (
        ("encounters", encounter_rows, ENCOUNTER_TRUTH_SCHEMA),
        ("files", file_rows, FILE_TRUTH_SCHEMA),
        ("fhir", fhir_rows, FHIR_TRUTH_SCHEMA),
        ("late_resends", late_rows, LATE_TRUTH_SCHEMA),
    ):
        pq.write_table(
            pa.Table.from_pylist(rows, schema=truth_schema),
            out / "truth" / f"{name}.parquet",
            compression="zstd",
        )

    def count(values: list[str]) -> dict[str, int]:
        out_counts: dict[str, int] = {}
        for v in values:
            out_counts[v] = out_counts.get(v, 0) + 1
        return dict(sorted(out_counts.items()))

    summary = {
        "arguments": {
            "date": night.isoformat(),
            "facilities": facilities,
            "encounters": encounters,
            "citizens": citizens,
            "seed": seed,
        },
        "seed": seed,
        "settings": dataclasses.asdict(settings),
        "facilities": [{"code": s.code, "name": s.name, "province_code": s.province_code} for s in sites],
        "registry_rows": citizens,
        "registry_files": [p.relative_to(out).as_posix() for p in registry_files],
        "files": len(file_rows),
        "hoso_written": len(encounter_rows),
        "encounters_planned": encounters,
        "declared": sum(r["declared"] for r in file_rows),
        "expected_outcome": count([r["expected_outcome"] for r in encounter_rows]),
        "expected_reason": count([r["expected_reason"] for r in encounter_rows if r["expected_reason"]]),
        "defects": count([d for r in encounter_rows for d in r["defects"]]),
        "identity_noise": count([n for r in encounter_rows for n in r["identity_noise"]]),
        "file_defects": count([r["file_defect"] for r in file_rows if r["file_defect"]]),
        "files_with_bom": sum(r["has_bom"] for r in file_rows),
        "files_with_malformed_xmlns": sum(r["has_malformed_xmlns"] for r in file_rows),
        "visit_types": count([r["visit_type"] for r in encounter_rows]),
        "fhir_lines": len(fhir_rows),
        "fhir_expected": count([r["expected"] for r in fhir_rows]),
        "fhir_resource_types": count([r["resource_type"] for r in fhir_rows]),
        "late_resends": count([f"{r['night']}:{r['kind']}" for r in late_rows]),
        "warnings": count([w for r in encounter_rows for w in r["warnings"]]),
    }
    (out / "truth" / "summary.json").write_text(
        json.dumps(summary, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return summary


def _mark_non_separable(registry_dir: Path, encounter_rows: list[dict]) -> None:
    """Patients with no ID whose record another citizen fits as well as they do (noise
    `non_separable`: the truth is `many_match`) or better (noise `closer_namesake`: the truth is
    `potential_match`, a person must decide), whatever the slips were. Neither is matchable.
    Drops the `_presented` helper."""
    presented = []
    for key, row in enumerate(encounter_rows):
        shown = row.pop("_presented", None)
        if shown is not None and row["expected_outcome"] == "load":
            presented.append({"key": key, "citizen_id": row["citizen_id"], **shown})
    for key, kind in non_separable_records(registry_dir, presented).items():
        row = encounter_rows[key]
        row["identity_noise"] = [*row["identity_noise"], kind]
        row["expected_outcome"] = "quarantine"
        row["expected_reason"] = "many_match" if kind == "non_separable" else "potential_match"


def yesterday_utc() -> dt.date:
    """The default night: yesterday in UTC."""
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


__all__ = ["generate_night", "yesterday_utc"]
