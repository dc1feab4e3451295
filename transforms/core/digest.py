"""Digests of values, files and folders (SHA-256), and stat listings of a stage's outputs.

In the core because the fingerprints (transforms/orchestration/fingerprint.py) and the stages
(ingest records each night's version file's SHA-256) both need them: no stage imports the
orchestration.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
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


def content_digest(root: Path) -> str:
    """Digest of every file under `root` (or of the file `root`): relative path, size, SHA-256.

    Files are hashed in threads (hashlib releases the GIL on large reads). A symlink that leaves
    `root` is digested by where it points, never read (ingest refuses it unread too: it may name
    /proc/self/environ or a device that never ends)."""
    files = files_under(root)
    base = root if root.is_dir() else root.parent
    inside = base.resolve()

    def digest(p: Path) -> tuple[int, str]:
        if p.is_symlink():
            try:
                target = p.resolve(strict=True)
            except (OSError, RuntimeError):
                target = None
            if target is None or not target.is_relative_to(inside):
                return -1, sha256_of(["symlink", os.readlink(p)])
        return p.stat().st_size, file_sha256(p)

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        digests = list(pool.map(digest, files))
    return sha256_of(
        [[p.relative_to(base).as_posix(), size, d] for p, (size, d) in zip(files, digests, strict=True)]
    )


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
