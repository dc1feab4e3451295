"""Tile a generated real-shaped night into one K times larger (not part of the measured pipeline time).

The generator writes ~70 one-encounter files a second, so a 1,000,000-encounter night would take
hours; tiling a generated 10,000-encounter night 100 times takes minutes. Copy 0 is the source night
unchanged; copy k (1 <= k < K) is every file of it again, each encounter made a new one:

  * its key: the encounter key is (facility, MA_LK) (spec/XML130.md), so `K<k>` is appended to
    MA_LK in every inner table (decoded from base64, rewritten, encoded again) and to the file name
    (`<MA_BN>_<MA_LK>.xml` stays `<MA_BN>_<MA_LK>K<k>.xml`);
  * its visit times: admission, discharge, orders, results and payment (and the card's validity) move
    k days earlier, so that a copy is a repeat visit of the same patient, not the same visit claimed
    again (quality's duplicate-claim check groups on card, admission, discharge and main code). Every
    time of an encounter moves by the same whole days: stay lengths, treatment days and the order of
    times are unchanged, and nothing moves after the night. Birth dates do not move (reconciliation
    compares them with the registry).

Files stay one encounter each with the sizes of the source (plus 3 characters per MA_LK). Files a
reader rejects (broken base64, truncated envelopes) are copied with their defect under the new name.
FHIR NDJSON lines are copied with every resource UUID replaced by a UUID derived from it and the copy
(repeats of one id inside a copy stay repeats) and their dates moved k days earlier. The registry is
the source's (hard links): copies are repeat visits of the same citizens. Only the night's own
folder is tiled (the later nights' late resends of the generator are not).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/national_day/tile_night.py \\
        --source /work/nights/n10000 --out /work/nights/n100000 --copies 10
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import json
import os
import re
import shutil
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

NOIDUNGFILE = re.compile(rb"(<NOIDUNGFILE>)([^<]*)(</NOIDUNGFILE>)")
MA_LK = re.compile(rb"(<MA_LK>(?:<!\[CDATA\[)?\s*)([^<\]\s]*)")
# the visit's times (schema kind "instant": yyyymmddHHMM) and the card's validity ("dates")
VISIT_TIME = re.compile(
    rb"(<(?:NGAY_VAO|NGAY_VAO_NOI_TRU|NGAY_RA|NGAY_TTOAN|NGAY_YL|NGAY_TH_YL|NGAY_KQ|THOI_DIEM_DBLS"
    rb"|THOIGIAN_DINHCHI)>)(\d{8})"
)
CARD_DATES = re.compile(rb"(<(?:GT_THE_TU|GT_THE_DEN)>)([0-9;]+)")
EIGHT_DIGITS = re.compile(rb"\d{8}")
FHIR_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FHIR_DATE = re.compile(
    rb'("(?:occurrenceDateTime|recordedDate|onsetDateTime|lastOccurrence)":")(\d{4}-\d{2}-\d{2})'
)
TILE_NAMESPACE = uuid.UUID("6f1d3c1e-2b7a-4f0e-9a51-0c7d7b1e5a19")


def copy_tag(copy: int, copies: int) -> bytes:
    """`K07`: the suffix of copy 7's keys and file names (as many digits as the last copy needs)."""
    return b"K" + str(copy).zfill(len(str(copies - 1))).encode()


@lru_cache(maxsize=65536)
def _earlier_yyyymmdd(value: bytes, days: int) -> bytes:
    try:
        day = dt.date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return value  # an unknown or malformed date is left as sent
    return (day - dt.timedelta(days=days)).strftime("%Y%m%d").encode()


@lru_cache(maxsize=65536)
def _earlier_iso(value: bytes, days: int) -> bytes:
    try:
        day = dt.date.fromisoformat(value.decode())
    except ValueError:
        return value
    return (day - dt.timedelta(days=days)).isoformat().encode()


def retag_inner(inner: bytes, tag: bytes, days: int) -> bytes:
    """One inner table of copy k: MA_LK + tag, the visit's times and the card's validity `days` earlier."""
    inner = MA_LK.sub(lambda m: m[1] + m[2] + tag if m[2] else m[0], inner)
    inner = VISIT_TIME.sub(lambda m: m[1] + _earlier_yyyymmdd(m[2], days), inner)
    return CARD_DATES.sub(
        lambda m: m[1] + EIGHT_DIGITS.sub(lambda d: _earlier_yyyymmdd(d[0], days), m[2]), inner
    )


