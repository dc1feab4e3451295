"""Digests of values, files and folders (SHA-256), and stat listings of a stage's outputs.

In the core because the fingerprints (transforms/orchestration/fingerprint.py) and the stages
(ingest records each night's version file's SHA-256) both need them: no stage imports the
orchestration.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import sqlite3
import stat
import time
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


def content_digest(root: Path, memo: Path | None = None, changed_since_ns: int | None = None) -> str:
    """Digest of every file under `root` (or of the file `root`): relative path, size, SHA-256.

    The SHA-256 of the JSON list [[path, size, sha256], ...] (what `sha256_of` would give for it),
    written into the digest a file at a time instead of built whole (a million files: gigabytes
    of Path objects and JSON text otherwise). A symlink that leaves `root` is digested by where it
    points, never read (ingest refuses it unread too: it may name /proc/self/environ or a device
    that never ends).

    One thread, plain os calls per file: a night is many small files (a real export's median is
    13 KB), and a thread pool spent its time handing the GIL over once per file. 10,296 files of
    a real-shaped night: 0.78 s in one thread against 2.0-2.7 s in two (session 10); at 100k, the
    pool's digest was 29 of the 88 s ingest took.

    `memo`: a file (SQLite) keeping each regular file's SHA-256 with its stat (DigestMemo): a file
    whose size, mtime, ctime, inode and device are unchanged is not read again. The digest is the
    same with or without it; a re-run of an unchanged 1M-file night (16 GB) reads none of them.

    `changed_since_ns` (time.time_ns() when a stage that read the files was decided; the digest
    is taken after it): when any file was changed since then (its mtime or ctime at or after it),
    what the stage read may not be what the folder holds now, and the digest is
    `changed-during-run:` and a random suffix, equal to no other digest, so that the next run
    reads the folder again. The kernel stamps ctime from a clock that may lag by a tick (a few
    ms): a write in the first tick after the decision can look older, but the stage reads no
    file that early (it lists and plans the night first), so it reads that write's content."""
    if root.is_file():
        base, names = root.parent, [root.name]
    elif root.is_dir():
        base, names = root, _relative_files(root)
    else:
        base, names = root.parent, []
    inside = base.resolve()
    base_text = str(base)
    known = DigestMemo(memo, inside) if memo is not None else None

    newest = [0]  # the latest mtime or ctime seen (only looked at with changed_since_ns)

    def digest(name: str) -> tuple[int, str]:
        path = os.path.join(base_text, name)
        st = os.lstat(path)
        newest[0] = max(newest[0], st.st_mtime_ns, st.st_ctime_ns)
        linked = stat.S_ISLNK(st.st_mode)
        if linked:
            p = Path(path)
            try:
                target = p.resolve(strict=True)
            except (OSError, RuntimeError):
                target = None
            if target is None or not target.is_relative_to(inside):
                return -1, sha256_of(["symlink", os.readlink(p)])
            st = os.stat(path)
            newest[0] = max(newest[0], st.st_mtime_ns, st.st_ctime_ns)
        elif known is not None:
            remembered = known.get(name, st)
            if remembered is not None:
                return st.st_size, remembered
        with open(path, "rb") as f:
            d = hashlib.file_digest(f, "sha256").hexdigest()
        if known is not None and not linked and stat.S_ISREG(st.st_mode):
            # the stat before the read: a write during it changes ctime, so the next run reads again
            known.put(name, st, d)
        return st.st_size, d

    out = hashlib.sha256(b"[")
    for i, name in enumerate(names):
        size, d = digest(name)
        item = json.dumps([name, size, d], ensure_ascii=False)
        out.update(((", " if i else "") + item).encode("utf-8"))
    out.update(b"]")
    if known is not None:
        known.save()
    if changed_since_ns is not None and newest[0] >= changed_since_ns:
        return f"changed-during-run:{secrets.token_hex(16)}"
    return out.hexdigest()


class DigestMemo:
    """Regular files' SHA-256 by relative path with the stat they had when read, for one folder
    (`root`; a memo of another folder is not used). An entry is trusted while the file's size,
    mtime, ctime, inode and device are unchanged: content cannot change without changing ctime,
    which no call sets at will (utime sets mtime only). A file changed within RACY_NS of being read
    is not remembered ("racy git": its ctime may not have moved yet), so it is read next time. The
    memo is a cache: unreadable, foreign or damaged, it is ignored and rewritten; kept in the
    warehouse's private scratch/cache."""

    RACY_NS = 2_000_000_000

    def __init__(self, path: Path, root: Path):
        self.path, self.root = path, str(root)
        self.entries: dict[str, tuple] = {}
        self.changed = False
        self.now_ns = time.time_ns()
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
                (stored_root,) = con.execute("select value from meta where key = 'root'").fetchone()
                if stored_root == self.root:
                    self.entries = {row[0]: tuple(row[1:]) for row in con.execute("select * from files")}
        except (sqlite3.Error, TypeError, ValueError):
            self.entries = {}

    @staticmethod
    def stat_key(st: os.stat_result) -> tuple:
        """What an entry is trusted on: (size, mtime_ns, ctime_ns, inode, device)."""
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)

    def get(self, name: str, st: os.stat_result) -> str | None:
        entry = self.entries.get(name)
        if entry is not None and entry[:5] == self.stat_key(st):
            return entry[5]
        return None

    def put(self, name: str, st: os.stat_result, sha256: str) -> None:
        self.put_key(name, self.stat_key(st), sha256)

    def put_key(self, name: str, key: tuple, sha256: str) -> None:
        """`put` with the stat as its `stat_key`: a reader that took the stat of the file it read
        (ingest) hands its SHA-256 over this way."""
        size, mtime_ns, ctime_ns, ino, dev = key
        if self.now_ns - max(mtime_ns, ctime_ns) < self.RACY_NS:
            self.changed |= self.entries.pop(name, None) is not None
            return
        entry = (size, mtime_ns, ctime_ns, ino, dev, sha256)
        if self.entries.get(name) != entry:
            self.entries[name] = entry
            self.changed = True

    def save(self) -> None:
        """Write the memo whole (a new file renamed into place) when an entry changed or there is
        none yet (so a run leaves one, even when every file was too fresh to remember)."""
        if not self.changed and self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            with contextlib.closing(sqlite3.connect(tmp)) as con, con:
                con.execute("create table meta (key text primary key, value text)")
                con.execute(
                    "create table files (name text primary key, size integer, mtime_ns integer, "
                    "ctime_ns integer, ino integer, dev integer, sha256 text)"
                )
                con.execute("insert into meta values ('root', ?)", (self.root,))
                con.executemany(
                    "insert into files values (?, ?, ?, ?, ?, ?, ?)",
                    ((name, *entry) for name, entry in self.entries.items()),
                )
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)


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
