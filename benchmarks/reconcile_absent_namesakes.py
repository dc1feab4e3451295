"""Precision when the patient is absent but a namesake is not: the no-ID patients of a generated
night reconciled against the registry WITHOUT their own citizens, so every link is a wrong one.

    .venv/bin/python benchmarks/reconcile_absent_namesakes.py --data /tmp/hb_id/hard20k

--data is a night prepared by `benchmarks/reconcile_accuracy.py --identity-profile hard
--prepare-only` (truth/, registry/, warehouse/staging/). In the hard registry about 30% of citizens
share name, birth date and sex with another, so an absent patient often has a perfect namesake
living elsewhere: the counts say what each match-weight threshold risks (issue #18). Prints the
wrong links by (match weight, margin) and writes benchmarks/results/reconcile_absent_namesakes.md.
Not run in CI.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from transforms.reconcile.stage import ENCOUNTER_COLUMNS, ReconcileSettings, connect, reconcile_tables

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    d = args.data
    settings = ReconcileSettings()
    con = connect(settings)
    staged = sorted(str(p) for p in (d / "warehouse" / "staging" / "encounters").rglob("*.parquet"))
    con.read_parquet(staged, union_by_name=True, hive_partitioning=False).create_view("staged")
    con.read_parquet(str(d / "truth" / "encounters.parquet")).create_view("truth_all")
    con.execute(
        "create table truth as select * from truth_all where list_contains(identity_noise, 'self_pay_no_id')"
    )
    columns = ", ".join(f"s.{c}" for c in ENCOUNTER_COLUMNS)
    con.execute(
        f"create view encounters_source as select {columns} from staged as s "
        "semi join truth as t using (facility_code, encounter_id, version)"
    )
    registry = sorted(str(p) for p in (d / "registry").glob("*.parquet"))
    con.read_parquet(registry).create_view("registry_all")
    con.execute(
        "create view registry_source as select * from registry_all "
        "where citizen_id not in (select citizen_id from truth where citizen_id is not null)"
    )
    seconds = reconcile_tables(con, settings)
    (records,) = con.execute("select count(*) from encounter_identities").fetchall()[0]
    rows = [
        "# Absent patients with namesakes: wrong links by threshold",
        "",
        f"Command: `.venv/bin/python benchmarks/reconcile_absent_namesakes.py --data {d}`",
        "",
        f"{records:,} no-ID records of the night, their own citizens removed from the registry (every"
        f" link is wrong). Reconcile steps (s): {seconds}.",
        "",
        "| match weight >= | margin >= | wrong links | share |",
        "|---|---|---|---|",
    ]
    for weight, margin in itertools.product([10, 8, 6, 4, 2, 0], [6, 5.5, 5]):
        (wrong,) = con.execute(
            "select count(*) from probabilistic_decisions where tied = 0 and deciding_field is not null"
            " and decision_weight >= ? and (margin is null or margin >= ?)",
            [weight, margin],
        ).fetchall()[0]
        rows.append(f"| {weight} | {margin} | {wrong} | {wrong / max(records, 1):.4f} |")
    (outcomes,) = con.execute(
        "select map_from_entries(list({'key': outcome, 'value': n})) from "
        "(select outcome, count(*) as n from patient_links group by all)"
    ).fetchall()[0]
    linked = outcomes.get("match", 0) / max(records, 1)
    rows += [
        "",
        f"Outcomes with the default settings (match weight {settings.match_weight}, margin"
        f" {settings.margin}): {dict(sorted(outcomes.items()))}.",
        "",
        # what the share implies: an absent patient with no ID is linked (wrongly) with that
        # probability, so a night of n such patients expects n * absent share * linked share
        f"The default settings link {linked:.1%} of absent patients with no ID: on a night of 2,000"
        f" patients with no ID, fewer than one wrong link is expected while fewer than"
        f" {1 / max(linked * 2000, 1e-9):.2%} of them are absent from the registry.",
    ]
    text = "\n".join(rows) + "\n"
    print(text)
    out = ROOT / "benchmarks" / "results" / "reconcile_absent_namesakes.md"
    out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
