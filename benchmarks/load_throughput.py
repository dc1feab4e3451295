"""Load throughput into PostgreSQL: the load stage's publish against pandas.to_sql, same run.

Not run in CI. Synthesizes the serving rows of N encounter versions (every encounter-version
table, realistic line counts), then times, each into its own fresh database:
  - publish:  transforms.load.writer.publish, the whole load of the rows: version ids, binary COPY
              straight into the serving tables (the line items of half the tables through a
              helper connection in parallel, committed just before the load's own commit),
              audits, retiring, citizens, illness history, load history;
  - baseline: pandas.DataFrame.to_sql(if_exists="append") of the same frames into the same DDL
              (SQLAlchemy's default executemany path), one transaction.
Rows/s = rows of the encounter-version tables + citizens / seconds. Goal: >= 10x and >= 300,000 rows/s.
The load uses two server processes where to_sql uses one: rows per CPU second (client + server)
are reported next to the wall-clock figures. `publish_copy_seconds_summed` adds the COPY time of
both connections (they overlap, so it can exceed the publish's wall time).

    .venv/bin/python benchmarks/load_throughput.py --encounters 50000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transforms.load import stage as load  # noqa: E402
from transforms.load import writer as load_writer
from transforms.serving import writer as serving_writer
from transforms.serving.schema import CITIZENS, VERSION_KEY, VERSION_TABLES  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
NIGHT = dt.date(2026, 11, 26)
KEY = list(VERSION_KEY)
RESULTS = Path(__file__).resolve().parent / "results"


def synth(n: int, seed: int = 1) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Serving rows of n outpatient/inpatient encounter versions, ~5 citizens per 20 encounters."""
    rng = np.random.default_rng(seed)
    citizens_n = max(1, n // 4)
    ids = np.array([f"{i:012d}" for i in range(citizens_n)])
    enc_ids = np.array([f"LK{i:09d}" for i in range(n)])
    facility = np.array([f"{79000 + (i % 50):05d}" for i in range(n)])
    admitted = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 330 * 24 * 60, n), unit="m")
    citizen_of = ids[rng.integers(0, citizens_n, n)]
    key = pd.DataFrame({"facility_code": facility, "encounter_id": enc_ids, "version": 1})
    icd = np.array(["I10", "E11.9", "J44.1", "K29.7", "N18.3", "J06.9", "M54.5", "C34.1"])

    encounters = key.assign(
        is_current=False,
        citizen_id=citizen_of,
        visit_type=np.where(rng.random(n) < 0.15, "03", "01"),
        visit_reason="Khám bệnh định kỳ",
        admitted_at=admitted,
        discharged_at=admitted + pd.Timedelta(hours=2),
        result_code="2",
        discharge_type_code="1",
        main_icd10=icd[rng.integers(0, len(icd), n)],
        discharge_diagnosis="Tăng huyết áp vô căn (nguyên phát)",
        weight_kg=rng.normal(60, 10, n).round(1),
        link_tier="citizen_id",
        match_weight=20.0,
        night=NIGHT,
        source_file="94170/batch.xml",
        hoso_index=0,
    )

    def lines(per: int, extra: dict) -> pd.DataFrame:
        rep = key.loc[key.index.repeat(per)].reset_index(drop=True)
        rep["row_index"] = np.tile(np.arange(per), n)
        return rep.assign(**{k: (v(len(rep)) if callable(v) else v) for k, v in extra.items()})

    diagnoses = pd.concat(
        [
            key.assign(
                position=0,
                icd10=encounters["main_icd10"],
                is_main=True,
                diagnosis_text=encounters["discharge_diagnosis"],
            ),
            key.assign(
                position=1, icd10=icd[rng.integers(0, len(icd), n)], is_main=False, diagnosis_text=None
            ),
        ],
        ignore_index=True,
    )
    medications = lines(
        5,
        {
            "drug_code": "40.17",
            "drug_name": "Amlodipin",
            "strength": "5mg",
            "route_code": "1.01",
            "dose": "1 viên/ngày",
            "unit": "viên",
            "quantity": lambda m: rng.integers(1, 60, m).astype(float),
            "ordered_at": pd.Timestamp("2026-06-01 09:00"),
        },
    )
    procedures = lines(
        3,
        {
            "service_code": "02.1896",
            "service_name": "Khám Nội",
            "quantity": 1.0,
            "performed_at": pd.Timestamp("2026-06-01 09:30"),
        },
    )
    lab_results = lines(
        4,
        {
            "service_code": "23.0075",
            "indicator_code": "GLU",
            "indicator_name": "Glucose",
            "value": lambda m: rng.normal(5.5, 1, m).round(1).astype(str),
            "unit": "mmol/L",
            "conclusion": "Bình thường",
            "reported_at": pd.Timestamp("2026-06-01 10:00"),
        },
    )
    rows = {
        "encounters": encounters,
        "diagnoses": diagnoses,
        "medications": medications,
        "procedures": procedures,
        "lab_results": lab_results,
    }
    # in key order, as transforms.load.assemble delivers them
    tables = {t.name: t for t in VERSION_TABLES}
    rows = {k: v.sort_values(list(tables[k].assembled_order), ignore_index=True) for k, v in rows.items()}
    citizens = pd.DataFrame(
        {
            "citizen_id": ids,
            "full_name": "Nguyễn Văn An",
            "birth_date": dt.date(1990, 3, 14),
            "birth_date_precision": "day",
            "sex_code": "1",
            "province_code": "79",
            "ward_code": "26734",
            "registry_night": NIGHT,
        }
    )
    return rows, citizens


