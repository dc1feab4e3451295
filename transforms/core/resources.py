"""The files the package ships beside its code (SQL, reference tables, the checks, the linkage model,
the report's templates), found through importlib.resources: an installed wheel reads the copies it
ships in site-packages, a checkout (editable install, or PYTHONPATH) reads its own tree; neither
depends on the current directory.

The top-level sql/ folder of the repository is reached as `transforms/sql` (a symlink in the
checkout; a real folder in the wheel, pyproject.toml's package-data), so it ships with the code
without becoming a package of its own.

pip always unpacks wheels, so the package is on disk: these return real paths, which jinja2,
babel and DuckDB need (they read folders, not single resources).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_path(package: str, *parts: str) -> Path:
    """A file or folder shipped inside `package` (e.g. "transforms.core", "reference")."""
    root = files(package)
    if not isinstance(root, Path):  # a zipped install: never made by pip
        raise RuntimeError(f"{package} is not installed as files on disk ({root!r}); reinstall it with pip")
    return root.joinpath(*parts)


def sql_path(*parts: str) -> Path:
    """The repository's sql/ folder (or a file or folder in it), as shipped with the package."""
    return package_path("transforms", "sql", *parts)


def dags_folder() -> Path:
    """The repository's dags/ folder (the Airflow DAG file), as shipped with the package: an
    installed deployment points AIRFLOW__CORE__DAGS_FOLDER at it (`healthbook dags-folder`)."""
    return package_path("transforms", "dags")
