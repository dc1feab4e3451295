"""The load replaces a batch's already-published versions, and retires the versions a newer one
supersedes, by probing each serving table's version_id key: never a scan of the serving table
(which would cost O(serving rows) per batch, hours at national scale on SQLite)."""

from __future__ import annotations

import pytest

from transforms.load import stage as load
from transforms.load import writer as load_writer


def plan_lines(url: str, sql: str) -> list[str]:
    engine = load.serving_engine(url)
    load.ensure_schema(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(load_writer.REPLACE_KEYS_DDL)
        conn.exec_driver_sql(load_writer.RETIRE_KEYS_DDL)
        return [row[-1] for row in conn.exec_driver_sql("explain query plan " + sql).fetchall()]


@pytest.mark.parametrize(
    ("table", "sql"),
    [
        pytest.param(t.name, load_writer.delete_staged_versions_sql(t), id=f"replace_{t.name}")
        for t in load_writer.VERSION_TABLES
    ]
    + [pytest.param("encounters", load_writer.RETIRE_SQL, id="retire")],
)
def test_sqlite_finds_versions_by_probing_the_version_id_key_never_scans_the_table(tmp_path, table, sql):
    lines = plan_lines(f"sqlite:///{tmp_path / 'serving.db'}", sql)
    on_table = [line for line in lines if line.split()[1:2] == [table]]
    assert on_table, lines
    assert all(
        line.startswith(f"SEARCH {table} USING INDEX") and line.endswith("(version_id=?)")
        for line in on_table
    ), lines
