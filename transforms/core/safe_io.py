"""Files the warehouse writes: temporary files no one can redirect, private parts no one else reads.

Temporary files (issue #16 item 11): every atomic write goes through `atomic_path` (or, for a writer
that fills its file across calls, `new_temp_file` + `publish_temp`, which `atomic_path` is made of),
which creates its temporary file with `tempfile.mkstemp` (O_CREAT | O_EXCL, mode 0600, an unpredictable name) in
the target's own folder, so a name planted in advance (a symlink to another file) is never opened
and the final rename stays on one file system.

Private parts (issue #16 item 12): `private_umask` makes everything created inside it 0700 (folders)
/ 0600 (files) whatever the caller's umask; the stages run inside it, and `Warehouse.secure`
tightens the private folders that already exist. What stays readable is listed in
README "Operating" (the quality report, the run folders).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PRIVATE_UMASK = 0o077


def current_umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread, for an instant)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def new_temp_file(path: Path) -> Path:
    """A fresh empty temporary file next to `path` (its folder created), made exclusively (mkstemp,
    mode 0600, an unpredictable name): whatever sat at a predictable name is not followed. For a
    writer that fills it over time (a Parquet writer across calls); `publish_temp` puts it in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def publish_temp(tmp: Path, path: Path, mode: int | None = None) -> Path:
    """Give the finished temporary file `tmp` its final mode (`mode`, else what a plain open() would
    have given: 0666 minus the umask) and rename it over `path` (atomic: same folder, same file
    system). The one place a warehouse file is renamed into place."""
    os.chmod(tmp, mode if mode is not None else 0o666 & ~current_umask())
    os.replace(tmp, path)
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: Path, mode: int | None = None) -> Iterator[Path]:
    """A fresh temporary file next to `path` for the caller to fill (by name); renamed over `path`
    when the block ends, deleted when it raises.

    The file is created exclusively (`new_temp_file`), so whatever sat at a predictable name is not
    followed. Its final mode is `mode`, else what a plain open() would have given (0666 minus the
    umask), so an atomic write is no more private or public than an ordinary one."""
    tmp = new_temp_file(path)
    try:
        yield tmp
        publish_temp(tmp, path, mode)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically through `atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_json_atomic(path: Path, data, **options) -> Path:
    """Write `data` as JSON and a newline to `path` atomically; `options` go to json.dumps (indent
    2 unless they say otherwise)."""
    options.setdefault("indent", 2)
    return write_text_atomic(path, json.dumps(data, **options) + "\n")


def write_table_atomic(path: Path, table: pa.Table) -> Path:
    """Write an Arrow table as Parquet to `path` atomically."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def private_temp_dir(parent: Path, prefix: str = ".tmp-") -> Path:
    """A new private (0700) folder inside `parent`, for a writer that needs its own file name
    (DuckDB creates its database and .wal itself): made with mkdtemp, so nothing planted is reused."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Within the block, files are created 0600 and folders 0700 (umask 077), whatever the umask
    the process was started with; the caller's umask is restored after."""
    old = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def make_private(path: Path, folder: bool) -> None:
    """Create (a folder) or tighten `path` to 0700 / 0600; a symlink is not followed to chmod."""
    if folder:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.is_symlink() or not path.exists():
        return
    wanted = 0o700 if folder else 0o600
    if path.stat().st_mode & 0o777 != wanted:
        os.chmod(path, wanted)