def fresh_database() -> tuple[str, str]:
    name = f"hb_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    return name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'drop database if exists "{name}" with (force)')


COPY_SECONDS: list[float] = []
CPU_SECONDS: dict[str, dict[str, float]] = {}


def server_cpu_seconds(database: str) -> float:
    """CPU seconds (user + system) used so far by the PostgreSQL backends connected to `database`.

    The machine is shared (other benchmarks run on the same 2 cores), so wall time swings with the
    load average; CPU time per side tells whether the client or the server bounds the load.
    """
    total = 0.0
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            if cmdline.startswith("postgres: ") and f" {database} " in cmdline:
                times = process.cpu_times()
                total += times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class CpuClock:
    """Wall, client-process CPU and server-backend CPU seconds of one timed section."""

    def __init__(self, database: str) -> None:
        self.database = database

    def __enter__(self) -> CpuClock:
        self.wall = time.perf_counter()
        self.client = time.process_time()
        self.server = server_cpu_seconds(self.database)
        return self

    def __exit__(self, *_exc) -> None:
        # backends that exited inside the section are not counted: the engine keeps its connection
        self.seconds = {
            "wall": time.perf_counter() - self.wall,
            "client_cpu": time.process_time() - self.client,
            "server_cpu": server_cpu_seconds(self.database) - self.server,
        }


def _timed_bulk_insert(original):
    def timed(conn, target, rows):
        started = time.perf_counter()
        try:
            return original(conn, target, rows)
        finally:
            COPY_SECONDS.append(time.perf_counter() - started)

    return timed


def time_publish(rows, citizens) -> float:
    name, url = fresh_database()
    try:
        engine = load.serving_engine(url)
        load.ensure_schema(engine)
        history = dict.fromkeys(
            (
                "versions_received",
                "versions_retried",
                "versions_loaded",
                "versions_quarantined",
                "versions_superseded",
                "rows_published",
                "fhir_upserted",
                "fhir_removed",
            ),
            0,
        )
        # the share of the publish spent in COPY (server side: parsing, heap, key indexes, WAL)
        serving_writer.bulk_insert = _timed_bulk_insert(serving_writer.bulk_insert)
        with engine.connect() as conn:  # open the pooled connection first: its backend is counted
            conn.exec_driver_sql("select 1")
        with CpuClock(name) as clock:
            load_writer.publish(engine, NIGHT, rows, citizens, {}, {}, history)
        CPU_SECONDS["publish"] = clock.seconds
        engine.dispose()
        return clock.seconds["wall"]
    finally:
        drop_database(name)


