"""Latency of one citizen's health book from a PostgreSQL serving database of 1,000,000 encounters.

Not run in CI. Creates a fresh database with the project DDL, synthesizes the rows server-side
(insert ... select from generate_series: 1M current encounters over 200k citizens, 2 diagnoses,
2 drug lines, 1 lab result and 1 procedure each, a summary and discharge paper for every 7th,
plus 100k superseded history versions and the citizens' illnesses), analyzes, then times
`transforms.serving.book.books_for(url, [citizen_id])` in-process with a warm engine (no start-up) for
random citizens. Baseline in the same run: the same book read as one query per table with no
index on encounters.citizen_id (the index is dropped for that pass), on fewer citizens.
Goal: p95 <= 50 ms.

    .venv/bin/python benchmarks/book_latency.py --encounters 1000000 --samples 500
    (--database hb_book_1m keeps the synthesized database for another run; drop it afterwards)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transforms.load import stage as load  # noqa: E402
from transforms.serving.book import books_for  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
RESULTS = Path(__file__).resolve().parent / "results"

SYNTH = [
    # citizens
    """insert into citizens (citizen_id, full_name, birth_date, birth_date_precision, sex_code,
           ethnicity_code, nationality_code, province_code, ward_code, social_insurance_number, registry_night)
       select lpad(c::text, 12, '0'), 'Nguyễn Văn ' || c, date '1950-01-01' + (c % 25000), 'day',
              (1 + c % 2)::text, '01', '000', lpad((1 + c % 34)::text, 2, '0'), lpad((c % 10000)::text, 5, '0'),
              lpad(c::text, 10, '0'), date '2026-11-26'
       from generate_series(0, %(citizens)s - 1) as c""",
    # current encounters: encounter i belongs to citizen i % citizens
    """insert into encounters (version_id, facility_code, encounter_id, version, is_current, citizen_id,
           visit_type, visit_reason, admitted_at, discharged_at, result_code, discharge_type_code, main_icd10,
           discharge_diagnosis, weight_kg, night, source_file, hoso_index, link_tier, match_weight)
       select i + 1, lpad((79000 + i % 50)::text, 5, '0'), 'LK' || i, 2, true, lpad((i % %(citizens)s)::text, 12, '0'),
              case when i % 7 = 0 then '03' else '01' end, 'Khám bệnh',
              timestamp '2024-01-01 08:00' + (i % 1000) * interval '1 day' + (i % 600) * interval '1 minute',
              timestamp '2024-01-01 10:00' + (i % 1000) * interval '1 day', '2', '1',
              (array['I10','E11','J44','K29','N18','J06','M54','C34'])[1 + i % 8], 'Chẩn đoán ' || i,
              50 + i % 30, date '2026-11-26', 'f/batch.xml', 0, 'citizen_id', 20
       from generate_series(0, %(encounters)s - 1) as i""",
    # history: version 1 of every 10th encounter, superseded
    """insert into encounters (version_id, facility_code, encounter_id, version, is_current, citizen_id,
           visit_type, admitted_at, main_icd10, night, source_file, hoso_index)
       select %(encounters)s + version_id, facility_code, encounter_id, 1, false, citizen_id, visit_type, admitted_at, main_icd10,
              night, source_file, hoso_index
       from encounters where version = 2 and substr(encounter_id, 3)::bigint % 10 = 0""",
    """insert into diagnoses (version_id, position, icd10, is_main, diagnosis_text)
       select version_id, p, case when p = 0 then main_icd10 else 'E78' end,
              p = 0, case when p = 0 then discharge_diagnosis end
       from encounters cross join generate_series(0, 1) as p where is_current""",
    """insert into medications (version_id, row_index, drug_code, drug_name,
           strength, route_code, dose, unit, quantity, ordered_at)
       select version_id, r, '40.17', 'Amlodipin', '5mg', '1.01', '1 viên/ngày',
              'viên', 10 + r, admitted_at
       from encounters cross join generate_series(0, 1) as r where is_current""",
    """insert into lab_results (version_id, row_index, service_code, indicator_code,
           indicator_name, value, unit, conclusion, reported_at)
       select version_id, 0, '23.0075', 'GLU', 'Glucose', '5.6', 'mmol/L',
              'Bình thường', admitted_at
       from encounters where is_current""",
    """insert into procedures (version_id, row_index, service_code, service_name,
           quantity, performed_at)
       select version_id, 0, '02.1896', 'Khám Nội', 1, admitted_at
       from encounters where is_current""",
    """insert into summaries (version_id, medical_history, treatment_method, issued_on)
       select version_id, 'Bệnh sử', 'Điều trị nội khoa', cast(discharged_at as date)
       from encounters where is_current and visit_type = '03'""",
    """insert into discharge_papers (version_id, discharge_diagnosis,
           department_head_name, issued_on)
       select version_id, discharge_diagnosis, 'BS. Lê Văn Cường',
              cast(discharged_at as date)
       from encounters where is_current and visit_type = '03'""",
    """insert into illnesses (citizen_id, icd10, condition, name, first_seen, last_seen, encounter_count)
       select citizen_id, left(main_icd10, 3), 'synthetic', 'synthetic', min(cast(admitted_at as date)),
              max(cast(admitted_at as date)), count(*)
       from encounters where is_current and main_icd10 in ('I10', 'E11', 'J44', 'N18', 'C34')
       group by citizen_id, left(main_icd10, 3)""",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def time_books(url: str, ids: list[str]) -> list[float]:
    books_for(url, ids[:20])  # warm the engine's pool and the server's caches for the plans
    out = []
    for citizen_id in ids:
        started = time.perf_counter()
        book = books_for(url, [citizen_id])[0]
        out.append((time.perf_counter() - started) * 1000)
        assert book["found"], citizen_id
    return out


def summary(ms: list[float]) -> dict:
    return {
        "samples": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p95_ms": round(percentile(ms, 0.95), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encounters", type=int, default=1_000_000)
    parser.add_argument("--citizens", type=int, default=200_000)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--baseline-samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database", help="reuse (or create and keep) this database instead of a temporary one"
    )
    args = parser.parse_args()
    command = " ".join([".venv/bin/python", "benchmarks/book_latency.py", *sys.argv[1:]])

    name = args.database or f"hb_bench_{uuid.uuid4().hex[:10]}"
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        exists = admin.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if not exists:
            admin.execute(f'create database "{name}"')
    try:
        engine = load.serving_engine(url)
        started = time.perf_counter()
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}") as conn:
            synthesized = conn.execute("select to_regclass('citizens') is not null").fetchone()[0]
        if not synthesized:
            load.ensure_schema(engine)
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}") as conn:
            for statement in [] if synthesized else SYNTH:
                sql = statement.replace("%(citizens)s", str(int(args.citizens)))
                conn.execute(sql.replace("%(encounters)s", str(int(args.encounters))).encode())
            conn.commit()
            conn.autocommit = True
            if not synthesized:
                conn.execute("vacuum analyze")
            counts = {
                t: conn.execute(f"select count(*) from {t}").fetchone()[0]
                for t in ("citizens", "encounters", "diagnoses", "medications", "lab_results", "procedures")
            }
        synth_s = time.perf_counter() - started

        rng = random.Random(args.seed)
        ids = [f"{rng.randrange(args.citizens):012d}" for _ in range(args.samples)]
        indexed = summary(time_books(url, ids))
        encounters_per_book = statistics.fmean(len(b["encounters"]) for b in books_for(url, ids[:50]))

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}", autocommit=True) as conn:
            conn.execute("drop index encounters_citizen_current")
            try:
                unindexed = summary(time_books(url, ids[: args.baseline_samples]))
            finally:
                conn.execute("create index encounters_citizen_current on encounters (citizen_id, is_current)")
        engine.dispose()
    finally:
        if not args.database:
            with psycopg.connect(ADMIN, autocommit=True) as admin:
                admin.execute(f'drop database if exists "{name}" with (force)')

    result = {
        "command": command,
        "rows": counts,
        "synthesis_seconds": round(synth_s, 1),
        "encounters_per_book": round(encounters_per_book, 1),
        "book_latency": indexed,
        "baseline_without_citizen_index": unindexed,
        "speedup_p95": round(unindexed["p95_ms"] / indexed["p95_ms"], 1),
        "goal_met": indexed["p95_ms"] <= 50,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "book_latency.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"written {out}")


if __name__ == "__main__":
    main()
