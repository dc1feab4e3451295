"""Digests of values, files and folders (SHA-256), and stat listings of a stage's outputs.

In the core because the fingerprints (transforms/orchestration/fingerprint.py) and the stages
(ingest records each night's version file's SHA-256) both need them: no stage imports the
orchestration.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable
from functools import cache
from pathlib import Path


def sha256_of(payload) -> str:
    """SHA-256 of a JSON-able value (keys sorted: the same value gives the same digest)."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def files_under(root: Path) -> list[Path]:
    """`root` itself when it is a file, every file under it when it is a folder, else nothing."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file())


def _relative_files(root: Path) -> list[str]:
    """Every file under the folder `root` as a path relative to it ("a/b.xml"), in the order of
    `files_under` (sorted part by part, as Path sorts). os.scandir and plain strings, not a Path
    per file: a night of a million files. Folders are entered unless they are symlinks; a symlink
    is listed when it points to a file (Path.rglob + is_file, as `files_under`)."""
    found: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as entries:
            for entry in entries:
                name = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append(name)
                elif entry.is_file():
                    found.append(name)
    found.sort(key=lambda name: name.split("/"))
    return found


def content_digest(root: Path) -> str:
    """Digest of every file under `root` (or of the file `root`): relative path, size, SHA-256.

    The SHA-256 of the JSON list [[path, size, sha256], ...] (what `sha256_of` would give for it),
    written into the digest a file at a time instead of built whole (a million files: gigabytes
    of Path objects and JSON text otherwise). A symlink that leaves `root` is digested by where it
    points, never read (ingest refuses it unread too: it may name /proc/self/environ or a device
    that never ends).

    One thread, plain os calls per file: a night is many small files (a real export's median is
    13 KB), and a thread pool spent its time handing the GIL over once per file. 10,296 files of
    a real-shaped night: 0.78 s in one thread against 2.0-2.7 s in two (session 10); at 100k, the
    pool's digest was 29 of the 88 s ingest took."""
    if root.is_file():
        base, names = root.parent, [root.name]
    elif root.is_dir():
        base, names = root, _relative_files(root)
    else:
        base, names = root.parent, []
    inside = base.resolve()
    base_text = str(base)

    def digest(name: str) -> tuple[int, str]:
        path = os.path.join(base_text, name)
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            p = Path(path)
            try:
                target = p.resolve(strict=True)
            except (OSError, RuntimeError):
                target = None
            if target is None or not target.is_relative_to(inside):
                return -1, sha256_of(["symlink", os.readlink(p)])
            st = os.stat(path)
        with open(path, "rb") as f:
            return st.st_size, hashlib.file_digest(f, "sha256").hexdigest()

    out = hashlib.sha256(b"[")
    for i, name in enumerate(names):
        size, d = digest(name)
        item = json.dumps([name, size, d], ensure_ascii=False)
        out.update(((", " if i else "") + item).encode("utf-8"))
    out.update(b"]")
    return out.hexdigest()


@cache
def _cached_content_digest(root: Path, stats: tuple) -> str:
    return content_digest(root)


def registry_digest(root: Path) -> str:
    """Content digest of the registry snapshot, hashed once per process while its files' stat is
    unchanged (reconcile, load and snapshot of one run all need it)."""
    stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files_under(root))
    return _cached_content_digest(root, stats)


def listing(warehouse_root: Path, paths: Iterable[Path]) -> dict[str, list[int] | None]:
    """Every file under `paths` -> [size, mtime_ns, inode] (a missing path -> None), keyed by its
    path relative to the warehouse."""
    out: dict[str, list[int] | None] = {}
    for path in paths:
        files = files_under(path)
        if not files:
            out[path.relative_to(warehouse_root).as_posix()] = None
        for f in files:
            st = f.stat()
            out[f.relative_to(warehouse_root).as_posix()] = [st.st_size, st.st_mtime_ns, st.st_ino]
    return dict(sorted(out.items()))
