"""Behaviour unchanged? Run one deterministic night, dump its outputs canonically, diff two dumps.

Issues #17/#19 move every module into sub-packages; "behaviour is unchanged" is shown by running the
same night before and after and comparing what it leaves: the serving database, the analysts'
snapshot, the ledger and the other files of the warehouse. The tool knows nothing of the code's
module layout: it drives the `healthbook` command line (INTERFACES.md) through
`python -m <cli module>`, trying `transforms.orchestration.cli` (after #17) then `transforms.cli`
(before), with PYTHONPATH set to the checkout named by --repo (default: this file's checkout).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/compare_night.py run --out /work/baseline_10k --encounters 10000
    PYTHONPATH=$PWD .venv/bin/python benchmarks/compare_night.py run --out /tmp/after_10k --encounters 10000
    PYTHONPATH=$PWD .venv/bin/python benchmarks/compare_night.py diff /work/baseline_10k /tmp/after_10k

`run --out DIR` (DIR is emptied first):
1. `healthbook generate --out W/night --date 2026-11-26 --facilities F --encounters N --citizens C
   --seed S` into a temporary folder W (the generator's default real-shaped layout: one encounter
   per file; late re-sends on the following nights, which `--nights` can run too);
2. `healthbook run --date D --extracts W/night/extracts --registry W/night/registry --warehouse
   W/warehouse [--serving-url ...]` for night D (and D+1.. with --nights > 1): every stage
   (ingest, quality, reconcile, load, ledger, report, snapshot), the path of `healthbook run`/`demo`.
   Environment of the child: every HEALTHBOOK_* variable of the caller removed, then a fixed
   HEALTHBOOK_PSEUDONYM_KEY and HEALTHBOOK_SIGNING_KEY (so pseudonyms are the same run to run),
   TZ=UTC; the working folder is W (nothing is written into the checkout).
3. dump into DIR, one canonical file per table / document, and DIR/manifest.json (per entry: kind,
   rows, columns, sha256 of the dumped file; the parameters; informational: git commit, CLI module,
   Python and library versions — `diff` notes differing versions but does not count them):
   - `serving/<table>.csv`: every table of the serving database (SQLite file, or the PostgreSQL
     database of --pg-url, dropped and recreated before the run), `serving/_schema.csv` its
     columns and types, `serving/_indexes.csv` its indexes (and triggers on SQLite);
   - `snapshot/<table>.csv`: every table and view of `snapshots/<D>.duckdb`, `snapshot/_schema.csv`;
   - `warehouse/<path>`: every other file of the warehouse — Parquet (all `part-N.parquet` of a
     folder, and the `facility_code=*` partitions of a staged night, as one table), CSV, XLSX (one
     table per sheet, formulas as text), JSON (ledger, manifests, status, alerts, feedback), the
     report's own HTML/JS/CSS/SVG as normalized text; `warehouse/_files.csv` lists every file;
   - `input/`: the generator's summary, its truth tables, the registry, and every extract file's
     path, size and SHA-256 (so a changed generator shows as changed input, not as a changed
     pipeline).
   A table's CSV has its columns in sorted order and its rows sorted by all columns (as text);
   files whose row order is part of what they say (CSV, XLSX written for people) keep their order.
   Cells: null is `\\N`, floats by repr, dates/times ISO, bytes as `\\x<hex>`, lists/structs as
   JSON with sorted keys.

What is normalized (replaced by a placeholder, everything else is kept so a real change shows):
- the temporary folder's absolute path, in any string (→ `<WORK>`): load.json's `serving` URL,
  quality.json's `findings_path`, fingerprint inputs; it changes every run;
- in JSON, every key named `seconds`, `elapsed`, `duration` or ending in `_seconds` (stage
  timings: wall-clock), and `recorded_at` (wall-clock);
- `runs/<D>/fingerprints/<stage>.json` (re-run skip records): `key`, `output_digest`,
  `key_parts.code` (a hash of the source files: it changes with any code move),
  `key_parts.upstream` and the `outputs` stat triples (size, mtime_ns, inode: mtime and inode
  change every run), `recorded_at`, `since_ns` (when a first ingest was decided: wall-clock);
  kept: night, stage, manifest, ran_because, the names of the
  key parts and inputs, the list of output paths, `key_parts.inputs` whose value is a content
  hash (extracts, registry) — except the snapshot's `outcomes`/`staged` and the report's `history`,
  which are digests of file stats (→ `<stat-digest>`);
- serving `load_fingerprints`: `fingerprint` (same code hash as above) and `recorded_at`;
  serving `book_access`: `read_id` (uuid4) and `read_at` (wall clock) — empty after a run anyway;
- GX Data Docs (`quality/data_docs/`): listed in `_files.csv` only, the run-time folder name
  (`20261207T010029.877477Z`) replaced by `<RUN_TIME>`; their HTML carries the run time
  throughout; the quality stage's own results (`runs/<D>/quality.json`: per check evaluated /
  failed rows / status; `quarantine/findings/`) are dumped in full;
- SVG charts (the heat map is matplotlib's; the trend lines, written by expectations/charts.py,
  have neither): the `<metadata>` block (creation date) dropped, and the random element ids
  (`id="p1a2b3c4d5e"`, matplotlib salts them with a uuid) renamed in order of appearance;
- `state/encounter_versions/_<D>.sha256` (a SHA-256 of the Parquet file's bytes, which follow the
  writer's row groups): listed only; the Parquet file it hashes is dumped in full;
- `runs/<D>/.lock` (empty lock file) and the `scratch/` folders: listed only.
Nothing is normalized in the serving tables' data, the snapshot or the ledger: a different
surrogate key (`version_id`), pseudonym, count or value shows as a difference.

`diff DIR1 DIR2` prints, per entry, identical or differs (row counts, the first rows only in one
side) and exits 1 if anything differs (an entry on one side only, or other run parameters, too).
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime as dt
import decimal
import difflib
import hashlib
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI_MODULES = ("transforms.orchestration.cli", "transforms.cli")
NIGHT = dt.date(2026, 11, 26)
# fixed test keys (not secrets): the snapshot's pseudonyms and any signature are then reproducible
PSEUDONYM_KEY = "5e" * 32
SIGNING_KEY = "a7" * 32
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/hb_compare"
NULL = "\\N"
WORK = "<WORK>"
TOOL_VERSION = 1

csv.field_size_limit(sys.maxsize)

# --- canonical values ---------------------------------------------------------------------------


def plain(value, work: str):
    """A JSON-able canonical form of one value (used inside lists and structs)."""
    if value is None:
        return None
    if isinstance(value, bool | int | str):
        return value.replace(work, WORK) if isinstance(value, str) and work else value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return f"timedelta:{value.total_seconds()!r}"
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v, work) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, work) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return plain(value.tolist(), work)
    return str(value)


def cell(value, work: str) -> str:
    """One table cell as canonical text."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value.replace(work, WORK) if work else value
    if isinstance(value, dict | list | tuple) or hasattr(value, "tolist"):
        return json.dumps(plain(value, work), ensure_ascii=False, sort_keys=True)
    p = plain(value, work)
    return p if isinstance(p, str) else str(p)


