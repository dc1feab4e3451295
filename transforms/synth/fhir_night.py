"""The FHIR R4 NDJSON of a night (Immunization, AllergyIntolerance) and its truth rows."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from pathlib import Path

import numpy as np

from transforms.synth import vocab
from transforms.synth.citizens import (
    derive_citizens,
)
from transforms.synth.parts import Facility
from transforms.synth.rates import SETTINGS, GeneratorSettings

# ---------------------------------------------------------------------------------------------
# FHIR
# ---------------------------------------------------------------------------------------------


def _resource_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def write_fhir(
    night_dir: Path,
    seed: int,
    night: dt.date,
    citizens: int,
    encounters: int,
    facilities: list[Facility],
    settings: GeneratorSettings = SETTINGS,
) -> list[dict]:
    """Write the night's FHIR NDJSON files; return one truth row per line."""
    rng = random.Random(f"fhir:{seed}:{night.isoformat()}")
    fhir_dir = night_dir / "fhir"
    fhir_dir.mkdir(parents=True, exist_ok=True)
    n_imm = max(10, int(encounters * settings.immunizations_per_encounter))
    n_all = max(6, int(encounters * settings.allergies_per_encounter))
    picks = np.array(
        sorted({rng.randrange(citizens) for _ in range(min(citizens, (n_imm + n_all) * 3))}), dtype=np.int64
    )
    batch = derive_citizens(seed, picks, settings.identity_profile)
    alive = [batch.row(k) for k in np.flatnonzero(batch.death_date == "")]
    children = [p for p in alive if night.year - int(p["birth_year"]) <= 6] or alive
    ref = dt.datetime.combine(night, dt.time(9, 0))

    def immunization(rid: str, patient: dict, status: str) -> dict:
        system, code, display, schedule = rng.choice(vocab.VACCINES)
        dose = rng.randrange(len(schedule)) + 1
        facility = rng.choice(facilities)
        return {
            "resourceType": "Immunization",
            "id": rid,
            "status": status,
            "vaccineCode": {"coding": [{"system": system, "code": code, "display": display}]},
            "patient": {"identifier": {"system": "urn:vn:cccd", "value": patient["citizen_id"]}},
            "occurrenceDateTime": (
                ref - dt.timedelta(days=rng.randint(0, 3), minutes=rng.randint(0, 480))
            ).strftime("%Y-%m-%dT%H:%M:00+07:00"),
            "lotNumber": f"{rng.choice(vocab.VACCINE_LOT_PREFIXES)}{rng.randint(10000, 99999)}",
            "performer": [
                {
                    "actor": {
                        "identifier": {"system": "urn:vn:cskcb", "value": facility.code},
                        "display": facility.name,
                    }
                }
            ],
            "protocolApplied": [{"doseNumberPositiveInt": dose}],
        }

    def allergy(rid: str, patient: dict, verification: str) -> dict:
        system, code, display, category = rng.choice(vocab.ALLERGENS)
        r_system, r_code, r_display = rng.choice(vocab.REACTIONS)
        severity = "severe" if r_code == "39579001" else rng.choice(("mild", "moderate"))
        return {
            "resourceType": "AllergyIntolerance",
            "id": rid,
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                        "code": "active",
                    }
                ]
            },
            "verificationStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                        "code": verification,
                    }
                ]
            },
            "category": [category],
            "criticality": "high" if severity == "severe" else "low",
            "code": {"coding": [{"system": system, "code": code, "display": display}]},
            "patient": {"identifier": {"system": "urn:vn:cccd", "value": patient["citizen_id"]}},
            "recordedDate": (ref - dt.timedelta(days=rng.randint(0, 2))).strftime("%Y-%m-%d"),
            "reaction": [
                {
                    "manifestation": [
                        {"coding": [{"system": r_system, "code": r_code, "display": r_display}]}
                    ],
                    "severity": severity,
                }
            ],
        }

    first: dict[str, list[dict]] = {"Immunization": [], "AllergyIntolerance": []}
    for _ in range(n_imm):
        status = "entered-in-error" if rng.random() < settings.fhir_removed_rate else "completed"
        first["Immunization"].append(
            immunization(_resource_id(rng), rng.choice(children if rng.random() < 0.8 else alive), status)
        )
    for _ in range(n_all):
        verification = "refuted" if rng.random() < settings.fhir_removed_rate else "confirmed"
        first["AllergyIntolerance"].append(allergy(_resource_id(rng), rng.choice(alive), verification))
    # A later file: corrected copies (same id) of some resources, some withdrawn, and one foreign line.
    later: list[dict] = []
    for rtype, resources in first.items():
        chosen = [r for r in resources if rng.random() < settings.fhir_replaced_rate] or resources[:1]
        for r in chosen:
            patient_id = r["patient"]["identifier"]["value"]
            p = {"citizen_id": patient_id}
            if rtype == "Immunization":
                later.append(
                    immunization(r["id"], p, "entered-in-error" if rng.random() < 0.3 else "completed")
                )
            else:
                later.append(allergy(r["id"], p, "entered-in-error" if rng.random() < 0.3 else "confirmed"))
    later.append(
        {
            "resourceType": "Patient",
            "id": _resource_id(rng),
            "identifier": [{"system": "urn:vn:cccd", "value": alive[0]["citizen_id"]}],
        }
    )

    files = [
        ("Immunization-0001.ndjson", first["Immunization"]),
        ("AllergyIntolerance-0001.ndjson", first["AllergyIntolerance"]),
        ("Bundle-0002.ndjson", later),
    ]
    last_line: dict[str, tuple[str, int]] = {}
    rows: list[dict] = []
    for name, resources in files:
        lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in resources]
        (fhir_dir / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        for n, r in enumerate(resources, start=1):
            rows.append(
                {
                    "source_file": f"fhir/{name}",
                    "line_number": n,
                    "resource_type": r["resourceType"],
                    "resource_id": r["id"],
                    "citizen_id": r["patient"]["identifier"]["value"]
                    if "patient" in r
                    else r["identifier"][0]["value"],
                    "_resource": r,
                }
            )
            last_line[r["id"]] = (f"fhir/{name}", n)
    for row in rows:
        r = row.pop("_resource")
        if row["resource_type"] not in ("Immunization", "AllergyIntolerance"):
            row["expected"] = "skipped"
        elif last_line[row["resource_id"]] != (row["source_file"], row["line_number"]):
            row["expected"] = "replaced"
        elif r.get("status") == "entered-in-error" or r.get("verificationStatus", {}).get("coding", [{}])[
            0
        ].get("code") in ("refuted", "entered-in-error"):
            row["expected"] = "removed"
        else:
            row["expected"] = "load"
    return rows
