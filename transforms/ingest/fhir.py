"""FHIR R4 NDJSON extracts (Immunization, AllergyIntolerance) into typed staged rows.

Every line of a known resourceType becomes one row (nothing dropped; `is_active` false for what
must never show in a book); a line of another type is counted as skipped; a line that cannot be
typed goes to the quarantine with a reason (reasons.FHIR_REASONS). Later stages keep, per
`resource_id`, the newest copy (night, source_file, line_number).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from transforms.core.datasets import FHIR_DATASETS
from transforms.ingest.extract import DEFAULT_LIMITS, printable_excerpt

MAX_LINE_BYTES = 1 << 20
# Arrow's int64, the type of every integer column: a larger JSON number is quarantined, not wrapped
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
EXCERPT_CHARS = 200  # what the quarantine keeps of a line: an escaped excerpt, with its SHA-256
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
        ("line", pa.string()),  # a bounded, printable excerpt (extract.printable_excerpt), never the line
        ("line_sha256", pa.string()),  # of the whole line's bytes: identifies it without keeping it
        ("line_bytes", pa.int64()),
    ]
)

SCHEMAS = {"Immunization": IMMUNIZATIONS_SCHEMA, "AllergyIntolerance": ALLERGIES_SCHEMA}
DATASETS = FHIR_DATASETS  # resource type -> staged dataset (core/datasets.py)
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


class LineRejected(Exception):
    """A line that cannot become a row: `reason` is one of reasons.FHIR_REASONS."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _text(value, column: str = "value") -> str | None:
    """A JSON string field, stripped; None when absent or of an object/array shape (read as
    missing). A number or a boolean where FHIR says string is not coerced ("True", "1e+25"):
    the line is quarantined `type_invalid`. A NUL (PostgreSQL text cannot hold it) or an unpaired
    surrogate (not UTF-8) is quarantined `text_invalid`."""
    if value is None or isinstance(value, dict | list):
        return None
    if not isinstance(value, str):
        raise LineRejected("type_invalid", f"{column} is a JSON {type(value).__name__}, not a string")
    if "\x00" in value:
        raise LineRejected("text_invalid", f"{column} holds a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise LineRejected("text_invalid", f"{column} holds an unpaired surrogate") from None
    text = value.strip()
    return text or None


def _status(value) -> str | None:
    """A status given as a code, or as a CodeableConcept (AllergyIntolerance)."""
    if isinstance(value, dict):
        return _text(_get(value, "coding", 0, "code"), "status") or _text(value.get("text"), "status")
    return _text(value, "status")


def parse_fhir_datetime(value, column: str, warnings: list[str]) -> dt.datetime | None:
    """A FHIR date/dateTime as naive Vietnam local time; partial dates take the first day."""
    text = _text(value, column)
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
    if isinstance(value, str):
        _text(value, column)  # a NUL or a lone surrogate is text_invalid here too
        if not _INTEGER_TEXT.fullmatch(value.strip()):  # ASCII digits only (int() takes "١", "1_0")
            warnings.append(f"unparseable:{column}")
            return None
        value = int(value.strip())
    if not INT64_MIN <= value <= INT64_MAX:  # Arrow's int64 would overflow and stop the batch
        raise LineRejected("number_out_of_range", f"{column} has {len(str(abs(value)))} digits")
    return value


_INTEGER_TEXT = re.compile(r"[+-]?[0-9]{1,30}", re.ASCII)


def _citizen_id(resource: dict) -> str | None:
    ident = _get(resource, "patient", "identifier")
    if isinstance(ident, list):
        ident = next((i for i in ident if isinstance(i, dict) and i.get("system") == CITIZEN_ID_SYSTEM), None)
    return _text(_get(ident, "value"), "citizen_id") if isinstance(ident, dict) else None


def immunization_row(resource: dict) -> dict:
    """The typed columns of one Immunization (without night, source_file, line_number)."""
    warnings: list[str] = []
    status = _status(resource.get("status"))
    return {
        "resource_id": _text(resource.get("id"), "resource_id"),
        "citizen_id": _citizen_id(resource),
        "status": status,
        "vaccine_system": _text(_get(resource, "vaccineCode", "coding", 0, "system"), "vaccine_system"),
        "vaccine_code": _text(_get(resource, "vaccineCode", "coding", 0, "code"), "vaccine_code"),
        "vaccine_name": _text(_get(resource, "vaccineCode", "coding", 0, "display"), "vaccine_name")
        or _text(_get(resource, "vaccineCode", "text"), "vaccine_name"),
        "occurred_at": parse_fhir_datetime(resource.get("occurrenceDateTime"), "occurred_at", warnings),
        "lot_number": _text(resource.get("lotNumber"), "lot_number"),
        "dose_number": _int(
            _get(resource, "protocolApplied", 0, "doseNumberPositiveInt"), "dose_number", warnings
        ),
        "facility_code": _text(
            _get(resource, "performer", 0, "actor", "identifier", "value"), "facility_code"
        ),
        "is_active": status != "entered-in-error",
        "row_warnings": warnings,
    }


def allergy_row(resource: dict) -> dict:
    """The typed columns of one AllergyIntolerance (without night, source_file, line_number)."""
    warnings: list[str] = []
    status = _status(resource.get("status"))
    verification = _status(resource.get("verificationStatus"))
    return {
        "resource_id": _text(resource.get("id"), "resource_id"),
        "citizen_id": _citizen_id(resource),
        "clinical_status": _status(resource.get("clinicalStatus")),
        "verification_status": verification,
        "substance_system": _text(_get(resource, "code", "coding", 0, "system"), "substance_system"),
        "substance_code": _text(_get(resource, "code", "coding", 0, "code"), "substance_code"),
        "substance_name": _text(_get(resource, "code", "coding", 0, "display"), "substance_name")
        or _text(_get(resource, "code", "text"), "substance_name"),
        "reaction_code": _text(
            _get(resource, "reaction", 0, "manifestation", 0, "coding", 0, "code"), "reaction_code"
        ),
        "reaction_name": _text(
            _get(resource, "reaction", 0, "manifestation", 0, "coding", 0, "display"), "reaction_name"
        ),
        "severity": _text(_get(resource, "reaction", 0, "severity"), "severity"),
        "criticality": _text(resource.get("criticality"), "criticality"),
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


class FileRejected(Exception):
    """The whole NDJSON file is refused unread; `reason` is one of reasons.FILE_REASONS."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def read_ndjson(
    path: Path,
    source_file: str,
    night: dt.date,
    counts: FhirCounts,
    batch_lines: int = BATCH_LINES,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_file_bytes: int | None = None,
) -> Iterator[tuple[str, pa.Table]]:
    """Typed batches of one NDJSON file: ("Immunization" | "AllergyIntolerance" | "quarantine", table).

    Line numbers are 1-based. A line of unknown JSON shape is quarantined under the resource type
    "unknown"; an empty line is ignored (it carries nothing). Lines are read with a bounded
    reader (`bounded_lines`): a line over `max_line_bytes` is never held whole. A file over
    `max_file_bytes` (default extract.DEFAULT_LIMITS.max_ndjson_bytes) raises FileRejected
    (`ndjson_too_large`) before anything is read; one that grows past it while read has the rest
    quarantined as one `line_too_large`.
    """
    cap = DEFAULT_LIMITS.max_ndjson_bytes if max_file_bytes is None else max_file_bytes
    size = path.stat().st_size
    if size > cap:
        raise FileRejected("ndjson_too_large", f"{size} bytes > {cap}")
    rows: dict[str, list[dict]] = defaultdict(list)
    with path.open("rb") as f:
        for number, line, length in bounded_lines(f, max_line_bytes, cap):
            if line is None:
                kind, row = _quarantine(
                    counts, "unknown", "line_too_large", f"{length} bytes > {max_line_bytes}", None
                )
                row["line_bytes"] = length
            else:
                kind, row = _read_line(line, counts, max_line_bytes)
            if kind is None:
                continue
            row.update(night=night, source_file=source_file, line_number=number)
            rows[kind].append(row)
            if len(rows[kind]) >= batch_lines:
                yield kind, _table(kind, rows.pop(kind))
    for kind, batch in rows.items():
        yield kind, _table(kind, batch)


def bounded_lines(f, max_line_bytes: int, max_total_bytes: int) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, line, its length in bytes without the line break) for each line of a binary file, never holding
    more than `max_line_bytes + 1` bytes of one line: a longer line is skipped in 1 MiB reads and
    given as (number, None, length). Stops after `max_total_bytes` (the rest is one more
    (number, None, length) entry)."""
    number = total = 0
    while True:
        line = f.readline(max_line_bytes + 1)
        if not line:
            return
        number += 1
        total += len(line)
        length = len(line)
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            line = None  # drop what was read before reading on: memory stays one bounded chunk
            while True:
                more = f.readline(1 << 20)
                length += len(more)
                total += len(more)
                if more.endswith(b"\n"):
                    length -= 1  # the line break is not part of the line
                if not more or more.endswith(b"\n") or total > max_total_bytes:
                    break
        if total > max_total_bytes:
            rest = 0
            while chunk := f.read(1 << 20):  # counted, not kept
                rest += len(chunk)
            yield number, None, length + rest
            return
        yield number, line, length


def _table(kind: str, rows: list[dict]) -> pa.Table:
    schema = SCHEMAS.get(kind, QUARANTINE_SCHEMA)
    return pa.Table.from_pylist(rows, schema=schema)


class _DuplicateKey(ValueError):
    pass


def _object(pairs: list[tuple[str, object]]) -> dict:
    """json object_pairs_hook: a key twice in one object is refused (which copy counts differs
    from one reader to the next, so a line could say one thing to us and another to a checker)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateKey(f"duplicate key {printable_excerpt(dup, 40)!r}")
    return obj


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity, -Infinity: Python's json takes them


_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}", re.ASCII)


def _read_line(
    line: bytes, counts: FhirCounts, max_line_bytes: int = MAX_LINE_BYTES
) -> tuple[str | None, dict]:
    if not line.strip():
        return None, {}
    if len(line) > max_line_bytes:
        kind, row = _quarantine(counts, "unknown", "line_too_large", f"{len(line)} bytes", None)
        row["line_bytes"] = len(line.rstrip(b"\r\n"))
        return kind, row
    try:
        resource = json.loads(line, object_pairs_hook=_object, parse_constant=_no_constant)
    except _DuplicateKey as e:
        return _quarantine(counts, "unknown", "json_duplicate_key", str(e), line)
    except RecursionError:
        return _quarantine(counts, "unknown", "json_too_deep", "nesting deeper than the parser allows", line)
    except (ValueError, UnicodeDecodeError) as e:
        return _quarantine(counts, "unknown", "json_invalid", str(e)[:200], line)
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return _quarantine(counts, "unknown", "json_invalid", "not a FHIR resource", line)
    if not _RESOURCE_TYPE.fullmatch(resource["resourceType"]):
        return _quarantine(counts, "unknown", "json_invalid", "resourceType is not a FHIR type name", line)
    kind = resource["resourceType"]
    counts.received[kind] += 1
    if kind not in ROW_BUILDERS:
        counts.skipped[kind] += 1
        return None, {}
    try:
        row = ROW_BUILDERS[kind](resource)
    except LineRejected as e:
        return _quarantine(counts, kind, e.reason, e.detail, line, received=True)
    except RecursionError:  # a deep value that a builder walked into
        return _quarantine(counts, kind, "json_too_deep", "nesting deeper than the parser allows", line, True)
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
    """A quarantine row: a bounded, printable excerpt of the line and the SHA-256 of its bytes,
    never the line itself (it may be anything: a secret a symlink pointed at, a binary file)."""
    if not received:
        counts.received[kind] += 1
    counts.quarantined[kind][reason] += 1
    if line is not None:
        line = line.rstrip(b"\r\n")
    return "quarantine", {
        "resource_type": kind,
        "reason": reason,
        "detail": detail,
        "line": printable_excerpt(line, EXCERPT_CHARS) if line is not None else None,
        "line_sha256": hashlib.sha256(line).hexdigest() if line is not None else None,
        "line_bytes": len(line) if line is not None else None,
    }
