"""The standardized registry kept between nights (transforms/reconcile/registry_cache.py): a night
served from the cache writes what a night that standardized the registry itself writes; a registry
whose content changed, or changed code, is never served an old entry; the entries are private.
The registry and encounters are test_reconcile's (1,000 fillers + the tests' people)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_reconcile import ENCOUNTERS, PEOPLE, citizen, encounter, filler_citizens, registry_frame

import transforms.reconcile.registry_cache as registry_cache
import transforms.reconcile.stage as reconcile_stage
from transforms.core.context import NightContext
from transforms.core.warehouse import Warehouse
from transforms.reconcile.model import linkage_settings
from transforms.reconcile.stage import ReconcileSettings, reconcile_night

NIGHT = dt.date(2026, 11, 26)
NEWCOMER = encounter("registered_later", "Lò Văn Pá", "001099012345", "1999-05-06")


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> ReconcileSettings:
    model = tmp_path_factory.mktemp("model") / "priors.json"
    model.write_text(json.dumps(linkage_settings()))
    return ReconcileSettings(model_path=model, match_weight=12.0, review_weight=4.0, margin=6.0)


def statuses_spy(seen: list[str]):
    real = registry_cache.standardize_registry

    def spy(con, cache):
        status, write = real(con, cache)
        seen.append(status)
        return status, write

    return spy


@pytest.fixture
def statuses(monkeypatch) -> list[str]:
    """What each reconcile run did with the cache: "hit", "miss" (built and written) or "off"."""
    seen: list[str] = []
    monkeypatch.setattr(reconcile_stage, "standardize_registry", statuses_spy(seen))
    return seen


def _night(tmp_path: Path, name: str, registry: Path) -> NightContext:
    warehouse = Warehouse(tmp_path / name)
    staged = warehouse.staging_night("encounters", NIGHT) / "facility_code=79001" / "part-0.parquet"
    staged.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([*ENCOUNTERS, NEWCOMER]).assign(night=NIGHT).to_parquet(staged)
    return NightContext(NIGHT, tmp_path / "extracts", registry, warehouse, "sqlite://")


def _outputs(ctx: NightContext) -> dict:
    """The night's links, review queue (both forms) and manifest (without its timings)."""
    wh = ctx.warehouse
    manifest = json.loads(wh.manifest(NIGHT, "reconcile").read_text())
    manifest.pop("seconds")
    return {
        "links": pd.read_parquet(wh.staging_night("patient_links", NIGHT) / "part-0.parquet"),
        "review": pd.read_parquet(wh.review(NIGHT) / "review_queue.parquet"),
        "review_csv": (wh.review(NIGHT) / "review_queue.csv").read_text(),
        "manifest": manifest,
    }


def _assert_same(a: dict, b: dict) -> None:
    pd.testing.assert_frame_equal(a["links"], b["links"])
    pd.testing.assert_frame_equal(a["review"], b["review"])
    assert a["review_csv"] == b["review_csv"]
    assert a["manifest"] == b["manifest"]


def _entries(ctx: NightContext) -> list[Path]:
    root = ctx.warehouse.cache("reconcile_registry")
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def test_a_night_served_from_the_cache_writes_what_a_cold_night_writes(
    tmp_path, settings, statuses, monkeypatch
):
    registry = tmp_path / "registry.parquet"
    registry_frame().to_parquet(registry)
    ctx = _night(tmp_path, "wh", registry)

    reconcile_night(ctx, settings)  # the registry's first night: built, not cached
    cold = _outputs(ctx)
    assert _entries(ctx) == []
    reconcile_night(ctx, settings)  # seen before: built and cached
    _assert_same(cold, _outputs(ctx))
    reconcile_night(ctx, settings)  # read from the cache

    assert statuses == ["first", "miss", "hit"]
    _assert_same(cold, _outputs(ctx))
    assert len(_entries(ctx)) == 1
    # and what the stage writes with no cache at all (the tables built in memory, as before)
    uncached = _night(tmp_path, "wh_uncached", registry)
    real_tables = reconcile_stage.reconcile_tables
    monkeypatch.setattr(
        reconcile_stage,
        "reconcile_tables",
        lambda con, settings, registry_cache=None: real_tables(con, settings),
    )
    reconcile_night(uncached, settings)
    assert statuses[-1] == "off"
    _assert_same(cold, _outputs(uncached))