def retag_envelope(data: bytes, tag: bytes, days: int) -> bytes:
    """The envelope of copy k: every NOIDUNGFILE that decodes is rewritten; the rest as sent."""

    def payload(m: re.Match) -> bytes:
        try:
            inner = base64.b64decode(b"".join(m[2].split()), validate=True)
        except (binascii.Error, ValueError):
            return m[0]  # broken base64 stays broken: ingest quarantines it in every copy
        return m[1] + base64.b64encode(retag_inner(inner, tag, days)) + m[3]

    return NOIDUNGFILE.sub(payload, data)


def retag_ndjson(data: bytes, copy: int, days: int) -> bytes:
    ids: dict[bytes, bytes] = {}

    def new_id(m: re.Match) -> bytes:
        if m[0] not in ids:
            ids[m[0]] = str(uuid.uuid5(TILE_NAMESPACE, f"{copy}:{m[0].decode()}")).encode()
        return ids[m[0]]

    data = FHIR_UUID.sub(new_id, data)
    return FHIR_DATE.sub(lambda m: m[1] + _earlier_iso(m[2], days), data)


def tiled_name(rel: str, tag: bytes) -> str:
    stem, dot, suffix = rel.rpartition(".")
    return f"{stem}{tag.decode()}{dot}{suffix}" if dot else rel + tag.decode()


def _tile_chunk(args: tuple[str, str, list[str], int]) -> tuple[int, int]:
    """Every copy of a chunk of source files (each read once); returns (files, bytes) written."""
    source, out, rels, copies = args
    made_dirs: set[str] = set()
    files = nbytes = 0
    for rel in rels:
        with open(os.path.join(source, rel), "rb") as f:
            data = f.read()
        is_xml = rel.lower().endswith(".xml")
        for copy in range(copies):
            if copy == 0:
                body, name = data, rel
            else:
                tag = copy_tag(copy, copies)
                body = retag_envelope(data, tag, copy) if is_xml else retag_ndjson(data, copy, copy)
                name = tiled_name(rel, tag)
            target = os.path.join(out, name)
            parent = os.path.dirname(target)
            if parent not in made_dirs:
                os.makedirs(parent, exist_ok=True)
                made_dirs.add(parent)
            with open(target, "wb") as f:
                f.write(body)
            files += 1
            nbytes += len(body)
    return files, nbytes


def source_files(night_dir: Path) -> list[str]:
    """Every file under the night's folder, relative to it, sorted (os.walk: no Path per file)."""
    out = []
    for root, _, names in os.walk(night_dir):
        rel_root = os.path.relpath(root, night_dir)
        out.extend(os.path.normpath(os.path.join(rel_root, n)) for n in names)
    return sorted(out)


def tile_night(source: Path, out: Path, night: dt.date, copies: int, workers: int = 2) -> dict:
    """Write `out`/extracts/<night> as `copies` copies of `source`'s, and `out`/registry as hard
    links to `source`'s registry files; return what was written."""
    if copies < 1:
        raise ValueError("copies must be >= 1")
    src_night = Path(source) / "extracts" / night.isoformat()
    out_night = Path(out) / "extracts" / night.isoformat()
    if out_night.exists():
        shutil.rmtree(out_night)  # a re-tiled night replaces the old one, no stale files
    out_night.mkdir(parents=True)
    registry = Path(out) / "registry"
    if registry.exists():
        shutil.rmtree(registry)
    registry.mkdir(parents=True)
    for f in sorted((Path(source) / "registry").iterdir()):
        try:
            os.link(f, registry / f.name)
        except OSError:  # another file system
            shutil.copy2(f, registry / f.name)
    rels = source_files(src_night)
    step = max(1, min(200, len(rels) // (workers * 4) or 1))
    tasks = [(str(src_night), str(out_night), rels[i : i + step], copies) for i in range(0, len(rels), step)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
        written = list(pool.map(_tile_chunk, tasks))
    return {
        "source_files": len(rels),
        "files": sum(f for f, _ in written),
        "mb": round(sum(b for _, b in written) / 1e6, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="a generated night's folder (nN)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--copies", type=int, required=True)
    parser.add_argument("--night", type=dt.date.fromisoformat, default=dt.date(2026, 11, 26))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = parser.parse_args(argv)
    started = time.perf_counter()
    summary = tile_night(a.source, a.out, a.night, a.copies, a.workers)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main()
