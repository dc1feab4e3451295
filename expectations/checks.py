"""The versioned check configuration (checks.yaml) as typed objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from transforms.core.reasons import ENCOUNTER_REASONS, WARNING_REASONS
from transforms.core.resources import package_path

CHECKS_FILE = package_path("expectations", "checks.yaml")
CATEGORIES = ("conformance", "completeness", "plausibility", "integrity")
SEVERITIES = ("blocking", "warning")
ENGINES = ("gx", "rows")

# The blocking policy (HEALTHBOOK.md "When an encounter is complete"): the only reasons a quality
# check may keep an encounter out of the book, each with the clause of HEALTHBOOK.md that allows it.
# Everything else (money, catalogue codes, lengths, plausibility) is a warning. Unreadable input
# (ingest) and an identity not reconciled (reconcile) block in their own stages.
BLOCKING_POLICY = {
    "missing_xml1": "no XML1",
    "missing_encounter_id": "no encounter ID",
    "missing_required_field": "no encounter ID, no admission or discharge time, or no main diagnosis",
    "discharge_before_admission": "times out of order",
    "date_after_night": "times after the night",
    "invalid_icd10": "a main diagnosis neither a well-formed ICD-10 code in XML1 nor recoverable from XML7",
    # late tables: the stay waits for its grace period (HEALTHBOOK.md "Late tables")
    "missing_discharge_paper": "a stay's discharge paper, within its grace period",
    "missing_summary": "a stay's summary, within its grace period",
}


@dataclass(frozen=True)
class Check:
    """One quality check's policy: what a failure means and when the check counts as failed."""

    id: str
    category: str
    severity: str
    reason: str
    threshold: float
    engine: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)
    why: str = ""  # what the book would show if a failing row loaded: the reason for the severity

    @property
    def is_blocking(self) -> bool:
        return self.severity == "blocking"


@dataclass(frozen=True)
class CheckConfig:
    version: str
    checks: dict[str, Check]

    def __getitem__(self, check_id: str) -> Check:
        return self.checks[check_id]


def load_checks(path: Path = CHECKS_FILE) -> CheckConfig:
    """The check configuration, validated: known categories, severities, engines and reason codes."""
    # libyaml's parser when PyYAML has it (the same safe constructors): 0.01 s instead of 0.09 s
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    raw = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    checks: dict[str, Check] = {}
    for entry in raw["checks"]:
        check = Check(
            id=entry["id"],
            category=entry["category"],
            severity=entry["severity"],
            reason=entry["reason"],
            threshold=float(entry["threshold"]),
            engine=entry["engine"],
            description=entry.get("description", ""),
            params=entry.get("params") or {},
            why=str(entry.get("why") or "").strip(),
        )
        problems = []
        if check.id in checks:
            problems.append("duplicate id")
        if not check.id.startswith(f"{check.category}."):
            problems.append("id must start with its category")
        if check.category not in CATEGORIES:
            problems.append(f"category {check.category!r}")
        if check.severity not in SEVERITIES:
            problems.append(f"severity {check.severity!r}")
        if check.engine not in ENGINES:
            problems.append(f"engine {check.engine!r}")
        if check.reason not in ENCOUNTER_REASONS and check.reason not in WARNING_REASONS:
            problems.append(f"unknown reason {check.reason!r} (add it to transforms/core/reasons.py)")
        if check.is_blocking and check.reason not in ENCOUNTER_REASONS:
            problems.append("a blocking check needs an encounter reason")
        if check.is_blocking and check.reason not in BLOCKING_POLICY:
            problems.append(f"reason {check.reason!r} may not block (HEALTHBOOK.md; BLOCKING_POLICY)")
        if not check.why:
            problems.append("`why` is missing (what the book would show if the row loaded)")
        if not 0.0 <= check.threshold <= 1.0:
            problems.append("threshold is a share between 0 and 1")
        if problems:
            raise ValueError(f"{path.name}: check {check.id}: {'; '.join(problems)}")
        checks[check.id] = check
    return CheckConfig(version=str(raw["version"]), checks=checks)
