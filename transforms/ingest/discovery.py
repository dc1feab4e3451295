"""The ingest plan: which envelopes the night holds (discovered with os.scandir) and which shard
reads each (`runs/<D>/ingest_plan.json`), and a shard's files in tasks of about `group_bytes`."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from transforms.core import parquet_io
from transforms.ingest import extract
from transforms.ingest.common import (
    STAGE,
    IngestSettings,
    _write_json,
)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # unreadable: the reader rejects it with file_unreadable


def discover_envelopes(night_dir: Path) -> list[Path]:
    """Every XML 130 envelope of a night: `**/*.xml` at any depth, any name, sorted by path."""
    return _discover(night_dir, ".xml")


def discover_fhir(night_dir: Path) -> list[Path]:
    """Every FHIR NDJSON file of a night: `**/*.ndjson` at any depth, sorted by path."""
    return _discover(night_dir, ".ndjson")


def _discover(night_dir: Path, suffix: str) -> list[Path]:
    return [night_dir / name for name, _, _ in walk_night(night_dir, suffix)]


def _suffix(name: str) -> str:
    """pathlib's PurePath.suffix of a file name."""
    i = name.rfind(".")
    return name[i:] if 0 < i < len(name) - 1 else ""


def _entry_size(entry: os.DirEntry) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size
    except OSError:
        return 0  # gone or unreadable: the reader rejects it with file_unreadable


def walk_night(night_dir: Path, suffix: str) -> list[tuple[str, bool, int | None]]:
    """(path relative to the night's folder, is a symlink, size in bytes or None for a symlink)
    of every `**/*<suffix>` file, in the order of sorted paths; os.scandir, no Path object per
    file, as `Path.rglob("*")` selects: folders are entered unless they are symlinks, and a
    symlink is listed whatever it points to (is_file would follow it): the reader refuses one
    that leaves the night's folder (`symlink_outside_night`) instead of it being left out
    silently. The size is the directory entry's (an lstat without building the path again)."""
    if not night_dir.is_dir():
        return []
    found: list[tuple[str, bool, int | None]] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = os.scandir(os.path.join(night_dir, rel) if rel else night_dir)
        except OSError:  # unreadable or gone: as rglob, which skips it
            continue
        with entries:
            for entry in entries:
                name = f"{rel}/{entry.name}" if rel else entry.name
                try:
                    link = entry.is_symlink()
                    if not link and entry.is_dir():
                        stack.append(name)
                    elif _suffix(entry.name).lower() == suffix and (link or entry.is_file()):
                        found.append((name, link, None if link else _entry_size(entry)))
                except OSError:
                    continue
    found.sort(key=lambda f: f[0].split("/"))  # Path order: part by part
    return found


# --- the plan: which shard reads which files -------------------------------------------------

PLAN_FILE = "ingest_plan.json"
FACILITY_HINT_BYTES = 64 << 10
# A byte regex on a bounded prefix: no parser ever sees the file here, so a hostile file cannot
# expand anything; the hint only places the file, the facility itself is read by the parser.
_FACILITY_HINT = re.compile(rb"<MACSKCB>\s*([0-9A-Za-z._-]{1,32})\s*</MACSKCB>")


def facility_hint(path: Path) -> str | None:
    """MACSKCB as found in the first 64 KB of an envelope (bytes, no XML parsing), or None."""
    try:
        with path.open("rb") as f:
            head = f.read(FACILITY_HINT_BYTES)
    except OSError:
        return None
    found = _FACILITY_HINT.search(head)
    return found.group(1).decode("ascii") if found else None


def _stable_hash(key: str) -> int:
    """A hash that is the same in every process and on every run (unlike Python's hash())."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


def shard_count(night_bytes: int, n_placement_keys: int, max_shards: int, shard_bytes_target: int) -> int:
    """How many shards a night gets: enough for ~`shard_bytes_target` bytes of extracts each,
    never more than the placement keys (a facility is never split, so extra shards would stay
    empty), never more than `max_shards`, at least 1."""
    by_size = -(-night_bytes // max(1, shard_bytes_target))
    return max(1, min(max_shards, n_placement_keys, by_size))


def plan_ingest(
    ctx, max_shards: int = 256, shard_bytes_target: int = IngestSettings.shard_bytes_target
) -> list[int]:
    """Plan the night's ingest in shards (`make_plan`); returns the shard numbers."""
    return make_plan(ctx, max_shards, shard_bytes_target)["shards"]


