"""Ingest throughput: encounters/s, MB/s and peak RSS against a bare baseline (not run in CI).

The baseline is measured in the same run over the same files with the same process pool: lxml
parse of each envelope plus base64 decode and lxml parse of every inner table, nothing else. It
runs before and after the ingest runs and the ratio uses their mean, so that a machine whose
load drifts during the run biases neither side. Ingest runs in a child process (the stage as
`healthbook run` calls it), once with this tree's code and, with `--reference DIR`, once more
with the code of another tree (e.g. `git archive <commit> | tar -x -C DIR`): a before/after
measured in the same run. `--max-rss-mb` stops an ingest whose memory passes the limit.

The night is `<nights>/night-<N>/extracts/<D>/`: a night generated beforehand (a folder or a
symlink holding `generation.json` or `truth/summary.json`, read only) or, when absent, one
generated there by transforms.synth.generate.generate_night. Peak RSS is the maximum, sampled every
50 ms, of the summed RSS of this process and its children.

    PYTHONPATH=. .venv/bin/python benchmarks/ingest_throughput.py --sizes 10000 100000 \
        --nights /tmp/ingest/nights --out benchmarks/results/ingest_throughput.md
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import psutil
from lxml import etree

NIGHT = dt.date(2026, 11, 26)
WORK = Path(__file__).parent / "work"

_XML1 = (
    "<TONG_HOP><MA_LK>{lk}</MA_LK><STT>1</STT><MA_BN>BN{i}</MA_BN><HO_TEN>Nguyễn Văn An</HO_TEN>"
    "<SO_CCCD>0790900{i:05d}</SO_CCCD><NGAY_SINH>199003140000</NGAY_SINH><GIOI_TINH>1</GIOI_TINH>"
    "<MA_QUOCTICH>000</MA_QUOCTICH><MA_DANTOC>01</MA_DANTOC><DIA_CHI>12 Lê Lợi, Phường Bến Thành</DIA_CHI>"
    "<MATINH_CU_TRU>79</MATINH_CU_TRU><MAHUYEN_CU_TRU></MAHUYEN_CU_TRU><MAXA_CU_TRU>26734</MAXA_CU_TRU>"
    "<MA_THE_BHYT>DN4797909000123</MA_THE_BHYT><MA_DKBD>79001</MA_DKBD><GT_THE_TU>20260101</GT_THE_TU>"
    "<GT_THE_DEN>20261231</GT_THE_DEN><LY_DO_VV>Đau đầu</LY_DO_VV><CHAN_DOAN_RV>Tăng huyết áp</CHAN_DOAN_RV>"
    "<MA_BENH_CHINH>I10</MA_BENH_CHINH><MA_BENH_KT>E11;E78</MA_BENH_KT><MA_DOITUONG_KCB>1.1</MA_DOITUONG_KCB>"
    "<NGAY_VAO>202611260815</NGAY_VAO><NGAY_RA>202611261040</NGAY_RA><SO_NGAY_DTRI>1</SO_NGAY_DTRI>"
    "<KET_QUA_DTRI>2</KET_QUA_DTRI><MA_LOAI_RV>1</MA_LOAI_RV><T_THUOC>120000.00</T_THUOC>"
    "<T_TONGCHI_BV>350000,00</T_TONGCHI_BV><T_BHTT>280000.00</T_BHTT><MA_LOAI_KCB>01</MA_LOAI_KCB>"
    "<MA_KHOA>K01</MA_KHOA><MA_CSKCB>{fac}</MA_CSKCB><CAN_NANG>NaN</CAN_NANG><NGAY_TAI_KHAM>20261210</NGAY_TAI_KHAM>"
    "</TONG_HOP>"
)
_DRUG = (
    "<CHI_TIET_THUOC><MA_LK>{lk}</MA_LK><STT>{n}</STT><MA_THUOC>40.{n}</MA_THUOC><TEN_THUOC>Amlodipin</TEN_THUOC>"
    "<DON_VI_TINH>Viên</DON_VI_TINH><HAM_LUONG>5mg</HAM_LUONG><DUONG_DUNG>1.01</DUONG_DUNG>"
    "<LIEU_DUNG>1 viên/ngày</LIEU_DUNG><SO_LUONG>30.000</SO_LUONG><DON_GIA>1000.00</DON_GIA>"
    "<THANH_TIEN_BV>30000.00</THANH_TIEN_BV><MA_BAC_SI>000123/HCM-CCHN</MA_BAC_SI><NGAY_YL>202611260900</NGAY_YL>"
    "</CHI_TIET_THUOC>"
)
_SERVICE = (
    "<CHI_TIET_DVKT><MA_LK>{lk}</MA_LK><STT>{n}</STT><MA_DICH_VU>02.1896</MA_DICH_VU><TEN_DICH_VU>Khám</TEN_DICH_VU>"
    "<SO_LUONG>1</SO_LUONG><DON_GIA_BV>35000</DON_GIA_BV><THANH_TIEN_BV>35000</THANH_TIEN_BV>"
    "<MA_BAC_SI>000123/HCM-CCHN</MA_BAC_SI><NGAY_YL>202611260830</NGAY_YL><NGAY_KQ>202611260900</NGAY_KQ>"
    "</CHI_TIET_DVKT>"
)
_LAB = (
    "<CHI_TIET_CLS><MA_LK>{lk}</MA_LK><STT>{n}</STT><MA_DICH_VU>23.0001</MA_DICH_VU><MA_CHI_SO>GLU</MA_CHI_SO>"
    "<TEN_CHI_SO>Glucose</TEN_CHI_SO><GIA_TRI>5.6</GIA_TRI><DON_VI_DO>mmol/L</DON_VI_DO>"
    "<KET_LUAN>Bình thường</KET_LUAN><NGAY_KQ>202611260930</NGAY_KQ></CHI_TIET_CLS>"
)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def synthetic_night(out: Path, encounters: int, per_file: int = 1000, facilities: int = 8) -> Path:
    """A night of `encounters` HOSOs in files of `per_file`; returns the night folder."""
    night_dir = out / "extracts" / NIGHT.isoformat()
    night_dir.mkdir(parents=True, exist_ok=True)
    for file_no, start in enumerate(range(0, encounters, per_file)):
        fac = f"79{file_no % facilities:03d}"
        hosos = []
        for i in range(start, min(start + per_file, encounters)):
            lk = f"LK{i:08d}"
            drugs = "".join(_DRUG.format(lk=lk, n=n) for n in range(1, 5))
            services = "".join(_SERVICE.format(lk=lk, n=n) for n in range(1, 6))
            labs = "".join(_LAB.format(lk=lk, n=n) for n in range(1, 7))
            tables = [
                ("XML1", _XML1.format(lk=lk, i=i, fac=fac)),
                (
                    "XML2",
                    f"<CHITIEU_CHITIET_THUOC><DSACH_CHI_TIET_THUOC>{drugs}</DSACH_CHI_TIET_THUOC></CHITIEU_CHITIET_THUOC>",
                ),
                (
                    "XML3",
                    f"<CHITIEU_CHITIET_DVKT_VTYT><DSACH_CHI_TIET_DVKT>{services}</DSACH_CHI_TIET_DVKT></CHITIEU_CHITIET_DVKT_VTYT>",
                ),
                (
                    "XML4",
                    f"<CHITIEU_CHITIET_DICHVUCANLAMSANG><DSACH_CHI_TIET_CLS>{labs}</DSACH_CHI_TIET_CLS></CHITIEU_CHITIET_DICHVUCANLAMSANG>",
                ),
            ]
            parts = "".join(
                f"<FILEHOSO><LOAIHOSO>{k}</LOAIHOSO><NOIDUNGFILE>{_b64(v)}</NOIDUNGFILE></FILEHOSO>"
                for k, v in tables
            )
            hosos.append(f"<HOSO>{parts}</HOSO>")
        text = (
            '<?xml version="1.0" encoding="utf-8"?><GIAMDINHHS><THONGTINDONVI><MACSKCB>'
            f"{fac}</MACSKCB></THONGTINDONVI><THONGTINHOSO><NGAYLAP>20261126</NGAYLAP>"
            f"<SOLUONGHOSO>{len(hosos)}</SOLUONGHOSO><DANHSACHHOSO>{''.join(hosos)}</DANHSACHHOSO>"
            "</THONGTINHOSO><CHUKYDONVI/></GIAMDINHHS>"
        )
        (night_dir / f"{fac}" / f"batch_{file_no:04d}.xml").parent.mkdir(exist_ok=True)
        (night_dir / f"{fac}" / f"batch_{file_no:04d}.xml").write_text(text, encoding="utf-8")
    return night_dir


FACILITIES = 20


def make_night(out: Path, encounters: int) -> tuple[Path, str]:
    """The night's extracts folder under `out`, generated unless it is already there.

    A night generated elsewhere (`generation.json` or `truth/summary.json` present, e.g. a
    symlink to a shared read-only night) is only read: never deleted, never written into.
    """
    night_dir = out / "extracts" / NIGHT.isoformat()
    generation = out / "generation.json"
    if generation.exists():
        args = json.loads(generation.read_text()).get("arguments", {})
        described = ", ".join(f"{k}={v}" for k, v in args.items())
        return night_dir, f"transforms.synth.generate ({described}), generated beforehand"
    source = (
        f"transforms.synth.generate.generate_night(facilities={FACILITIES}, encounters={encounters}, "
        f"citizens={max(encounters, 100_000)}, seed=1)"
    )
    if (out / "truth" / "summary.json").exists():  # written last: the night is complete
        return night_dir, source
    if out.is_symlink():
        raise SystemExit(f"{out} is a symlink to an incomplete night: not generating into it")
    try:
        from transforms.synth.generate import generate_night
    except ImportError:
        if not night_dir.exists():
            synthetic_night(out, encounters)
        return night_dir, "built-in synthetic night (transforms.synth.generate not available)"
    shutil.rmtree(out, ignore_errors=True)
    generate_night(
        out,
        NIGHT,
        facilities=FACILITIES,
        encounters=encounters,
        citizens=max(encounters, 100_000),
        seed=1,
    )
    return night_dir, source


def _baseline_file(path: str) -> int:
    """lxml parse of the envelope, base64 decode and lxml parse of every inner table."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    hosos = 0
    try:
        for _, el in etree.iterparse(
            path, tag="HOSO", resolve_entities=False, no_network=True, load_dtd=False
        ):
            for payload in el.iter("NOIDUNGFILE"):
                # the generated night's defects are counted by ingest, ignored here
                with contextlib.suppress(ValueError, etree.XMLSyntaxError):
                    etree.fromstring(base64.b64decode(payload.text or ""), parser)
            hosos += 1
            el.clear()
    except etree.XMLSyntaxError:
        pass  # a rejected file (truncated, DOCTYPE)
    return hosos


