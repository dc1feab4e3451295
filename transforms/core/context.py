"""The night's context: everything a stage needs to process one night, built once and passed to
every stage (stages import it from here, never from the orchestration), with the run's settings
(transforms/core/settings.py), resolved once by the orchestration."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transforms.core.settings import Settings
from transforms.core.warehouse import Warehouse

DEFAULT_KEY_FILE = Path.home() / ".config" / "healthbook" / "pseudonym.key"


@dataclass(frozen=True)
class NightContext:
    """Everything a stage needs to process one night; built once, passed to every stage."""

    night: dt.date
    extracts_dir: Path
    registry_path: Path
    warehouse: Warehouse
    serving_url: str
    # resolved once per run by the orchestration; a context built directly (tests, benchmarks)
    # takes the environment and the defaults
    settings: Settings = field(default_factory=Settings.resolve)

    @property
    def night_dir(self) -> Path:
        return self.extracts_dir / self.night.isoformat()

    def pseudonym_key(self) -> bytes:
        """The snapshot's HMAC key, from the environment; never stored in the warehouse.

        HEALTHBOOK_PSEUDONYM_KEY (hex; a secret, so read here and never a setting) wins, then the
        file named by the setting snapshot.pseudonym_key_file (HEALTHBOOK_PSEUDONYM_KEY_FILE), then a
        per-user key file outside the warehouse, created on first use (laptop default).
        """
        if value := os.environ.get("HEALTHBOOK_PSEUDONYM_KEY"):
            return bytes.fromhex(value)
        path = Path(self.settings.snapshot.pseudonym_key_file or DEFAULT_KEY_FILE)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        key = bytes.fromhex(path.read_text().strip())
        if path.resolve().is_relative_to(self.warehouse.root.resolve()):
            raise RuntimeError("the pseudonym key file must not live inside the warehouse")
        return key

    def to_dict(self) -> dict[str, Any]:
        """A small JSON-able form (what travels through XCom): the settings as resolved once, and
        no serving URL, which carries a password; each task resolves it again
        (transforms.orchestration.config.context_from_dict)."""
        return {
            "night": self.night.isoformat(),
            "extracts_dir": str(self.extracts_dir),
            "registry_path": str(self.registry_path),
            "warehouse": str(self.warehouse.root),
            "settings": self.settings.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], serving_url: str | None = None) -> NightContext:
        """The context of `to_dict`'s form; `serving_url` None means SQLite inside the warehouse.
        The settings are those that travelled (resolved from the environment when none did)."""
        warehouse = Warehouse(Path(d["warehouse"]))
        settings = Settings.from_dict(d["settings"]) if "settings" in d else Settings.resolve()
        return cls(
            night=dt.date.fromisoformat(d["night"]),
            extracts_dir=Path(d["extracts_dir"]),
            registry_path=Path(d["registry_path"]),
            warehouse=warehouse,
            serving_url=serving_url or warehouse.default_serving_url,
            settings=settings,
        )


def make_context(
    night: dt.date,
    extracts_dir: Path,
    registry_path: Path,
    warehouse_dir: Path | None = None,
    serving_url: str | None = None,
    settings: Settings | None = None,
) -> NightContext:
    """A NightContext with the INTERFACES.md defaults (./warehouse, SQLite inside it); without
    `settings`, those of the environment (Settings.resolve)."""
    warehouse = Warehouse(Path(warehouse_dir or "warehouse").resolve())
    return NightContext(
        night=night,
        extracts_dir=Path(extracts_dir).resolve(),
        registry_path=Path(registry_path).resolve(),
        warehouse=warehouse,
        serving_url=serving_url or warehouse.default_serving_url,
        settings=settings if settings is not None else Settings.resolve(),
    )
