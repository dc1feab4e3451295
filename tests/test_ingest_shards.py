"""The shardable ingest API: plan_ingest + ingest_shard + finalize_ingest is ingest_night."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_extract import make_envelope, simple_hoso

from transforms.core import parquet_io
from transforms.core.warehouse import Warehouse
from transforms.ingest.stage import (
    XML_DATASETS,
    IngestSettings,
    NightInput,
    facility_hint,
    finalize_dataset,
    finalize_ingest,
    ingest_night,
    ingest_shard,
    plan_ingest,
    shard_count,
    versions_dir,
)

NIGHT = dt.date(2026, 11, 26)
# one file per shard wanted, tiny batches: several shards, several scratch parts per shard
SETTINGS = IngestSettings(workers=2, batch_hosos=2, shard_bytes_target=1)


def make_night(root):
    """5 facilities, 9 files: 10 HOSOs received, a truncated file and one without MACSKCB."""
    night_dir = root / "extracts" / NIGHT.isoformat()
    files = {
        "a/1.xml": make_envelope([simple_hoso("A1"), simple_hoso("A2")], facility="01001"),
        "a/2.xml": make_envelope([simple_hoso("A1")], facility="01001", created_on="20261127"),
        "b/1.xml": make_envelope([simple_hoso("B1")], facility="79002"),
        "b/2.xml": make_envelope([simple_hoso("B2"), simple_hoso("B3")], facility="79002"),
        "c.xml": make_envelope([simple_hoso("C1")], facility="48003"),
        "d.xml": make_envelope([simple_hoso("D1")], facility="92004"),
        "e/x.xml": make_envelope([simple_hoso("E1"), simple_hoso("E2")], facility="31005"),
        "broken.xml": make_envelope([simple_hoso("Z")] * 3, facility="79002")[:-100],
        "nofacility.xml": make_envelope([simple_hoso("N1")], facility=""),
    }
    for name, data in files.items():
        (night_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (night_dir / name).write_bytes(data)
    return night_dir


def content_hashes(wh: Warehouse) -> dict[str, str]:
    """SHA-256 of every staged dataset read back (rows in read order), plus the version registry."""
    out = {
        ds: hashlib.sha256(repr(parquet_io.read_staged_table(wh, ds, NIGHT).to_pylist()).encode()).hexdigest()
        for ds in XML_DATASETS
    }
    for name, path in {
        "versions": versions_dir(wh),
        "findings": wh.quarantine("findings", NIGHT) / "ingest.parquet",
        "rejected": wh.quarantine("files", NIGHT) / "part-0.parquet",
    }.items():
        out[name] = hashlib.sha256(repr(pq.read_table(path).to_pylist()).encode()).hexdigest()
    return out


def test_plan_then_each_shard_then_finalize_equals_ingest_night(tmp_path):
    night_dir = make_night(tmp_path)
    whole = NightInput(NIGHT, night_dir, Warehouse(tmp_path / "whole"))
    sharded = NightInput(NIGHT, night_dir, Warehouse(tmp_path / "sharded"))

    manifest_whole = json.loads(ingest_night(whole, SETTINGS).read_text())

    shards = plan_ingest(sharded, shard_bytes_target=1)
    assert len(shards) > 1
    for shard in shards:
        assert ingest_shard(sharded, shard, settings=SETTINGS).name == "results.json"
    manifest_sharded = json.loads(finalize_ingest(sharded, SETTINGS).read_text())

    assert manifest_sharded == manifest_whole
    # received 2+1+1+2+1+1+2 = 10 HOSOs; declared adds broken.xml's 3 and nofacility.xml's 1
    assert manifest_whole["totals"] == {"files": 9, "files_rejected": 2, "declared": 14, "received": 10}
    assert content_hashes(sharded.warehouse) == content_hashes(whole.warehouse)
    assert not sharded.warehouse.scratch("ingest", NIGHT).exists()  # finalize cleans up


def test_the_number_of_shards_does_not_change_the_staged_night(tmp_path):
    night_dir = make_night(tmp_path)
    one = NightInput(NIGHT, night_dir, Warehouse(tmp_path / "one"))
    many = NightInput(NIGHT, night_dir, Warehouse(tmp_path / "many"))
    ingest_night(one, IngestSettings(workers=1, shard_bytes_target=1 << 40))  # 1 shard
    ingest_night(many, SETTINGS)
    assert content_hashes(one.warehouse) == content_hashes(many.warehouse)


def test_the_size_of_the_workers_groups_does_not_change_the_staged_night(tmp_path):
    night_dir = make_night(tmp_path)
    whole = NightInput(NIGHT, night_dir, Warehouse(tmp_path / "whole"))
    per_file = NightInput(NIGHT, night_dir, Warehouse(tmp_path / "per_file"))
    ingest_night(whole, IngestSettings(workers=2, shard_bytes_target=1 << 40))  # one group
    ingest_night(per_file, IngestSettings(workers=2, shard_bytes_target=1 << 40, group_bytes=1))  # 9 groups
    assert content_hashes(per_file.warehouse) == content_hashes(whole.warehouse)


def test_all_files_of_a_facility_land_in_one_shard_and_shards_never_exceed_the_maximum(tmp_path):
    night_dir = make_night(tmp_path)
    ctx = NightInput(NIGHT, night_dir, Warehouse(tmp_path / "wh"))
    for max_shards in (1, 2, 3, 256):
        shards = plan_ingest(ctx, max_shards=max_shards, shard_bytes_target=1)
        plan = json.loads((ctx.warehouse.run_dir(NIGHT) / "ingest_plan.json").read_text())
        assert plan["n_shards"] <= max_shards and all(s < plan["n_shards"] for s in shards)
        assert shards == sorted({f["shard"] for f in plan["files"]})
        by_facility: dict[str, set[int]] = {}
        for f in plan["files"]:
            by_facility.setdefault(f["facility_hint"], set()).add(f["shard"])
        # 79002 has 3 files (one truncated after its MACSKCB): one shard for all of them
        assert {k: len(v) for k, v in by_facility.items()} == {
            "01001": 1, "79002": 1, "48003": 1, "92004": 1, "31005": 1, None: 1,
        }  # fmt: skip
        assert sorted(f["source_file"] for f in plan["files"] if f["facility_hint"] == "79002") == [
            "b/1.xml", "b/2.xml", "broken.xml",
        ]  # fmt: skip
    # 9 files, 6 placement keys (5 facilities + 1 file without a hint): at most 6 shards
    assert plan["n_shards"] == 6


def test_shard_count_grows_with_the_nights_bytes_and_is_capped_by_facilities_and_maximum():
    mb = 1 << 20
    assert shard_count(0, 0, 256, 64 * mb) == 1  # an empty night still has one (empty) shard
    assert shard_count(152 * mb, 20, 256, 64 * mb) == 3  # ceil(152 / 64): a small night, few shards
    assert shard_count(1518 * mb, 20, 256, 64 * mb) == 20  # a facility is never split
    assert shard_count(100_000 * mb, 5_000, 256, 64 * mb) == 256


def test_finalize_fails_clearly_when_a_planned_shard_did_not_run(tmp_path):
    ctx = NightInput(NIGHT, make_night(tmp_path), Warehouse(tmp_path / "wh"))
    shards = plan_ingest(ctx, shard_bytes_target=1)
    ingest_shard(ctx, shards[0])
    with pytest.raises(RuntimeError, match=r"planned shard\(s\) \[" + str(shards[1])):
        finalize_ingest(ctx, IngestSettings(workers=1))
    assert not ctx.warehouse.manifest(NIGHT, "ingest").exists()


def test_rerunning_a_shard_replaces_its_scratch(tmp_path):
    ctx = NightInput(NIGHT, make_night(tmp_path), Warehouse(tmp_path / "wh"))
    shards = plan_ingest(ctx, shard_bytes_target=1 << 40)
    assert shards == [0]
    first = ingest_shard(ctx, 0, settings=SETTINGS)
    before = sorted(p.relative_to(first.parent) for p in first.parent.rglob("*"))
    second = ingest_shard(ctx, 0, workers=2, settings=SETTINGS)
    assert sorted(p.relative_to(second.parent) for p in second.parent.rglob("*")) == before
    manifest = json.loads(finalize_ingest(ctx, SETTINGS).read_text())
    assert manifest["totals"]["received"] == 10


def test_an_empty_night_plans_one_empty_shard(tmp_path):
    ctx = NightInput(NIGHT, tmp_path / "extracts" / NIGHT.isoformat(), Warehouse(tmp_path / "wh"))
    assert plan_ingest(ctx) == [0]
    ingest_shard(ctx, 0)
    manifest = json.loads(finalize_ingest(ctx, IngestSettings(workers=1)).read_text())
    assert manifest["totals"]["received"] == 0


def test_facility_hint_reads_bytes_only_and_refuses_entity_references(tmp_path):
    doctype = tmp_path / "doctype.xml"
    doctype.write_bytes(
        b'<?xml version="1.0"?><!DOCTYPE G [<!ENTITY s SYSTEM "file:///etc/passwd">]>'
        b"<GIAMDINHHS><THONGTINDONVI><MACSKCB>&s;</MACSKCB></THONGTINDONVI></GIAMDINHHS>"
    )
    assert facility_hint(doctype) is None
    late = tmp_path / "late.xml"
    late.write_bytes(b"<GIAMDINHHS><!--" + b"x" * (64 << 10) + b"--><MACSKCB>01001</MACSKCB></GIAMDINHHS>")
    assert facility_hint(late) is None  # beyond the 64 KB prefix: placed by its path
    assert facility_hint(tmp_path / "missing.xml") is None


def part(uids: list[int], keys: list[str]) -> pa.Table:
    """A raw_tables scratch part: one row per HOSO uid, encounter ids `keys`."""
    scratch_schema = pa.schema(
        [pa.field("hoso_uid", pa.int64())]
        + [
            f
            for f in parquet_io.known_schema("raw_tables")
            if f.name not in ("night", "facility_code", "version")
        ]
    )
    n = len(uids)
    return pa.table(
        {
            "hoso_uid": uids,
            "encounter_id": keys,
            "source_file": ["f.xml"] * n,
            "hoso_index": list(range(n)),
            "loaihoso": ["XML9"] * n,
            "size_bytes": [1] * n,
            "sha256": ["x"] * n,
            "payload": [b"p"] * n,
        },
        schema=scratch_schema,
    )


def test_finalize_splits_scratch_parts_by_facility_in_order_and_drops_rejected_rows(tmp_path):
    # Two scratch parts of raw_tables; HOSO uids 10, 11, 20, 21 were received tonight, 30 belongs
    # to a rejected file. Facilities: 10 and 21 -> 79002, 11 and 20 -> 01001 (codes 1 and 0).
    scratch = tmp_path / "scratch"
    parquet_io.write_scratch(
        part([10, 20, 30, 11], ["a", "b", "z", "c"]), scratch / "shard-000/raw_tables/g1.arrow"
    )
    parquet_io.write_scratch(part([21, 11], ["d", "e"]), scratch / "shard-001/raw_tables/g2.arrow")
    out = tmp_path / "out"
    rows, _ = finalize_dataset(
        "raw_tables",
        str(scratch),
        str(out),
        NIGHT,
        uids=np.array([10, 11, 20, 21]),
        versions=np.array([1, 2, 1, 3]),
        facility_of=np.array([1, 0, 0, 1]),
        facilities=["01001", "79002", None],
        last_shard={"01001": 1, "79002": 1},
    )
    assert rows == {"01001": 3, "79002": 2}  # "z" (uid 30) dropped
    first = pq.read_table(out / "facility_code=01001" / "part-0.parquet", partitioning=None)
    second = pq.read_table(out / "facility_code=79002" / "part-0.parquet", partitioning=None)
    # rows keep their scratch order within a facility: part 1 (b, c) then part 2 (e)
    assert first.select(["encounter_id", "version", "facility_code"]).to_pylist() == [
        {"encounter_id": "b", "version": 1, "facility_code": "01001"},
        {"encounter_id": "c", "version": 2, "facility_code": "01001"},
        {"encounter_id": "e", "version": 2, "facility_code": "01001"},
    ]
    assert second.column("encounter_id").to_pylist() == ["a", "d"]
    assert second.column("version").to_pylist() == [1, 3]
    assert set(first.column("night").to_pylist() + second.column("night").to_pylist()) == {NIGHT}
    assert first.schema == second.schema == parquet_io.known_schema("raw_tables")


def test_finalize_says_which_watched_hosos_have_rows_in_the_dataset(tmp_path):
    # uid 11 has rows in both parts, 20 in the first; 99 has none (the late step's question:
    # what did a HOSO without XML1 carry?)
    scratch = tmp_path / "scratch"
    parquet_io.write_scratch(part([10, 20, 11], ["a", "b", "c"]), scratch / "shard-000/raw_tables/g1.arrow")
    parquet_io.write_scratch(part([11], ["e"]), scratch / "shard-000/raw_tables/g2.arrow")
    _, seen = finalize_dataset(
        "raw_tables", str(scratch), str(tmp_path / "out"), NIGHT,
        uids=np.array([10, 11, 20]), versions=np.array([1, 1, 1]), facility_of=np.array([0, 0, 0]),
        facilities=["01001", None], last_shard={"01001": 0}, watch=np.array([11, 20, 99]),
    )  # fmt: skip
    assert seen.tolist() == [11, 20]


def test_a_facilitys_file_is_finished_after_its_last_shard_and_a_later_row_is_an_error(tmp_path):
    scratch = tmp_path / "scratch"
    parquet_io.write_scratch(part([10], ["10"]), scratch / "shard-000/raw_tables/g1.arrow")
    parquet_io.write_scratch(part([20], ["20"]), scratch / "shard-001/raw_tables/g2.arrow")
    args = dict(uids=np.array([10, 20]), versions=np.array([1, 1]), facility_of=np.array([0, 1]))
    rows, _ = finalize_dataset(
        "raw_tables", str(scratch), str(tmp_path / "ok"), NIGHT, **args,
        facilities=["01001", "79002", None], last_shard={"01001": 0, "79002": 1},
    )  # fmt: skip
    assert rows == {"01001": 1, "79002": 1}
    assert (tmp_path / "ok" / "facility_code=01001" / "part-0.parquet").exists()
    with pytest.raises(RuntimeError, match="after its last shard"):
        finalize_dataset(
            "raw_tables", str(scratch), str(tmp_path / "bad"), NIGHT, **{**args, "facility_of": np.array([0, 0])},
            facilities=["01001", None], last_shard={"01001": 0},
        )  # fmt: skip
