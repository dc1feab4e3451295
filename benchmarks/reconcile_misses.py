"""The evidence behind every no-ID miss and every wrong link of a generated night (issue #18).

    .venv/bin/python benchmarks/reconcile_misses.py --data /work/hb_identity/hard20k

--data is a night prepared by `benchmarks/reconcile_accuracy.py --identity-profile hard
--prepare-only`. Reconciles the night in memory with the default settings (or --match-weight,
--margin), then, for each matchable patient with no ID that was not linked to the true citizen
and each wrong link, prints the levels and weights of the best candidate, the runner-up and the
true citizen per field, the margin, the deciding field and the outcome, and classifies the
case by what the evidence allows:
  unreachable      the true citizen was not a scored candidate (blocking)
  out_ranked       another candidate agrees at least as closely on every field (the truth calls
                   it non_separable or closer_namesake: no rule links the true citizen)
  linkable         the true citizen is the best candidate and some field separates it
  other            the true citizen is a candidate, not the best, and no other dominates it
Writes the rows to --out (Parquet) for further study. Not run in CI.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIELDS = ("name", "birth", "sex", "citizen_id", "social_insurance", "residence")


def open_prepared_night(data: Path, settings):
    """A reconcile connection over a prepared night: the views encounters_source (its staged
    encounters), registry_source (its registry) and truth, as `reconcile_tables` reads them."""
    from transforms.reconcile.stage import ENCOUNTER_COLUMNS, connect

    con = connect(settings)
    staged = sorted(str(p) for p in (data / "warehouse" / "staging" / "encounters").rglob("*.parquet"))
    con.read_parquet(staged, union_by_name=True, hive_partitioning=False).create_view("staged")
    con.execute(f"create view encounters_source as select {', '.join(ENCOUNTER_COLUMNS)} from staged")
    con.read_parquet(sorted(str(p) for p in (data / "registry").glob("*.parquet"))).create_view(
        "registry_source"
    )
    con.read_parquet(str(data / "truth" / "encounters.parquet")).create_view("truth")
    return con


def main() -> None:
    from transforms.reconcile.stage import ReconcileSettings, reconcile_tables

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--match-weight", type=float)
    parser.add_argument("--margin", type=float)
    parser.add_argument(
        "--review-weight",
        type=float,
        help="default: the settings' review weight, or --match-weight when lower",
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/reconcile_misses.parquet"))
    args = parser.parse_args()
    settings = ReconcileSettings()
    if args.match_weight is not None:
        settings = replace(settings, match_weight=args.match_weight)
    if args.margin is not None:
        settings = replace(settings, margin=args.margin)
    review_weight = args.review_weight
    if review_weight is None:
        review_weight = min(settings.review_weight, settings.match_weight)
    settings = replace(settings, review_weight=review_weight)
    con = open_prepared_night(args.data, settings)
    seconds = reconcile_tables(con, settings)
    print("steps (s):", seconds)
    levels = ", ".join(f"level_{f}" for f in FIELDS)
    weights = ", ".join(f"round(weight_{f}, 2)" for f in FIELDS)
    dominated = " and ".join(f"coalesce(o.level_{f}, -1) >= coalesce(t.level_{f}, -1)" for f in FIELDS)
    rows = con.execute(
        f"""
        with judged as (
            select l.facility_code, l.encounter_id, l.version, l.outcome, l.citizen_id, l.tier,
                   l.candidate_citizen_id, l.match_weight, l.margin, l.deciding_field,
                   t.citizen_id as true_citizen_id, t.identity_noise, e.enc_key,
                   list_contains(t.identity_noise, 'self_pay_no_id') as no_id,
                   list_has_any(t.identity_noise, ['non_separable', 'indistinguishable_twin', 'closer_namesake'])
                       as non_separable
            from patient_links as l
            inner join encounter_identities as e using (facility_code, encounter_id, version)
            inner join truth as t using (facility_code, encounter_id, version)
        ),
        flagged as (select *, outcome = 'match' and citizen_id = true_citizen_id as t_ok from judged)
        select c.*,
            (select struct_pack(rank := p.candidate_rank, weight := round(p.match_weight, 2),
                    levels := [{levels}], weights := [{weights}])
             from probabilistic_pairs as p where p.enc_key = c.enc_key and p.citizen_id = c.true_citizen_id) as true_pair,
            (select struct_pack(citizen := p.citizen_id, weight := round(p.match_weight, 2),
                    levels := [{levels}], weights := [{weights}])
             from probabilistic_pairs as p where p.enc_key = c.enc_key and p.candidate_rank = 1) as best,
            (select struct_pack(citizen := p.citizen_id, weight := round(p.match_weight, 2),
                    levels := [{levels}], weights := [{weights}])
             from probabilistic_pairs as p where p.enc_key = c.enc_key and p.candidate_rank = 2) as runner_up,
            (select count(*) from probabilistic_pairs as o, probabilistic_pairs as t
             where o.enc_key = c.enc_key and t.enc_key = c.enc_key and t.citizen_id = c.true_citizen_id
               and o.citizen_id <> t.citizen_id and {dominated}) as dominating
        from flagged as c
        where (c.outcome = 'match' and not c.t_ok)
           or (c.no_id and not c.non_separable and c.true_citizen_id is not null and not c.t_ok)
        """
    ).df()
    print(f"{len(rows)} cases (no-ID misses and wrong links)")

    def kind(r) -> str:
        if not isinstance(r["true_pair"], dict):
            return "unreachable"
        if r["dominating"] > 0:
            return "out_ranked"
        if r["true_pair"]["rank"] == 1:
            return "linkable"
        return "other"

    rows["case"] = rows.apply(kind, axis=1)
    rows["noise"] = rows["identity_noise"].apply(lambda n: ",".join(x for x in n if x != "self_pay_no_id"))
    print(rows.groupby(["case", "outcome"]).size().to_string())
    print("\nby deciding field and outcome (linkable):")
    linkable = rows[rows["case"].eq("linkable")]
    print(linkable.groupby(["outcome", "deciding_field"], dropna=False).size().to_string())
    print("\nfield levels: " + ", ".join(FIELDS))
    for _, r in rows.sort_values(["case", "outcome", "noise"]).iterrows():
        tp, b, s = (x if isinstance(x, dict) else None for x in (r["true_pair"], r["best"], r["runner_up"]))
        print(
            f"[{r['case']}/{r['outcome']}] {r['noise']} w={r['match_weight']} m={r['margin']} "
            f"field={r['deciding_field']} true={None if tp is None else (tp['rank'], tp['levels'], tp['weight'])} "
            f"best={None if b is None else (b['citizen'] == r['true_citizen_id'], b['levels'], b['weights'])} "
            f"runner={None if s is None else (s['citizen'] == r['true_citizen_id'], s['levels'], s['weights'])}"
        )
    rows.drop(columns=["true_pair", "best", "runner_up"]).to_parquet(args.out)


if __name__ == "__main__":
    main()
