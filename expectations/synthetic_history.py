"""Synthetic nights for the report: ledgers and findings of N nights x F facilities, written the
way the pipeline writes them, so the report's history, alerts and national pages can be built and
measured at national scale without running N full nights (benchmarks/report_national.py, tests).

Volumes follow a weekly pattern (weekends at 40% of weekdays: a normal weekend drop); optional
`silent` facilities send nothing on the last night and `halved` ones send 30% of their usual
volume. Each night 2% of versions fail a blocking check (quarantined: ledger reason
invalid_icd10) and 5% carry a warning; the ledger balances (received = loaded + quarantined).
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd

from transforms import vocab
from transforms.ledger import build_ledger, write_ledger
from transforms.warehouse import Warehouse

WEEKEND_SHARE = 0.4


def facility_codes(count: int, seed: int = 7) -> list[str]:
    """`count` distinct 5-character codes, provinces spread over the 34 post-2025 provinces."""
    provinces = sorted(vocab.PROVINCES)
    rng = np.random.default_rng(seed)
    codes: set[str] = set()
    while len(codes) < count:
        p = provinces[int(rng.integers(len(provinces)))]
        codes.add(f"{p}{int(rng.integers(1, 1000)):03d}")
    return sorted(codes)


def received_count(base: int, night: dt.date) -> int:
    return int(round(base * (WEEKEND_SHARE if night.weekday() >= 5 else 1.0)))


def synthesise(
    warehouse: Warehouse,
    last_night: dt.date,
    nights: int,
    facilities: list[str],
    silent: tuple[str, ...] = (),
    halved: tuple[str, ...] = (),
    base: int = 20,
    seed: int = 11,
) -> None:
    rng = np.random.default_rng(seed)
    bases = {f: base + int(rng.integers(0, base)) for f in facilities}
    for back in range(nights - 1, -1, -1):
        night = last_night - dt.timedelta(days=back)
        received = {}
        for f in facilities:
            n = received_count(bases[f], night)
            if back == 0 and f in silent:
                n = 0
            elif back == 0 and f in halved:
                n = int(n * 0.3)
            received[f] = n
        rows, outcomes = [], []
        for f, n in received.items():
            if n == 0:
                continue
            ids = np.arange(n)
            blocked = ids[rng.random(n) < 0.02]
            warned = ids[rng.random(n) < 0.05]
            for i in blocked:
                rows.append(
                    (
                        f,
                        f"{f}-{night:%m%d}-{i}",
                        "conformance.main_icd10_valid",
                        "invalid_icd10",
                        "blocking",
                        "main_icd10",
                        "A00.5",
                    )
                )
            for i in warned:
                rows.append(
                    (
                        f,
                        f"{f}-{night:%m%d}-{i}",
                        "plausibility.weight_range",
                        "implausible_measurement",
                        "warning",
                        "weight_kg",
                        "900",
                    )
                )
            out = np.full(n, "loaded", dtype=object)
            out[blocked] = "quarantined"
            outcomes.append(
                pd.DataFrame(
                    {
                        "facility_code": f,
                        "outcome": out,
                        "reason": np.where(out == "quarantined", "invalid_icd10", None),
                    }
                )
            )
        ingest = {
            "facilities": {f: {"files": 1, "declared": n, "received": n} for f, n in received.items() if n}
        }
        frame = (
            pd.concat(outcomes, ignore_index=True)
            if outcomes
            else pd.DataFrame(columns=["facility_code", "outcome", "reason"])
        )
        write_ledger(warehouse.ledger(night), build_ledger(night.isoformat(), ingest, frame))
        findings = pd.DataFrame(
            rows,
            columns=["facility_code", "encounter_id", "check_id", "reason", "severity", "column", "value"],
        )
        findings.insert(0, "night", night)
        findings["version"] = 1
        findings["dataset"] = "encounters"
        findings["row_index"] = np.arange(len(findings), dtype="int64")
        findings["stage"] = "quality"
        folder = warehouse.quarantine("findings", night)
        folder.mkdir(parents=True, exist_ok=True)
        findings.to_parquet(folder / "quality.parquet", index=False)
        (warehouse.run_dir(night) / "synthetic.json").write_text(json.dumps({"received": received}))
