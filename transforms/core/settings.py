"""The run's settings: one typed object, resolved once per run and carried by the night's context.

`Settings.resolve(variables)` takes each setting from the Airflow Variable of the same name in
lower case (through `variables`, a callable the orchestration passes: the core imports no
Airflow), else the environment variable, else the default. The orchestration calls it once per
run (`healthbook run`, the DAG's `night_context` task); the context carries the result to every
stage (through XCom as plain JSON, `to_dict`/`from_dict`), and each stage's manifest records it
(`runs/<D>/<stage>.json`, `settings`), so a night says what it ran with.

What is a setting: what an operator tunes for a deployment or a machine (the grace period, the
reconciliation's thresholds, memory and threads, batch sizes, k-anonymity). What is not: sizes
measured once and fixed in the code with their reason (Parquet row groups, the ingest's byte
budgets, file-size limits of hostile input), and secrets. Secrets are never settings: the serving
database URL (its password; an Airflow Connection, resolved inside each task), the pseudonym key
(HEALTHBOOK_PSEUDONYM_KEY, read where it is used) and the signing key never enter this object, so
neither XCom nor a manifest can carry them. The table of every setting is in README "Settings".
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

Lookup = Callable[[str], str | None]

# The settings that change what a stage writes (not merely how fast or in how much memory): part
# of the stage's fingerprint (transforms/orchestration/fingerprint.py), so a change runs it again.
OUTPUT_SETTINGS = {
    "reconcile": (
        "reconcile.match_weight",
        "reconcile.review_weight",
        "reconcile.margin",
        "reconcile.review_candidates",
    ),
    "load": ("load.grace_nights",),
    "snapshot": ("snapshot.k_anonymity",),
}


def _setting(
    default: Any, env: str, parse: Callable[[str], Any], minimum: float | None = None, variable: bool = True
) -> Any:
    """A field with its environment variable (the Airflow Variable is its name in lower case,
    unless `variable` is False: a setting read where there is no Airflow, e.g. by `healthbook book`)."""
    meta = {"env": env, "parse": parse, "minimum": minimum, "variable": variable}
    return field(default=default, metadata=meta)


def _text(raw: str) -> str:
    return raw


def _switch(raw: str) -> bool:
    """On or off: 1/true/yes/on or 0/false/no/off (anything else does not parse)."""
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


@dataclass(frozen=True)
class RunSettings:
    # `healthbook run` forks a worker for a stage that waits for none of the stage beside it
    # (transforms/orchestration/workers.py); off: one stage after the other in this process (the
    # DAG's tasks are separate processes anyway: environment only)
    side_by_side: bool = _setting(True, "HEALTHBOOK_RUN_SIDE_BY_SIDE", _switch, variable=False)


@dataclass(frozen=True)
class IngestSettings:
    # 0: every CPU of the machine that runs the ingest (resolved there, not where the run started)
    workers: int = _setting(0, "HEALTHBOOK_INGEST_WORKERS", int, minimum=0)
    max_shards: int = _setting(256, "HEALTHBOOK_INGEST_MAX_SHARDS", int, minimum=1)
    # a shard is about this much of the night's extracts (never more shards than facilities)
    shard_bytes_target: int = _setting(64 << 20, "HEALTHBOOK_INGEST_SHARD_BYTES", int, minimum=1)

    def overrides(self) -> dict[str, int]:
        """The fields of transforms.ingest.stage.IngestSettings these set (workers only when fixed)."""
        out = {"max_shards": self.max_shards, "shard_bytes_target": self.shard_bytes_target}
        return out | ({"workers": self.workers} if self.workers else {})


@dataclass(frozen=True)
class QualitySettings:
    # rows of a dataset checked at once (memory against per-batch overhead)
    batch_rows: int = _setting(20_000, "HEALTHBOOK_QUALITY_BATCH_ROWS", int, minimum=1)
    report_language: str = _setting("vi", "HEALTHBOOK_REPORT_LANGUAGE", lambda s: s.strip().lower())


@dataclass(frozen=True)
class ReconcileSettings:
    # decision weights: Splink's, a residence that differs counted as none
    # (transforms/reconcile/stage.py ReconcileSettings says why these values)
    match_weight: float = _setting(4.0, "HEALTHBOOK_RECONCILE_MATCH_WEIGHT", float)
    review_weight: float = _setting(-6.0, "HEALTHBOOK_RECONCILE_REVIEW_WEIGHT", float)
    margin: float = _setting(5.5, "HEALTHBOOK_RECONCILE_MARGIN", float, minimum=0)
    review_candidates: int = _setting(3, "HEALTHBOOK_RECONCILE_REVIEW_CANDIDATES", int, minimum=1)
    memory_limit: str = _setting("3GB", "HEALTHBOOK_RECONCILE_MEMORY_LIMIT", _text)
    threads: int = _setting(2, "HEALTHBOOK_RECONCILE_THREADS", int, minimum=1)
    # None: the night's scratch folder in the warehouse
    temp_dir: str | None = _setting(None, "HEALTHBOOK_RECONCILE_TEMP_DIR", _text)

    def overrides(self) -> dict[str, Any]:
        """The fields of transforms.reconcile.stage.ReconcileSettings these set."""
        from pathlib import Path

        return {
            "match_weight": self.match_weight,
            "review_weight": self.review_weight,
            "margin": self.margin,
            "review_candidates": self.review_candidates,
            "memory_limit": self.memory_limit,
            "threads": self.threads,
            "temp_directory": Path(self.temp_dir) if self.temp_dir else None,
        }


@dataclass(frozen=True)
class LoadSettings:
    # HEALTHBOOK.md "When an encounter is complete": a stay waits this many nights for XML7/XML8
    grace_nights: int = _setting(3, "HEALTHBOOK_GRACE_NIGHTS", int, minimum=0)
    # encounters read, decided and staged in the serving database at once
    batch_encounters: int = _setting(20_000, "HEALTHBOOK_LOAD_BATCH_ENCOUNTERS", int, minimum=1)


@dataclass(frozen=True)
class SnapshotSettings:
    # a ward is shown only where at least this many citizens share (age group, sex, ward, month)
    k_anonymity: int = _setting(5, "HEALTHBOOK_SNAPSHOT_K_ANONYMITY", int, minimum=1)
    memory_limit: str = _setting("2GB", "HEALTHBOOK_SNAPSHOT_MEMORY_LIMIT", _text)
    threads: int = _setting(2, "HEALTHBOOK_SNAPSHOT_THREADS", int, minimum=1)
    # the file holding the pseudonym key (its path, not the key; None: the per-user default file)
    pseudonym_key_file: str | None = _setting(None, "HEALTHBOOK_PSEUDONYM_KEY_FILE", _text)


@dataclass(frozen=True)
class ReferenceSettings:
    # a deployment's own code lists over the packaged ones; also read by `healthbook book` and
    # `verify` (transforms/core/reference.py), which run without Airflow: environment only
    folder: str | None = _setting(None, "HEALTHBOOK_REFERENCE_DIR", _text, variable=False)


@dataclass(frozen=True)
class Settings:
    """Every operator-tunable setting of a night, by stage; the defaults are the production values.

    `Settings()` is the defaults alone; `Settings.resolve(...)` what a run uses."""

    run: RunSettings = field(default_factory=RunSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    load: LoadSettings = field(default_factory=LoadSettings)
    snapshot: SnapshotSettings = field(default_factory=SnapshotSettings)
    reference: ReferenceSettings = field(default_factory=ReferenceSettings)

    @classmethod
    def resolve(cls, variables: Lookup | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Each setting from `variables` (Airflow Variables: the environment variable's name in lower
        case), else `environ` (default os.environ), else its default. A value that does not parse,
        or is below its minimum, is refused with the name it came from."""
        environ = os.environ if environ is None else environ
        groups = {}
        for group in fields(cls):
            values = {}
            for f in fields(group.default_factory):
                env = f.metadata["env"]
                raw, source = None, ""
                if variables is not None and f.metadata["variable"]:
                    raw, source = variables(env.lower()), f"the Airflow Variable {env.lower()}"
                if raw is None or not str(raw).strip():
                    raw, source = environ.get(env), env
                if raw is None or not str(raw).strip():
                    continue
                values[f.name] = _parse(f, str(raw).strip(), source)
            groups[group.name] = group.default_factory(**values)
        return cls(**groups)

    def replace(self, group: str, **changes: Any) -> Settings:
        """These settings with some fields of one group changed (tests, benchmarks)."""
        return dataclasses.replace(self, **{group: dataclasses.replace(getattr(self, group), **changes)})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain JSON: {group: {setting: value}} (what travels through XCom and into manifests)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> Settings:
        """The settings of `to_dict`'s form; a setting it lacks takes its default."""
        groups = {}
        for group in fields(cls):
            known = {f.name for f in fields(group.default_factory)}
            given = {k: v for k, v in (d.get(group.name) or {}).items() if k in known}
            groups[group.name] = group.default_factory(**given)
        return cls(**groups)

    def affecting(self, stage: str) -> dict[str, Any]:
        """The settings that change what `stage` writes, by name ({} for most stages)."""
        out = {}
        for name in OUTPUT_SETTINGS.get(stage, ()):
            group, setting = name.split(".")
            out[name] = getattr(getattr(self, group), setting)
        return out

    def manifest_section(self, serving_url: str | None = None) -> dict[str, Any]:
        """What a stage's manifest records: every setting, and the serving database with its
        password hidden (never the key material, which is not in this object)."""
        section: dict[str, Any] = self.to_dict()
        if serving_url:
            section["serving"] = {"url": redact_url(serving_url)}
        return section

    @staticmethod
    def table() -> list[dict[str, Any]]:
        """One row per setting: group, name, environment variable, Airflow Variable, default."""
        rows = []
        for group in fields(Settings):
            for f in fields(group.default_factory):
                env = f.metadata["env"]
                rows.append(
                    {
                        "setting": f"{group.name}.{f.name}",
                        "env": env,
                        "variable": env.lower() if f.metadata["variable"] else None,
                        "default": f.default,
                    }
                )
        return rows


def _parse(f: dataclasses.Field, raw: str, source: str) -> Any:
    try:
        value = f.metadata["parse"](raw)
    except ValueError as exc:
        raise ValueError(f"{source} must be {f.type}, not {raw!r}") from exc
    minimum = f.metadata["minimum"]
    if minimum is not None and value < minimum:
        raise ValueError(f"{source} must be at least {minimum}, not {value}")
    return value


def redact_url(url: str) -> str:
    """A database URL with its password replaced by ***."""
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)
