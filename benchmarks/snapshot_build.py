"""Benchmark (not CI): build time of the analysts' snapshot for a 100,000-encounter night.

Synthesizes a staged warehouse of that size in the layout the ingest, reconcile and load stages
write (hive-partitioned staged Parquet, outcomes, patient links, FHIR, a registry), then times:
  baseline  copying the same input Parquet into a DuckDB file as-is (no joins, no pseudonyms):
            the cost of moving the bytes, measured in the same run on the same files;
  snapshot  transforms.snapshot.stage.build_snapshot (current versions, pseudonyms, age groups, tables).
and reports snapshot / baseline, rows per second and peak memory.

Run:  .venv/bin/python benchmarks/snapshot_build.py [--encounters 100000] [--repeat 3]
Result: benchmarks/results/snapshot_build.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transforms.core.warehouse import Warehouse  # noqa: E402
from transforms.snapshot.stage import FHIR_COLUMNS, build_snapshot, staged_arrow_schema  # noqa: E402

NIGHT = dt.date(2026, 11, 26)
FACILITIES = [f"{p:02d}{n:03d}" for p in (1, 79, 94, 48) for n in (1, 2, 3, 4, 5)]
ICD10 = ["I10", "E11.9", "J06.9", "K29.7", "A09", "O80", "M54.5", "N39.0", "J18.9", "Z00.0", "I25.1", "E78.5"]
DRUGS = [(f"40.{i}", f"Thuốc {i}") for i in range(300)]
VACCINES = ["BCG", "DTP-HepB-Hib", "OPV", "MR", "COVID19", "INFLUENZA", "HPV"]


def synthesize(root: Path, encounters: int, seed: int = 1) -> tuple[Warehouse, Path, dict[str, int]]:
    """A one-night staged warehouse with `encounters` encounters; its row counts per input."""
    rng = np.random.default_rng(seed)
    warehouse = Warehouse(root / "warehouse")
    citizens = encounters * 2
    citizen_ids = np.array(
        [
            f"0{p:02d}{s}{y:02d}{i:06d}"
            for i, (p, s, y) in enumerate(
                zip(
                    rng.integers(1, 96, citizens),
                    rng.integers(0, 4, citizens),
                    rng.integers(0, 100, citizens),
                    strict=True,
                )
            )
        ]
    )
    birth_years = rng.integers(1925, 2026, citizens)
    registry = pa.table(
        {
            "citizen_id": citizen_ids,
            "old_id_number": [None] * citizens,
            "social_insurance_number": [c[2:] for c in citizen_ids],
            "full_name": [f"Nguyễn Văn {i}" for i in range(citizens)],
            "birth_date": [
                f"{y}{m:02d}{d:02d}"
                for y, m, d in zip(
                    birth_years, rng.integers(0, 13, citizens), rng.integers(1, 29, citizens), strict=True
                )
            ],
            "sex": rng.choice(["1", "2"], citizens),
            "province_code": rng.choice(["01", "79", "48", "94"], citizens),
            "ward_code": [f"{w:05d}" for w in rng.integers(1, 30000, citizens)],
            "death_date": [None] * citizens,
        }
    )
    registry_path = root / "registry" / "registry.parquet"
    registry_path.parent.mkdir(parents=True)
    pq.write_table(registry, registry_path)

    facility = rng.choice(FACILITIES, encounters)
    encounter_id = np.array([f"LK{i:09d}" for i in range(encounters)])
    patient = rng.integers(0, citizens, encounters)
    admitted = np.datetime64("2026-11-20T08:00") + rng.integers(0, 6 * 24 * 60, encounters).astype(
        "timedelta64[m]"
    )
    discharged = admitted + rng.integers(30, 5 * 24 * 60, encounters).astype("timedelta64[m]")
    enc = {
        "facility_code": facility,
        "encounter_id": encounter_id,
        "version": np.ones(encounters, dtype=np.int64),
        "citizen_id": citizen_ids[patient],
        "patient_name": registry["full_name"].to_numpy()[patient],
        "visit_type": rng.choice(["01", "02", "03", "04"], encounters, p=[0.6, 0.15, 0.2, 0.05]),
        "admitted_at": admitted.astype("datetime64[s]"),
        "discharged_at": discharged.astype("datetime64[s]"),
        "main_icd10": rng.choice(ICD10, encounters),
        "secondary_icd10": [list(rng.choice(ICD10, k)) for k in rng.integers(0, 4, encounters)],
        "hospital_total_vnd": rng.uniform(5e4, 5e7, encounters),
    }
    counts = {"encounters": encounters, "citizens": citizens}
    _write_staged(warehouse, "encounters", enc)

    lines = rng.integers(1, 9, encounters)  # drug lines per encounter
    idx = np.repeat(np.arange(encounters), lines)
    drug = rng.integers(0, len(DRUGS), len(idx))
    _write_staged(
        warehouse,
        "drugs",
        {
            "facility_code": facility[idx],
            "encounter_id": encounter_id[idx],
            "version": np.ones(len(idx), dtype=np.int64),
            "line_number": np.concatenate([np.arange(1, n + 1) for n in lines]),
            "row_index": np.concatenate([np.arange(n) for n in lines]),
            "drug_code": np.array([d[0] for d in DRUGS])[drug],
            "drug_name": np.array([d[1] for d in DRUGS])[drug],
            "quantity": rng.integers(1, 60, len(idx)).astype(float),
            "amount_vnd": rng.uniform(1e3, 1e6, len(idx)),
        },
    )
    counts["drugs"] = len(idx)

    lines = rng.integers(1, 6, encounters)
    idx = np.repeat(np.arange(encounters), lines)
    group = rng.choice(["1", "2", "8", "13"], len(idx))
    _write_staged(
        warehouse,
        "services",
        {
            "facility_code": facility[idx],
            "encounter_id": encounter_id[idx],
            "version": np.ones(len(idx), dtype=np.int64),
            "line_number": np.concatenate([np.arange(1, n + 1) for n in lines]),
            "row_index": np.concatenate([np.arange(n) for n in lines]),
            "cost_group": group,
            "service_code": [f"S{g}" for g in group],
            "service_name": [f"Dịch vụ {g}" for g in group],
            "procedure_icd9": [["89.52"] if g == "8" else [] for g in group],
            "quantity": np.ones(len(idx)),
        },
    )
    counts["services"] = len(idx)

    loaded = rng.random(encounters) < 0.95
    outcomes = pa.table(
        {
            "facility_code": facility,
            "encounter_id": encounter_id,
            "version": np.ones(encounters, dtype=np.int64),
            "outcome": np.where(loaded, "loaded", "quarantined"),
            "reason": np.where(loaded, None, "totals_mismatch"),
        }
    )
    warehouse.run_dir(NIGHT).mkdir(parents=True)
    pq.write_table(outcomes, warehouse.outcomes(NIGHT))
    links = pa.table(
        {
            "facility_code": facility,
            "encounter_id": encounter_id,
            "version": np.ones(encounters, dtype=np.int64),
            "outcome": ["match"] * encounters,
            "citizen_id": citizen_ids[patient],
        }
    )
    folder = warehouse.staging_night("patient_links", NIGHT)
    folder.mkdir(parents=True)
    pq.write_table(links, folder / "part-0.parquet")

    n_imm = encounters // 2
    who = rng.integers(0, citizens, n_imm)
    imm = {
        "night": [NIGHT] * n_imm,
        "source_file": ["fhir/imm.ndjson"] * n_imm,
        "line_number": np.arange(n_imm),
        "resource_id": [f"I{i}" for i in range(n_imm)],
        "citizen_id": citizen_ids[who],
        "status": ["completed"] * n_imm,
        "vaccine_code": rng.choice(VACCINES, n_imm),
        "occurred_at": (
            np.datetime64("2025-01-01T08:00") + rng.integers(0, 600, n_imm).astype("timedelta64[D]")
        ).astype("datetime64[s]"),
        "dose_number": rng.integers(1, 4, n_imm),
        "facility_code": rng.choice(FACILITIES, n_imm),
        "is_active": rng.random(n_imm) < 0.98,
    }
    _write_fhir(warehouse, "immunizations", imm)
    counts["immunizations"] = n_imm
    n_all = encounters // 20
    _write_fhir(
        warehouse,
        "allergies",
        {
            "night": [NIGHT] * n_all,
            "source_file": ["fhir/all.ndjson"] * n_all,
            "line_number": np.arange(n_all),
            "resource_id": [f"A{i}" for i in range(n_all)],
            "citizen_id": citizen_ids[rng.integers(0, citizens, n_all)],
            "substance_code": rng.choice(["764146007", "227493005"], n_all),
            "recorded_at": (
                np.datetime64("2026-01-01T08:00") + np.zeros(n_all, dtype="timedelta64[D]")
            ).astype("datetime64[s]"),
            "is_active": [True] * n_all,
        },
    )
    counts["allergies"] = n_all
    return warehouse, registry_path, counts


def _write_staged(warehouse: Warehouse, dataset: str, columns: dict) -> None:
    schema = staged_arrow_schema(dataset)
    n = len(columns["encounter_id"])
    arrays = {
        name: pa.array(columns[name], type=schema.field(name).type)
        if name in columns
        else pa.nulls(n, schema.field(name).type)
        for name in schema.names
    }
    arrays["night"] = pa.array([NIGHT] * n, pa.date32())
    table = pa.table(arrays, schema=schema)
    facilities = np.asarray(columns["facility_code"])
    for facility in np.unique(facilities):
        folder = warehouse.staging_night(dataset, NIGHT) / f"facility_code={facility}"
        folder.mkdir(parents=True)
        pq.write_table(
            table.filter(pa.array(facilities == facility)), folder / "part-0.parquet", compression="zstd"
        )


def _write_fhir(warehouse: Warehouse, dataset: str, columns: dict) -> None:
    fields = FHIR_COLUMNS[dataset]
    n = len(columns["resource_id"])
    table = pa.table(
        {
            name: pa.array(columns[name], type=t) if name in columns else pa.nulls(n, t)
            for name, t in fields.items()
        }
    )
    folder = warehouse.staging_night(dataset, NIGHT)
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-0.parquet", compression="zstd")


def copy_baseline(warehouse: Warehouse, registry: Path, out: Path) -> None:
    """The same inputs copied into a DuckDB file unchanged: the floor any snapshot build pays."""
    out.unlink(missing_ok=True)
    with duckdb.connect(str(out)) as con:
        for dataset in ("encounters", "drugs", "services", "immunizations", "allergies", "patient_links"):
            files = sorted(str(p) for p in warehouse.staging(dataset).rglob("*.parquet"))
            con.execute(
                f"create table {dataset} as select * from read_parquet($files, union_by_name = true)",
                {"files": files},
            )
        con.execute(
            "create table outcomes as select * from read_parquet($f)", {"f": str(warehouse.outcomes(NIGHT))}
        )
        con.execute("create table registry as select * from read_parquet($f)", {"f": str(registry)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encounters", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "snapshot_build.json")
    args = parser.parse_args()
    command = (
        f".venv/bin/python benchmarks/snapshot_build.py --encounters {args.encounters} --repeat {args.repeat}"
    )
    print(command)

    work = Path(tempfile.mkdtemp(prefix="snapshot_bench_"))
    try:
        started = time.perf_counter()
        warehouse, registry, counts = synthesize(work, args.encounters)
        synth_s = time.perf_counter() - started
        key = bytes(range(32))
        process = psutil.Process()
        baseline, snapshot = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            copy_baseline(warehouse, registry, work / "baseline.duckdb")
            baseline.append(time.perf_counter() - started)
            started = time.perf_counter()
            result = build_snapshot(warehouse, NIGHT, registry, key, work / "snapshot.duckdb")
            snapshot.append(time.perf_counter() - started)
        baseline_s, snapshot_s = statistics.median(baseline), statistics.median(snapshot)
        report = {
            "command": command,
            "machine": {
                "cpus": psutil.cpu_count(),
                "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                "python": platform.python_version(),
                "duckdb": duckdb.__version__,
            },
            "inputs": counts,
            "synthesize_seconds": round(synth_s, 2),
            "baseline_copy_seconds_median": round(baseline_s, 3),
            "snapshot_build_seconds_median": round(snapshot_s, 3),
            "snapshot_over_baseline": round(snapshot_s / baseline_s, 2),
            "encounters_per_second": round(args.encounters / snapshot_s),
            "runs": {
                "baseline": [round(s, 3) for s in baseline],
                "snapshot": [round(s, 3) for s in snapshot],
            },
            "peak_rss_mb": round(process.memory_info().rss / 2**20),
            "snapshot_mb": round((work / "snapshot.duckdb").stat().st_size / 2**20, 1),
            "snapshot_tables": result["tables"],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