def run_baseline(night_dir: Path, workers: int) -> int:
    files = sorted(str(p) for p in night_dir.rglob("*.xml"))
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
        return sum(pool.map(_baseline_file, files, chunksize=1))


class PeakRss:
    """Peak of the summed RSS of this process and its children, sampled in a thread."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                total = me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True))
            except psutil.Error:
                continue
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def cpu_seconds() -> float:
    """User + system CPU of this process and of its reaped children (the pools' workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


_INGEST = """
import datetime as dt, sys
from pathlib import Path
from transforms.ingest.stage import IngestSettings, ingest_extracts
from transforms.core.warehouse import Warehouse
night_dir, night, warehouse, workers = sys.argv[1:5]
ingest_extracts(Path(night_dir), dt.date.fromisoformat(night), Warehouse(Path(warehouse)),
                IngestSettings(workers=int(workers)))
"""


def run_ingest(code: Path, night_dir: Path, warehouse: Path, workers: int, max_rss_mb: float) -> dict:
    """The ingest stage with the code of tree `code`, in a child process: wall s, CPU s, peak RSS."""
    shutil.rmtree(warehouse, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(code)}
    argv = [sys.executable, "-c", _INGEST, str(night_dir), NIGHT.isoformat(), str(warehouse), str(workers)]
    started, cpu = time.perf_counter(), cpu_seconds()
    with PeakRss() as rss:
        child = subprocess.Popen(argv, env=env, cwd=code)
        stopped = None
        while child.poll() is None:
            if rss.peak / 1e6 > max_rss_mb:
                stopped = f"stopped: peak RSS above {max_rss_mb:.0f} MB"
                for proc in psutil.Process(child.pid).children(recursive=True) + [psutil.Process(child.pid)]:
                    with contextlib.suppress(psutil.Error):
                        proc.kill()
            time.sleep(0.05)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu  # not the clean-up below
    if child.returncode and not stopped:
        raise SystemExit(f"ingest with the code of {code} failed (exit {child.returncode})")
    shutil.rmtree(warehouse, ignore_errors=True)
    return {
        "s": seconds,
        "cpu": cpu,
        "rss_mb": rss.peak / 1e6,
        "stopped": stopped,
    }


def run_baseline_measured(night_dir: Path, workers: int) -> dict:
    started, cpu = time.perf_counter(), cpu_seconds()
    with PeakRss() as rss:
        hosos = run_baseline(night_dir, workers)
    return {
        "s": time.perf_counter() - started,
        "cpu": cpu_seconds() - cpu,
        "rss_mb": rss.peak / 1e6,
        "hosos": hosos,
    }


def measure(encounters: int, workers: int, nights: Path, codes: dict[str, Path], max_rss_mb: float) -> dict:
    """Baseline, ingest with each code tree, baseline again (same files, same pool size)."""
    root = nights / f"night-{encounters}"
    night_dir, source = make_night(root, encounters)
    size_mb = sum(p.stat().st_size for p in night_dir.rglob("*.xml")) / 1e6
    load_before = os.getloadavg()[0]
    first = run_baseline_measured(night_dir, workers)
    ingests = {
        name: run_ingest(code, night_dir, nights / f"warehouse-{encounters}-{name}", workers, max_rss_mb)
        for name, code in codes.items()
    }
    second = run_baseline_measured(night_dir, workers)
    return {
        "encounters": first["hosos"],  # HOSOs the baseline read (rejected files partly)
        "source": source,
        "size_mb": size_mb,
        "baseline_s": (first["s"] + second["s"]) / 2,
        "baseline_cpu": (first["cpu"] + second["cpu"]) / 2,
        "baseline_rss_mb": max(first["rss_mb"], second["rss_mb"]),
        "ingests": ingests,
        "load": (load_before, os.getloadavg()[0]),
    }


GOAL_RATE, GOAL_RATIO, GOAL_RSS_MB = 5_000, 3.0, 2_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--nights",
        type=Path,
        default=WORK / "ingest",
        help="folder of the nights (night-<N>/, a generated night or a symlink to one; read only)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        help="another tree (holding transforms/) whose ingest is measured in the same run, as 'before'",
    )
    parser.add_argument("--max-rss-mb", type=float, default=6_000, help="stop an ingest above this peak RSS")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "ingest_throughput.md"
    )
    args = parser.parse_args()
    command = "PYTHONPATH=. .venv/bin/python benchmarks/ingest_throughput.py " + " ".join(sys.argv[1:])
    codes = {"this tree": Path(__file__).resolve().parents[1]}
    if args.reference:
        codes = {"reference": args.reference.resolve(), **codes}
    rows = [measure(n, args.workers, args.nights, codes, args.max_rss_mb) for n in args.sizes]
    lines = [
        "# Ingest throughput",
        "",
        f"Command: `{command}`  ",
        f"Machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 1e9:.0f} GB; workers: {args.workers}; "
        f"night: {rows[0]['source']}.",
        "",
        "| encounters | code | MB | baseline s | ingest s | encounters/s | MB/s | ingest / baseline | "
        "baseline CPU s | ingest CPU s | CPU ingest / baseline | peak RSS MB (baseline) | "
        "peak RSS MB (ingest) | load avg (start, end) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        for name, i in r["ingests"].items():
            label = f"{name} ({i['stopped']})" if i["stopped"] else name
            lines.append(
                f"| {r['encounters']:,} | {label} | {r['size_mb']:.0f} | {r['baseline_s']:.1f} | {i['s']:.1f} | "
                f"{r['encounters'] / i['s']:,.0f} | {r['size_mb'] / i['s']:.1f} | "
                f"{i['s'] / r['baseline_s']:.2f}x | {r['baseline_cpu']:.1f} | {i['cpu']:.1f} | "
                f"{i['cpu'] / r['baseline_cpu']:.2f}x | {r['baseline_rss_mb']:.0f} | {i['rss_mb']:.0f} | "
                f"{r['load'][0]:.1f}, {r['load'][1]:.1f} |"
            )
    lines += [
        "",
        f"Goal (issue #3): at least {GOAL_RATE:,} encounters/s on the 2 cores, CPU within {GOAL_RATIO:.0f}x of the",
        f"baseline, peak RSS under {GOAL_RSS_MB:,} MB and about the same at every size.",
        "",
        f"Baseline: the same files through the same process pool ({args.workers} worker processes, as ingest:",
        "like with like), lxml parse of the envelope plus base64 decode and lxml parse of every inner",
        "table, nothing else; measured before and after the ingest runs, figures are their mean. Ingest:",
        "the whole stage (safe reading, typing, versions, partitioned zstd Parquet, findings, manifest)",
        "in a child process. CPU s: user + system CPU of the processes and their pool workers (less",
        "sensitive than wall time to other jobs on the machine, though not immune: on a shared machine",
        "both sides' CPU seconds grow with the load, the ratio much less).",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
