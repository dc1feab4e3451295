"""Where a scheduled run finds its settings: one place, read at run time, never at import time.

The night's locations (extracts, registry, warehouse) and every tunable setting
(transforms.core.settings.Settings) come from Airflow Variables, else the environment, else the
defaults; the DAG's `night_context` task resolves them once and they travel with the context.

The serving database (its URL carries a password) is not a setting like the others (issue #16
item 4): it comes from the Airflow Connection `healthbook_serving`, else the environment
HEALTHBOOK_SERVING_URL, else SQLite inside the warehouse; it is resolved inside each task
(`context_from_dict`) and never travels through XCom (`NightContext.to_dict` leaves it out).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from transforms.core.context import NightContext, make_context
from transforms.core.settings import Settings

# setting -> (Airflow Variable name, environment variable, default)
SETTINGS = {
    "extracts": ("healthbook_extracts", "HEALTHBOOK_EXTRACTS", None),
    "registry": ("healthbook_registry", "HEALTHBOOK_REGISTRY", None),
    "warehouse": ("healthbook_warehouse", "HEALTHBOOK_WAREHOUSE", "warehouse"),
}
SERVING_CONNECTION = "healthbook_serving"
SERVING_ENV = "HEALTHBOOK_SERVING_URL"
# the Variable of earlier releases: a password in a Variable shows in the UI, so it is refused
RETIRED_SERVING_VARIABLE = "healthbook_serving_url"
# Airflow connection types (their URI schemes) -> the SQLAlchemy driver the load uses
_DRIVERS = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg", "sqlite": "sqlite"}


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
    if lookup and lookup(RETIRED_SERVING_VARIABLE):
        raise RuntimeError(
            f"the Airflow Variable {RETIRED_SERVING_VARIABLE} is no longer read (a password in a Variable "
            f"is shown in the UI): move the URL to the Airflow Connection {SERVING_CONNECTION} and delete it"
        )
    return out


def connection_url(connection: Any) -> str:
    """The SQLAlchemy URL of an Airflow Connection (postgres: psycopg 3; login, password, host,
    port, schema = database)."""
    conn_type = (connection.conn_type or "").lower()
    if conn_type not in _DRIVERS:
        raise RuntimeError(
            f"the Airflow Connection {SERVING_CONNECTION} has type {conn_type!r}; use postgres (or sqlite)"
        )
    if conn_type == "sqlite":
        return f"sqlite:///{connection.host}"
    return sa.engine.URL.create(
        _DRIVERS[conn_type],
        username=connection.login or None,
        password=connection.password or None,
        host=connection.host or None,
        port=connection.port or None,
        database=connection.schema or None,
    ).render_as_string(hide_password=False)


def serving_url(get_connection: Callable[[str], Any | None] | None = None) -> str | None:
    """The serving database URL: the Connection `healthbook_serving` (from `get_connection`, which
    returns None when it is not defined), else HEALTHBOOK_SERVING_URL, else None (SQLite in the
    warehouse). Call it in the task that uses it; never return it from a task."""
    connection = get_connection(SERVING_CONNECTION) if get_connection else None
    if connection is not None:
        return connection_url(connection)
    return os.environ.get(SERVING_ENV) or None


def context_for_night(
    night: dt.date,
    lookup: Callable[[str], str | None] | None = None,
    get_connection: Callable[[str], Any | None] | None = None,
) -> NightContext:
    """The NightContext of a scheduled night: its locations and settings resolved here, once
    (Variables, else environment, else defaults)."""
    s = resolve_settings(lookup)
    return make_context(
        night,
        Path(s["extracts"]),
        Path(s["registry"]),
        Path(s["warehouse"]),
        serving_url(get_connection),
        settings=Settings.resolve(lookup),
    )


def context_from_dict(
    d: dict[str, str], get_connection: Callable[[str], Any | None] | None = None
) -> NightContext:
    """The NightContext of a task from what travelled through XCom (its settings as the
    night_context task resolved them), with the serving database resolved here, in the task."""
    return NightContext.from_dict(d, serving_url(get_connection))
