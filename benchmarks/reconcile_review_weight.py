"""Where the review weight puts the patients no rule links (issue #18): the review queue or
no_match, on a generated night prepared by `benchmarks/reconcile_accuracy.py --identity-profile
hard --prepare-only`.

    .venv/bin/python benchmarks/reconcile_review_weight.py --data /work/hb_identity/hard20k \
        --weights 2,0,-2,-4,-6,-8

Reconciles the night in memory once per review weight (the other settings at their defaults)
and counts, per outcome, the encounters, those whose best candidate is the true citizen, the
absent patients (no true citizen) and the patients with no ID; then the matchable patients with
no ID left as no_match (out of every reviewer's sight). Prints a Markdown table. Not run in CI.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from reconcile_misses import open_prepared_night

    from transforms.reconcile.stage import ReconcileSettings, reconcile_tables

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", default="2,0,-2,-4,-6,-8")
    args = parser.parse_args()
    print(
        "| review weight | no_match | of them absent | of them matchable with no ID | potential_match"
        " | of them best = true | of them absent | many_match | match |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for weight in (float(w) for w in args.weights.split(",")):
        settings = replace(ReconcileSettings(), review_weight=weight)
        con = open_prepared_night(args.data, settings)
        try:
            reconcile_tables(con, settings)
            counts = con.execute(
                """
                select l.outcome, count(*),
                    count(*) filter (where l.candidate_citizen_id = t.citizen_id),
                    count(*) filter (where t.citizen_id is null),
                    count(*) filter (where t.citizen_id is not null
                        and list_contains(t.identity_noise, 'self_pay_no_id')
                        and not list_has_any(t.identity_noise,
                            ['non_separable', 'indistinguishable_twin', 'closer_namesake']))
                from patient_links as l
                inner join truth as t using (facility_code, encounter_id, version)
                group by all
                """
            ).fetchall()
        finally:
            con.close()
        by = {row[0]: row[1:] for row in counts}
        zero = (0, 0, 0, 0)
        no, pm = by.get("no_match", zero), by.get("potential_match", zero)
        print(
            f"| {weight:g} | {no[0]:,} | {no[2]:,} | {no[3]:,} | {pm[0]:,} | {pm[1]:,} | {pm[2]:,}"
            f" | {by.get('many_match', zero)[0]:,} | {by.get('match', zero)[0]:,} |"
        )


if __name__ == "__main__":
    main()
