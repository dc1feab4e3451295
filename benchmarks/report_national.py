"""Size and open time of the national report page for 13,000 facilities (issue 21).

Not run in CI. Synthesises 30 nights of ledgers and findings for N facilities
(transforms/synth/report_history.py: weekly pattern, 2% blocking, 5% warnings, one silent and one
halved facility on the last night), builds the report of the last night with the national and
province pages only (facility pages: `--facility-pages K` builds K of them and times them), then
opens the national page in headless Chromium: the page's own Navigation Timing (DOMContentLoaded
and load, every chart image included) read back from the DOM, and the wall time of the browser
process against a blank page's.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/report_national.py --facilities 13000 --nights 30
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lxml import html  # noqa: E402

from expectations.report import build_report  # noqa: E402
from transforms.core.warehouse import Warehouse  # noqa: E402
from transforms.synth.report_history import facility_codes, synthesise  # noqa: E402

LAST = dt.date(2026, 11, 29)
TIMING = """<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    var n = performance.getEntriesByType("navigation")[0];
    document.body.setAttribute("data-dcl-ms", n.domContentLoadedEventEnd.toFixed(1));
    document.body.setAttribute("data-load-ms", n.loadEventEnd.toFixed(1));
  }, 0);
});
</script>"""


def chromium(url: str, profile: Path) -> tuple[float, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    started = time.perf_counter()
    out = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    return time.perf_counter() - started, out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--facilities", type=int, default=13000)
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--facility-pages", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="hb_report_"))
    warehouse = Warehouse(root)
    codes = facility_codes(args.facilities)
    t0 = time.perf_counter()
    synth_s = None
    if not warehouse.ledger(LAST).exists():  # --out of an earlier run: its synthetic nights are reused
        synthesise(warehouse, LAST, args.nights, codes, silent=(codes[0],), halved=(codes[1],))
        synth_s = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    build_report(warehouse, LAST, only_facilities=())
    cold_s = time.perf_counter() - t0  # includes imports and matplotlib's font cache
    t0 = time.perf_counter()
    build_report(warehouse, LAST, only_facilities=())
    national_s = time.perf_counter() - t0
    some = tuple(codes[2 : 2 + args.facility_pages])
    t0 = time.perf_counter()
    build_report(warehouse, LAST, only_facilities=some)
    with_facilities_s = time.perf_counter() - t0

    night_dir = warehouse.quality / LAST.isoformat()
    page = night_dir / "index.html"
    charts = sorted((night_dir / "charts").glob("national_*.svg")) + [night_dir / "charts" / "heatmap.svg"]
    timed = night_dir / "index_timed.html"
    timed.write_text(page.read_text().replace("</body>", TIMING + "</body>"))
    blank = night_dir / "blank.html"
    blank.write_text("<!doctype html><html><body></body></html>")
    opens = []
    for i in range(args.runs):
        wall, dom = chromium(timed.resolve().as_uri(), root / f"profile{i}")
        body = html.fromstring(dom).xpath("//body")[0]
        blank_wall, _ = chromium(blank.resolve().as_uri(), root / f"profile_blank{i}")
        opens.append(
            {
                "dcl_ms": float(body.get("data-dcl-ms")),
                "load_ms": float(body.get("data-load-ms")),
                "browser_wall_s": round(wall, 2),
                "blank_wall_s": round(blank_wall, 2),
            }
        )
    result = {
        "facilities": args.facilities,
        "nights": args.nights,
        "synthesise_s": synth_s,
        "report_national_and_provinces_cold_s": round(cold_s, 1),
        "report_national_and_provinces_s": round(national_s, 1),
        f"report_with_{len(some)}_facility_pages_s": round(with_facilities_s, 1),
        "per_facility_page_s": round((with_facilities_s - national_s) / max(len(some), 1), 2),
        "national_html_bytes": page.stat().st_size,
        "national_charts_bytes": sum(c.stat().st_size for c in charts),
        "assets_bytes": sum(p.stat().st_size for p in (warehouse.quality / "assets").iterdir()),
        "facility_index_js_bytes": (night_dir / "facility_index.js").stat().st_size,
        "province_pages": len(list((night_dir / "province").glob("*.html"))),
        "largest_province_page_bytes": max(p.stat().st_size for p in (night_dir / "province").glob("*.html")),
        "open": opens,
        "command": "PYTHONPATH=$PWD .venv/bin/python benchmarks/report_national.py "
        f"--facilities {args.facilities} --nights {args.nights}",
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).with_name("results") / "report_national.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.out is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
