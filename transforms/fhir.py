"""FHIR R4 NDJSON extracts (Immunization, AllergyIntolerance) into typed staged rows.

Every line of a known resourceType becomes one row (nothing dropped; `is_active` false for what
must never show in a book); a line of another type is counted as skipped; a line that cannot be
typed goes to the quarantine with a reason (reasons.FHIR_REASONS). Later stages keep, per
`resource_id`, the newest copy (night, source_file, line_number).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

MAX_LINE_BYTES = 1 << 20
VIETNAM_UTC_OFFSET = dt.timedelta(hours=7)  # naive timestamps are Vietnam local time
CITIZEN_ID_SYSTEM = "urn:vn:cccd"
BATCH_LINES = 5_000  # lines held as Python rows at once (typed to Arrow per batch)

IMMUNIZATIONS_SCHEMA = pa.schema(
    [
        ("night", pa.date32()),
        ("source_file", pa.string()),
        ("line_number", pa.int64()),
        ("resource_id", pa.string()),
        ("citizen_id", pa.string()),
        ("status", pa.string()),
        ("vaccine_system", pa.string()),
        ("vaccine_code", pa.string()),
        ("vaccine_name", pa.string()),
        ("occurred_at", pa.timestamp("s")),
        ("lot_number", pa.string()),
        ("dose_number", pa.int64()),
        ("facility_code", pa.string()),
        ("is_active", pa.bool_()),
        ("row_warnings", pa.list_(pa.string())),
    ]
)

ALLERGIES_SCHEMA = pa.schema(
    [
        ("night", pa.date32()),
        ("source_file", pa.string()),
        ("line_number", pa.int64()),
        ("resource_id", pa.string()),
        ("citizen_id", pa.string()),
        ("clinical_status", pa.string()),
        ("verification_status", pa.string()),
        ("substance_system", pa.string()),
        ("substance_code", pa.string()),
        ("substance_name", pa.string()),
        ("reaction_code", pa.string()),
        ("reaction_name", pa.string()),
        ("severity", pa.string()),
        ("criticality", pa.string()),
        ("recorded_at", pa.timestamp("s")),
        ("is_active", pa.bool_()),
        ("row_warnings", pa.list_(pa.string())),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        ("night", pa.date32()),
        ("source_file", pa.string()),
        ("line_number", pa.int64()),
        ("resource_type", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("line", pa.string()),
    ]
)

SCHEMAS = {"Immunization": IMMUNIZATIONS_SCHEMA, "AllergyIntolerance": ALLERGIES_SCHEMA}
DATASETS = {"Immunization": "immunizations", "AllergyIntolerance": "allergies"}
_DATE_TIME = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def _get(obj, *path):
    """obj[path[0]][path[1]]... or None when any step is missing or of the wrong shape."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(obj, list) or len(obj) <= step:
                return None
        elif not isinstance(obj, dict):
            return None
        obj = obj[step] if isinstance(step, int) else obj.get(step)
        if obj is None:
            return None
    return obj


def _text(value) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def _status(value) -> str | None:
    """A status given as a code, or as a CodeableConcept (AllergyIntolerance)."""
    if isinstance(value, dict):
        return _text(_get(value, "coding", 0, "code")) or _text(value.get("text"))
    return _text(value)


def parse_fhir_datetime(value, column: str, warnings: list[str]) -> dt.datetime | None:
    """A FHIR date/dateTime as naive Vietnam local time; partial dates take the first day."""
    text = _text(value)
    if text is None:
        return None
    m = _DATE_TIME.match(text)
    if not m:
        warnings.append(f"unparseable:{column}")
        return None
    year, month, day, hour, minute, second, zone = m.groups()
    if month is None or day is None:
        warnings.append(f"partial_date:{column}")
    try:
        value = dt.datetime(
            int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0)
        )
    except ValueError:
        warnings.append(f"unparseable:{column}")
        return None
    if zone:
        offset = (
            dt.timedelta(0) if zone == "Z" else dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        )
        offset = -offset if zone.startswith("-") else offset
        value = value - offset + VIETNAM_UTC_OFFSET
    return value


