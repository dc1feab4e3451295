"""Speed and peak memory of the reconcile stage at scale: N encounters against an M-row registry.

    .venv/bin/python benchmarks/reconcile_scale.py --data /tmp/hb_scale --encounters 1000000 \
        --citizens 10000000 [--memory-limit 8GB] [--threads 2]

The registry is the generator's (`write_registry`, the same citizens as `healthbook generate`).
Building a million encounters through XML and ingest would take longer than the stage under
test, so the staged encounter rows are made directly from a sample of the registry in DuckDB,
with the generator's identity noise at its rates (no ID 20%, SIN in SO_CCCD 2%, old ID 2%,
one-digit ID typo 1%, capitals 3%, unaccented 3%, no card 25%, moved ward 2%) and 1.5% of
patients who are absent from the registry (a citizen's birth date and address under a made-up name, without ID or card).
The stage runs in a fresh process (`reconcile_night`, DuckDB sized by the flags); the report gives
its wall time per step, its peak RSS, a ratio to a baseline measured in the same run (DuckDB
reading the registry once and hash-joining the encounters on citizen ID, the floor any
reconciliation pays), and the precision of `match` against the sampled citizen.
Writes benchmarks/results/reconcile_scale_<label>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NIGHT = dt.date(2026, 11, 26)

STAGED_SQL = """
copy (
    with sampled as (
        select *, hash(citizen_id, 'noise') as h, hash(citizen_id, 'name') as g
        from read_parquet($registry)
        using sample reservoir({encounters} rows) repeatable (7)
    ),
    noised as (
        select
            printf('%05d', 10000 + h % 40) as facility_code,
            printf('LK%012d', row_number() over (order by citizen_id)) as encounter_id,
            1::bigint as version,
            case
                when g % 1000 < 15 then 'Diệp Khắc ' || split_part(full_name, ' ', -1)
                when g % 100 < 3 then upper(full_name)
                when g % 100 < 6 then replace(replace(strip_accents(full_name), 'đ', 'd'), 'Đ', 'D')
                else full_name
            end as patient_name,
            case
                when g % 1000 < 15 then null
                when h % 100 < 20 then null
                when h % 100 < 22 then social_insurance_number
                when h % 100 < 24 and old_id_number is not null then old_id_number
                when h % 100 < 25 then left(citizen_id, 11) || ((right(citizen_id, 1)::int + 1) % 10)::varchar
                else citizen_id
            end as citizen_id,
            make_date(
                left(birth_date, 4)::int,
                greatest(substr(birth_date, 5, 2)::int, 1),
                greatest(substr(birth_date, 7, 2)::int, 1)
            ) as birth_date,
            case
                when substr(birth_date, 5, 2) = '00' then 'year'
                when substr(birth_date, 7, 2) = '00' then 'month'
                else 'day'
            end as birth_date_precision,
            sex as sex_code,
            case when (h // 100) % 100 < 75 and g % 1000 >= 15 then ['DN4' || province_code || social_insurance_number] end
                as insurance_card,
            province_code,
            case when (h // 10000) % 100 < 2 then printf('%05d', (ward_code::int + 3) % 99999) else ward_code end
                as ward_code,
            case when g % 1000 < 15 then null else citizen_id end as true_citizen_id
        from sampled
    )
    select * from noised
) to '{out}' (format parquet)
"""


def prepare(data: Path, encounters: int, citizens: int, seed: int) -> dict:
    from transforms.synth.citizens import write_registry

    seconds = {}
    registry = data / "registry"
    if not list(registry.glob("*.parquet")):
        started = time.perf_counter()
        write_registry(registry, seed, citizens)
        seconds["registry"] = time.perf_counter() - started
    staged = data / "warehouse" / "staging" / "encounters" / f"night={NIGHT}" / "facility_code=all"
    if not (staged / "part-0.parquet").exists():
        staged.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        con = duckdb.connect(config={"threads": 2, "memory_limit": "8GB"})
        con.execute(
            # DuckDB takes no parameter in a sample clause: the count is formatted as an int
            STAGED_SQL.replace("{out}", str(staged / "part-0.parquet")).replace(
                "{encounters}", str(int(encounters))
            ),
            {"registry": str(registry / "*.parquet")},
        )
        con.close()
        seconds["encounters"] = time.perf_counter() - started
    return seconds


def run_stage(data: Path, memory_limit: str, threads: int) -> dict:
    from transforms.core.context import NightContext
    from transforms.core.warehouse import Warehouse
    from transforms.reconcile.stage import ReconcileSettings, reconcile_night

    ctx = NightContext(
        NIGHT, data / "extracts", data / "registry", Warehouse(data / "warehouse"), "sqlite://"
    )
    settings = ReconcileSettings(memory_limit=memory_limit, threads=threads, temp_directory=data / "spill")
    started = time.perf_counter()
    manifest = json.loads(reconcile_night(ctx, settings).read_text())
    return {"seconds": time.perf_counter() - started, "manifest": manifest}


def run_floor(data: Path, memory_limit: str, threads: int) -> dict:
    """Baseline: read the registry once and join the encounters on the raw citizen ID."""
    con = duckdb.connect(config={"threads": threads, "memory_limit": memory_limit})
    started = time.perf_counter()
    staged = str(data / "warehouse" / "staging" / "encounters" / f"night={NIGHT}" / "*" / "*.parquet")
    (matched,) = con.execute(
        f"""select count(r.citizen_id) from read_parquet('{staged}', hive_partitioning = false) as e
        left join read_parquet('{data / "registry" / "*.parquet"}') as r on r.citizen_id = e.citizen_id"""
    ).fetchall()[0]
    return {"seconds": time.perf_counter() - started, "matched": matched}


def worker(method: str, data: Path, memory_limit: str, threads: int) -> None:
    result = (
        run_stage(data, memory_limit, threads)
        if method == "stage"
        else run_floor(data, memory_limit, threads)
    )
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def in_fresh_process(method: str, args) -> dict:
    command = [sys.executable, __file__, "--worker", method, "--data", str(args.data)]
    command += ["--memory-limit", args.memory_limit, "--threads", str(args.threads)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    return json.loads([x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1][7:])


def precision(data: Path) -> dict:
    con = duckdb.connect()
    links = data / "warehouse" / "staging" / "patient_links" / f"night={NIGHT}" / "part-0.parquet"
    staged = data / "warehouse" / "staging" / "encounters" / f"night={NIGHT}" / "*" / "*.parquet"
    row = con.execute(
        f"""select count(*) filter (where l.outcome = 'match'),
                   count(*) filter (where l.outcome = 'match' and l.citizen_id is distinct from e.true_citizen_id),
                   count(*) filter (where e.true_citizen_id is not null),
                   count(*) filter (where l.outcome = 'match' and l.citizen_id = e.true_citizen_id)
        from read_parquet('{links}') as l
        join read_parquet('{staged}', hive_partitioning = false) as e using (facility_code, encounter_id, version)"""
    ).fetchall()[0]
    matched, wrong, matchable, right = row
    return {
        "matched": matched,
        "wrong": wrong,
        "precision": (matched - wrong) / matched if matched else 1.0,
        "recall": right / matchable if matchable else 1.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--encounters", type=int, default=1_000_000)
    parser.add_argument("--citizens", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--memory-limit", default="8GB")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--label", default=None)
    parser.add_argument("--worker", choices=["stage", "floor"])
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.memory_limit, args.threads)
        return
    command = ".venv/bin/python " + " ".join(sys.argv).replace(str(ROOT) + "/", "")
    prep = prepare(args.data, args.encounters, args.citizens, args.seed)
    floor = in_fresh_process("floor", args)
    stage = in_fresh_process("stage", args)
    quality = precision(args.data)
    manifest = stage["manifest"]
    label = args.label or f"{args.encounters // 1000}k_vs_{args.citizens // 1000}k"
    lines = [
        f"# Reconcile stage at scale: {label}",
        "",
        f"Command: `{command}`",
        "",
        f"{args.encounters:,} staged encounters against the generator's {args.citizens:,}-row registry;"
        f" DuckDB memory_limit {args.memory_limit}, threads {args.threads}; {os.cpu_count()} cores."
        " Preparation (not timed, cached in --data): "
        + (", ".join(f"{k} {v:.0f} s" for k, v in prep.items()) or "reused")
        + ".",
        "",
        "| run | seconds | peak RSS MB |",
        "|---|---|---|",
        f"| baseline: read registry + join on citizen ID | {floor['seconds']:.1f} | {floor['peak_rss_mb']:.0f} |",
        f"| reconcile_night | {stage['seconds']:.1f} | {stage['peak_rss_mb']:.0f} |",
        "",
        f"Ratio stage / baseline: {stage['seconds'] / floor['seconds']:.1f}x.",
        "",
        "Steps (s): " + ", ".join(f"{k} {v}" for k, v in manifest["seconds"].items()),
        "",
        "Outcomes: " + json.dumps(manifest["outcomes"]) + "; tiers: " + json.dumps(manifest["tiers"]),
        "",
        f"Precision of match against the sampled citizen: {quality['precision']:.5f}"
        f" ({quality['wrong']} wrong of {quality['matched']:,}); recall of the citizens sampled: {quality['recall']:.5f}.",
    ]
    path = ROOT / "benchmarks" / "results" / f"reconcile_scale_{label}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
