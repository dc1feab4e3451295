"""Regenerate docs/screenshots/{national,province,facility,review}.png: 30 synthetic nights x 200
facilities (one silent, one halved on the last night), a small review queue, pages in Vietnamese,
captured with headless Chromium.

    PYTHONPATH=$PWD .venv/bin/python scripts/report_screenshots.py
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from expectations.report import build_report  # noqa: E402
from transforms.core.warehouse import Warehouse  # noqa: E402
from transforms.synth.report_history import facility_codes, synthesise  # noqa: E402

LAST = dt.date(2026, 11, 29)


def main() -> int:
    out = ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hb_shots_"))
    warehouse = Warehouse(work / "wh")
    codes = facility_codes(200)
    synthesise(warehouse, LAST, 30, codes, silent=(codes[0],), halved=(codes[1],))
    review = warehouse.review(LAST)
    review.mkdir(parents=True)
    base = {"facility_code": codes[2], "version": 1, "outcome": "potential_match", "tier": "probabilistic",
            "record_sex": "male", "citizen_sex": "male", "record_province_code": codes[2][:2]}  # fmt: skip
    rows = []
    for k, (enc, name) in enumerate([("KB0001", "Nguyễn Văn An"), ("KB0002", "Trần Thị Bình")]):
        for rank, (cid, birth, w) in enumerate(
            [(f"07909000123{k}", "19900101", 6.5), (f"07909000567{k}", "19900110", 3.1)], 1
        ):
            rows.append({**base, "encounter_id": enc, "candidate_rank": rank, "record_name": name, "citizen_name": name,
                         "record_citizen_id": None, "citizen_id": cid, "record_birth_ymd": "19900101",
                         "citizen_birth_ymd": birth, "citizen_province_code": codes[2][:2], "match_weight": w,
                         "weight_birth_ymd": 4.0 if rank == 1 else -1.2, "deciding_field": "birth_ymd", "margin": 3.4})  # fmt: skip
    pd.DataFrame(rows).to_parquet(review / "review_queue.parquet")
    build_report(warehouse, LAST, only_facilities=(codes[0], codes[2]))
    night = warehouse.quality / LAST.isoformat()
    pages = {
        "national": night / "index.html",
        "province": night / "province" / f"{codes[2][:2]}.html",
        "facility": night / "facility" / f"{codes[2]}.html",
        "review": night / "review.html",
    }
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    for name, page in pages.items():
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={work / 'profile'}", "--window-size=1280,1600",
             f"--screenshot={out / (name + '.png')}", page.resolve().as_uri()],
            check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        print(out / (name + ".png"))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
