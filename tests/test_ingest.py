"""The ingest stage end to end on tiny hand-made nights: partitions, versions, ledger figures."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import logging
import random
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from test_extract import XML1, b64, make_envelope, simple_hoso

import transforms.ingest.finalize as finalize_module
import transforms.ingest.stage as ingest_module
from transforms.core import parquet_io
from transforms.core.warehouse import Warehouse
from transforms.ingest.stage import (
    IngestSettings,
    assign_versions,
    ingest_extracts,
    versions_dir,
    versions_file,
)

NIGHT = dt.date(2026, 11, 26)
NEXT_NIGHT = dt.date(2026, 11, 27)
SETTINGS = IngestSettings(workers=2, batch_hosos=2)  # tiny batches: several scratch parts per worker


def write(root, night, name, data: bytes):
    path = root / night.isoformat() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def run(tmp_path, night=NIGHT):
    wh = Warehouse(tmp_path / "wh")
    manifest = ingest_extracts(tmp_path / "extracts" / night.isoformat(), night, wh, SETTINGS)
    return wh, json.loads(manifest.read_text())


def test_a_night_lands_in_partitions_with_lineage_and_ledger_figures(tmp_path):
    ex = tmp_path / "extracts"
    # facility 01234: 2 files, 3 HOSOs declared 4 (a difference the ledger must show);
    # facility 79001: 1 file, 1 HOSO; one rejected file with a readable header (declared 5).
    write(ex, NIGHT, "deep/a/b/one.xml", make_envelope([simple_hoso("A"), simple_hoso("B")], declared=3))
    write(ex, NIGHT, "two.xml", make_envelope([simple_hoso("C")]))
    write(ex, NIGHT, "hcm/x.xml", make_envelope([simple_hoso("A")], facility="79001"))
    bad = make_envelope([simple_hoso("Z")] * 5)
    write(ex, NIGHT, "broken.xml", bad[: len(bad) // 2])
    wh, m = run(tmp_path)

    assert m["facilities"]["01234"] | {"quarantined_at_ingest": None} == {
        "files": 3,  # one.xml, two.xml, broken.xml
        "files_rejected": 1,
        "files_signed": 0,  # make_envelope writes an empty <CHUKYDONVI/>
        "declared": 3 + 1 + 5,
        "received": 3,
        "quarantined_at_ingest": None,
    }
    assert m["facilities"]["79001"]["received"] == 1
    assert m["totals"]["received"] == 4
    assert m["rejected_files"] == [
        {
            "file": "broken.xml",
            "reason": "xml_malformed",
            "detail": m["rejected_files"][0]["detail"],
            "declared": 5,
        }
    ]
    assert m["declared_vs_received"] == [
        {"file": "deep/a/b/one.xml", "facility_code": "01234", "declared": 3, "received": 2}
    ]
    assert m["datasets"]["encounters"] == 4 and m["datasets"]["drugs"] == 8  # 4 HOSOs x 2 drug lines

    enc = parquet_io.read_staged(wh, "encounters", NIGHT)
    assert sorted(zip(enc["facility_code"], enc["encounter_id"], strict=True)) == [
        ("01234", "A"),
        ("01234", "B"),
        ("01234", "C"),
        ("79001", "A"),  # same MA_LK, other facility: another encounter
    ]
    assert set(enc["version"]) == {1}
    assert enc.loc[enc["encounter_id"] == "B", "source_file"].item() == "deep/a/b/one.xml"
    assert enc.loc[enc["encounter_id"] == "B", "hoso_index"].item() == 1
    assert (wh.staging_night("encounters", NIGHT) / "facility_code=79001" / "part-0.parquet").exists()
    assert "Z" not in set(
        parquet_io.read_staged(wh, "drugs", NIGHT)["encounter_id"]
    )  # rejected file: nothing

    rejected = pq.read_table(wh.quarantine("files", NIGHT) / "part-0.parquet").to_pylist()
    assert [(r["file"], r["reason"], r["declared"]) for r in rejected] == [("broken.xml", "xml_malformed", 5)]

    # DuckDB prunes on the hive partitions and sees facility codes as text (leading zero kept).
    root = wh.staging("encounters")
    count = duckdb.sql(
        f"select count(*) from read_parquet('{root}/**/*.parquet', hive_partitioning = true) "
        "where night = date '2026-11-26' and facility_code = '01234'"
    ).fetchall()[0][0]
    assert count == 3
    meta = pq.ParquetFile(
        wh.staging_night("drugs", NIGHT) / "facility_code=01234" / "part-0.parquet"
    ).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert meta.num_row_groups == 1  # 6 rows from 3 scratch parts coalesced into one row group


def test_quarantined_hosos_still_appear_as_encounter_versions_with_findings(tmp_path):
    ex = tmp_path / "extracts"
    hosos = [
        simple_hoso("OK"),
        [("XML2", b64("<CHITIEU_CHITIET_THUOC/>"))],  # no XML1, no MA_LK anywhere
        [("XML1", b64(XML1.format(ma_lk="BAD64"))), ("XML2", "!!!")],
        [("XML1", b64("<TONG_HOP><MA_LK>NOTXML</MA_LK>")), ("XML9", b64("<X/>"))],
    ]
    write(ex, NIGHT, "f.xml", make_envelope(hosos))
    wh, m = run(tmp_path)
    enc = parquet_io.read_staged(wh, "encounters", NIGHT)
    assert sorted(enc["encounter_id"]) == ["BAD64", "OK", "hoso:f.xml#1", "hoso:f.xml#3"]
    assert m["facilities"]["01234"]["received"] == 4
    findings = pq.read_table(wh.quarantine("findings", NIGHT) / "ingest.parquet").to_pandas()
    assert sorted(zip(findings["encounter_id"], findings["reason"], strict=True)) == [
        ("BAD64", "base64_invalid"),
        ("hoso:f.xml#1", "missing_xml1"),
        ("hoso:f.xml#3", "inner_xml_malformed"),
    ]
    assert set(findings["severity"]) == {"blocking"} and set(findings["stage"]) == {"ingest"}
    assert m["raw_tables"] == {"XML9": 1}
    raw = parquet_io.read_staged(wh, "raw_tables", NIGHT)
    assert raw["payload"].tolist() == [b"<X/>"]


def test_resent_encounter_later_in_the_night_and_on_a_later_night_gets_new_versions(tmp_path):
    ex = tmp_path / "extracts"
    write(ex, NIGHT, "b_later.xml", make_envelope([simple_hoso("LK1")], created_on="20261126"))
    write(
        ex,
        NIGHT,
        "a_earlier.xml",
        make_envelope([simple_hoso("LK1"), simple_hoso("LK2")], created_on="20261125"),
    )
    wh, _ = run(tmp_path)
    enc = parquet_io.read_staged(wh, "encounters", NIGHT).sort_values(["encounter_id", "version"])
    # NGAYLAP orders first: a_earlier (25th) is version 1, b_later (26th) is version 2.
    assert list(zip(enc["encounter_id"], enc["version"], enc["source_file"], strict=True)) == [
        ("LK1", 1, "a_earlier.xml"),
        ("LK1", 2, "b_later.xml"),
        ("LK2", 1, "a_earlier.xml"),
    ]
    drugs = parquet_io.read_staged(wh, "drugs", NIGHT)
    assert sorted(set(zip(drugs["encounter_id"], drugs["version"], strict=True))) == [
        ("LK1", 1),
        ("LK1", 2),
        ("LK2", 1),
    ]

    write(ex, NEXT_NIGHT, "c.xml", make_envelope([simple_hoso("LK1")], created_on="20261127"))
    run(tmp_path, NEXT_NIGHT)
    assert parquet_io.read_staged(wh, "encounters", NEXT_NIGHT)["version"].tolist() == [3]
    registry = pd.read_parquet(versions_dir(wh))
    assert sorted(registry.loc[registry["encounter_id"] == "LK1", "version"]) == [1, 2, 3]


def test_each_night_writes_only_its_own_version_file_and_reads_only_its_encounters(tmp_path, monkeypatch):
    """The version registry is one file per night: a later night never rewrites an earlier
    night's file, and reads the earlier rows of its own encounters only."""
    ex = tmp_path / "extracts"
    write(ex, NIGHT, "a.xml", make_envelope([simple_hoso("LK1"), simple_hoso("LK2")]))
    wh, _ = run(tmp_path)
    first = versions_file(wh, NIGHT)
    stat_before = first.stat()

    seen = []
    real = ingest_module.earlier_versions_table

    def spy(warehouse, night, received):
        out = real(warehouse, night, received)
        seen.append(sorted(out.column("encounter_id").to_pylist()))
        return out

    monkeypatch.setattr(finalize_module, "earlier_versions_table", spy)  # where finalize reads it
    write(
        ex,
        NEXT_NIGHT,
        "b.xml",
        make_envelope([simple_hoso("LK1"), simple_hoso("LK3")], created_on="20261127"),
    )
    run(tmp_path, NEXT_NIGHT)
    assert seen == [["LK1"]]  # LK2 is not tonight's: its row is never read
    assert (first.stat().st_mtime_ns, first.stat().st_ino) == (stat_before.st_mtime_ns, stat_before.st_ino)
    second = pd.read_parquet(versions_file(wh, NEXT_NIGHT))
    assert sorted(zip(second["encounter_id"], second["version"], strict=True)) == [("LK1", 2), ("LK3", 1)]