# --- the dump -----------------------------------------------------------------------------------


class Dump:
    """Writes canonical files into `out` and remembers them for manifest.json."""

    def __init__(self, out: Path, work: str):
        self.out = out
        self.work = work
        self.entries: dict[str, dict] = {}

    def _path(self, name: str) -> Path:
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _record(self, name: str, path: Path, **info) -> None:
        info["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        self.entries[name] = info

    def table(self, name: str, columns: list[str], rows, keep_order: bool = False) -> None:
        """A table: columns sorted by name; rows sorted by all columns unless `keep_order`."""
        order = sorted(range(len(columns)), key=lambda i: columns[i])
        header = [columns[i] for i in order]
        text_rows = [[cell(r[i], self.work) for i in order] for r in rows]
        if not keep_order:
            text_rows.sort()
        path = self._path(name + ".csv")
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            w.writerows(text_rows)
        self._record(name + ".csv", path, kind="table", rows=len(text_rows), columns=header)

    def json(self, name: str, value) -> None:
        path = self._path(name)
        path.write_text(json.dumps(value, ensure_ascii=False, sort_keys=True, indent=1) + "\n")
        self._record(name, path, kind="json")

    def text(self, name: str, text: str) -> None:
        path = self._path(name)
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        self._record(name, path, kind="text", rows=text.count("\n"))


TIMING_KEYS = {"seconds", "elapsed", "duration", "recorded_at"}


def normalize_json(value, work: str):
    """Timings and wall-clock stamps out, the work folder's path replaced (module docstring)."""
    if isinstance(value, dict):
        return {
            k: "<normalized>" if (k in TIMING_KEYS or k.endswith("_seconds")) else normalize_json(v, work)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [normalize_json(v, work) for v in value]
    if isinstance(value, str):
        return value.replace(work, WORK)
    return value


STAT_DIGEST_INPUTS = {("snapshot", "outcomes"), ("snapshot", "staged"), ("report", "history")}


def normalize_fingerprint(record: dict, work: str) -> dict:
    """A re-run skip record without what depends on the code's bytes or on file stats."""
    record = dict(record)
    stage = record.get("stage")
    for key in ("key", "output_digest", "recorded_at", "since_ns"):
        if key in record:
            record[key] = "<normalized>"
    if isinstance(record.get("outputs"), dict):
        record["outputs"] = sorted(record["outputs"])
    if isinstance(record.get("state"), dict):
        record["state"] = {k: "<normalized>" if k != "pending" else v for k, v in record["state"].items()}
    parts = dict(record.get("key_parts") or {})
    if "code" in parts:
        parts["code"] = "<code-digest>"
    if isinstance(parts.get("upstream"), dict):
        parts["upstream"] = dict.fromkeys(parts["upstream"], "<output-digest>")
    if isinstance(parts.get("inputs"), dict):
        parts["inputs"] = {
            k: "<stat-digest>" if (stage, k) in STAT_DIGEST_INPUTS else v for k, v in parts["inputs"].items()
        }
    if parts:
        record["key_parts"] = parts
    return normalize_json(record, work)


RUN_TIME_DIR = re.compile(r"\d{8}T\d{6}\.\d{6}Z")
SVG_ID = re.compile(r'id="([^"]+)"')


def normalize_svg(text: str) -> str:
    """matplotlib's SVG without its creation date and with its uuid-salted ids renumbered."""
    text = re.sub(r"<metadata>.*?</metadata>", "<metadata/>", text, flags=re.S)
    names: dict[str, str] = {}
    for found in SVG_ID.findall(text):
        names.setdefault(found, f"id{len(names)}")
    if not names:
        return text
    pattern = re.compile(
        r"(?<![\w-])(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")(?![\w-])"
    )
    return pattern.sub(lambda m: names[m.group(1)], text)


# --- readers ------------------------------------------------------------------------------------


def parquet_rows(paths: list[Path]) -> tuple[list[str], list[tuple]]:
    """Rows of one or more Parquet files (the union of their columns; a missing one is null)."""
    import pyarrow.parquet as pq

    columns: list[str] = []
    rows: list[tuple] = []
    parts = []
    for path in paths:
        table = pq.ParquetFile(path).read()
        parts.append(table)
        for name in table.column_names:
            if name not in columns:
                columns.append(name)
    for table in parts:
        data = {name: table.column(name).to_pylist() for name in table.column_names}
        missing = [None] * table.num_rows
        rows.extend(zip(*(data.get(c, missing) for c in columns), strict=True))
    return columns, rows


def dump_sqlite(dump: Dump, path: Path) -> None:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        objects = con.execute("select type, name, tbl_name, sql from sqlite_master").fetchall()
        tables = sorted(n for t, n, _, _ in objects if t == "table")
        schema = []
        for table in tables:
            for cid, name, ctype, notnull, default, pk in con.execute(f'pragma table_info("{table}")'):
                schema.append((table, name, ctype, notnull, default, pk, cid))
        dump.table(
            "serving/_schema",
            ["table", "column", "type", "notnull", "default", "pk", "position"],
            schema,
        )
        dump.table(
            "serving/_indexes",
            ["type", "name", "table", "sql"],
            [(t, n, tb, " ".join((s or "").split())) for t, n, tb, s in objects if t in ("index", "trigger")],
        )
        for table in tables:
            cur = con.execute(f'select * from "{table}"')
            columns = [d[0] for d in cur.description]
            rows = [normalize_serving_row(table, columns, r) for r in cur.fetchall()]
            dump.table(f"serving/{table}", columns, rows)
    finally:
        con.close()


def normalize_serving_row(table: str, columns: list[str], row) -> tuple:
    volatile = {"load_fingerprints": ("fingerprint", "recorded_at"), "book_access": ("read_id", "read_at")}
    if table not in volatile:
        return tuple(row)
    return tuple("<normalized>" if c in volatile[table] else v for c, v in zip(columns, row, strict=True))


def dump_postgres(dump: Dump, url: str) -> None:
    import psycopg

    with psycopg.connect(url) as con:
        tables = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables "
                "where table_schema = 'public' and table_type = 'BASE TABLE' order by 1"
            )
        ]
        schema = con.execute(
            "select table_name, column_name, data_type, is_nullable, column_default, ordinal_position "
            "from information_schema.columns where table_schema = 'public'"
        ).fetchall()
        dump.table("serving/_schema", ["table", "column", "type", "nullable", "default", "position"], schema)
        indexes = con.execute(
            "select 'index', indexname, tablename, indexdef from pg_indexes where schemaname = 'public' "
            "union all select 'trigger', t.tgname, c.relname, pg_get_triggerdef(t.oid) from pg_trigger t "
            "join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'public' and not t.tgisinternal"
        ).fetchall()
        dump.table("serving/_indexes", ["type", "name", "table", "sql"], indexes)
        for table in tables:
            cur = con.execute(f'select * from "{table}"')
            columns = [d.name for d in cur.description]
            rows = [normalize_serving_row(table, columns, r) for r in cur.fetchall()]
            dump.table(f"serving/{table}", columns, rows)