def _int(value, column: str, warnings: list[str]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        warnings.append(f"unparseable:{column}")
        return None
    try:
        return int(value)
    except ValueError:
        warnings.append(f"unparseable:{column}")
        return None


def _citizen_id(resource: dict) -> str | None:
    ident = _get(resource, "patient", "identifier")
    if isinstance(ident, list):
        ident = next((i for i in ident if isinstance(i, dict) and i.get("system") == CITIZEN_ID_SYSTEM), None)
    return _text(_get(ident, "value")) if isinstance(ident, dict) else None


def immunization_row(resource: dict) -> dict:
    """The typed columns of one Immunization (without night, source_file, line_number)."""
    warnings: list[str] = []
    status = _status(resource.get("status"))
    return {
        "resource_id": _text(resource.get("id")),
        "citizen_id": _citizen_id(resource),
        "status": status,
        "vaccine_system": _text(_get(resource, "vaccineCode", "coding", 0, "system")),
        "vaccine_code": _text(_get(resource, "vaccineCode", "coding", 0, "code")),
        "vaccine_name": _text(_get(resource, "vaccineCode", "coding", 0, "display"))
        or _text(_get(resource, "vaccineCode", "text")),
        "occurred_at": parse_fhir_datetime(resource.get("occurrenceDateTime"), "occurred_at", warnings),
        "lot_number": _text(resource.get("lotNumber")),
        "dose_number": _int(
            _get(resource, "protocolApplied", 0, "doseNumberPositiveInt"), "dose_number", warnings
        ),
        "facility_code": _text(_get(resource, "performer", 0, "actor", "identifier", "value")),
        "is_active": status != "entered-in-error",
        "row_warnings": warnings,
    }


def allergy_row(resource: dict) -> dict:
    """The typed columns of one AllergyIntolerance (without night, source_file, line_number)."""
    warnings: list[str] = []
    status = _status(resource.get("status"))
    verification = _status(resource.get("verificationStatus"))
    return {
        "resource_id": _text(resource.get("id")),
        "citizen_id": _citizen_id(resource),
        "clinical_status": _status(resource.get("clinicalStatus")),
        "verification_status": verification,
        "substance_system": _text(_get(resource, "code", "coding", 0, "system")),
        "substance_code": _text(_get(resource, "code", "coding", 0, "code")),
        "substance_name": _text(_get(resource, "code", "coding", 0, "display"))
        or _text(_get(resource, "code", "text")),
        "reaction_code": _text(_get(resource, "reaction", 0, "manifestation", 0, "coding", 0, "code")),
        "reaction_name": _text(_get(resource, "reaction", 0, "manifestation", 0, "coding", 0, "display")),
        "severity": _text(_get(resource, "reaction", 0, "severity")),
        "criticality": _text(resource.get("criticality")),
        "recorded_at": parse_fhir_datetime(resource.get("recordedDate"), "recorded_at", warnings),
        "is_active": verification not in ("refuted", "entered-in-error") and status != "entered-in-error",
        "row_warnings": warnings,
    }


ROW_BUILDERS = {"Immunization": immunization_row, "AllergyIntolerance": allergy_row}


class FhirCounts:
    """Per resourceType: received, loaded, quarantined by reason, skipped (the ledger's figures)."""

    def __init__(self):
        self.received: Counter = Counter()
        self.loaded: Counter = Counter()
        self.skipped: Counter = Counter()
        self.quarantined: dict[str, Counter] = defaultdict(Counter)

    def as_dict(self) -> dict[str, dict]:
        kinds = set(SCHEMAS) | set(self.received)
        return {
            kind: {
                "received": self.received[kind],
                "loaded": self.loaded[kind],
                "quarantined": dict(sorted(self.quarantined[kind].items())),
                "skipped": self.skipped[kind],
            }
            for kind in sorted(kinds)
        }


def read_ndjson(
    path: Path, source_file: str, night: dt.date, counts: FhirCounts, batch_lines: int = BATCH_LINES
) -> Iterator[tuple[str, pa.Table]]:
    """Typed batches of one NDJSON file: ("Immunization" | "AllergyIntolerance" | "quarantine", table).

    Line numbers are 1-based. A line of unknown JSON shape is quarantined under the resource type
    "unknown"; an empty line is ignored (it carries nothing).
    """
    rows: dict[str, list[dict]] = defaultdict(list)
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            kind, row = _read_line(line, counts)
            if kind is None:
                continue
            row.update(night=night, source_file=source_file, line_number=number)
            rows[kind].append(row)
            if len(rows[kind]) >= batch_lines:
                yield kind, _table(kind, rows.pop(kind))
    for kind, batch in rows.items():
        yield kind, _table(kind, batch)


def _table(kind: str, rows: list[dict]) -> pa.Table:
    schema = SCHEMAS.get(kind, QUARANTINE_SCHEMA)
    return pa.Table.from_pylist(rows, schema=schema)


def _read_line(line: bytes, counts: FhirCounts) -> tuple[str | None, dict]:
    if not line.strip():
        return None, {}
    if len(line) > MAX_LINE_BYTES:
        return _quarantine(counts, "unknown", "line_too_large", f"{len(line)} bytes", None)
    try:
        resource = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        return _quarantine(counts, "unknown", "json_invalid", str(e)[:200], line)
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return _quarantine(counts, "unknown", "json_invalid", "not a FHIR resource", line)
    kind = resource["resourceType"][:64]
    counts.received[kind] += 1
    if kind not in ROW_BUILDERS:
        counts.skipped[kind] += 1
        return None, {}
    try:
        row = ROW_BUILDERS[kind](resource)
    except (TypeError, ValueError, OverflowError) as e:  # a hostile shape must not stop the night
        return _quarantine(
            counts, kind, "json_invalid", f"{type(e).__name__}: {e}"[:200], line, received=True
        )
    if row["resource_id"] is None:
        return _quarantine(counts, kind, "missing_resource_id", "", line, received=True)
    if row["citizen_id"] is None:
        return _quarantine(counts, kind, "missing_citizen_id", "", line, received=True)
    counts.loaded[kind] += 1
    return kind, row


def _quarantine(counts, kind, reason, detail, line, received=False):
    if not received:
        counts.received[kind] += 1
    counts.quarantined[kind][reason] += 1
    text = line[:10_000].decode("utf-8", "replace") if line is not None else None
    return "quarantine", {"resource_type": kind, "reason": reason, "detail": detail, "line": text}
