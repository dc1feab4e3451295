"""One settings object (issue #17 item 5): resolved once (Airflow Variable, else environment, else
default), carried by the night's context through XCom as plain JSON, recorded in every stage's
manifest, and never holding a secret."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from transforms.core.context import NightContext, make_context
from transforms.core.settings import Settings
from transforms.core.warehouse import Warehouse

NIGHT = dt.date(2026, 11, 26)
README = Path(__file__).parents[1] / "README.md"


def test_a_variable_wins_over_the_environment_which_wins_over_the_default():
    variables = {"healthbook_grace_nights": "5", "healthbook_reconcile_threads": ""}
    environ = {
        "HEALTHBOOK_GRACE_NIGHTS": "1",  # the Variable wins
        "HEALTHBOOK_RECONCILE_THREADS": "4",  # an empty Variable is no Variable: the environment
        "HEALTHBOOK_SNAPSHOT_K_ANONYMITY": " 10 ",
    }
    s = Settings.resolve(variables.get, environ)
    assert s.load.grace_nights == 5
    assert s.reconcile.threads == 4
    assert s.snapshot.k_anonymity == 10
    assert s.load.batch_encounters == 20_000  # neither: the default
    assert Settings.resolve(None, {}) == Settings()  # nothing set: the defaults


def test_the_reference_folder_is_read_from_the_environment_only():
    # `healthbook book` reads it without Airflow, so a Variable would split the two readers
    s = Settings.resolve(
        {"healthbook_reference_dir": "/from/variable"}.get, {"HEALTHBOOK_REFERENCE_DIR": "/env"}
    )
    assert s.reference.folder == "/env"


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("HEALTHBOOK_GRACE_NIGHTS", "three", "HEALTHBOOK_GRACE_NIGHTS must be int"),
        ("HEALTHBOOK_GRACE_NIGHTS", "-1", "at least 0"),
        ("HEALTHBOOK_LOAD_BATCH_ENCOUNTERS", "0", "at least 1"),
    ],
)
def test_a_value_that_does_not_parse_is_refused_naming_where_it_came_from(name, raw, says):
    with pytest.raises(ValueError, match=says):
        Settings.resolve(None, {name: raw})
    with pytest.raises(ValueError, match=f"the Airflow Variable {name.lower()}"):
        Settings.resolve({name.lower(): raw}.get, {})


def test_the_settings_travel_through_xcom_as_plain_json_and_come_back_whole(tmp_path):
    settings = Settings.resolve(
        {"healthbook_grace_nights": "7", "healthbook_reconcile_temp_dir": str(tmp_path / "spill")}.get, {}
    )
    url = "postgresql+psycopg://loader:s3cret@db-host/healthbook"
    ctx = NightContext(NIGHT, tmp_path / "x", tmp_path / "r", Warehouse(tmp_path / "wh"), url, settings)
    sent = json.dumps(ctx.to_dict())  # what XCom stores: plain JSON or it fails here
    assert "s3cret" not in sent and "serving_url" not in sent
    back = NightContext.from_dict(json.loads(sent), url)
    assert back == ctx
    assert back.settings.load.grace_nights == 7
    # a context from an earlier release (no settings travelled) resolves them in the task
    old = {k: v for k, v in json.loads(sent).items() if k != "settings"}
    assert NightContext.from_dict(old).settings == Settings.resolve()


def test_the_dag_resolves_the_settings_once_and_every_task_runs_with_them(tmp_path, monkeypatch):
    from transforms.orchestration.config import context_for_night, context_from_dict

    variables = {
        "healthbook_extracts": str(tmp_path / "extracts"),
        "healthbook_registry": str(tmp_path / "registry"),
        "healthbook_warehouse": str(tmp_path / "warehouse"),
        "healthbook_snapshot_k_anonymity": "11",
    }
    monkeypatch.setenv("HEALTHBOOK_GRACE_NIGHTS", "2")
    sent = json.dumps(context_for_night(NIGHT, variables.get).to_dict())  # the night_context task
    monkeypatch.setenv("HEALTHBOOK_GRACE_NIGHTS", "9")  # a worker with another environment
    task = context_from_dict(json.loads(sent))
    assert (task.settings.snapshot.k_anonymity, task.settings.load.grace_nights) == (11, 2)


def test_a_setting_that_changes_a_stage_s_output_is_part_of_its_fingerprint(tmp_path):
    from transforms.orchestration.fingerprint import stage_key

    (tmp_path / "r").mkdir()
    ctx = NightContext(
        NIGHT, tmp_path / "x", tmp_path / "r", Warehouse(tmp_path / "wh"), "sqlite://", Settings()
    )
    longer = dataclasses.replace(ctx, settings=ctx.settings.replace("load", grace_nights=10))
    smaller = dataclasses.replace(ctx, settings=ctx.settings.replace("load", batch_encounters=10))
    assert Settings().affecting("load") == {"load.grace_nights": 3}
    assert stage_key(longer, "load")[0] != stage_key(ctx, "load")[0]
    assert stage_key(smaller, "load")[0] == stage_key(ctx, "load")[0]  # the same output, in smaller batches


def test_the_pseudonym_key_file_is_a_setting_the_key_itself_is_not(tmp_path, monkeypatch):
    monkeypatch.delenv("HEALTHBOOK_PSEUDONYM_KEY", raising=False)
    key_file = tmp_path / "keys" / "pseudonym.key"
    key_file.parent.mkdir()
    key_file.write_text("ab" * 32)
    settings = Settings.resolve({"healthbook_pseudonym_key_file": str(key_file)}.get, {})
    ctx = NightContext(
        NIGHT, tmp_path / "x", tmp_path / "r", Warehouse(tmp_path / "wh"), "sqlite://", settings
    )
    assert ctx.pseudonym_key() == bytes.fromhex("ab" * 32)
    assert "ab" * 32 not in json.dumps(ctx.to_dict())  # its path travels, never the key


def test_the_readme_lists_every_setting_with_its_names():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Settings") :]
    section = section[: section.index("\n## ", 1)]
    for row in Settings.table():
        assert f"`{row['setting']}`" in section and f"`{row['env']}`" in section, row["setting"]


@pytest.mark.slow
@pytest.mark.postgres
def test_every_stage_s_manifest_records_its_settings_and_no_secret(tmp_path, pg_url, monkeypatch):
    from transforms.orchestration.pipeline import MANIFEST_STAGES, run_night
    from transforms.synth.generate import generate_night

    generate_night(tmp_path / "night", NIGHT, facilities=1, encounters=40, citizens=500, seed=3)
    key = uuid.uuid4().hex * 2  # 32 bytes, hex
    monkeypatch.setenv("HEALTHBOOK_PSEUDONYM_KEY", key)
    password = f"pw{uuid.uuid4().hex}"  # trust authentication: checked by no one
    url = sa.make_url(pg_url).set(password=password).render_as_string(hide_password=False)
    settings = Settings.resolve({"healthbook_grace_nights": "5"}.get, {"HEALTHBOOK_SNAPSHOT_THREADS": "1"})
    ctx = make_context(
        NIGHT,
        tmp_path / "night" / "extracts",
        tmp_path / "night" / "registry",
        tmp_path / "wh",
        url,
        settings,
    )
    run_night(ctx)

    for stage in MANIFEST_STAGES:
        manifest = json.loads(ctx.warehouse.manifest(NIGHT, stage).read_text())
        recorded = manifest["settings"]
        assert Settings.from_dict(recorded) == settings, stage
        assert recorded["load"]["grace_nights"] == 5 and recorded["snapshot"]["threads"] == 1
        assert recorded["serving"]["url"] == sa.make_url(url).render_as_string(hide_password=True)
    load = json.loads(ctx.warehouse.manifest(NIGHT, "load").read_text())
    assert load["late_tables"]["grace_nights"] == 5  # what the stage used is what it recorded
    written = [p for p in ctx.warehouse.root.rglob("*") if p.is_file()]
    assert [str(p) for p in written if password.encode() in p.read_bytes()] == []
    assert [str(p) for p in written if key.encode() in p.read_bytes()] == []
