"""Fixtures of the reliability suite: fresh PostgreSQL databases and one clean reference run of the
golden night (every defect class) that the fault-injection tests compare their final state with."""

from __future__ import annotations

import pytest

from reliability.helpers import NightRun, assert_ok, create_database, drop_database, final_state


@pytest.fixture(scope="session")
def new_database():
    """A factory of fresh PostgreSQL databases (URLs), all dropped at the end of the session."""
    made: list[str] = []

    def make() -> str:
        made.append(create_database())
        return made[-1]

    yield make
    for url in made:
        drop_database(url)


@pytest.fixture(scope="session")
def clean_run(golden_night, new_database, tmp_path_factory):
    """The golden night run once, uninterrupted, into its own warehouse and PostgreSQL database."""
    run = NightRun(golden_night, tmp_path_factory.mktemp("clean") / "warehouse", new_database())
    result = run.run()
    assert_ok(result)
    run.result = result
    return run


@pytest.fixture(scope="session")
def clean_state(clean_run):
    return final_state(clean_run)


@pytest.fixture
def fresh_run(golden_night, new_database, tmp_path):
    """An empty warehouse and database for the golden night (the state under test)."""
    return NightRun(golden_night, tmp_path / "warehouse", new_database())
