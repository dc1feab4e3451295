"""Issue #16 on the ingest stage's own functions, tiny hand-made nights: NDJSON size cap, the
facility code as the only partition name, folder/MACSKCB agreement, symlinks, strict book JSON.
(tests/test_hostile_night.py runs the same hostile inputs through `healthbook run`.)"""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest
from test_extract import make_envelope, simple_hoso
from test_fhir import immunization

from transforms.core import parquet_io
from transforms.core.warehouse import Warehouse
from transforms.ingest import discovery, extract
from transforms.ingest.extract import EnvelopeReader, ReadLimits
from transforms.ingest.stage import IngestSettings, ingest_extracts, ingest_fhir

NIGHT = dt.date(2026, 11, 26)


def test_an_ndjson_file_over_the_cap_is_rejected_unread(tmp_path):
    night_dir = tmp_path / "x" / NIGHT.isoformat()
    (night_dir / "fhir").mkdir(parents=True)
    line = json.dumps(immunization()).encode() + b"\n"
    (night_dir / "fhir" / "big.ndjson").write_bytes(line * 3)  # 3 lines, over a cap of 2 lines
    (night_dir / "fhir" / "small.ndjson").write_bytes(line.replace(b'"imm-1"', b'"imm-2"'))
    wh = Warehouse(tmp_path / "wh")
    counts, rejected = ingest_fhir(night_dir, NIGHT, wh, ReadLimits(max_ndjson_bytes=2 * len(line)))
    assert [(r.source_file, r.rejection[0]) for r in rejected] == [("fhir/big.ndjson", "ndjson_too_large")]
    # nothing of big.ndjson was read: only small.ndjson's one line is counted
    assert counts["Immunization"] == {"received": 1, "loaded": 1, "quarantined": {}, "skipped": 0}


def test_only_a_five_digit_code_can_name_a_partition(tmp_path):
    assert parquet_io.facility_partition(tmp_path, "01704") == tmp_path / "facility_code=01704"
    for code in (
        "../../../../tmp/x",
        "x/../facility_code=01704",
        "a=b",
        "a/b",
        "7" * 250,
        "０１７０４",
        "0170",
        None,
    ):  # noqa: RUF001
        with pytest.raises(parquet_io.UnsafePartition):
            parquet_io.facility_partition(tmp_path, code)


def test_ingest_rejects_malformed_codes_and_stages_only_valid_partitions(tmp_path):
    night_dir = tmp_path / "extracts" / NIGHT.isoformat()
    night_dir.mkdir(parents=True)
    codes = ["../../../../tmp/x", "x/../facility_code=01704", "7" * 250, "a=b", "a/b", "０１７０４"]  # noqa: RUF001
    for i, code in enumerate(codes):
        (night_dir / f"bad{i}.xml").write_bytes(make_envelope([simple_hoso(f"BAD{i}")], facility=code))
    (night_dir / "good.xml").write_bytes(make_envelope([simple_hoso("GOOD")], facility="01704"))
    wh = Warehouse(tmp_path / "wh")
    manifest = json.loads(ingest_extracts(night_dir, NIGHT, wh, IngestSettings(workers=1)).read_text())
    assert sorted(r["reason"] for r in manifest["rejected_files"]) == ["facility_code_invalid"] * len(codes)
    night = wh.staging_night("encounters", NIGHT)
    assert [p.name for p in night.iterdir()] == ["facility_code=01704"]
    assert pq.read_table(night / "facility_code=01704").column("encounter_id").to_pylist() == ["GOOD"]
    assert set(manifest["facilities"]) == {"01704", "unknown"}  # no facility named after a hostile code


def test_the_folder_names_the_facility_and_a_file_claiming_another_is_rejected():
    assert extract.folder_facility("79/79382/79382_20261126_0001.xml") == "79382"
    assert extract.folder_facility("fhir/Immunization-0001.ndjson") is None
    assert extract.folder_facility("top.xml") is None
    assert extract.folder_facility("79/７９３８２/x.xml") is None  # noqa: RUF001 - fullwidth names no facility
    reader = EnvelopeReader(make_envelope([simple_hoso("A")], facility="79001"), expected_facility="79382")
    assert list(reader) == [] and reader.rejection[0] == "facility_mismatch"
    reader = EnvelopeReader(make_envelope([simple_hoso("A")], facility="79382"), expected_facility="79382")
    assert len(list(reader)) == 1 and reader.rejection is None and reader.header.signed is False
    signed = make_envelope([simple_hoso("A")]).replace(b"<CHUKYDONVI/>", b"<CHUKYDONVI>MIIB</CHUKYDONVI>")
    reader = EnvelopeReader(signed)
    assert len(list(reader)) == 1 and reader.header.signed is True


def test_a_symlink_leaving_the_night_is_rejected_and_one_inside_it_is_read(tmp_path):
    night_dir = tmp_path / "night"
    night_dir.mkdir()
    (tmp_path / "other.xml").write_bytes(make_envelope([simple_hoso("OUT")]))
    (night_dir / "real.xml").write_bytes(make_envelope([simple_hoso("IN")]))
    (night_dir / "out.xml").symlink_to(tmp_path / "other.xml")
    (night_dir / "in.xml").symlink_to(night_dir / "real.xml")
    (night_dir / "dangling.xml").symlink_to(tmp_path / "missing.xml")
    found = discovery.discover_envelopes(night_dir)
    assert [p.name for p in found] == ["dangling.xml", "in.xml", "out.xml", "real.xml"]
    outcome = {}
    for path in found:
        reader = EnvelopeReader(path, night_dir=night_dir)
        outcome[path.name] = (len(list(reader)), reader.rejection and reader.rejection[0])
    assert outcome == {
        "dangling.xml": (0, "symlink_outside_night"),
        "in.xml": (1, None),
        "out.xml": (0, "symlink_outside_night"),
        "real.xml": (1, None),
    }


def test_printable_excerpt_is_bounded_and_escapes_controls():
    text = extract.printable_excerpt(b"\x00\x1bKEY=secret\n" + b"x" * 5000, 40)
    assert text == "\\x00\\x1bKEY=secret\\n" + "x" * 20 + "…"
    assert len(text) <= 41 and text.isprintable()
    assert extract.printable_excerpt("\ud800ok") == "\\ud800ok"


def test_book_json_is_strict():
    from transforms.orchestration.cli import strict_json

    book = {"encounters": [{"indicators": {"weight_kg": float("inf"), "height_cm": float("nan")}}], "n": 1.5}
    out = strict_json(book)
    assert json.loads(out) == {
        "encounters": [{"indicators": {"weight_kg": None, "height_cm": None}}],
        "n": 1.5,
    }
    assert "Infinity" not in out and "NaN" not in out
