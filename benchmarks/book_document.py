"""Time to produce one citizen's PDFs: the book document and one PDF per encounter, 50 encounters.

Not run in CI. Loads, through the real load stage into a fresh SQLite serving database, one
citizen with N encounters (every 5th an inpatient stay with discharge paper and summary; each
with 3 drug lines, 3 lab results and 2 clinical-course notes, names from the generator's
vocabulary), then times, in-process after one warm-up render (fonts parsed, modules imported):
`books_for` (the read), `write_book_pdf` (the book document) and `write_encounter_pdfs` (N PDFs).
Prints JSON and writes it to benchmarks/results/book_document.json.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/book_document.py --encounters 50
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from serving_fixtures import (  # noqa: E402
    NIGHT1,
    context,
    discharge_paper,
    drug,
    outpatient,
    summary,
    write_links,
    write_staged,
)

from transforms.load import stage as load  # noqa: E402
from transforms.serving.book import books_for  # noqa: E402
from transforms.serving.pdf import PdfReport, write_book_pdf, write_encounter_pdfs  # noqa: E402
from transforms.synth import vocab  # noqa: E402

AN = "079090001234"
FACILITY = "01700"
RESULTS = Path(__file__).resolve().parent / "results"


def stage(tmp: Path, n: int):
    rng = random.Random(7)
    ctx = context(tmp, NIGHT1)
    wh = ctx.warehouse
    encounters, drugs, labs, course, papers, summaries, links = [], [], [], [], [], [], []
    start = dt.datetime(2024, 1, 1, 8, 0)
    for k in range(n):
        lk = f"LK{k:03d}"
        when = start + dt.timedelta(days=14 * k)
        main = rng.choice(vocab.ICD10)
        second = rng.choice(vocab.ICD10)
        text = f"{main.name}; {second.name}"
        if k % 5 == 0:
            encounters.append(
                outpatient(
                    lk,
                    visit_type="03",
                    admitted_at=when,
                    inpatient_at=when + dt.timedelta(hours=1),
                    discharged_at=when + dt.timedelta(days=4),
                    main_icd10=main.code,
                    secondary_icd10=[second.code],
                    discharge_diagnosis=text,
                )
            )
            papers.append(discharge_paper(lk, discharge_department="K05"))
            summaries.append(summary(lk))
        else:
            encounters.append(
                outpatient(
                    lk,
                    admitted_at=when,
                    discharged_at=when + dt.timedelta(hours=2),
                    main_icd10=main.code,
                    secondary_icd10=[second.code],
                    discharge_diagnosis=text,
                )
            )
        for j in range(3):
            d = rng.choice(vocab.DRUGS)
            drugs.append(
                drug(
                    lk,
                    row_index=j,
                    drug_code=d.code,
                    drug_name=d.name,
                    strength=d.strength,
                    route_code=d.route_code,
                )
            )
            lab = rng.choice(vocab.LABS)
            code, name, unit = (lab.indicators[0][:3]) if lab.indicators else (lab.code, lab.name, "")
            labs.append(
                {
                    "encounter_id": lk,
                    "row_index": j,
                    "service_code": lab.code,
                    "indicator_code": code,
                    "indicator_name": name,
                    "value": f"{rng.uniform(1, 9):.1f}",
                    "unit": unit,
                    "conclusion": "Bình thường",
                    "reported_at": when + dt.timedelta(minutes=30 + j),
                }
            )
        for j in range(2):
            course.append(
                {
                    "encounter_id": lk,
                    "row_index": j,
                    "note": rng.choice(vocab.COURSE_NOTES).replace("{pulse}", "82").replace("{bp}", "130/80"),
                    "noted_at": when + dt.timedelta(hours=j),
                }
            )
        links.append({"encounter_id": lk, "outcome": "match", "citizen_id": AN})
    for rows in (encounters, drugs, labs, course, papers, summaries, links):
        for row in rows:
            row["facility_code"] = FACILITY  # a facility of transforms/reference/facilities.csv
    write_staged(wh, "encounters", NIGHT1, encounters)
    write_staged(wh, "drugs", NIGHT1, drugs)
    write_staged(wh, "lab_results", NIGHT1, labs)
    write_staged(wh, "clinical_course", NIGHT1, course)
    write_staged(wh, "discharge_papers", NIGHT1, papers)
    write_staged(wh, "summaries", NIGHT1, summaries)
    write_links(wh, NIGHT1, links)
    load.load_night(ctx)
    return ctx.serving_url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encounters", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="also copy the first run's PDFs into this folder")
    args = parser.parse_args()
    os.environ.setdefault("HEALTHBOOK_SIGNING_KEY", "55" * 32)  # a throwaway key: nothing is kept
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        url = stage(tmp, args.encounters)
        issued = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
        [warm] = books_for(url, [AN])
        assert len(warm["encounters"]) == args.encounters, len(warm["encounters"])
        write_book_pdf(warm, tmp / "warm", issued_at=issued)  # fonts parsed, modules imported
        runs = []
        for r in range(args.repeat):
            out = tmp / f"run{r}"
            c0 = time.process_time()
            t0 = time.perf_counter()
            [book] = books_for(url, [AN])
            t1 = time.perf_counter()
            report = PdfReport()
            write_book_pdf(book, out, issued_at=issued, report=report)
            t2 = time.perf_counter()
            write_encounter_pdfs(book, out, issued_at=issued, report=report)
            t3 = time.perf_counter()
            c3 = time.process_time()
            assert not report.failed, report.failed
            if args.keep and r == 0:
                shutil.copytree(out, args.keep, dirs_exist_ok=True)
            runs.append(
                {
                    "read_s": round(t1 - t0, 3),
                    "book_document_s": round(t2 - t1, 3),
                    "encounter_pdfs_s": round(t3 - t2, 3),
                    "total_s": round(t3 - t0, 3),
                    # CPU seconds of this process: the machine is shared, wall time includes waiting
                    "total_cpu_s": round(c3 - c0, 3),
                    "files": len(report.written),
                    "book_document_pages": len(__import__("pypdf").PdfReader(report.written[0]).pages),
                    "bytes": sum(p.stat().st_size for p in report.written),
                }
            )
    result = {
        "encounters": args.encounters,
        "runs": runs,
        "best_total_s": min(r["total_s"] for r in runs),
        "best_total_cpu_s": min(r["total_cpu_s"] for r in runs),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if args.keep:
        print(json.dumps(result, indent=2))
        return  # a sample for screenshots, not a measurement
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "book_document.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
