"""Generate one national-day night of a given size (not part of the measured pipeline time).

Writes `<work>/n<encounters>/{extracts,registry,truth}` with `transforms.synth.generate.generate_night`
and `<work>/n<encounters>/generation.json` (arguments, wall seconds, peak RSS of the generator's
process tree), which `run.py --reuse` reads instead of generating again.

    .venv/bin/python benchmarks/national_day/generate_size.py --work DIR --encounters 1000000 \\
        [--tile-from 10000]

`--tile-from N` makes the night by tiling the generated N-encounter night (generated first if it is
not) `encounters / N` times with `tile_night.py` (minutes instead of hours; copies are repeat visits
of the same patients, the registry is the N night's).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
import threading
import time
from pathlib import Path

import psutil

NIGHT = dt.date(2026, 11, 26)
FACILITIES = 20
SEED = 42


def registry_rows_for(encounters: int) -> int:
    """The registry size of a night: 1M citizens up to 100k encounters, 10M beyond (the brief's sizes)."""
    return 10_000_000 if encounters > 100_000 else 1_000_000


def size_dir(work: Path, encounters: int) -> Path:
    return Path(work) / f"n{encounters}"


def generation_arguments(encounters: int) -> dict:
    return {
        "date": NIGHT.isoformat(),
        "facilities": FACILITIES,
        "encounters": encounters,
        "citizens": registry_rows_for(encounters),
        "seed": SEED,
    }


def is_generated(work: Path, encounters: int) -> bool:
    """True when the size's night was generated completely with today's arguments."""
    record = size_dir(work, encounters) / "generation.json"
    if not record.exists():
        return False
    return json.loads(record.read_text()).get("arguments") == generation_arguments(encounters)


class TreePeakRss:
    """Peak summed RSS (bytes) of a process and its children, sampled every 0.2 s in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += p.memory_info().rss
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> TreePeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def tiling_arguments(encounters: int, tile_from: int) -> dict:
    if tile_from <= 0 or encounters % tile_from:
        raise ValueError(f"{encounters} is not a multiple of {tile_from}")
    return {"tiled_from": generation_arguments(tile_from), "copies": encounters // tile_from}


def is_tiled(work: Path, encounters: int, tile_from: int) -> bool:
    """True when the size's night was tiled completely from today's `tile_from` night."""
    record = size_dir(work, encounters) / "generation.json"
    if not record.exists():
        return False
    return json.loads(record.read_text()).get("arguments") == tiling_arguments(encounters, tile_from)


def tile_size(work: Path, encounters: int, tile_from: int) -> dict:
    """Tile the `tile_from` night (generating it first if needed) into this size; write its
    generation.json (arguments, seconds, files) and return it."""
    from tile_night import tile_night

    args = tiling_arguments(encounters, tile_from)
    if not is_generated(work, tile_from):
        generate_size(work, tile_from)
    out = size_dir(work, encounters)
    out.mkdir(parents=True, exist_ok=True)
    (out / "generation.json").unlink(missing_ok=True)
    started = time.perf_counter()
    summary = tile_night(size_dir(work, tile_from), out, NIGHT, args["copies"])
    record = {
        "arguments": args,
        "seconds": round(time.perf_counter() - started, 1),
        **summary,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
    (out / "generation.json").write_text(json.dumps(record, indent=2))
    return record


def ensure_size(work: Path, encounters: int, tile_from: int | None = None) -> dict | None:
    """Make the size's night unless it is already there (generated, or tiled when `tile_from` is
    given and below the size); return the new generation record, None when there was nothing to do."""
    if tile_from and encounters > tile_from:
        return None if is_tiled(work, encounters, tile_from) else tile_size(work, encounters, tile_from)
    if is_generated(work, encounters):
        return None
    record = size_dir(work, encounters) / "generation.json"
    tiled_from = (
        json.loads(record.read_text()).get("arguments", {}).get("tiled_from") if record.exists() else None
    )
    if tiled_from:  # generating would write over a tiled night (hours at 1M): say so instead
        raise SystemExit(
            f"{size_dir(work, encounters)} holds a night tiled from {tiled_from.get('encounters')} "
            f"encounters: pass --tile-from {tiled_from.get('encounters')} to use it, or remove it to generate one"
        )
    return generate_size(work, encounters)


def generate_size(work: Path, encounters: int) -> dict:
    """Generate the night and write its generation.json; return that record."""
    from transforms.synth.generate import generate_night

    out = size_dir(work, encounters)
    out.mkdir(parents=True, exist_ok=True)
    (out / "generation.json").unlink(missing_ok=True)
    args = generation_arguments(encounters)
    started = time.perf_counter()
    with TreePeakRss(os.getpid()) as rss:
        summary = generate_night(
            out,
            NIGHT,
            facilities=args["facilities"],
            encounters=encounters,
            citizens=args["citizens"],
            seed=args["seed"],
        )
    record = {
        "arguments": args,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(rss.peak_bytes / 2**20),
        "hoso_written": summary["hoso_written"],
        "files": summary["files"],
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
    (out / "generation.json").write_text(json.dumps(record, indent=2))
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--encounters", type=int, required=True)
    parser.add_argument("--tile-from", type=int, default=None, help="tile this generated size instead")
    a = parser.parse_args(argv)
    if a.tile_from:
        print(json.dumps(tile_size(a.work, a.encounters, a.tile_from)), flush=True)
    else:
        print(json.dumps(generate_size(a.work, a.encounters)), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
