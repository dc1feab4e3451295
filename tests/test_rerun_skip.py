"""A re-run of an unchanged night skips every stage and changes nothing; a changed input, registry,
serving database or a later night's load makes exactly the stages that depend on it run again."""

from __future__ import annotations

import datetime as dt
import gc
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from reliability.helpers import parquet_contents, serving_checksums

from transforms.core.context import make_context
from transforms.orchestration import fingerprint
from transforms.orchestration.pipeline import STAGES, run_night

ROOT = Path(__file__).parents[1]
NIGHT = dt.date(2026, 11, 26)
LATER = NIGHT + dt.timedelta(days=1)
EXPENSIVE = ["ingest", "quality", "reconcile", "load", "snapshot"]


@pytest.fixture(scope="module")
def small_night(tmp_path_factory) -> Path:
    """Two facilities, 150 encounters: a night generated once for this module (never written to)."""
    import dataclasses

    from transforms.synth.generate import generate_night
    from transforms.synth.rates import SETTINGS

    out = tmp_path_factory.mktemp("rerun_night")
    # no late re-sends on the following nights: the tests below make their own later night
    settings = dataclasses.replace(SETTINGS, late_resend_rate=0.0)
    generate_night(out, NIGHT, facilities=2, encounters=150, citizens=2000, seed=11, settings=settings)
    return out


@pytest.fixture(autouse=True)
def _collect_garbage_before_forking():
    """Ingest forks its workers; a worker that garbage-collects objects inherited from the earlier
    tests of this process (lxml, GX) crashed with SIGSEGV. Production runs one night per process."""
    gc.collect()


@pytest.fixture
def source(small_night, tmp_path) -> Path:
    """A private copy of the night's extracts and registry, free to change."""
    out = tmp_path / "source"
    shutil.copytree(small_night / "extracts", out / "extracts")
    shutil.copytree(small_night / "registry", out / "registry")
    return out


def _context(source: Path, warehouse: Path, serving_url: str | None = None, night: dt.date = NIGHT):
    return make_context(night, source / "extracts", source / "registry", warehouse, serving_url)


def _ran(summary) -> list[str]:
    return [s.stage for s in summary.stages if not s.skipped]


def _mtimes(warehouse: Path) -> dict[str, int]:
    """Every file of the warehouse -> mtime_ns (the night's lock file excepted: locking opens it;
    and the caches, which any run may fill in: the extracts' digest memo remembers a file only once
    it has been still for 2 s, so a re-run right after a run of fresh files adds them)."""
    return {
        p.relative_to(warehouse).as_posix(): p.stat().st_mtime_ns
        for p in warehouse.rglob("*")
        if p.is_file()
        and p.name != ".lock"
        and not p.relative_to(warehouse).as_posix().startswith("scratch/cache/")
    }


def test_an_unchanged_rerun_skips_every_stage_and_rewrites_nothing(source, tmp_path, pseudonym_key):
    ctx = _context(source, tmp_path / "warehouse")
    first = run_night(ctx)
    assert _ran(first) == list(STAGES)
    before = (
        _mtimes(ctx.warehouse.root),
        parquet_contents(ctx.warehouse.root),
        serving_checksums(ctx.serving_url),
    )

    again = run_night(ctx)

    assert _ran(again) == []
    assert [s.manifest for s in again.stages] == [s.manifest for s in first.stages]
    assert again.ledger == first.ledger
    after = (
        _mtimes(ctx.warehouse.root),
        parquet_contents(ctx.warehouse.root),
        serving_checksums(ctx.serving_url),
    )
    assert after == before


def test_force_runs_every_stage_again_with_the_same_result(source, tmp_path, pseudonym_key):
    ctx = _context(source, tmp_path / "warehouse")
    first = run_night(ctx)
    serving = serving_checksums(ctx.serving_url)

    forced = run_night(ctx, force=True)

    assert _ran(forced) == list(STAGES)
    assert forced.ledger == first.ledger
    assert serving_checksums(ctx.serving_url) == serving
    assert _ran(run_night(ctx)) == []  # the forced run left records of its own


def test_a_resent_envelope_reruns_ingest_and_everything_downstream(source, tmp_path, pseudonym_key):
    ctx = _context(source, tmp_path / "warehouse")
    first = run_night(ctx)
    envelope = sorted((source / "extracts" / NIGHT.isoformat()).rglob("*.xml"))[0]
    shutil.copy(envelope, envelope.with_name(envelope.stem + "_resend.xml"))

    again = run_night(ctx)

    assert _ran(again) == list(STAGES)
    assert fingerprint.read_record(ctx, "ingest")["ran_because"] == "inputs or code changed"
    # the re-sent envelope's encounters arrived twice: every receipt counts
    assert again.ledger["totals"]["received"] > first.ledger["totals"]["received"]
    assert again.ledger["totals"]["files"] == first.ledger["totals"]["files"] + 1