def make_plan(
    ctx, max_shards: int = 256, shard_bytes_target: int = IngestSettings.shard_bytes_target
) -> dict:
    """Plan the night's ingest in shards; writes `runs/<D>/ingest_plan.json` and returns the plan
    (a million files' plan is ~130 MB of JSON: the caller that runs the shards keeps it in memory
    rather than reading it back).

    Every envelope goes to shard `hash(facility) mod n_shards` (all files of a facility in one
    shard: the facility its folder names, else the hint in its first 64 KB; a file without
    either by the hash of its path), with n_shards from `shard_count`.
    Files are numbered in path order over the whole night (that number keys their HOSOs). The
    plan's `shards` are those that received files ([0] for an empty night), in order; its `files`
    one entry per file. Re-planning clears the night's ingest scratch.
    """
    warehouse, night, night_dir = ctx.warehouse, ctx.night, ctx.night_dir
    root = str(night_dir)
    found = []  # (source_file, placement hint, bytes): tuples, not Paths, for a million files
    folder_facility: dict[str, str | None] = {}
    for source_file, link, size in walk_night(night_dir, ".xml"):
        # a symlink leaving the night's folder is never opened, not even for its hint (ingest rejects it)
        if link and extract.outside_night(Path(root, source_file), night_dir):
            found.append((source_file, None, 0))
            continue
        # a file under a facility's folder must carry that facility's MACSKCB (else ingest
        # rejects it, its rows are never staged): the folder places it without opening it
        folder = source_file.rpartition("/")[0]
        if folder not in folder_facility:  # a facility's folder holds thousands of files
            folder_facility[folder] = extract.folder_facility(source_file)
        hint = folder_facility[folder] or facility_hint(Path(root, source_file))
        found.append((source_file, hint, _size(os.path.join(root, source_file)) if size is None else size))
    keys = [hint if hint else f"path:{source_file}" for source_file, hint, _ in found]
    n_shards = shard_count(sum(f[2] for f in found), len(set(keys)), max_shards, shard_bytes_target)
    shard_of = {key: _stable_hash(key) % n_shards for key in set(keys)}  # a facility's files share a key
    files = [
        {
            "file_no": file_no,
            "source_file": source_file,
            "facility_hint": hint,
            "bytes": size,
            "shard": shard_of[key],
        }
        for file_no, ((source_file, hint, size), key) in enumerate(zip(found, keys, strict=True))
    ]
    del found, keys, shard_of
    shards = sorted({f["shard"] for f in files}) or [0]
    plan = {
        "night": night.isoformat(),
        "max_shards": max_shards,
        "shard_bytes_target": shard_bytes_target,
        "n_shards": n_shards,
        "shards": shards,
        "files": files,
    }
    scratch = warehouse.scratch(STAGE, night)
    parquet_io.replace_partition(scratch)  # shards of an earlier plan must not be finalized
    scratch.mkdir(parents=True)
    _write_json(warehouse.run_file(night, PLAN_FILE), plan, compact=True)
    return plan


def _read_plan(ctx) -> dict:
    path = ctx.warehouse.run_file(ctx.night, PLAN_FILE)
    if not path.exists():
        raise FileNotFoundError(f"no ingest plan for {ctx.night}: run plan_ingest first ({path})")
    return json.loads(path.read_text())


def _shard_dir(ctx, shard: int) -> Path:
    return ctx.warehouse.scratch(STAGE, ctx.night) / f"shard-{shard:03d}"


def _shard_groups(
    ctx, plan: dict, shards: list[int], group_bytes: int
) -> dict[int, list[tuple[int, list[tuple[int, str, str]]]]]:
    """Each shard's files in groups of about `group_bytes` (a worker task each), numbered by
    their first file, in one pass over the plan. Depends on the plan only, so every way of
    running a shard writes the same scratch parts."""
    groups: dict[int, list[tuple[int, list[tuple[int, str, str]]]]] = {shard: [] for shard in shards}
    size: dict[int, int] = dict.fromkeys(shards, 0)
    root = str(ctx.night_dir)
    for f in plan["files"]:
        shard = f["shard"]
        if shard not in groups:
            continue
        own = groups[shard]
        if not own or (own[-1][1] and size[shard] + f["bytes"] > group_bytes):
            own.append((f["file_no"], []))
            size[shard] = 0
        own[-1][1].append((f["file_no"], f["source_file"], os.path.join(root, f["source_file"])))
        size[shard] += f["bytes"]
    return groups
