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

import numpy as np
import pandas as pd

from transforms.core.warehouse import Warehouse
from transforms.orchestration.ledger import imbalances, write_ledger
from transforms.synth import vocab

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
    """Vectorised over facilities (13,000 facilities x 30 nights in about a minute)."""
    rng = np.random.default_rng(seed)
    codes = np.array(facilities, dtype=object)
    bases = base + rng.integers(0, base, size=len(codes))
    is_silent = np.isin(codes, list(silent))
    is_halved = np.isin(codes, list(halved))
    for back in range(nights - 1, -1, -1):
        night = last_night - dt.timedelta(days=back)
        share = WEEKEND_SHARE if night.weekday() >= 5 else 1.0
        received = np.rint(bases * share).astype("int64")
        if back == 0:
            received = np.where(is_silent, 0, np.where(is_halved, (received * 0.3).astype("int64"), received))
        owner = np.repeat(np.arange(len(codes)), received)  # one entry per version received
        number = np.arange(len(owner)) - np.repeat(np.cumsum(received) - received, received)
        blocked = rng.random(len(owner)) < 0.02
        warned = rng.random(len(owner)) < 0.05
        quarantined = np.bincount(owner[blocked], minlength=len(codes))
        facilities_entry = {
            str(codes[i]): {
                "files": 1,
                "declared": int(received[i]),
                "received": int(received[i]),
                "loaded": int(received[i] - quarantined[i]),
                "quarantined": {"invalid_icd10": int(quarantined[i])} if quarantined[i] else {},
            }
            for i in np.flatnonzero(received)
        }
        ledger = {
            "date": night.isoformat(),
            "facilities": facilities_entry,
            "totals": {
                "files": len(facilities_entry),
                "declared": int(received.sum()),
                "received": int(received.sum()),
                "loaded": int(received.sum() - quarantined.sum()),
                "quarantined": int(quarantined.sum()),
            },
            "files": {"rejected": []},
            "fhir": {},
        }
        assert not imbalances(ledger), imbalances(ledger)
        write_ledger(warehouse.ledger(night), ledger)
        parts = []
        for mask, check, reason, severity, column, value in (
            (blocked, "conformance.main_icd10_valid", "invalid_icd10", "blocking", "main_icd10", "A00.5"),
            (warned, "plausibility.weight_range", "implausible_measurement", "warning", "weight_kg", "900"),
        ):
            who = codes[owner[mask]]
            parts.append(
                pd.DataFrame(
                    {
                        "facility_code": who.astype(str),
                        "encounter_id": [
                            f"{f}-{night:%m%d}-{k}" for f, k in zip(who, number[mask], strict=True)
                        ],
                        "check_id": check,
                        "reason": reason,
                        "severity": severity,
                        "column": column,
                        "value": value,
                    }
                )
            )
        findings = pd.concat(parts, ignore_index=True)
        findings.insert(0, "night", night)
        findings["version"] = 1
        findings["dataset"] = "encounters"
        findings["row_index"] = np.arange(len(findings), dtype="int64")
        findings["stage"] = "quality"
        folder = warehouse.quarantine("findings", night)
        folder.mkdir(parents=True, exist_ok=True)
        findings.to_parquet(folder / "quality.parquet", index=False)
