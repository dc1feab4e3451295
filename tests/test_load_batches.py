"""The load stages a night in encounter batches: the batch size changes what is held in memory at
once, never what is published. SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import shutil

import pandas as pd
import pytest
from serving_fixtures import (
    NIGHT1,
    NIGHT2,
    context,
    discharge_paper,
    drug,
    inpatient,
    outpatient,
    summary,
    write_links,
    write_staged,
)
from test_load_serving import AN, night_one

from transforms.core.context import make_context
from transforms.load import files as load_files
from transforms.load import stage as load
from transforms.serving.schema import SERVING_TABLES

TINY = 7  # encounters per batch: the golden night's 3 facilities and ~400 encounters make ~60 batches


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request):
    return request.param


def serving_url(backend: str, tmp_path, name: str, request) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / name / 'serving.db'}"
    url = request.getfixturevalue("pg_url")
    wipe(url)
    return url


def wipe(url: str) -> None:
    """Drop every serving table (the PostgreSQL test database is shared by both loads of a test)."""
    with load.serving_engine(url).begin() as conn:
        for table in SERVING_TABLES:
            conn.exec_driver_sql(f"drop table if exists {table.name}")


def checksums(url: str) -> dict[str, tuple[int, str]]:
    """(row count, sha256 of the rows in primary-key order, values as text) of every serving table."""
    out = {}
    with load.serving_engine(url).connect() as conn:
        for table in SERVING_TABLES:
            rows = conn.exec_driver_sql(
                f"select * from {table.name} order by {', '.join(table.primary_key)}"
            ).fetchall()
            out[table.name] = (
                len(rows),
                hashlib.sha256(repr([tuple(map(str, r)) for r in rows]).encode()).hexdigest(),
            )
    return out


def warehouse_files(ctx) -> dict[str, pd.DataFrame]:
    night = ctx.night
    return {
        "outcomes": pd.read_parquet(ctx.warehouse.outcomes(night)),
        "retried": pd.read_parquet(ctx.warehouse.retried(night)),
        "pending": pd.read_parquet(ctx.warehouse.pending),
    }


def assert_same_files(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


@pytest.fixture(scope="module")
def golden_upstream(golden_run):
    """The golden night (3 facilities, ~400 encounters) through ingest, quality and reconcile: the
    session's golden run as it was after reconcile (conftest.GoldenRun), read only (load_copy copies)."""
    return golden_run.context(golden_run.after["reconcile"])


def load_copy(upstream, tmp_path, name: str, url: str, batch: int, monkeypatch):
    """Load a fresh copy of the upstream warehouse with `batch` encounters per batch."""
    warehouse = tmp_path / name
    shutil.copytree(upstream.warehouse.root, warehouse)
    settings = upstream.settings.replace("load", batch_encounters=batch)
    ctx = make_context(
        upstream.night, upstream.extracts_dir, upstream.registry_path, warehouse, url, settings
    )
    load.load_night(ctx)
    return ctx


@pytest.mark.slow
def test_the_golden_night_in_tiny_batches_publishes_exactly_what_one_batch_does(
    golden_upstream, tmp_path, backend, request, monkeypatch
):
    one_url = serving_url(backend, tmp_path, "one", request)
    one = load_copy(golden_upstream, tmp_path, "one", one_url, 1_000_000, monkeypatch)
    published_once, files_once = checksums(one_url), warehouse_files(one)
    assert published_once["encounters"][0] > 300 and published_once["medications"][0] > 0

    tiny_url = serving_url(backend, tmp_path, "tiny", request)
    tiny = load_copy(golden_upstream, tmp_path, "tiny", tiny_url, TINY, monkeypatch)
    assert checksums(tiny_url) == published_once
    assert_same_files(warehouse_files(tiny), files_once)


