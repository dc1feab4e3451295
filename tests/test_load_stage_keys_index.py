"""The load's per-version statements find tonight's versions in stage_keys through an index, and
replace a batch's already-published versions by probing each serving table's version_id key.

Without the stage_keys index SQLite scans the whole keys table once per serving row (a correlated
EXISTS): O(serving rows x tonight's versions), which the national-day benchmark measured at 8 s per
statement for 10k encounters and would take hours at 1M. A replace that scanned the serving table
would cost O(serving rows) per batch.
"""

from __future__ import annotations

import pytest

from transforms import load

STAGE_KEYS_QUERIES = [
    "retire_older_versions",
    "touched_citizens",
]


def plan_lines(url: str, sql: str) -> list[str]:
    engine = load.serving_engine(url)
    load.ensure_schema(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(load.STAGE_KEYS_DDL)
        conn.exec_driver_sql(load.STAGE_KEYS_INDEX_SQL)
        conn.exec_driver_sql(load.REPLACE_KEYS_DDL)
        conn.exec_driver_sql(load.create_stage_sql(load.CITIZENS))
        conn.exec_driver_sql("create temp table stage_touched_citizens (citizen_id text)")
        return [row[-1] for row in conn.exec_driver_sql("explain query plan " + sql).fetchall()]


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        pytest.param(load.sql_file(f"queries/{name}.sql", "sqlite"), "stage_keys_version", id=name)
        for name in STAGE_KEYS_QUERIES
    ],
)
def test_sqlite_searches_the_keys_by_index_never_scans_them(tmp_path, sql, index):
    lines = plan_lines(f"sqlite:///{tmp_path / 'serving.db'}", sql)
    probes = [line for line in lines if line.split()[1:2] == ["s"]]  # the keys table is aliased s
    assert probes, lines
    assert all(line.startswith(f"SEARCH s USING COVERING INDEX {index}") for line in probes), lines


@pytest.mark.parametrize("table", load.VERSION_TABLES, ids=lambda t: t.name)
def test_sqlite_replaces_versions_by_probing_the_version_id_key_never_scans_the_table(tmp_path, table):
    lines = plan_lines(f"sqlite:///{tmp_path / 'serving.db'}", load.delete_staged_versions_sql(table))
    on_table = [line for line in lines if line.split()[1:2] == [table.name]]
    assert on_table, lines
    assert all(
        line.startswith(f"SEARCH {table.name} USING INDEX") and line.endswith("(version_id=?)")
        for line in on_table
    ), lines