def dump_duckdb(dump: Dump, path: Path, prefix: str) -> None:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        objects = con.execute(
            "select table_name, table_type from information_schema.tables "
            "where table_catalog = current_database() and table_schema = 'main' order by 1"
        ).fetchall()
        schema = con.execute(
            "select table_name, column_name, data_type, is_nullable, ordinal_position "
            "from information_schema.columns where table_catalog = current_database() and table_schema = 'main'"
        ).fetchall()
        kinds = dict(objects)
        dump.table(
            f"{prefix}/_schema",
            ["table", "table_type", "column", "type", "nullable", "position"],
            [(t, kinds.get(t), c, ty, n, p) for t, c, ty, n, p in schema],
        )
        for table, _kind in objects:
            cur = con.execute(f'select * from "{table}"')
            columns = [d[0] for d in cur.description]
            dump.table(f"{prefix}/{table}", columns, cur.fetchall())
    finally:
        con.close()


def dump_xlsx(dump: Dump, name: str, path: Path) -> None:
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True, data_only=False)
    try:
        for sheet in book.worksheets:
            rows = [tuple(r) for r in sheet.iter_rows(values_only=True)]
            width = max((len(r) for r in rows), default=0)
            columns = [f"c{i:03d}" for i in range(width)]
            dump.table(f"{name}/{sheet.title}", columns, [r + (None,) * (width - len(r)) for r in rows], True)
    finally:
        book.close()


