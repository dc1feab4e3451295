"""The standardized registry of step 1, kept between nights: the tables registry_identities and
name_frequencies as Parquet in the warehouse's private scratch area, under a key that says what
they were made from.

Standardizing a national registry is the reconcile stage's largest fixed cost (a million citizens:
about half of a 1,000-encounter night's reconcile), and the registry is the same from one run to
the next more often than not (a re-run, a resumed night, a registry delivered weekly). The key is a
SHA-256 over the registry files' content digest (transforms/core/digest.py, hashed once per process
and shared with the stages' fingerprints) and the version of everything that shapes the tables:
the SQL of both statements, the identity macros, DuckDB's version and CACHE_FORMAT. A registry
with one byte changed, or an edited rule, gives another key: a stale table is never served, it is
rebuilt (and the cache then holds the new one).

A hit loads the entry's files into the same in-memory tables a build makes (read once: the
steps after scan the registry a dozen times, and a scan of Parquet costs three of memory's); a
miss builds the tables in memory and writes the entry in a thread of its own while the
night's other steps run (CacheWrite), uncompressed. Writing an entry costs about two thirds of
building the tables (1M citizens: ~1.5 s of CPU against ~2.5 s), so it pays only when the registry
comes back: an entry is written the second time a registry is seen (SEEN_FILE lists the last
keys), never on its first night. A registry that changes daily (the national one) then costs what
it cost before the cache; one delivered weekly is built twice, written once and read every other
night; a re-run of a night reads what its first run built once the registry was seen before.

The tables hold citizen IDs and names, like the registry itself: the folder is private (0700, in
scratch/, one of the warehouse's PRIVATE_FOLDERS) and every file 0600. An entry is written into a
fresh private folder and renamed into place whole, so a reader sees a complete entry or none; a
crash leaves only a temporary folder, swept by the next write. Only the newest entries are kept
(KEEP_ENTRIES): the national registry changes daily, and each change makes a new entry.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb

from transforms.core.digest import registry_digest, sha256_of
from transforms.core.safe_io import atomic_path, make_private, private_temp_dir
from transforms.reconcile import database
from transforms.reconcile.database import read_sql
from transforms.reconcile.identity import identity_macros_sql

# The registry-derived tables, built by the statements of the same name, in this order.
CACHE_TABLES = ("registry_identities", "name_frequencies")
# Bump when what an entry holds changes in a way the SQL text does not show (its file layout).
CACHE_FORMAT = 1
# Entries kept: the one just written or read and the one before it (a night re-run on
# yesterday's registry while today's is already cached still finds its own).
KEEP_ENTRIES = 2
TEMP_PREFIX = ".tmp-"
# The keys of the last runs (newest first): an entry is written for a registry seen a second time.
SEEN_FILE = "seen.json"
SEEN_KEYS = 8

log = logging.getLogger(__name__)


@cache
def registry_code_version() -> str:
    """The version of the code that builds the cached tables: their SQL, the identity macros they
    call, how the registry files are read (database.py's register_source), DuckDB's version (its
    functions: strip_accents, regexps) and the entry format."""
    return sha256_of(
        {
            "format": CACHE_FORMAT,
            "sql": {name: read_sql(name) for name in CACHE_TABLES},
            "macros": identity_macros_sql(),
            "reader": inspect.getsource(database),
            "duckdb": duckdb.__version__,
        }
    )


def registry_cache_key(registry_path: Path) -> str:
    """The key of the standardized tables of the registry at `registry_path` under this code."""
    return sha256_of({"registry": registry_digest(Path(registry_path)), "code": registry_code_version()})


@dataclass(frozen=True)
class RegistryCache:
    """Where the standardized registry is kept (`root`) and the key of tonight's registry."""

    root: Path
    key: str

    @property
    def entry(self) -> Path:
        return self.root / self.key

    def files(self, entry: Path | None = None) -> dict[str, Path]:
        folder = entry or self.entry
        return {name: folder / f"{name}.parquet" for name in CACHE_TABLES}


class CacheWrite:
    """The writing of a new entry, in a thread of its own on a cursor of the stage's connection:
    the rest of the night's reconciliation (much of it Splink's Python, on one core) runs
    meanwhile. `wait()` before the connection closes."""

    def __init__(self, con: duckdb.DuckDBPyConnection | None, registry_cache: RegistryCache | None) -> None:
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if con is not None and registry_cache is not None:
            cursor = con.cursor()  # its own connection to the same in-memory database
            self._thread = threading.Thread(
                target=self._run, args=(cursor, registry_cache), name="registry-cache-write", daemon=True
            )
            self._thread.start()

    def _run(self, cursor: duckdb.DuckDBPyConnection, registry_cache: RegistryCache) -> None:
        try:
            _write_entry(cursor, registry_cache)
        except BaseException as error:  # reported by wait(): the night does not depend on the cache
            self.error = error
        finally:
            cursor.close()

    def wait(self) -> None:
        """Until the entry is written (or failed: the next night then builds it again)."""
        if self._thread is not None:
            self._thread.join()
            if self.error is not None:
                log.warning("the standardized registry was not cached: %s", self.error)


def standardize_registry(
    con: duckdb.DuckDBPyConnection, registry_cache: RegistryCache | None
) -> tuple[str, CacheWrite]:
    """Create the tables registry_identities and name_frequencies on `con` (from the view
    registry_source): read from the cache entry of the key when there is one, else built by their
    SQL and, with a cache, written to it in the background (the CacheWrite: wait for it before
    closing `con`) when an earlier run saw the same key. Returns "hit", "miss" (built, being
    written), "first" (built, not written: the first run to see this registry) or "off", and the
    write."""
    if registry_cache is not None and _read_entry(con, registry_cache):
        return "hit", CacheWrite(None, None)
    for name in CACHE_TABLES:
        con.execute(read_sql(name))
    if registry_cache is None:
        return "off", CacheWrite(None, None)
    if not _seen_before(registry_cache):
        return "first", CacheWrite(None, None)
    return "miss", CacheWrite(con, registry_cache)


def _seen_before(registry_cache: RegistryCache) -> bool:
    """Whether an earlier run saw tonight's key; records that this one did (SEEN_KEYS newest)."""
    record = registry_cache.root / SEEN_FILE
    try:
        seen = [k for k in json.loads(record.read_text(encoding="utf-8"))["keys"] if isinstance(k, str)]
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or not ours: start afresh
        seen = []
    if seen[:1] != [registry_cache.key]:
        make_private(registry_cache.root, folder=True)
        keys = [registry_cache.key, *(k for k in seen if k != registry_cache.key)][:SEEN_KEYS]
        with atomic_path(record, mode=0o600) as tmp:
            tmp.write_text(json.dumps({"keys": keys}) + "\n", encoding="utf-8")
    return registry_cache.key in seen


def _read_entry(con: duckdb.DuckDBPyConnection, registry_cache: RegistryCache) -> bool:
    files = registry_cache.files()
    if not all(path.is_file() for path in files.values()):
        return False
    try:
        for name, path in files.items():
            con.read_parquet(str(path)).create(name)
    except duckdb.Error:
        # an entry damaged since it was written (a disk error, a hand edit): rebuilt from the registry
        for name in CACHE_TABLES:
            con.execute(f"drop table if exists {name}")
        return False
    os.utime(registry_cache.entry)  # most recently used: kept by the next write's eviction
    return True


def _write_entry(con: duckdb.DuckDBPyConnection, registry_cache: RegistryCache) -> None:
    root = registry_cache.root
    make_private(root, folder=True)
    for stale in root.glob(f"{TEMP_PREFIX}*"):  # a write killed earlier
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = private_temp_dir(root, TEMP_PREFIX)
    try:
        for name, path in registry_cache.files(tmp).items():
            # uncompressed (module docstring): zstd makes the file a third and the write half again
            con.table(name).write_parquet(str(path), compression="uncompressed")
            os.chmod(path, 0o600)
        if registry_cache.entry.exists():  # damaged (it could not be read), or written meanwhile
            old = private_temp_dir(root, TEMP_PREFIX)
            os.rename(registry_cache.entry, old / "entry")
            shutil.rmtree(old, ignore_errors=True)
        os.rename(tmp, registry_cache.entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _evict(root)


def _evict(root: Path) -> None:
    """Remove every entry but the KEEP_ENTRIES most recently written or read."""
    entries = [
        p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(TEMP_PREFIX)
    ]
    entries.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in entries[KEEP_ENTRIES:]:
        shutil.rmtree(old, ignore_errors=True)
