"""Ingest throughput: encounters/s, MB/s and peak RSS against a bare baseline (not run in CI).

The baseline is measured in the same run over the same files with the same process pool: lxml
parse of each envelope plus base64 decode and lxml parse of every inner table, nothing else.
The night comes from transforms.generate.generate_night when it exists; otherwise from a built-in
synthetic night of the same shape (XML1 + 4 drug lines + 5 service lines + 6 lab results per
encounter, 1,000 HOSOs per file). Peak RSS is the maximum, sampled every 50 ms, of the summed RSS
of this process and its children.

    .venv/bin/python benchmarks/ingest_throughput.py --sizes 10000 100000 \
        --out benchmarks/results/ingest_throughput.md
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import psutil
from lxml import etree

from transforms.ingest import IngestSettings, ingest_extracts
from transforms.warehouse import Warehouse

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
    """The night's extracts folder under `out`, generated unless a previous run left it there."""
    night_dir = out / "extracts" / NIGHT.isoformat()
    try:
        from transforms.generate import generate_night
    except ImportError:
        if not night_dir.exists():
            synthetic_night(out, encounters)
        return night_dir, "built-in synthetic night (transforms.generate not available)"
    source = (
        f"transforms.generate.generate_night(facilities={FACILITIES}, encounters={encounters}, "
        f"citizens={max(encounters, 100_000)}, seed=1)"
    )
    if not (out / "truth" / "summary.json").exists():  # written last: the night is complete
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


def measure(encounters: int, workers: int, nights: Path) -> dict:
    root = nights / f"night-{encounters}"
    night_dir, source = make_night(root, encounters)
    size_mb = sum(p.stat().st_size for p in night_dir.rglob("*.xml")) / 1e6

    started, cpu = time.perf_counter(), cpu_seconds()
    with PeakRss() as base_rss:
        hosos = run_baseline(night_dir, workers)
    baseline_s = time.perf_counter() - started
    baseline_cpu = cpu_seconds() - cpu

    warehouse = Warehouse(nights / f"warehouse-{encounters}")
    shutil.rmtree(warehouse.root, ignore_errors=True)
    started, cpu = time.perf_counter(), cpu_seconds()
    with PeakRss() as rss:
        ingest_extracts(night_dir, NIGHT, warehouse, IngestSettings(workers=workers))
    ingest_s = time.perf_counter() - started
    ingest_cpu = cpu_seconds() - cpu
    return {
        "encounters": hosos,  # HOSOs the baseline read (rejected files partly)
        "source": source,
        "size_mb": size_mb,
        "baseline_s": baseline_s,
        "baseline_rss_mb": base_rss.peak / 1e6,
        "ingest_s": ingest_s,
        "baseline_cpu": baseline_cpu,
        "ingest_cpu": ingest_cpu,
        "ingest_rss_mb": rss.peak / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--nights",
        type=Path,
        default=WORK / "ingest",
        help="folder of the generated nights (night-<N>/), generated once and reused",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "ingest_throughput.md"
    )
    args = parser.parse_args()
    command = "PYTHONPATH=. .venv/bin/python benchmarks/ingest_throughput.py " + " ".join(sys.argv[1:])
    rows = [measure(n, args.workers, args.nights) for n in args.sizes]
    lines = [
        "# Ingest throughput",
        "",
        f"Command: `{command}`  ",
        f"Machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 1e9:.0f} GB; workers: {args.workers}; "
        f"night: {rows[0]['source']}.",
        "",
        "| encounters | MB | baseline s | ingest s | encounters/s | MB/s | ingest / baseline | "
        "baseline CPU s | ingest CPU s | CPU ingest / baseline | peak RSS MB (baseline) | peak RSS MB (ingest) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['encounters']:,} | {r['size_mb']:.0f} | {r['baseline_s']:.1f} | {r['ingest_s']:.1f} | "
            f"{r['encounters'] / r['ingest_s']:,.0f} | {r['size_mb'] / r['ingest_s']:.1f} | "
            f"{r['ingest_s'] / r['baseline_s']:.2f}x | {r['baseline_cpu']:.1f} | {r['ingest_cpu']:.1f} | "
            f"{r['ingest_cpu'] / r['baseline_cpu']:.2f}x | {r['baseline_rss_mb']:.0f} | {r['ingest_rss_mb']:.0f} |"
        )
    lines += [
        "",
        f"Baseline: the same files through the same process pool ({args.workers} worker processes, as ingest:",
        "like with like), lxml parse of the envelope plus base64",
        "decode and lxml parse of every inner table, nothing else. Ingest: the whole stage (safe reading,",
        "typing, versions, partitioned zstd Parquet, findings, manifest). CPU s: user + system CPU of",
        "this process and its pool workers (less sensitive than wall time to other jobs on the machine).",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