def dump_csv_file(dump: Dump, name: str, path: Path) -> None:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    width = max((len(r) for r in rows), default=0)
    columns = [f"c{i:03d}" for i in range(width)]
    dump.table(name, columns, [tuple(r) + (None,) * (width - len(r)) for r in rows], keep_order=True)


PART_FILE = re.compile(r"^part-\d+\.parquet$")
FACILITY_DIR = re.compile(r"^facility_code=[^/]+$")
REPORT_TEXT = {".html", ".js", ".css", ".svg", ".txt", ".md"}
LISTED_ONLY = re.compile(r"(^|/)(\.lock|_[^/]*\.sha256)$|^scratch/|^quality/data_docs/")


def parquet_group(rel: Path) -> str:
    """The table a Parquet file belongs to: parts of a folder and facility partitions are one."""
    parts = [p for p in rel.parts[:-1] if not FACILITY_DIR.match(p)]
    name = "parts.parquet" if PART_FILE.match(rel.name) else rel.name
    return "/".join([*parts, name])


def dump_warehouse(dump: Dump, warehouse: Path, serving_file: Path | None, snapshots: set[Path]) -> None:
    files = sorted(p for p in warehouse.rglob("*") if p.is_file())
    listing = []
    groups: dict[str, list[Path]] = collections.defaultdict(list)
    for path in files:
        rel = path.relative_to(warehouse)
        shown = RUN_TIME_DIR.sub("<RUN_TIME>", rel.as_posix())
        if serving_file is not None and path == serving_file or path in snapshots:
            listing.append((shown, "dumped: serving/ or snapshot/"))
            continue
        if rel.name.startswith("serving.db"):  # journals of the SQLite file
            listing.append((shown, "listed"))
            continue
        if LISTED_ONLY.search(rel.as_posix()):
            listing.append((shown, "listed"))
            continue
        name = "warehouse/" + rel.as_posix()
        suffix = path.suffix.lower()
        handled = "dumped"
        if suffix == ".parquet":
            group = parquet_group(rel)
            groups[group].append(path)
            handled = f"table warehouse/{group}"
        elif suffix == ".json":
            value = json.loads(path.read_text(encoding="utf-8"))
            if rel.parts[-2:-1] == ("fingerprints",):
                dump.json(name, normalize_fingerprint(value, dump.work))
            else:
                dump.json(name, normalize_json(value, dump.work))
        elif suffix == ".csv":
            dump_csv_file(dump, name, path)
        elif suffix == ".xlsx":
            dump_xlsx(dump, name, path)
        elif suffix == ".duckdb":
            dump_duckdb(dump, path, name)
        elif suffix in REPORT_TEXT:
            text = path.read_text(encoding="utf-8").replace(dump.work, WORK)
            dump.text(name, normalize_svg(text) if suffix == ".svg" else text)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            dump.text(name + ".sha256", digest)
            handled = "sha256"
        listing.append((shown, handled))
    for group, paths in sorted(groups.items()):
        columns, rows = parquet_rows(paths)
        dump.table("warehouse/" + group, columns, rows)
    dump.table("warehouse/_files", ["path", "handled"], listing)


