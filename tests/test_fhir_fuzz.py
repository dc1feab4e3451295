"""Property: a mutated FHIR NDJSON line never stops the read; it loads, is skipped, or is
quarantined with a reason, the counts balance, and the line after it still loads."""

from __future__ import annotations

import datetime as dt
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fhir import immunization

from transforms.core import reasons
from transforms.ingest import fhir

NIGHT = dt.date(2026, 11, 26)
SEED_LINE = json.dumps(immunization(), ensure_ascii=True).encode()
ANCHOR = json.dumps(immunization(id="anchor"), ensure_ascii=True).encode()
# what broke the night before issue #16, and what JSON readers disagree on
TOKENS = [
    b"\\ud800",  # a lone surrogate
    b"\\u0000",  # a NUL (PostgreSQL text cannot hold it)
    b"[" * 1200,  # deeper than the parser's recursion limit
    b"1" * 30,  # past int64
    b'"' + b"2" * 25 + b'"',
    b'"id": true, ',
    b'"id": 7, ',
    b'"id": "dup", ',  # a duplicate key
    b"NaN",
    b"-Infinity",
    b"1e999",
    b"{",
    b"}",
    b'"',
    b"\\",
    b"\x00",
    b"\xff",
    b"\r",
]


@st.composite
def mutated_lines(draw) -> bytes:
    data = bytearray(SEED_LINE)
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "token", "token"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 30))]
        else:
            data[at:at] = draw(st.sampled_from(TOKENS))
    return bytes(data).replace(b"\n", b" ")  # one line


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_lines())
def test_mutated_fhir_lines_load_skip_or_are_quarantined_with_a_reason(tmp_path_factory, line):
    path = tmp_path_factory.mktemp("fuzz") / "f.ndjson"
    path.write_bytes(line + b"\n" + ANCHOR + b"\n")
    counts = fhir.FhirCounts()
    tables: dict[str, list[dict]] = {}
    for kind, table in fhir.read_ndjson(path, "f.ndjson", NIGHT, counts):  # must not raise
        tables.setdefault(kind, []).extend(table.to_pylist())
    for row in tables.get("quarantine", []):
        assert row["reason"] in reasons.FHIR_REASONS
        assert row["line"] is None or (
            len(row["line"]) <= fhir.EXCERPT_CHARS + 1 and row["line"].isprintable()
        )
    for kind, f in counts.as_dict().items():
        assert f["received"] == f["loaded"] + sum(f["quarantined"].values()) + f["skipped"], kind
    loaded = tables.get("Immunization", [])
    assert loaded and loaded[-1]["resource_id"] == "anchor" and loaded[-1]["line_number"] == 2
    for row in loaded:  # what reaches PostgreSQL's COPY: UTF-8 text without NUL
        for value in row.values():
            if isinstance(value, str):
                assert "\x00" not in value
                value.encode("utf-8")