def test_each_batch_reads_and_stages_only_its_own_encounters(golden_upstream, tmp_path, monkeypatch):
    """What the load holds at once is one batch: every staged read asks for at most TINY
    encounters and gets only their rows, every staged batch holds at most TINY encounters."""
    reads, staged = [], []
    read = load.read_staged_batch

    def spy_read(warehouse, dataset, night, encounters):
        frame = read(warehouse, dataset, night, encounters)
        asked = {(f, e) for f, ids in encounters.items() for e in ids.to_pylist()}
        got = set() if frame is None else set(zip(frame["facility_code"], frame["encounter_id"], strict=True))
        reads.append((dataset, len(asked), got <= asked, 0 if frame is None else len(frame)))
        return frame

    stage = load.NightWriter.stage_versions

    def spy_stage(self, version_rows, newest_published):
        encounters = version_rows["encounters"]
        staged.append(
            (encounters[["facility_code", "encounter_id"]].drop_duplicates().shape[0], len(encounters))
        )
        return stage(self, version_rows, newest_published)

    monkeypatch.setattr(load, "read_staged_batch", spy_read)
    monkeypatch.setattr(load.NightWriter, "stage_versions", spy_stage)
    ctx = load_copy(golden_upstream, tmp_path, "spy", f"sqlite:///{tmp_path / 'spy.db'}", TINY, monkeypatch)

    outcomes = pd.read_parquet(ctx.warehouse.outcomes(ctx.night))
    encounters = outcomes[["facility_code", "encounter_id"]].drop_duplicates()
    batches = -(-len(encounters) // TINY)
    assert len(staged) == batches  # one staging per batch, the night split as asked
    assert max(n for n, _ in staged) <= TINY
    assert sum(rows for _, rows in staged) == int(outcomes["is_published"].sum())
    assert len(reads) == batches * len(load.STAGED_DATASETS)
    assert all(asked <= TINY and only_asked for _, asked, only_asked, _ in reads)
    # every staged line item was read once, in the batch of its encounter
    drugs = sum(rows for dataset, _, _, rows in reads if dataset == "drugs")
    assert drugs == len(load_files.read_staged_night(ctx.warehouse, "drugs", ctx.night))


def two_nights(tmp_path, url: str, batch: int, monkeypatch) -> tuple[dict, dict, dict]:
    """Night 1 of test_load_serving, then night 2: LK2 re-sent whole with its XML8 (its pending
    version 1 is superseded), LK1 re-sent (version 1 becomes history), LK3's patient linked now
    (a retry of night 1's pending version) and a new outpatient visit of another facility."""
    monkeypatch.setenv("HEALTHBOOK_LOAD_BATCH_ENCOUNTERS", str(batch))  # the contexts resolve it
    ctx1 = context(tmp_path, NIGHT1, url)
    night_one(ctx1)
    load.load_night(ctx1)
    ctx2 = context(tmp_path, NIGHT2, url)
    wh = ctx2.warehouse
    write_staged(
        wh,
        "encounters",
        NIGHT2,
        [
            inpatient("LK2", version=2),
            outpatient("LK1", version=2, main_icd10="I11"),
            outpatient("LK9", facility_code="01001"),
        ],
    )
    write_staged(wh, "drugs", NIGHT2, [drug("LK1", version=2), drug("LK9", facility_code="01001")])
    write_staged(wh, "discharge_papers", NIGHT2, [discharge_paper("LK2", version=2)])
    write_staged(wh, "summaries", NIGHT2, [summary("LK2", version=2)])
    write_links(
        wh,
        NIGHT2,
        [
            {"encounter_id": "LK2", "version": 2, "outcome": "match", "citizen_id": AN},
            {"encounter_id": "LK1", "version": 2, "outcome": "match", "citizen_id": AN},
            {"encounter_id": "LK3", "version": 1, "outcome": "match", "citizen_id": AN},
            {"facility_code": "01001", "encounter_id": "LK9", "outcome": "match", "citizen_id": AN},
        ],
    )
    load.load_night(ctx2)
    return checksums(url), warehouse_files(ctx1), warehouse_files(ctx2)


def test_retries_and_resends_in_batches_of_one_encounter_publish_what_one_batch_does(
    tmp_path, backend, request, monkeypatch
):
    one = two_nights(tmp_path / "one", serving_url(backend, tmp_path, "one", request), 1_000_000, monkeypatch)
    published, night1, night2 = one
    assert published["encounters"][0] == 5  # LK1 v1 (history) and v2, LK2 v2, LK3 v1, LK9 v1
    retried = {(r.encounter_id, r.version): r.outcome for r in night2["retried"].itertuples()}
    assert retried == {
        ("LK2", 1): "superseded",
        ("LK3", 1): "loaded",
        ("LK4", 1): "quarantined",
        ("LK5", 1): "quarantined",
    }

    single = two_nights(
        tmp_path / "single", serving_url(backend, tmp_path, "single", request), 1, monkeypatch
    )
    assert single[0] == published
    assert_same_files(single[1], night1)
    assert_same_files(single[2], night2)


@pytest.mark.parametrize(
    "asked, expected",
    [
        # each ID asked under one facility: the other facility's rows of that ID are not the encounter
        ({"11111": ["A"], "22222": ["B"]}, {("11111", "A"), ("22222", "B")}),
        # the same ID asked under both facilities: both encounters, still not the unasked pairs
        ({"11111": ["A"], "22222": ["A", "B"]}, {("11111", "A"), ("22222", "A"), ("22222", "B")}),
        ({"22222": ["C"]}, set()),
    ],
)
def test_a_staged_read_returns_exactly_the_encounters_asked_for_when_facilities_share_an_id(
    tmp_path, asked, expected
):
    """An encounter is (facility, MA_LK): two hospitals may both number a visit "A". The load reads
    a batch's facilities in one scan filtered on the IDs, so the pairs must still be exact."""
    import pyarrow as pa

    ctx = context(tmp_path, NIGHT1)
    write_staged(
        ctx.warehouse,
        "drugs",
        NIGHT1,
        [drug(e, facility_code=f) for f in ("11111", "22222") for e in ("A", "B")]
        + [drug("C", facility_code="11111")],
    )
    encounters = {f: pa.array(ids) for f, ids in asked.items()}
    frame = load_files.read_staged_batch(ctx.warehouse, "drugs", NIGHT1, encounters)
    got = set() if frame is None else set(zip(frame["facility_code"], frame["encounter_id"], strict=True))
    assert got == expected
    if frame is not None:
        assert len(frame) == len(expected)  # one drug line each, none twice