def test_a_single_version_file_of_an_older_warehouse_is_split_by_night(tmp_path):
    ex = tmp_path / "extracts"
    write(ex, NIGHT, "a.xml", make_envelope([simple_hoso("LK1")]))
    wh, _ = run(tmp_path)
    # the layout of older warehouses: every night's versions in state/encounter_versions.parquet
    legacy = wh.state / "encounter_versions.parquet"
    pd.read_parquet(versions_dir(wh)).to_parquet(legacy)
    shutil.rmtree(versions_dir(wh))

    write(ex, NEXT_NIGHT, "b.xml", make_envelope([simple_hoso("LK1")], created_on="20261127"))
    run(tmp_path, NEXT_NIGHT)
    assert not legacy.exists()
    assert pd.read_parquet(versions_file(wh, NIGHT))["version"].tolist() == [1]
    assert pd.read_parquet(versions_file(wh, NEXT_NIGHT))["version"].tolist() == [2]


def test_rerunning_a_night_gives_the_same_versions_and_rows(tmp_path):
    ex = tmp_path / "extracts"
    write(ex, NIGHT, "a.xml", make_envelope([simple_hoso("LK1"), simple_hoso("LK1")]))
    wh, first = run(tmp_path)
    before = parquet_io.read_staged(wh, "drugs", NIGHT)
    _, second = run(tmp_path)
    after = parquet_io.read_staged(wh, "drugs", NIGHT)
    pd.testing.assert_frame_equal(before, after)
    assert first == second
    registry = pd.read_parquet(versions_dir(wh))
    assert sorted(registry["version"]) == [1, 2]  # not 1, 2, 3, 4