def test_an_edited_extract_of_the_same_size_and_mtime_reruns_ingest(source, tmp_path, pseudonym_key):
    ctx = _context(source, tmp_path / "warehouse")
    run_night(ctx)
    envelope = sorted((source / "extracts" / NIGHT.isoformat()).rglob("*.xml"))[0]
    stat = envelope.stat()
    data = bytearray(envelope.read_bytes())
    data[-1:] = b" " if data[-1:] != b" " else b"\n"  # one byte of trailing whitespace, same size
    envelope.write_bytes(bytes(data))
    os.utime(envelope, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    assert fingerprint.decide(ctx, "ingest").reason == "inputs or code changed"


def test_a_new_registry_relinks_and_reloads_but_does_not_reingest(source, tmp_path, pseudonym_key):
    ctx = _context(source, tmp_path / "warehouse")
    run_night(ctx)
    registry_file = sorted((source / "registry").rglob("*.parquet"))[0]
    table = pq.read_table(registry_file)
    pq.write_table(table.slice(1), registry_file)  # one citizen fewer

    again = run_night(ctx)

    ran = _ran(again)
    assert "ingest" not in ran and "quality" not in ran
    assert {"reconcile", "load", "snapshot"} <= set(ran)


def _wipe(url: str) -> None:
    if url.startswith("sqlite"):
        from transforms.serving.db import serving_engine

        serving_engine(url).dispose()  # the process's pooled connection would keep the old file
        Path(sa.make_url(url).database).unlink()
        return
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("drop schema public cascade")
        conn.exec_driver_sql("create schema public")
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def serving_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'serving' / 'serving.db'}"
    return request.getfixturevalue("pg_url")


def test_the_serving_database_decides_whether_the_load_is_skipped(
    source, tmp_path, serving_url, pseudonym_key
):
    ctx = _context(source, tmp_path / "warehouse", serving_url)
    run_night(ctx)
    loaded = serving_checksums(serving_url)
    assert _ran(run_night(ctx)) == []

    # a wiped (or restored, or replaced) database: the load runs again, nothing upstream does
    _wipe(serving_url)
    after_wipe = run_night(ctx)
    assert _ran(after_wipe) == ["load", "ledger", "report", "snapshot"]
    assert fingerprint.read_record(ctx, "load")["ran_because"] == "serving database does not hold this load"
    assert serving_checksums(serving_url) == loaded

    # a later night loaded since: it changed which versions are current, so this night loads again
    later = source / "extracts" / LATER.isoformat()
    shutil.copytree(source / "extracts" / NIGHT.isoformat(), later)
    later_ctx = _context(source, tmp_path / "warehouse", serving_url, night=LATER)
    assert _ran(run_night(later_ctx)) == list(STAGES)
    rerun = run_night(ctx)
    assert "load" in _ran(rerun)
    assert not {"ingest", "quality", "reconcile"} & set(_ran(rerun))
    # and the later night, whose load is no longer the last one, loads again too
    assert "load" in _ran(run_night(later_ctx))
    assert _ran(run_night(later_ctx)) == []


def test_a_stage_killed_or_failed_before_its_record_runs_again(source, tmp_path, pseudonym_key):
    ctx = _context(source, tmp_path / "warehouse")
    run_night(ctx)
    fingerprint.forget(ctx, "reconcile")  # what a crash after its outputs, before its record leaves

    again = run_night(ctx)

    # reconcile ran again and rewrote patient_links: the stages reading them follow
    assert _ran(again) == ["reconcile", "load", "ledger", "report", "snapshot"]


