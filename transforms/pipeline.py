"""The night's stages chained in order; `healthbook run` and the Airflow DAG call the same functions."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from transforms.warehouse import Warehouse


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
        """The snapshot's HMAC key, from the environment; never stored in the warehouse."""
        if value := os.environ.get("HEALTHBOOK_PSEUDONYM_KEY"):
            return bytes.fromhex(value)
        if path := os.environ.get("HEALTHBOOK_PSEUDONYM_KEY_FILE"):
            return bytes.fromhex(Path(path).read_text().strip())
        raise RuntimeError(
            "no pseudonym key: set HEALTHBOOK_PSEUDONYM_KEY (hex) or HEALTHBOOK_PSEUDONYM_KEY_FILE"
        )
