"""What a serving table's primary key costs a COPY, text keys against a bigint version id (not CI).

Issue #6 asks the load for 10x `pandas.to_sql`; it reaches 6.4-6.9x (`load_throughput.py`). This
measures where the rest is: the same 700,000 medication lines (100,000 encounter versions x 7)
COPYed into a fresh table three ways, each in the same run:
  - no_key:      the serving table's columns, no index (the floor);
  - text_key:    the serving table as it is, primary key (facility_code, encounter_id, version,
                 row_index);
  - version_id:  the key replaced by one bigint per encounter version, primary key
                 (version_id, row_index).

    .venv/bin/python benchmarks/pk_copy_cost.py --versions 100000 --repeat 3
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time

import psycopg

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
LINE = "40.17.{r},Paracetamol 500mg,500mg,1.01,Viên nén,1 viên,Uống sau ăn,viên,{q}.0,2026-01-01 08:00:00,2026-01-01 09:00:00"
COLUMNS = (
    "drug_code text, drug_name text, strength text, route_code text, dosage_form text, dose text, "
    "directions text, unit text, quantity double precision, ordered_at timestamp, administered_at timestamp"
)
TEXT_KEY = "facility_code text not null, encounter_id text not null, version integer not null, row_index integer not null"
TABLES = {
    "no_key": f"({TEXT_KEY}, {COLUMNS})",
    "text_key": f"({TEXT_KEY}, {COLUMNS}, primary key (facility_code, encounter_id, version, row_index))",
    "version_id": f"(version_id bigint not null, row_index integer not null, {COLUMNS}, primary key (version_id, row_index))",
}


def data(versions: int, lines: int) -> tuple[bytes, bytes]:
    rng = random.Random(1)
    text, by_id = io.StringIO(), io.StringIO()
    for v in range(versions):
        facility, encounter = f"{79000 + v % 50:05d}", f"LK{rng.randrange(10**9):09d}"
        for r in range(lines):
            rest = LINE.format(r=r, q=r + 1)
            text.write(f"{facility},{encounter},1,{r},{rest}\n")
            by_id.write(f"{v + 1},{r},{rest}\n")
    return text.getvalue().encode(), by_id.getvalue().encode()


def copy_seconds(conn: psycopg.Connection, name: str, payload: bytes) -> float:
    table = f"pk_cost_{name}"
    with conn.transaction():
        conn.execute(f"drop table if exists {table}")
        conn.execute(f"create table {table} {TABLES[name]}")
    started = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur, cur.copy(f"copy {table} from stdin (format csv)") as copy:
        for i in range(0, len(payload), 1 << 20):
            copy.write(payload[i : i + (1 << 20)])
    seconds = time.perf_counter() - started
    conn.execute(f"drop table {table}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", type=int, default=100_000)
    ap.add_argument("--lines", type=int, default=7, help="medication lines per encounter version")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dsn", default=ADMIN)
    args = ap.parse_args()
    text, by_id = data(args.versions, args.lines)
    runs = {name: [] for name in TABLES}
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        for _ in range(args.repeat):  # interleaved, so that the machine's noise hits all three
            for name in TABLES:
                runs[name].append(copy_seconds(conn, name, by_id if name == "version_id" else text))
    rows = args.versions * args.lines
    best = {name: min(s) for name, s in runs.items()}
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds_best": {k: round(v, 3) for k, v in best.items()},
                "rows_per_s_best": {k: round(rows / v) for k, v in best.items()},
                "key_cost_share_of_copy": {
                    "text_key": round((best["text_key"] - best["no_key"]) / best["text_key"], 2),
                    "version_id": round((best["version_id"] - best["no_key"]) / best["version_id"], 2),
                },
                "text_key_over_version_id": round(best["text_key"] / best["version_id"], 2),
                "runs": {k: [round(x, 3) for x in v] for k, v in runs.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