def test_a_code_edit_reruns_its_stage_and_the_stages_reading_it_and_pdf_code_reruns_none(
    source, tmp_path, pseudonym_key, monkeypatch
):
    """Per-stage code keys (issue #17): the fingerprints read a copy of the code, edited here."""
    from transforms.orchestration.stages import NIGHT as DECLARED

    code = tmp_path / "code"
    for folder in ("transforms", "expectations", "sql"):
        shutil.copytree(ROOT / folder, code / folder, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(fingerprint, "PROJECT_ROOT", code)

    def edit(path: str) -> None:
        with (code / path).open("a") as f:
            f.write("\n-- an edit\n" if path.endswith(".sql") else "\n# an edit\n")
        fingerprint.code_digest.cache_clear()

    fingerprint.code_digest.cache_clear()
    try:
        ctx = _context(source, tmp_path / "warehouse")
        assert _ran(run_night(ctx)) == list(STAGES)
        for (
            stage
        ) in DECLARED:  # the key's own inputs: the declaration's, and the settings that change outputs
            expected = set(stage.inputs) | set(ctx.settings.affecting(stage.name))
            assert set(fingerprint.read_record(ctx, stage.name)["key_parts"]["inputs"]) == expected

        for path in (
            "transforms/serving/pdf.py",
            "transforms/orchestration/cli.py",
            "transforms/synth/generate.py",
        ):
            edit(path)
        assert _ran(run_night(ctx)) == []

        edit("sql/reconcile/patient_links.sql")
        assert _ran(run_night(ctx)) == ["reconcile", "load", "ledger", "report", "snapshot"]
        assert fingerprint.read_record(ctx, "reconcile")["ran_because"] == "inputs or code changed"
        assert fingerprint.read_record(ctx, "load")["ran_because"] == "inputs or code changed"
    finally:
        fingerprint.code_digest.cache_clear()


def test_a_first_ingest_fingerprints_the_extracts_from_what_its_workers_read(source, tmp_path, monkeypatch):
    # issue #19: the extracts are read once. Without a record, ingest runs whatever the key, so the
    # key waits for it: the workers hand each file's stat and SHA-256 to the digest memo, and the
    # fingerprint taken after the stage reads no extract (files are "fresh" here: the memo's
    # 2-second rule would otherwise leave them to be read again)
    from transforms.core import digest

    monkeypatch.setattr(digest.DigestMemo, "RACY_NS", 0)
    ctx = _context(source, tmp_path / "warehouse")
    night_dir = str(ctx.night_dir.resolve())
    hashed: list[str] = []
    real_file_digest = digest.hashlib.file_digest

    def counting(f, name):
        hashed.append(os.path.realpath(f.name))
        return real_file_digest(f, name)

    monkeypatch.setattr(digest.hashlib, "file_digest", counting)
    assert fingerprint.decide(ctx, "ingest").key is None  # nothing hashed to decide
    run_night(ctx, stages=["ingest"])

    extracts = [p for p in hashed if p.startswith(night_dir) and p.endswith(".xml")]
    assert extracts == []
    record = fingerprint.read_record(ctx, "ingest")
    assert record["ran_because"] == "no record of a finished run"
    # the same digest as reading every file: a later run decides on it as before
    monkeypatch.setattr(digest.hashlib, "file_digest", real_file_digest)
    assert record["key_parts"]["inputs"]["extracts"] == digest.content_digest(ctx.night_dir)
    assert fingerprint.decide(ctx, "ingest").skip


def test_an_extract_changed_while_ingest_ran_makes_the_next_run_ingest_again(source, tmp_path, monkeypatch):
    # the file ingest read is not the one the folder holds after it: the key it records matches
    # nothing, so the next run does not skip an ingest of content it never read
    from transforms.orchestration import pipeline

    ctx = _context(source, tmp_path / "warehouse")
    envelope = sorted((source / "extracts" / NIGHT.isoformat()).rglob("*.xml"))[0]
    real_stage_function = pipeline.stage_function

    def edited_after(name):
        run = real_stage_function(name)

        def stage(ctx):
            manifest = run(ctx)
            envelope.write_bytes(envelope.read_bytes() + b"\n")
            return manifest

        return stage

    monkeypatch.setattr(pipeline, "stage_function", edited_after)
    run_night(ctx, stages=["ingest"])
    record = fingerprint.read_record(ctx, "ingest")
    assert record["key_parts"]["inputs"]["extracts"].startswith("changed-during-run:")

    monkeypatch.setattr(pipeline, "stage_function", real_stage_function)
    decision = fingerprint.decide(ctx, "ingest")
    assert (decision.skip, decision.reason) == (False, "inputs or code changed")
    run_night(ctx, stages=["ingest"])
    assert fingerprint.decide(ctx, "ingest").skip  # read again and recorded: skipped from now on


def test_the_dag_finalize_knows_the_record_of_its_plan_by_its_decision_time():
    from transforms.orchestration.pipeline import _records_plan

    deferred = {"key": None, "since_ns": 1796709926557437250}
    assert _records_plan({"key": "k", "since_ns": 1796709926557437250}, deferred)
    assert not _records_plan({"key": "k", "since_ns": 1796709926557437251}, deferred)
    assert not _records_plan({"key": "k"}, {"key": None, "since_ns": None})
    assert _records_plan({"key": "k"}, {"key": "k"})