def test_a_registry_whose_content_changed_is_never_served_the_old_entry(tmp_path, settings, statuses):
    """The same file name, rewritten with one more citizen: the newcomer's record, no_match
    against the old registry, matches against the new one, as on a warehouse that never saw the old."""
    registry = tmp_path / "registry.parquet"
    registry_frame().to_parquet(registry)
    ctx = _night(tmp_path, "wh", registry)
    reconcile_night(ctx, settings)
    reconcile_night(ctx, settings)  # the old registry is cached
    assert len(_entries(ctx)) == 1
    before = _outputs(ctx)["links"].set_index("encounter_id")
    assert before.loc["registered_later", "outcome"] == "no_match"

    stat = registry.stat()
    new_registry = pd.DataFrame(
        [*filler_citizens(), *PEOPLE, citizen("001099012345", "Lò Văn Pá", "19990506", "1")]
    )
    new_registry.to_parquet(registry)
    os.utime(registry, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime
    reconcile_night(ctx, settings)

    after = _outputs(ctx)
    assert after["links"].set_index("encounter_id").loc["registered_later", "outcome"] == "match"
    assert after["manifest"]["registry_rows"] == len(new_registry)
    fresh = tmp_path / "fresh_registry.parquet"
    shutil.copy(registry, fresh)
    reference = _night(tmp_path, "wh_fresh", fresh)
    reconcile_night(reference, settings)
    _assert_same(after, _outputs(reference))
    assert statuses == ["first", "miss", "first", "first"]
    assert len(_entries(ctx)) == 1  # the old registry's entry, never read for the new one


def test_changed_standardization_code_gives_another_key(tmp_path, monkeypatch):
    registry = tmp_path / "registry.parquet"
    registry_frame().to_parquet(registry)
    key = registry_cache.registry_cache_key(registry)
    assert registry_cache.registry_cache_key(registry) == key

    real_read_sql = registry_cache.read_sql
    monkeypatch.setattr(registry_cache, "read_sql", lambda name: real_read_sql(name) + "\n-- edited")
    registry_cache.registry_code_version.cache_clear()
    try:
        assert registry_cache.registry_cache_key(registry) != key
    finally:
        monkeypatch.undo()
        registry_cache.registry_code_version.cache_clear()
    assert registry_cache.registry_cache_key(registry) == key


def test_a_damaged_entry_is_rebuilt_from_the_registry(tmp_path, settings, statuses):
    registry = tmp_path / "registry.parquet"
    registry_frame().to_parquet(registry)
    ctx = _night(tmp_path, "wh", registry)
    reconcile_night(ctx, settings)
    reconcile_night(ctx, settings)
    cold = _outputs(ctx)
    (entry,) = _entries(ctx)
    (entry / "registry_identities.parquet").write_bytes(b"not parquet")

    reconcile_night(ctx, settings)
    assert statuses == ["first", "miss", "miss"]  # built again, and the entry replaced
    _assert_same(cold, _outputs(ctx))
    reconcile_night(ctx, settings)
    assert statuses[-1] == "hit"
    _assert_same(cold, _outputs(ctx))


def test_entries_are_private_and_only_the_newest_are_kept(tmp_path, settings):
    ctx = None
    old_umask = os.umask(0o022)
    try:
        for n in range(3):
            registry = tmp_path / "registry.parquet"
            registry_frame().iloc[n:].to_parquet(registry)  # three different registries
            ctx = _night(tmp_path, "wh", registry)
            reconcile_night(ctx, settings)
            reconcile_night(ctx, settings)  # the second sight writes the entry
    finally:
        os.umask(old_umask)
    entries = _entries(ctx)
    assert len(entries) == registry_cache.KEEP_ENTRIES == 2
    root = ctx.warehouse.cache("reconcile_registry")
    assert root.stat().st_mode & 0o777 == 0o700
    for entry in entries:
        assert entry.stat().st_mode & 0o777 == 0o700
        assert sorted(p.name for p in entry.iterdir()) == [
            "name_frequencies.parquet",
            "registry_identities.parquet",
        ]
        assert {p.stat().st_mode & 0o777 for p in entry.iterdir()} == {0o600}
    assert (root / registry_cache.SEEN_FILE).stat().st_mode & 0o777 == 0o600
    assert not [p for p in root.iterdir() if p.name.startswith(registry_cache.TEMP_PREFIX)]


def test_a_cache_that_cannot_be_written_costs_the_night_nothing_but_the_cache(
    tmp_path, settings, statuses, monkeypatch, caplog
):
    """The entry is written beside the night's steps; when that fails (a full disk) the night's
    outputs are still whole and right, a warning says so, and the next night builds it again."""
    registry = tmp_path / "registry.parquet"
    registry_frame().to_parquet(registry)
    reference = _night(tmp_path, "wh_reference", registry)
    reconcile_night(reference, settings)

    def full_disk(con, cache):
        raise OSError(28, "No space left on device")

    ctx = _night(tmp_path, "wh", registry)
    reconcile_night(ctx, settings)  # first sight
    monkeypatch.setattr(registry_cache, "_write_entry", full_disk)
    reconcile_night(ctx, settings)
    assert "not cached" in caplog.text and "No space left" in caplog.text
    _assert_same(_outputs(reference), _outputs(ctx))
    assert _entries(ctx) == []

    monkeypatch.undo()
    monkeypatch.setattr(reconcile_stage, "standardize_registry", statuses_spy(statuses))
    reconcile_night(ctx, settings)
    assert statuses[-1] == "miss" and len(_entries(ctx)) == 1
    _assert_same(_outputs(reference), _outputs(ctx))