def time_to_sql(rows, citizens) -> float:
    name, url = fresh_database()
    try:
        engine = load.serving_engine(url)
        load.ensure_schema(engine)
        tables = {t.name: t for t in VERSION_TABLES}
        # the rows as the tables hold them: the version_id (which the load allocates inside its timed
        # publish) is given to the baseline outside its timing
        ids = rows["encounters"][KEY].assign(version_id=np.arange(1, len(rows["encounters"]) + 1))
        rows = {k: v.merge(ids, on=KEY, how="left", validate="many_to_one") for k, v in rows.items()}
        with engine.connect() as conn:
            conn.exec_driver_sql("select 1")
        with CpuClock(name) as clock, engine.begin() as conn:
            for table_name, frame in rows.items():
                frame.reindex(columns=list(tables[table_name].column_names)).to_sql(
                    table_name, conn, if_exists="append", index=False
                )
            citizens.reindex(columns=list(CITIZENS.column_names)).to_sql(
                "citizens", conn, if_exists="append", index=False
            )
        CPU_SECONDS["baseline"] = clock.seconds
        engine.dispose()
        return clock.seconds["wall"]
    finally:
        drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encounters", type=int, default=50000)
    parser.add_argument(
        "--baseline-encounters",
        type=int,
        default=None,
        help="encounters for the to_sql baseline (default: the same as --encounters)",
    )
    args = parser.parse_args()
    command = " ".join([".venv/bin/python", "benchmarks/load_throughput.py", *sys.argv[1:]])

    load_average_before = [round(x, 2) for x in os.getloadavg()]
    rows, citizens = synth(args.encounters)
    total = sum(len(f) for f in rows.values()) + len(citizens)
    publish_s = time_publish(rows, citizens)

    base_n = args.baseline_encounters or args.encounters
    base_rows, base_citizens = (rows, citizens) if base_n == args.encounters else synth(base_n)
    base_total = sum(len(f) for f in base_rows.values()) + len(base_citizens)
    baseline_s = time_to_sql(base_rows, base_citizens)

    result = {
        "command": command,
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
        "encounters": args.encounters,
        "rows": total,
        "rows_by_table": {k: len(v) for k, v in rows.items()} | {"citizens": len(citizens)},
        "publish_seconds": round(publish_s, 2),
        "publish_rows_per_second": round(total / publish_s),
        "publish_copy_seconds_summed": round(sum(COPY_SECONDS), 2),
        "load_average_1_5_15_before": load_average_before,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "baseline": "pandas.DataFrame.to_sql(if_exists='append'), SQLAlchemy default executemany",
        "baseline_rows": base_total,
        "baseline_seconds": round(baseline_s, 2),
        "baseline_rows_per_second": round(base_total / baseline_s),
    }
    result["speedup"] = round(result["publish_rows_per_second"] / result["baseline_rows_per_second"], 1)
    # contention-free view: CPU seconds per side (wall time on a shared machine also counts waiting)
    result["cpu_seconds"] = {k: {s: round(v, 2) for s, v in c.items()} for k, c in CPU_SECONDS.items()}
    publish_cpu = CPU_SECONDS["publish"]["client_cpu"] + CPU_SECONDS["publish"]["server_cpu"]
    baseline_cpu = CPU_SECONDS["baseline"]["client_cpu"] + CPU_SECONDS["baseline"]["server_cpu"]
    result["publish_rows_per_cpu_second"] = round(total / publish_cpu)
    result["baseline_rows_per_cpu_second"] = round(base_total / baseline_cpu)
    result["goal_met"] = result["speedup"] >= 10 and result["publish_rows_per_second"] >= 300_000
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "load_throughput.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"written {out}")


if __name__ == "__main__":
    main()
