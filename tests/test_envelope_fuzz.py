"""Property: a mutated envelope never raises; it yields HOSOs or a reason code."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_extract import XML1, b64, make_envelope, simple_hoso

from transforms.core import reasons
from transforms.ingest.extract import EnvelopeReader
from transforms.ingest.inner import decode_hoso

SEED_ENVELOPE = make_envelope(
    [simple_hoso("A"), [("XML1", b64(XML1.format(ma_lk="B"))), ("XML9", b64("<X/>"))]]
)
TOKENS = [
    b"<",
    b">",
    b"</HOSO>",
    b"<HOSO>",
    b"<!DOCTYPE x>",
    b"&amp;",
    b"&x;",
    b"\x00",
    b"\xff",
    b"]]>",
    b'"',
]


@st.composite
def mutated_envelopes(draw) -> bytes:
    data = bytearray(SEED_ENVELOPE)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "token"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        elif op == "truncate":
            del data[at:]
        else:
            data[at:at] = draw(st.sampled_from(TOKENS))
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_envelopes())
def test_mutated_envelopes_yield_rows_or_a_reason(data):
    reader = EnvelopeReader(data)
    hosos = list(reader)  # must not raise
    if reader.rejection is not None:
        assert reader.rejection[0] in reasons.FILE_REASONS
        return
    for hoso in hosos:
        decoded = decode_hoso(hoso)  # must not raise either
        for reason, _, _ in decoded.findings:
            assert reason in reasons.ENCOUNTER_REASONS
        assert decoded.rows or decoded.findings or decoded.raw_tables or not hoso.files
