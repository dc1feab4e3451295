"""Where a scheduled run finds its settings: one place, read at run time, never at import time."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

from transforms.pipeline import NightContext, make_context

# setting -> (Airflow Variable name, environment variable, default)
SETTINGS = {
    "extracts": ("healthbook_extracts", "HEALTHBOOK_EXTRACTS", None),
    "registry": ("healthbook_registry", "HEALTHBOOK_REGISTRY", None),
    "warehouse": ("healthbook_warehouse", "HEALTHBOOK_WAREHOUSE", "warehouse"),
    "serving_url": ("healthbook_serving_url", "HEALTHBOOK_SERVING_URL", None),
}


def resolve_settings(lookup: Callable[[str], str | None] | None = None) -> dict[str, str | None]:
    """Each setting from `lookup` (e.g. Airflow Variables), else the environment, else its default."""
    out = {}
    for key, (variable, env, default) in SETTINGS.items():
        value = lookup(variable) if lookup else None
        out[key] = value or os.environ.get(env) or default
    missing = [SETTINGS[k][1] for k, v in out.items() if v is None and k in ("extracts", "registry")]
    if missing:
        raise RuntimeError(
            f"healthbook is not configured: set {', '.join(missing)} (or the Airflow Variables)"
        )
    return out


def context_for_night(night: dt.date, lookup: Callable[[str], str | None] | None = None) -> NightContext:
    """The NightContext of a scheduled night from the resolved settings."""
    s = resolve_settings(lookup)
    return make_context(
        night, Path(s["extracts"]), Path(s["registry"]), Path(s["warehouse"]), s["serving_url"]
    )
