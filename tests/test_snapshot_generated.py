"""The snapshot of a generated night: demographics follow the reconciled citizen, and each analyst
query as shipped gives the figure computed independently from the outcomes, the registry and the
generator's truth."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest
from conftest import GOLDEN_NIGHT, GOLDEN_RUN_KEY

from transforms.core.context import make_context
from transforms.orchestration.pipeline import run_night
from transforms.snapshot.stage import analyst_query_names, read_sql, run_analyst_query, staged_files

KEY = ["facility_code", "encounter_id"]


@pytest.fixture(scope="module")
def generated(golden_night, golden_run, pseudonym_key_module):
    """The session's golden run (every stage, the snapshot under the module's key; conftest.GoldenRun)."""
    ctx = golden_run.ctx
    outcomes = pd.read_parquet(ctx.warehouse.outcomes(GOLDEN_NIGHT))
    loaded = outcomes[outcomes["outcome"] == "loaded"]  # one night: the newest loaded version each
    truth = pd.read_parquet(golden_night / "truth" / "encounters.parquet")
    registry = pd.read_parquet(golden_night / "registry")
    return ctx, loaded, truth, registry


@pytest.fixture(scope="module")
def pseudonym_key_module():
    mp = pytest.MonkeyPatch()
    mp.setenv("HEALTHBOOK_PSEUDONYM_KEY", GOLDEN_RUN_KEY.hex())  # the key the golden run used
    yield
    mp.undo()


def _sql(ctx, sql):
    with duckdb.connect(str(ctx.warehouse.snapshot(GOLDEN_NIGHT)), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.slow
def test_every_encounter_has_the_demographics_of_its_reconciled_citizen(generated):
    ctx, loaded, _, registry = generated
    linked = loaded.merge(registry[["citizen_id", "sex", "province_code", "birth_date"]], on="citizen_id")
    complete = linked.dropna(subset=["sex", "province_code", "birth_date"])
    assert len(complete) > 0.9 * len(loaded)  # nearly every loaded encounter's citizen has all three
    [(total, with_all)] = _sql(
        ctx,
        "select count(*), count(*) filter (where patient_province_code is not null"
        " and patient_age_group is not null and patient_sex is not null) from encounters",
    )
    assert total == len(loaded)
    # before the fix a quarter of them had none: matched through the card, the old ID or the
    # probabilistic tier, the hospital's ID found no registry row
    assert with_all == len(complete)


@pytest.mark.slow
def test_encounters_per_province_equal_the_truths_citizens_provinces(generated):
    ctx, loaded, truth, registry = generated
    # the generator's truth says whose encounter it is; the registry where that citizen lives
    expected = (
        loaded[KEY + ["version"]]
        .merge(truth[KEY + ["version", "citizen_id"]], on=KEY + ["version"])
        .merge(registry[["citizen_id", "province_code"]], on="citizen_id", how="left")
        .groupby("province_code", dropna=False)
        .size()
    )
    rows = run_analyst_query(ctx.warehouse.snapshot(GOLDEN_NIGHT), "encounters_per_province_per_chapter")
    got = rows.to_pandas().groupby("province_code", dropna=False)["encounters"].sum()
    assert got.sum() == len(loaded)
    assert got.to_dict() == {k: int(v) for k, v in expected.items()}


@pytest.mark.slow
def test_each_analyst_query_runs_as_shipped_and_gives_the_independent_figure(generated):
    ctx, loaded, truth, registry = generated
    path = ctx.warehouse.snapshot(GOLDEN_NIGHT)
    results = {name: run_analyst_query(path, name).to_pandas() for name in analyst_query_names()}
    assert all(len(r) > 0 for r in results.values())

    # readmissions: the total row's index stays = loaded inpatient/day-care encounters with a citizen
    versions = loaded.merge(truth[KEY + ["version", "visit_type"]], on=KEY + ["version"])
    inpatient = versions[versions["visit_type"].isin(["03", "04"]) & versions["citizen_id"].notna()]
    total = results["readmissions_within_30_days"].iloc[-1]
    assert pd.isna(total["facility_code"]) and total["index_stays"] == len(inpatient)

    # top drugs: the first drug's encounters, counted in the staged drug lines of loaded versions
    files = staged_files(ctx.warehouse, "drugs", GOLDEN_NIGHT)
    drugs = duckdb.sql(read_sql("snapshot", "read_staged"), params={"files": files}).df()
    drugs = drugs.merge(loaded[KEY + ["version"]], on=KEY + ["version"])
    first = results["top_drugs"].iloc[0]
    assert (
        first["encounters"] == drugs[drugs["drug_code"] == first["drug_code"]][KEY].drop_duplicates().shape[0]
    )

    # vaccination coverage, any vaccine (the default): living citizens with a birth date
    died = registry["death_date"].str.replace("-", "") <= GOLDEN_NIGHT.strftime("%Y%m%d")
    registry_living = registry[~died.fillna(False).astype(bool)]
    coverage = results["vaccination_coverage_by_age_group"]
    assert coverage["citizens"].sum() == registry_living["birth_date"].notna().sum()
    assert coverage["vaccinated"].sum() > 0


@pytest.mark.slow
def test_the_generated_snapshot_measures_k_anonymity_and_keeps_no_time_of_day(generated):
    ctx, loaded, _, _ = generated
    [(k_before, k_after, coarsened, below, encounters)] = _sql(
        ctx,
        "select k_before_coarsening, k_after_coarsening, encounters_ward_coarsened,"
        " encounters_below_k_after_coarsening, encounters from snapshot_info",
    )
    assert encounters == len(loaded)
    assert 1 <= k_before <= k_after
    # every ward kept is held by at least 5 citizens of the same age group, sex and month
    assert _sql(
        ctx,
        "select count(*) from (select count(distinct citizen_key) as n from encounters"
        " where patient_ward_code is not null"
        " group by patient_age_group, patient_sex, patient_ward_code, admitted_month) where n < 5",
    ) == [(0,)]
    # every coarsened encounter says so (some wards were never known: those are 'province' too)
    [(at_province,)] = _sql(ctx, "select count(*) from encounters where patient_residence_level = 'province'")
    assert 0 <= coarsened <= at_province
    assert 0 <= below <= encounters
    types = {t for (t,) in _sql(ctx, "select distinct data_type from columns")}
    assert not any(t.startswith("TIMESTAMP") or t == "TIME" for t in types), types


@pytest.mark.slow
def test_history_promise_over_three_generated_nights(tmp_path, pseudonym_key_module):
    """Each night's snapshot holds every encounter loaded on any night so far, newest loaded version
    only: the same set the outcomes of the nights give, and it only grows."""
    import datetime as dt

    from transforms.synth.generate import generate_night

    nights = [GOLDEN_NIGHT - dt.timedelta(days=2 - k) for k in range(3)]
    data = tmp_path / "gen"
    ctx = None
    served_by_night = []
    outcome_frames = []
    for night in nights:
        generate_night(data, night, facilities=2, encounters=120, citizens=1000, seed=11)
        ctx = make_context(night, data / "extracts", data / "registry", tmp_path / "wh")
        run_night(ctx, stages=["ingest", "quality", "reconcile", "load", "ledger", "snapshot"])
        outcome_frames.append(pd.read_parquet(ctx.warehouse.outcomes(night)).assign(run_night=night))
        with duckdb.connect(str(ctx.warehouse.snapshot(night)), read_only=True) as con:
            served_by_night.append(
                dict(con.execute("select encounter_key, version from encounters").fetchall())
            )

        # independently: the newest version whose latest outcome is "loaded", over every night so far
        outcomes = pd.concat(outcome_frames).sort_values("run_night")
        latest = outcomes.drop_duplicates(KEY + ["version"], keep="last")
        loaded = latest[latest["outcome"] == "loaded"]
        expected = loaded.sort_values("version").drop_duplicates(KEY, keep="last")
        assert len(served_by_night[-1]) == len(expected) > 0

    first, second, third = served_by_night
    assert set(first) <= set(second) <= set(third)
    assert all(third[k] >= v for k, v in second.items())
    with duckdb.connect(str(ctx.warehouse.snapshot(nights[-1])), read_only=True) as con:
        [(first_night, count)] = con.execute("select first_night, encounters from snapshot_info").fetchall()
    assert (first_night, count) == (nights[0], len(third))


@pytest.mark.slow
def test_the_ledger_and_the_report_give_the_same_loaded_figures(generated):
    import json
    import re

    from transforms.orchestration.ledger import LOADED_MEANS

    ctx, _, _, _ = generated
    ledger = json.loads((ctx.warehouse.run_dir(GOLDEN_NIGHT) / "ledger.json").read_text())
    assert ledger["definitions"]["loaded"] == LOADED_MEANS
    assert ledger["totals"]["superseded"] > 0  # the night has resends: the two counts used to differ
    # the report's facility tables are on its province pages: rank, facility, received, loaded
    provinces = ctx.warehouse.quality / GOLDEN_NIGHT.isoformat() / "province"
    rows = [
        row
        for page in sorted(provinces.glob("*.html"))
        for row in re.findall(
            r'<tr data-facility="([^"]+)"[^>]*>.*?</td>\s*<td>.*?</td>\s*'
            r'<td class="num" data-sort="(\d+)">.*?</td><td class="num" data-sort="(\d+)">',
            page.read_text(encoding="utf-8"),
            re.S,
        )
    ]
    report = {code: (int(received), int(loaded)) for code, received, loaded in rows}
    ledger_figures = {
        code: (f["received"], f["loaded"]) for code, f in ledger["facilities"].items() if f["received"]
    }
    assert report == ledger_figures
    assert sum(loaded for _, loaded in report.values()) == ledger["totals"]["loaded"]