def test_external_entity_secret_never_reaches_the_warehouse(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-7f3a")
    inner = f'<!DOCTYPE x [<!ENTITY s SYSTEM "file://{secret}">]><TONG_HOP><MA_LK>&s;</MA_LK></TONG_HOP>'
    outer = (
        f'<?xml version="1.0"?><!DOCTYPE GIAMDINHHS [<!ENTITY s SYSTEM "file://{secret}">]>'
        "<GIAMDINHHS><THONGTINDONVI><MACSKCB>&s;</MACSKCB></THONGTINDONVI></GIAMDINHHS>"
    ).encode()
    ex = tmp_path / "extracts"
    write(ex, NIGHT, "outer.xml", outer)
    write(ex, NIGHT, "inner.xml", make_envelope([[("XML1", b64(inner))]]))
    wh, m = run(tmp_path)
    assert m["rejected_files"][0]["reason"] == "xml_entity_declared"
    for path in wh.root.rglob("*"):
        if path.is_file():
            assert b"SECRET-7f3a" not in path.read_bytes(), path


def test_fhir_is_staged_and_counted_in_the_manifest(tmp_path):
    ex = tmp_path / "extracts"
    imm = {
        "resourceType": "Immunization",
        "id": "i1",
        "status": "completed",
        "patient": {"identifier": {"system": "urn:vn:cccd", "value": "079090001234"}},
    }
    write(ex, NIGHT, "fhir/imm.ndjson", (json.dumps(imm) + "\nnot json\n").encode())
    wh, m = run(tmp_path)
    assert m["fhir"]["Immunization"] == {"received": 1, "loaded": 1, "quarantined": {}, "skipped": 0}
    assert m["fhir"]["unknown"]["quarantined"] == {"json_invalid": 1}
    assert parquet_io.read_staged(wh, "immunizations", NIGHT)["resource_id"].tolist() == ["i1"]
    assert parquet_io.read_staged(wh, "allergies", NIGHT).empty


def test_an_empty_night_writes_an_empty_manifest(tmp_path):
    wh, m = run(tmp_path)
    assert m["totals"] == {"files": 0, "files_rejected": 0, "declared": 0, "received": 0}
    assert parquet_io.read_staged(wh, "encounters", NIGHT).empty


def test_assign_versions_numbers_by_night_then_ngaylap_then_file_then_position():
    previous = pd.DataFrame(
        {
            "facility_code": ["F", "F"],
            "encounter_id": ["E", "E"],
            "version": [1, 2],
            "night": [dt.date(2026, 11, 25), NIGHT],  # the NIGHT entry is dropped and re-assigned
            "source_file": ["old.xml", "stale.xml"],
            "hoso_index": [0, 0],
            "content_hash": ["h0", "hx"],
        }
    )
    received = pd.DataFrame(
        {
            "facility_code": ["F", "F", "F"],
            "encounter_id": ["E", "E", "N"],
            "created_on": ["20261126", "20261126", None],
            "source_file": ["b.xml", "a.xml", "a.xml"],
            "hoso_index": [0, 5, 0],
            "content_hash": ["h1", "h2", "h3"],
        }
    )
    out = assign_versions(previous, received, NIGHT)
    got = list(zip(out["encounter_id"], out["version"], out["source_file"], strict=True))
    # E: version 1 from the 25th; tonight a.xml (same NGAYLAP, earlier path) is 2, b.xml is 3.
    assert got == [("E", 1, "old.xml"), ("E", 2, "a.xml"), ("E", 3, "b.xml"), ("N", 1, "a.xml")]


def test_inner_row_with_another_ma_lk_is_flagged_not_rekeyed(tmp_path):
    xml2 = (
        "<CHITIEU_CHITIET_THUOC><DSACH_CHI_TIET_THUOC>"
        "<CHI_TIET_THUOC><MA_LK>LK1</MA_LK><STT>1</STT></CHI_TIET_THUOC>"
        "<CHI_TIET_THUOC><MA_LK>OTHER</MA_LK><STT>2</STT></CHI_TIET_THUOC>"
        "</DSACH_CHI_TIET_THUOC></CHITIEU_CHITIET_THUOC>"
    )
    write(
        tmp_path / "extracts",
        NIGHT,
        "f.xml",
        make_envelope([[("XML1", b64(XML1.format(ma_lk="LK1"))), ("XML2", b64(xml2))]]),
    )
    wh, _ = run(tmp_path)
    drugs = parquet_io.read_staged(wh, "drugs", NIGHT).sort_values("row_index")
    assert drugs["encounter_id"].tolist() == ["LK1", "LK1"]
    assert [list(w) for w in drugs["row_warnings"]] == [[], ["encounter_id_mismatch"]]
    assert drugs["row_index"].tolist() == [0, 1]


INGEST_REASONS = {
    "missing_xml1",
    "base64_invalid",
    "inner_xml_malformed",
    "inner_too_large",
    "missing_encounter_id",
}


def test_generated_night_matches_the_generators_truth(golden_night, tmp_path):
    from conftest import GOLDEN_NIGHT

    wh = Warehouse(tmp_path / "wh")
    manifest = ingest_extracts(
        golden_night / "extracts" / GOLDEN_NIGHT.isoformat(), GOLDEN_NIGHT, wh, SETTINGS
    )
    m = json.loads(manifest.read_text())
    truth = pd.read_parquet(golden_night / "truth" / "encounters.parquet")
    files = pd.read_parquet(golden_night / "truth" / "files.parquet")

    rejected_truth = files[files["file_defect"].isin(["xml_malformed", "xml_entity_declared"])]
    assert sorted((r["file"], r["reason"]) for r in m["rejected_files"]) == sorted(
        zip(rejected_truth["source_file"], rejected_truth["file_defect"], strict=True)
    )
    for code, group in files.groupby("facility_code"):
        accepted = group[~group.index.isin(rejected_truth.index)]
        figures = m["facilities"][code]
        assert figures["files"] == len(group)
        assert figures["declared"] == int(group["declared"].sum())
        assert figures["received"] == int(accepted["hoso_written"].sum())

    received_truth = truth[truth["expected_outcome"] != "rejected_file"]
    enc = parquet_io.read_staged(wh, "encounters", GOLDEN_NIGHT)
    key = ["facility_code", "encounter_id", "version", "source_file", "hoso_index"]
    staged = enc[key].sort_values(key).reset_index(drop=True)
    expected = received_truth[key].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(staged, expected, check_dtype=False)

    findings = pq.read_table(wh.quarantine("findings", GOLDEN_NIGHT) / "ingest.parquet").to_pandas()
    blocked = set(zip(findings["facility_code"], findings["encounter_id"], findings["version"], strict=True))
    expected_blocked = received_truth[received_truth["expected_reason"].isin(INGEST_REASONS)]
    assert blocked == set(
        zip(
            expected_blocked["facility_code"],
            expected_blocked["encounter_id"],
            expected_blocked["version"],
            strict=True,
        )
    )

    fhir_truth = pd.read_parquet(golden_night / "truth" / "fhir.parquet")
    for kind, group in fhir_truth.groupby("resource_type"):
        assert m["fhir"][kind]["received"] == len(group), kind


def test_tonight_versions_match_a_plain_python_numbering_on_random_receipts():
    rng = random.Random(7)
    earlier = [(rng.choice("FG"), f"E{rng.randrange(30)}", rng.randrange(1, 5)) for _ in range(40)]
    received = [
        (rng.choice("FG"), f"E{rng.randrange(40)}", rng.choice([None, "20261125", "20261126"]),
         f"{rng.choice('ab')}.xml", i)
        for i in range(300)
    ]  # fmt: skip
    base = {}
    for facility, encounter, version in earlier:
        base[facility, encounter] = max(base.get((facility, encounter), 0), version)
    expected, count = {}, {}
    for i in sorted(
        range(len(received)), key=lambda i: (received[i][2] or "", received[i][3], received[i][4])
    ):
        key = received[i][:2]
        count[key] = count.get(key, 0) + 1
        expected[i] = base.get(key, 0) + count[key]
    got = ingest_module.tonight_versions(
        pa.table(
            dict(
                zip(
                    ["facility_code", "encounter_id", "version"],
                    map(list, zip(*earlier, strict=True)),
                    strict=True,
                )
            )
        ),
        pa.table(
            dict(
                zip(
                    ["facility_code", "encounter_id", "created_on", "source_file", "hoso_index"],
                    map(list, zip(*received, strict=True)),
                    strict=True,
                )
            )
        ),
    )
    assert got.tolist() == [expected[i] for i in range(len(received))]
    # the stage passes the order as integers: (NGAYLAP, file) rank, then position
    pairs = sorted({(r[2] or "", r[3]) for r in received})
    arrival = np.array([pairs.index((r[2] or "", r[3])) << 32 | r[4] for r in received], dtype=np.int64)
    received_table = pa.table(
        dict(
            zip(
                ["facility_code", "encounter_id", "created_on", "source_file", "hoso_index"],
                map(list, zip(*received, strict=True)),
                strict=True,
            )
        )
    )
    earlier_table = pa.table(
        dict(
            zip(
                ["facility_code", "encounter_id", "version"],
                map(list, zip(*earlier, strict=True)),
                strict=True,
            )
        )
    )
    assert ingest_module.tonight_versions(earlier_table, received_table, arrival).tolist() == got.tolist()
    # the same MA_LK at two facilities is two encounters
    assert ingest_module.tonight_versions(
        pa.table({"facility_code": ["F"], "encounter_id": ["E"], "version": [3]}),
        pa.table(
            {
                "facility_code": ["F", "G"],
                "encounter_id": ["E", "E"],
                "created_on": ["1", "1"],
                "source_file": ["a", "a"],
                "hoso_index": [0, 1],
            }
        ),
    ).tolist() == [4, 1]


def test_ingest_logs_its_phases_for_operators_and_the_phase_benchmark(tmp_path, caplog):
    # benchmarks/ingest_phases.py parses these two lines: plan, read and finalize, and finalize's parts
    spec = importlib.util.spec_from_file_location(
        "ingest_phases", Path(__file__).parents[1] / "benchmarks" / "ingest_phases.py"
    )
    phases_benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(phases_benchmark)
    PHASE, FINALIZE = phases_benchmark.PHASE, phases_benchmark.FINALIZE

    write(tmp_path / "extracts", NIGHT, "one.xml", make_envelope([simple_hoso("A"), simple_hoso("B")]))
    write(tmp_path / "extracts", NIGHT, "two.xml", make_envelope([simple_hoso("C")]))
    with caplog.at_level(logging.INFO, logger="transforms.ingest"):
        run(tmp_path)
    phases = [m for m in map(PHASE.search, caplog.messages) if m]
    parts = [m for m in map(FINALIZE.search, caplog.messages) if m]
    assert len(phases) == 1 and len(parts) == 1
    assert (int(phases[0][2]), int(phases[0][3])) == (2, 1)  # 2 files planned in 1 shard
    # the finalize line's parts add up to no more than the finalize phase itself
    assert sum(float(parts[0][i]) for i in (1, 2, 3)) <= float(phases[0][5]) + 0.01
