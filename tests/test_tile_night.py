"""benchmarks/national_day/tile_night.py: a night tiled K times ingests as K times the night, every
encounter key once, copy k's visit times k days earlier."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import sys
from pathlib import Path

import pyarrow.compute as pc
import pytest

from transforms.core.parquet_io import read_staged_table
from transforms.core.warehouse import Warehouse
from transforms.ingest.stage import ingest_extracts
from transforms.synth.generate import generate_night

ROOT = Path(__file__).resolve().parents[1]
NIGHT = dt.date(2026, 11, 26)
COPIES = 3


def _tiler():
    spec = importlib.util.spec_from_file_location(
        "tile_night", ROOT / "benchmarks/national_day/tile_night.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> dict[str, Path]:
    """A generated 40-encounter night and its 3 copies, each ingested into its own warehouse."""
    base = tmp_path_factory.mktemp("tile")
    generate_night(base / "source", NIGHT, facilities=3, encounters=40, citizens=600, seed=11)
    _tiler().tile_night(base / "source", base / "tiled", NIGHT, COPIES, workers=2)
    for name in ("source", "tiled"):
        ingest_extracts(base / name / "extracts" / NIGHT.isoformat(), NIGHT, Warehouse(base / name / "wh"))
    return {"source": base / "source", "tiled": base / "tiled"}


def _ingest_json(night: Path) -> dict:
    return json.loads((night / "wh" / "runs" / NIGHT.isoformat() / "ingest.json").read_text())


def _encounters(night: Path):
    return read_staged_table(
        Warehouse(night / "wh"), "encounters", NIGHT, ["facility_code", "encounter_id", "admitted_at"]
    )


def test_every_count_of_the_ingest_is_copies_times_the_source(ingested):
    source, tiled = _ingest_json(ingested["source"]), _ingest_json(ingested["tiled"])
    assert source["encounter_versions"] == 40
    assert tiled["encounter_versions"] == COPIES * 40
    assert tiled["datasets"] == {k: COPIES * v for k, v in source["datasets"].items()}
    assert tiled["totals"] == {k: COPIES * v for k, v in source["totals"].items()}
    for code, facility in source["facilities"].items():
        quarantined = tiled["facilities"][code]["quarantined_at_ingest"]
        assert quarantined == {k: COPIES * v for k, v in facility["quarantined_at_ingest"].items()}
    for kind, counts in source["fhir"].items():
        assert tiled["fhir"][kind]["loaded"] == COPIES * counts["loaded"]


def test_keys_are_unique_and_copy_k_is_the_source_k_days_earlier(ingested):
    source, tiled = _encounters(ingested["source"]), _encounters(ingested["tiled"])
    keys = list(zip(tiled["facility_code"].to_pylist(), tiled["encounter_id"].to_pylist(), strict=True))
    assert len(set(keys)) == len(keys) == COPIES * source.num_rows
    admitted = dict(zip(keys, tiled["admitted_at"].to_pylist(), strict=True))
    for facility, encounter, at in zip(
        source["facility_code"].to_pylist(),
        source["encounter_id"].to_pylist(),
        source["admitted_at"].to_pylist(),
        strict=True,
    ):
        assert admitted[(facility, encounter)] == at  # copy 0 is the source as sent
        for k in range(1, COPIES):
            earlier = at - dt.timedelta(days=k) if at is not None else None
            assert admitted[(facility, f"{encounter}K{k}")] == earlier
    assert pc.min(tiled["admitted_at"]).as_py() < pc.min(source["admitted_at"]).as_py()


def test_retag_inner_moves_visit_times_not_the_birth_date():
    tiler = _tiler()
    inner = (
        b"<TONG_HOP><MA_LK>LK1</MA_LK><NGAY_SINH>201001010000</NGAY_SINH>"
        b"<GT_THE_TU>20260101;20260301</GT_THE_TU><NGAY_VAO>202603010830</NGAY_VAO>"
        b"<NGAY_RA>202603021000</NGAY_RA><MA_BENH_CHINH>J18</MA_BENH_CHINH></TONG_HOP>"
    )
    assert tiler.retag_inner(inner, b"K2", 2) == (
        b"<TONG_HOP><MA_LK>LK1K2</MA_LK><NGAY_SINH>201001010000</NGAY_SINH>"
        b"<GT_THE_TU>20251230;20260227</GT_THE_TU><NGAY_VAO>202602270830</NGAY_VAO>"
        b"<NGAY_RA>202602281000</NGAY_RA><MA_BENH_CHINH>J18</MA_BENH_CHINH></TONG_HOP>"
    )
    assert tiler.retag_inner(b"<MA_LK></MA_LK>", b"K2", 2) == b"<MA_LK></MA_LK>"  # no key stays none


def test_a_tiled_night_is_never_generated_over(tmp_path, monkeypatch):
    # asked for a size without --tile-from, the benchmarks find a tiled night there: they stop and
    # say how to use it, rather than generate a million encounters into its folder for hours
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks/national_day"))
    spec = importlib.util.spec_from_file_location(
        "generate_size", ROOT / "benchmarks/national_day/generate_size.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    night = module.size_dir(tmp_path, 1_000_000)
    night.mkdir(parents=True)
    record = {"arguments": module.tiling_arguments(1_000_000, 100_000)}
    (night / "generation.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="--tile-from 100000"):
        module.ensure_size(tmp_path, 1_000_000)
    assert json.loads((night / "generation.json").read_text()) == record  # untouched
    assert module.ensure_size(tmp_path, 1_000_000, tile_from=100_000) is None  # used as it is
