"""The night's context: everything a stage needs to process one night, built once and passed to
every stage (stages import it from here, never from the orchestration)."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

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

    @property
    def night_dir(self) -> Path:
        return self.extracts_dir / self.night.isoformat()

    def pseudonym_key(self) -> bytes:
        """The snapshot's HMAC key, from the environment; never stored in the warehouse.

        HEALTHBOOK_PSEUDONYM_KEY (hex) wins, then the file named by HEALTHBOOK_PSEUDONYM_KEY_FILE,
        then a per-user key file outside the warehouse, created on first use (laptop default).
        """
        if value := os.environ.get("HEALTHBOOK_PSEUDONYM_KEY"):
            return bytes.fromhex(value)
        path = Path(os.environ.get("HEALTHBOOK_PSEUDONYM_KEY_FILE") or DEFAULT_KEY_FILE)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        key = bytes.fromhex(path.read_text().strip())
        if path.resolve().is_relative_to(self.warehouse.root.resolve()):
            raise RuntimeError("the pseudonym key file must not live inside the warehouse")
        return key

    def to_dict(self) -> dict[str, str]:
        """A small JSON-able form (what travels through XCom): without the serving URL, which
        carries a password; each task resolves it again (transforms.orchestration.config.context_from_dict)."""
        return {
            "night": self.night.isoformat(),
            "extracts_dir": str(self.extracts_dir),
            "registry_path": str(self.registry_path),
            "warehouse": str(self.warehouse.root),
        }

    @classmethod
    def from_dict(cls, d: dict[str, str], serving_url: str | None = None) -> NightContext:
        """The context of `to_dict`'s form; `serving_url` None means SQLite inside the warehouse."""
        warehouse = Warehouse(Path(d["warehouse"]))
        return cls(
            night=dt.date.fromisoformat(d["night"]),
            extracts_dir=Path(d["extracts_dir"]),
            registry_path=Path(d["registry_path"]),
            warehouse=warehouse,
            serving_url=serving_url or warehouse.default_serving_url,
        )


def make_context(
    night: dt.date,
    extracts_dir: Path,
    registry_path: Path,
    warehouse_dir: Path | None = None,
    serving_url: str | None = None,
) -> NightContext:
    """A NightContext with the INTERFACES.md defaults (./warehouse, SQLite inside it)."""
    warehouse = Warehouse(Path(warehouse_dir or "warehouse").resolve())
    return NightContext(
        night=night,
        extracts_dir=Path(extracts_dir).resolve(),
        registry_path=Path(registry_path).resolve(),
        warehouse=warehouse,
        serving_url=serving_url or warehouse.default_serving_url,
    )