def dump_inputs(dump: Dump, night_dir: Path, generated: dict) -> None:
    dump.json("input/generate.json", normalize_json(generated, dump.work))
    listing = []
    for path in sorted((night_dir / "extracts").rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            listing.append(
                (path.relative_to(night_dir).as_posix(), len(data), hashlib.sha256(data).hexdigest())
            )
    dump.table("input/extracts_files", ["path", "bytes", "sha256"], listing)
    for folder in ("truth", "registry"):
        for path in sorted((night_dir / folder).rglob("*")):
            rel = path.relative_to(night_dir).as_posix()
            if path.suffix == ".parquet":
                columns, rows = parquet_rows([path])
                dump.table(f"input/{rel}", columns, rows)
            elif path.suffix == ".json":
                dump.json(f"input/{rel}", normalize_json(json.loads(path.read_text()), dump.work))


# --- running the night --------------------------------------------------------------------------


def child_env(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHBOOK_")}
    env.update(
        PYTHONPATH=str(repo),
        HEALTHBOOK_PSEUDONYM_KEY=PSEUDONYM_KEY,
        HEALTHBOOK_SIGNING_KEY=SIGNING_KEY,
        TZ="UTC",
    )
    return env


def resolve_cli(python: str, repo: Path) -> str:
    """The CLI module of the checkout: the new layout's name first."""
    # found in the checkout itself: an editable install of another checkout in the same venv would
    # otherwise lend its own modules (its finder maps `transforms` to its folder)
    probe = (
        "import importlib.util, pathlib, sys\n"
        "repo = pathlib.Path(sys.argv[1]).resolve()\n"
        "for name in sys.argv[2:]:\n"
        "    try:\n"
        "        spec = importlib.util.find_spec(name)\n"
        "    except ImportError:\n"
        "        continue\n"
        "    if spec and spec.origin and pathlib.Path(spec.origin).resolve().is_relative_to(repo):\n"
        "        print(name)\n"
        "        break\n"
    )
    found = subprocess.run(
        [python, "-c", probe, str(repo), *CLI_MODULES],
        env=child_env(repo),
        cwd=repo,  # `python -c` puts its working folder first on sys.path: it must be the checkout
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not found:
        raise SystemExit(f"no CLI module ({', '.join(CLI_MODULES)}) importable from {repo}")
    return found


def healthbook(python: str, repo: Path, module: str, args: list[str], cwd: Path, log: Path) -> str:
    """Run one `healthbook` command; its stdout. Fails loudly (stderr's tail) on a non-zero exit."""
    cmd = [python, "-m", module, *args]
    done = subprocess.run(cmd, env=child_env(repo), cwd=cwd, capture_output=True, text=True)
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n[exit {done.returncode}]\n{done.stderr}\n")
    if done.returncode != 0:
        raise SystemExit(
            f"`{' '.join(args[:1])}` exited {done.returncode}:\n{done.stderr[-3000:]}\n(full log: {log})"
        )
    return done.stdout


def recreate_pg(url: str) -> str:
    """Drop and create the database of `url`; the SQLAlchemy URL the pipeline is given."""
    import psycopg
    from psycopg import sql

    info = psycopg.conninfo.conninfo_to_dict(url)
    name = info["dbname"]
    if name in ("postgres", "template0", "template1", "test"):
        raise SystemExit(f"refusing to drop database {name!r}: name one of your own in --pg-url")
    admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        con.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)


LIBRARIES = ("pandas", "pyarrow", "duckdb", "great_expectations", "splink", "sqlalchemy", "lxml", "psycopg")


def library_versions(python: str) -> dict[str, str | None]:
    """The versions of the libraries whose output the dump holds (a reinstalled venv shows)."""
    probe = (
        "import importlib.metadata as m, json, sys\n"
        "def v(name):\n"
        "    try:\n"
        "        return m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        "print(json.dumps({n: v(n) for n in sys.argv[1:]}))\n"
    )
    done = subprocess.run([python, "-c", probe, *LIBRARIES], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def git_commit(repo: Path) -> str | None:
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return None
    return done.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def cmd_run(args: argparse.Namespace) -> int:
    repo = Path(args.repo).resolve()
    out = Path(args.out).resolve()
    python = args.python or sys.executable
    module = resolve_cli(python, repo)
    work = Path(tempfile.mkdtemp(prefix="compare-night-", dir=args.tmp))
    log = work / "commands.log"
    try:
        night_dir, warehouse = work / "night", work / "warehouse"
        generated = healthbook(
            python,
            repo,
            module,
            [
                "generate",
                "--out",
                str(night_dir),
                "--date",
                NIGHT.isoformat(),
                "--facilities",
                str(args.facilities),
                "--encounters",
                str(args.encounters),
                "--citizens",
                str(args.citizens),
                "--seed",
                str(args.seed),
            ],
            work,
            log,
        )
        serving_args: list[str] = []
        if args.serving == "postgres":
            serving_args = ["--serving-url", recreate_pg(args.pg_url)]
        for offset in range(args.nights):
            night = NIGHT + dt.timedelta(days=offset)
            (night_dir / "extracts" / night.isoformat()).mkdir(parents=True, exist_ok=True)
            healthbook(
                python,
                repo,
                module,
                [
                    "run",
                    "--date",
                    night.isoformat(),
                    "--extracts",
                    str(night_dir / "extracts"),
                    "--registry",
                    str(night_dir / "registry"),
                    "--warehouse",
                    str(warehouse),
                    *serving_args,
                ],
                work,
                log,
            )
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        dump = Dump(out, str(work))
        serving_file = None
        if args.serving == "postgres":
            dump_postgres(dump, args.pg_url)
        else:
            serving_file = warehouse / "serving.db"
            dump_sqlite(dump, serving_file)
        snapshots = set((warehouse / "snapshots").glob("*.duckdb"))
        for path in sorted(snapshots):
            prefix = (
                "snapshot" if path.stem == NIGHT.isoformat() and args.nights == 1 else f"snapshot/{path.stem}"
            )
            dump_duckdb(dump, path, prefix)
        dump_warehouse(dump, warehouse, serving_file, snapshots)
        dump_inputs(dump, night_dir, json.loads(generated.strip().splitlines()[-1]))
        manifest = {
            "tool_version": TOOL_VERSION,
            "params": {
                "night": NIGHT.isoformat(),
                "nights": args.nights,
                "encounters": args.encounters,
                "facilities": args.facilities,
                "citizens": args.citizens,
                "seed": args.seed,
                "serving": args.serving,
            },
            "source": {
                "repo": str(repo),
                "commit": git_commit(repo),
                "cli_module": module,
                "python": sys.version.split()[0],
                "libraries": library_versions(python),
            },
            "entries": dict(sorted(dump.entries.items())),
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        shutil.copy(log, out / "commands.log")
        tables = sum(1 for e in dump.entries.values() if e["kind"] == "table")
        print(
            f"dumped {len(dump.entries)} entries ({tables} tables) of {module} at {manifest['source']['commit']} into {out}"
        )
    finally:
        if args.keep_work:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


# --- diff ---------------------------------------------------------------------------------------


def read_csv(path: Path) -> tuple[list[str], list[tuple[str, ...]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = [tuple(r) for r in csv.reader(f)]
    return list(rows[0]) if rows else [], rows[1:]


def file_sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def diff_table(path1: Path, path2: Path, show: int) -> list[str]:
    cols1, rows1 = read_csv(path1)
    cols2, rows2 = read_csv(path2)
    lines = [f"rows {len(rows1)} -> {len(rows2)}"]
    if cols1 != cols2:
        lines.append(
            f"columns only in 1: {sorted(set(cols1) - set(cols2))}; only in 2: {sorted(set(cols2) - set(cols1))}"
        )
        common = [c for c in cols1 if c in cols2]
        i1 = [cols1.index(c) for c in common]
        i2 = [cols2.index(c) for c in common]
        rows1 = [tuple(r[i] for i in i1) for r in rows1]
        rows2 = [tuple(r[i] for i in i2) for r in rows2]
        lines.append(f"compared on the {len(common)} common columns")
        cols1 = common
    c1, c2 = collections.Counter(rows1), collections.Counter(rows2)
    only1, only2 = list((c1 - c2).elements()), list((c2 - c1).elements())
    lines.append(f"rows only in 1: {len(only1)}; only in 2: {len(only2)}")
    if not only1 and not only2 and rows1 != rows2:
        lines.append("same rows, different order")
    for label, rows in (("-", only1), ("+", only2)):
        for r in sorted(rows)[:show]:
            lines.append(f"  {label} " + ", ".join(f"{c}={v}" for c, v in zip(cols1, r, strict=True)))
    return lines


def diff_text(path1: Path, path2: Path, show: int) -> list[str]:
    a = path1.read_text(encoding="utf-8").splitlines()
    b = path2.read_text(encoding="utf-8").splitlines()
    lines = [f"lines {len(a)} -> {len(b)}"]
    body = list(difflib.unified_diff(a, b, "1", "2", n=1, lineterm=""))[2:]
    lines += ["  " + line[:200] for line in body[: show * 6]]
    if len(body) > show * 6:
        lines.append(f"  ... {len(body) - show * 6} more diff lines")
    return lines


def cmd_diff(args: argparse.Namespace) -> int:
    d1, d2 = Path(args.dir1), Path(args.dir2)
    m1 = json.loads((d1 / "manifest.json").read_text())
    m2 = json.loads((d2 / "manifest.json").read_text())
    print(f"1: {d1}  ({m1['source']['cli_module']} @ {m1['source']['commit']})")
    print(f"2: {d2}  ({m2['source']['cli_module']} @ {m2['source']['commit']})")
    libs1, libs2 = m1["source"].get("libraries"), m2["source"].get("libraries")
    if libs1 and libs2 and libs1 != libs2:
        changed = {
            k: (libs1.get(k), libs2.get(k))
            for k in sorted(set(libs1) | set(libs2))
            if libs1.get(k) != libs2.get(k)
        }
        print(f"note: library versions differ (not counted as a difference): {changed}")
    differs = 0
    if m1["params"] != m2["params"] or m1.get("tool_version") != m2.get("tool_version"):
        print(
            f"PARAMS DIFFER: {m1['params']} vs {m2['params']} (tool {m1.get('tool_version')} vs {m2.get('tool_version')})"
        )
        differs += 1
    e1, e2 = m1["entries"], m2["entries"]
    identical = 0
    for name in sorted(set(e1) | set(e2)):
        if name not in e2 or name not in e1:
            side = 1 if name in e1 else 2
            print(f"ONLY IN {side}: {name}")
            differs += 1
            continue
        h1, h2 = file_sha256(d1 / name), file_sha256(d2 / name)  # the files as they are, not the manifest
        if h1 is None or h2 is None:
            print(f"FILE MISSING in {1 if h1 is None else 2}: {name}")
            differs += 1
            continue
        if h1 == h2:
            identical += 1
            if args.verbose:
                print(f"identical: {name}" + (f" ({e1[name]['rows']} rows)" if "rows" in e1[name] else ""))
            continue
        differs += 1
        print(f"DIFFERS: {name}")
        detail = (
            diff_table(d1 / name, d2 / name, args.rows)
            if e1[name]["kind"] == "table"
            else diff_text(d1 / name, d2 / name, args.rows)
        )
        for line in detail:
            print(f"    {line}")
    print(f"{identical} identical, {differs} differing of {len(set(e1) | set(e2))} entries")
    return 1 if differs else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="generate a night, run it, dump its outputs canonically")
    run.add_argument("--out", required=True, help="folder for the dump (emptied first)")
    run.add_argument("--encounters", type=int, default=10000)
    run.add_argument("--facilities", type=int, default=10)
    run.add_argument("--citizens", type=int, default=20000)
    run.add_argument("--seed", type=int, default=42)
    run.add_argument("--nights", type=int, default=1, help="run D .. D+n-1 (late re-sends arrive after D)")
    run.add_argument("--serving", choices=("sqlite", "postgres"), default="sqlite")
    run.add_argument("--pg-url", default=DEFAULT_PG_URL, help="database to drop, recreate and load")
    run.add_argument("--repo", default=str(ROOT), help="checkout whose code runs (PYTHONPATH)")
    run.add_argument("--python", help="interpreter (default: this one)")
    run.add_argument("--tmp", help="parent of the temporary work folder")
    run.add_argument("--keep-work", action="store_true", help="keep the temporary work folder")
    diff = sub.add_parser("diff", help="compare two dumps; exit 1 if anything differs")
    diff.add_argument("dir1")
    diff.add_argument("dir2")
    diff.add_argument("--rows", type=int, default=5, help="differing rows shown per table")
    diff.add_argument("-v", "--verbose", action="store_true", help="list identical entries too")
    args = parser.parse_args(argv)
    return cmd_run(args) if args.command == "run" else cmd_diff(args)


if __name__ == "__main__":
    sys.exit(main())
