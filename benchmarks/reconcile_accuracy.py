"""Accuracy and speed of reconciliation on a generated night, against a plain-Splink baseline.

    .venv/bin/python benchmarks/reconcile_accuracy.py --data /tmp/hb_recon_100k \
        --encounters 100000 --citizens 1000000 --seed 11

1. prepare (once, cached in --data): `generate_night` writes the extracts, the registry and the
   truth; `ingest_night` stages the encounters.
2. ours: `reconcile_night` (the stage itself: reads the staged Parquet and the registry snapshot,
   writes links, review queue and manifest), in a fresh process (peak RSS is that process's).
3. baseline: Splink alone with a plain configuration, no deterministic tier: lower-cased names,
   the raw SO_CCCD, exact/Jaro-Winkler/Levenshtein comparisons, trained on the night itself
   (u by random sampling, m by EM), a pair is a match at probability >= 0.99 and the best pair
   per encounter wins. Same data, same machine, same run, fresh process.
4. score both against truth/encounters.parquet: precision, recall of the matchable encounters
   (the true citizen is in the registry and is not an indistinguishable twin), F1, a confusion
   table by noise kind; writes benchmarks/results/reconcile_<label>.md.
Not run in CI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
# the "tiers_margin" method runs another checkout's pipeline (the tiers feeding Splink with a
# runner-up margin, before issue #18): HB_CODE_ROOT names it
sys.path.insert(0, os.environ.get("HB_CODE_ROOT", str(ROOT)))

NIGHT = dt.date(2026, 11, 26)
# a checkout of the pipeline before issue #18 (tiers feeding Splink with a runner-up margin):
#   mkdir -p /tmp/hb_id/before18 && git archive b747057 | tar -x -C /tmp/hb_id/before18
#   cp transforms/_cells*.so /tmp/hb_id/before18/transforms/
TIERS_MARGIN_ROOT = Path(os.environ.get("HB_TIERS_MARGIN_ROOT", "/tmp/hb_id/before18"))
# the truth's kinds of a patient no evidence tells apart from another citizen (truth many_match)
NON_SEPARABLE = ("indistinguishable_twin", "non_separable")
# another citizen fits the record better (the truth's closer_namesake): not matchable either, and a
# link is wrong, but candidates a field separates are not "non-separable"
UNMATCHABLE = (*NON_SEPARABLE, "closer_namesake")
KEY = ["facility_code", "encounter_id", "version"]


def context(data: Path):
    from transforms.core.context import NightContext
    from transforms.core.warehouse import Warehouse

    return NightContext(
        NIGHT, data / "extracts", data / "registry", Warehouse(data / "warehouse"), "sqlite://"
    )


def prepare(
    data: Path, encounters: int, citizens: int, seed: int, facilities: int, identity_profile: str = "default"
) -> dict:
    """Generate and ingest the night unless already there; returns the seconds spent."""
    seconds = {}
    if not (data / "truth" / "encounters.parquet").exists():
        from transforms.synth.generate import generate_night

        started = time.perf_counter()
        generate_night(
            data,
            NIGHT,
            facilities=facilities,
            encounters=encounters,
            citizens=citizens,
            seed=seed,
            identity_profile=identity_profile,
        )
        seconds["generate"] = time.perf_counter() - started
    ctx = context(data)
    if not list(ctx.warehouse.staging_night("encounters", NIGHT).rglob("*.parquet")):
        from transforms.ingest.stage import ingest_night

        started = time.perf_counter()
        ingest_night(ctx)
        seconds["ingest"] = time.perf_counter() - started
    return seconds


def run_ours(data: Path, out: Path, overrides: dict) -> dict:
    from transforms.reconcile.stage import ReconcileSettings, reconcile_night

    ctx = context(data)
    settings = replace(ReconcileSettings(), **overrides)
    started = time.perf_counter()
    manifest_path = reconcile_night(ctx, settings)
    seconds = time.perf_counter() - started
    links = pd.read_parquet(ctx.warehouse.staging_night("patient_links", NIGHT))
    kept = ["outcome", "citizen_id", "tier", "differences"]
    # the decision's evidence, for the threshold sweep (absent from older checkouts' links)
    kept += [
        c
        for c in ("match_weight", "decision_weight", "margin", "candidate_citizen_id", "deciding_field")
        if c in links
    ]
    links[KEY + kept].to_parquet(out)
    manifest = json.loads(manifest_path.read_text())
    return {"seconds": seconds, "steps": manifest["seconds"]}


BASELINE_INPUT_SQL = """
select
    {uid} as unique_id,
    lower(trim({name})) as full_name,
    {birth} as birth_date,
    {sex} as sex,
    nullif(trim({cid}), '') as citizen_id,
    {sin} as social_insurance_number,
    {ward} as ward_code
from {source}
"""


def run_baseline(data: Path, out: Path) -> dict:
    """Splink alone, plain configuration (see the module docstring)."""
    import logging

    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    ctx = context(data)
    con = duckdb.connect(config={"threads": 2, "memory_limit": "8GB"})
    started = time.perf_counter()
    staged = [str(p) for p in sorted(ctx.warehouse.staging_night("encounters", NIGHT).rglob("*.parquet"))]
    registry_files = [str(p) for p in sorted(Path(ctx.registry_path).rglob("*.parquet"))] or [
        str(ctx.registry_path)
    ]
    con.read_parquet(staged, union_by_name=True, hive_partitioning=False).create_view("staged")
    con.read_parquet(registry_files, union_by_name=True).create_view("registry_snapshot")
    con.execute(
        "create table encounters as "
        + BASELINE_INPUT_SQL.format(
            uid="concat_ws('|', facility_code, encounter_id, cast(version as varchar))",
            name="patient_name",
            birth="case birth_date_precision when 'day' then strftime(birth_date, '%Y%m%d') "
            "when 'month' then strftime(birth_date, '%Y%m') || '00' else strftime(birth_date, '%Y') || '0000' end",
            sex="sex_code",
            cid="citizen_id",
            sin="right(insurance_card[1], 10)",
            ward="ward_code",
            source="staged",
        )
    )
    con.execute(
        "create table registry as "
        + BASELINE_INPUT_SQL.format(
            uid="citizen_id",
            name="full_name",
            birth="birth_date",
            sex="sex",
            cid="citizen_id",
            sin="social_insurance_number",
            ward="ward_code",
            source="registry_snapshot",
        )
    )
    (registry_rows,) = con.execute("select count(*) from registry").fetchall()[0]
    loaded = time.perf_counter()
    settings = SettingsCreator(
        link_type="link_only",
        probability_two_random_records_match=1 / registry_rows,
        comparisons=[
            cl.JaroWinklerAtThresholds("full_name", [0.95, 0.88]).configure(term_frequency_adjustments=True),
            cl.LevenshteinAtThresholds("birth_date", [1, 2]),
            cl.ExactMatch("sex"),
            cl.LevenshteinAtThresholds("citizen_id", [1]),
            cl.ExactMatch("social_insurance_number"),
            cl.ExactMatch("ward_code"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("citizen_id"),
            block_on("social_insurance_number"),
            block_on("full_name", "substr(birth_date, 1, 4)"),
            block_on("birth_date", "sex"),
        ],
    )
    db_api = DuckDBAPI(connection=con)
    linker = Linker(
        [
            db_api.register("encounters", table_name="encounters"),
            db_api.register("registry", table_name="registry"),
        ],
        settings,
        log_level=logging.WARNING,
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=5e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("citizen_id"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("birth_date"))
    trained = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    links = con.execute(
        f"""
        with oriented as (
            select
                case when source_dataset_l = 'encounters' then unique_id_l else unique_id_r end as enc,
                case when source_dataset_l = 'encounters' then unique_id_r else unique_id_l end as citizen_id,
                match_probability
            from {predictions.physical_name}
        ),
        best as (
            select enc, arg_max(citizen_id, match_probability) as citizen_id, max(match_probability) as p
            from oriented group by enc
        )
        select
            split_part(e.unique_id, '|', 1) as facility_code,
            split_part(e.unique_id, '|', 2) as encounter_id,
            cast(split_part(e.unique_id, '|', 3) as bigint) as version,
            case when b.p >= 0.99 then 'match' else 'no_match' end as outcome,
            case when b.p >= 0.99 then b.citizen_id end as citizen_id
        from encounters as e left join best as b on b.enc = e.unique_id
        """
    ).df()
    finished = time.perf_counter()
    links.to_parquet(out)
    return {
        "seconds": finished - started,
        "steps": {
            "read": round(loaded - started, 3),
            "train": round(trained - loaded, 3),
            "predict_and_decide": round(finished - trained, 3),
        },
        "seconds_without_training": (loaded - started) + (finished - trained),
    }


def worker(method: str, data: Path, out: Path, overrides: dict) -> None:
    result = run_ours(data, out, overrides) if method in ("ours", "tiers_margin") else run_baseline(data, out)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def run_in_fresh_process(method: str, data: Path, out: Path, overrides: str) -> dict:
    command = [sys.executable, __file__, "--worker", method, "--data", str(data), "--links-out", str(out)]
    command += ["--settings", overrides]
    env = os.environ.copy()
    if method == "tiers_margin":
        env["HB_CODE_ROOT"] = env["PYTHONPATH"] = str(TIERS_MARGIN_ROOT)
        command = (
            command[:1] + [str(TIERS_MARGIN_ROOT / "benchmarks" / "reconcile_accuracy.py")] + command[2:]
        )
        command[command.index("--worker") + 1] = "ours"
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{proc.stderr[-4000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def load_truth(data: Path) -> pd.DataFrame:
    truth = pd.read_parquet(data / "truth" / "encounters.parquet")
    if "version" not in truth.columns:
        truth["version"] = 1
    if "expected_reason" not in truth.columns:
        truth["expected_reason"] = None
    truth["identity_noise"] = truth["identity_noise"].apply(lambda x: list(x) if x is not None else [])
    return truth


def score(links: pd.DataFrame, truth: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """Precision, recall and F1 of `match` against the truth, and the table by noise kind."""
    joined = links.merge(
        truth[KEY + ["citizen_id", "identity_noise", "expected_reason"]].rename(
            columns={"citizen_id": "true_citizen_id"}
        ),
        on=KEY,
        how="left",
        validate="many_to_one",
    )
    is_twin = joined["identity_noise"].apply(lambda n: any(k in n for k in NON_SEPARABLE))
    is_closer = joined["identity_noise"].apply(lambda n: "closer_namesake" in n)
    no_id = joined["identity_noise"].apply(lambda n: "self_pay_no_id" in n)
    matched = joined["outcome"].eq("match")
    correct = matched & joined["citizen_id"].eq(joined["true_citizen_id"])
    # a HOSO without XML1 is staged without any identity field: it cannot be reconciled (and is
    # quarantined as missing_xml1 anyway)
    has_identity = joined["expected_reason"].ne("missing_xml1")
    matchable = joined["true_citizen_id"].notna() & ~is_twin & ~is_closer & has_identity
    tp, fp = int(correct.sum()), int((matched & ~correct).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = int((correct & matchable).sum()) / int(matchable.sum()) if matchable.sum() else 1.0
    no_id_matchable = matchable & no_id
    no_id_recall = (
        int((correct & no_id_matchable).sum()) / int(no_id_matchable.sum()) if no_id_matchable.sum() else 1.0
    )
    summary = {
        "encounters": len(joined),
        "matchable": int(matchable.sum()),
        "matched": int(matched.sum()),
        "true_positives": tp,
        "false_positives": fp,
        "precision": precision,
        "recall": recall,
        "no_id_matchable": int(no_id_matchable.sum()),
        "no_id_recall": no_id_recall,
        # auto-linked although no evidence tells the true citizen from another (right or not)
        "non_separable_auto_linked": int(
            (matched & is_twin & ~joined["tier"].isin(["citizen_id", "social_insurance", "old_id"])).sum()
        )
        if "tier" in joined
        else int((matched & is_twin).sum()),
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        # a twin matched through an identifier of their own is distinguishable; matched on
        # name, birth, sex and address alone (the probabilistic tier) it is a guess
        "twins_auto_matched": int((matched & is_twin & joined.get("tier", "").eq("probabilistic")).sum())
        if "tier" in joined
        else int((matched & is_twin).sum()),
        "twins_matched_wrong": int((matched & ~correct & is_twin).sum()),
        "absent_auto_matched": int((matched & joined["true_citizen_id"].isna()).sum()),
        # linked to the citizen the evidence points at, who is not the patient
        "closer_namesake": int(is_closer.sum()),
        "closer_namesake_linked": int((matched & is_closer).sum()),
        # the truth says many_match for these: many_match is the right answer
        "non_separable": int(is_twin.sum()),
        "non_separable_many_match": int((is_twin & joined["outcome"].eq("many_match")).sum()),
    }
    joined["verdict"] = joined["outcome"].where(
        ~matched, correct.map({True: "match_right", False: "match_WRONG"})
    )
    joined["noise"] = joined["identity_noise"].apply(lambda n: n if n else ["clean"])
    table = (
        joined.explode("noise")
        .pivot_table(index="noise", columns="verdict", values="encounter_id", aggfunc="count", fill_value=0)
        .reindex(
            columns=["match_right", "match_WRONG", "potential_match", "many_match", "no_match"], fill_value=0
        )
    )
    table["total"] = table.sum(axis=1)
    # precision and recall by noise kind: recall over the kind's matchable records (a
    # non-separable record is never matchable: its right answer is many_match)
    exploded = joined.assign(correct=correct, matched=matched, matchable=matchable).explode("noise")
    by_kind = exploded.groupby("noise")[["correct", "matched", "matchable"]].sum()
    right_matchable = exploded[exploded["matchable"]].groupby("noise")["correct"].sum()
    table["precision"] = (by_kind["correct"] / by_kind["matched"]).round(5)
    table["recall"] = (right_matchable.reindex(table.index).fillna(0) / by_kind["matchable"]).round(5)
    return summary, table


def sweep(links: pd.DataFrame, truth: pd.DataFrame, weights, margins) -> pd.DataFrame:
    """What other thresholds would have decided on the same scored candidates: a probabilistic
    link carries its best candidate, weight, margin over the runner-up and deciding field (every
    candidate above the run's review weight), so the rule of sql/reconcile/patient_links.sql can
    be replayed. Valid for thresholds at or above the run's review weight."""
    rows = []
    decidable = links["tier"].eq("probabilistic") & links["outcome"].isin(["match", "potential_match"])
    # the thresholds apply to the decision weight (a residence that differs counts as none); a
    # checkout from before it has only Splink's weight
    weights_column = "decision_weight" if "decision_weight" in links else "match_weight"
    for weight in weights:
        for margin in margins:
            linked = (
                decidable
                & links[weights_column].ge(weight)
                & (links["margin"].isna() | links["margin"].ge(margin))
                & links["deciding_field"].notna()
            )
            replay = links.assign(
                outcome=links["outcome"].where(~decidable, "potential_match").where(~linked, "match"),
                citizen_id=links["citizen_id"].where(~decidable, links["candidate_citizen_id"].where(linked)),
            )
            s, _ = score(replay[KEY + ["outcome", "citizen_id", "tier"]], truth)
            rows.append(
                {
                    "match weight >=": weight,
                    "margin >=": margin,
                    "precision": round(s["precision"], 5),
                    "wrong": s["false_positives"],
                    "recall": round(s["recall"], 5),
                    "recall no-ID": round(s["no_id_recall"], 5),
                    "no-ID missed": s["no_id_matchable"] - round(s["no_id_recall"] * s["no_id_matchable"]),
                    "non-separable auto-linked": s["non_separable_auto_linked"],
                    "closer namesake linked": s["closer_namesake_linked"],
                }
            )
    return pd.DataFrame(rows)


def markdown(
    label: str, command: str, args, prep: dict, results: dict, scores: dict, tables: dict, sweep_table=None
) -> str:
    lines = [
        f"# Reconciliation accuracy and speed: {label}",
        "",
        f"Command: `{command}`",
        "",
        f"Data: {args.encounters:,} generated encounters (seed {args.seed}) against a {args.citizens:,}-row registry;"
        f" machine: {os.cpu_count()} cores; DuckDB threads 2. Preparation (generate + ingest, not timed,"
        " cached in --data): " + (", ".join(f"{k} {v:.0f} s" for k, v in prep.items()) or "reused") + ".",
        "",
        "| method | precision | recall (matchable) | recall no-ID | F1 | matched | wrong matches |"
        " non-separable auto-linked | non-separable matched wrong | non-separable many_match (right) |"
        " closer namesake linked (wrong) |"
        " absent auto-matched | seconds | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, s in scores.items():
        r = results[method]
        lines.append(
            f"| {method} | {s['precision']:.5f} | {s['recall']:.5f} | {s['no_id_recall']:.5f} ({s['no_id_matchable']:,})"
            f" | {s['f1']:.5f} | {s['matched']:,} |"
            f" {s['false_positives']:,} | {s['non_separable_auto_linked']} | {s['twins_matched_wrong']} |"
            f" {s['non_separable_many_match']} of {s['non_separable']} |"
            f" {s['closer_namesake_linked']} of {s['closer_namesake']} | {s['absent_auto_matched']} |"
            f" {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |"
        )
    if "baseline" in results and "ours" in results:
        base_s = results["baseline"]["seconds_without_training"]
        lines += [
            "",
            f"Time ratio ours / baseline: {results['ours']['seconds'] / base_s:.2f} against the baseline without its"
            f" training ({base_s:.1f} s), {results['ours']['seconds'] / results['baseline']['seconds']:.2f} with it.",
            f"F1 ours - baseline: {scores['ours']['f1'] - scores['baseline']['f1']:+.5f}.",
        ]
    lines += [
        "",
        "Definitions: a match is right when its citizen is the truth's. Matchable: the true citizen is"
        " in the registry, is not an indistinguishable twin, and the HOSO has its XML1 (a HOSO"
        " without XML1 is staged with no identity field at all; those rows are the `clean` no_match"
        " of both tables and are quarantined as missing_xml1). Twins auto-matched: twins matched on"
        " demographics alone (ours: the probabilistic tier; the baseline has no tiers, so any match).",
        "ours = `reconcile_night` with the versioned model `transforms/linkage_model.json`, trained"
        " on another generated night (seed 3), never on this one; the baseline trains on this night.",
        "Seconds are the median wall time of --repeat runs per method, each in a fresh process, the"
        " methods alternated, on a machine shared with other jobs; ratios are of those medians.",
    ]
    for method, r in results.items():
        lines += [
            "",
            f"{method} seconds of each run: {r['all_seconds']}; steps of the median run (s): "
            + ", ".join(f"{k} {v}" for k, v in r["steps"].items()),
        ]
    for method, table in tables.items():
        lines += ["", f"## Confusion by noise kind: {method}", "", table.to_markdown()]
    if sweep_table is not None:
        lines += [
            "",
            "## Threshold sweep: ours",
            "",
            "The scored candidates of one more ours run (review weight at the sweep's lowest weight, so"
            " every candidate above it carries its weight, margin and deciding field), decided with"
            " other thresholds (`sweep`).",
            "",
            sweep_table.to_markdown(index=False),
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--encounters", type=int, default=100_000)
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--facilities", type=int, default=40)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--label", default=None)
    parser.add_argument("--methods", default="ours,baseline")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the median is reported")
    parser.add_argument("--prepare-only", action="store_true", help="generate and ingest, then stop")
    parser.add_argument(
        "--identity-profile", default="default", help='generator profile: "default" or "hard"'
    )
    parser.add_argument("--worker", choices=["ours", "baseline", "tiers_margin"])
    parser.add_argument("--links-out", type=Path)
    parser.add_argument(
        "--settings", default="{}", help='ReconcileSettings overrides as JSON, e.g. {"model_path": "m.json"}'
    )
    args = parser.parse_args()
    if args.worker:
        overrides = json.loads(args.settings)
        if "model_path" in overrides:
            overrides["model_path"] = Path(overrides["model_path"])
        worker(args.worker, args.data, args.links_out, overrides)
        return
    command = "HB .venv/bin/python " + " ".join(sys.argv).replace(str(ROOT) + "/", "")
    command = command.replace("HB ", "")
    args.data.mkdir(parents=True, exist_ok=True)
    prep = prepare(
        args.data, args.encounters, args.citizens, args.seed, args.facilities, args.identity_profile
    )
    if args.prepare_only:
        print(prep)
        return
    truth = load_truth(args.data)
    results, scores, tables = {}, {}, {}
    methods = args.methods.split(",")
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    # the machine is shared: alternate the methods and keep each one's median run
    for _ in range(args.repeat):
        for method in methods:
            runs[method].append(
                run_in_fresh_process(method, args.data, args.data / f"links_{method}.parquet", args.settings)
            )
    for method in methods:
        ordered = sorted(runs[method], key=lambda r: r["seconds"])
        results[method] = ordered[len(ordered) // 2] | {
            "all_seconds": [round(r["seconds"], 2) for r in runs[method]]
        }
        out = args.data / f"links_{method}.parquet"
        scores[method], tables[method] = score(pd.read_parquet(out), truth)
        print(method, json.dumps(results[method]), json.dumps(scores[method]))
        print(tables[method].to_string())
    label = args.label or f"{args.encounters // 1000}k_vs_{args.citizens // 1000}k"
    sweep_table = None
    if "ours" in methods:
        # the sweep replays candidates down to its lowest weight: one more run whose review weight
        # is that low (the links are the same; only no_match/potential_match differ)
        weights = [6, 4, 2, 0, -2, -4]
        overrides = json.loads(args.settings) | {"review_weight": min(weights)}
        out = args.data / "links_ours_sweep.parquet"
        run_in_fresh_process("ours", args.data, out, json.dumps(overrides))
        ours = pd.read_parquet(out)
        if "match_weight" in ours:
            sweep_table = sweep(ours, truth, weights=weights, margins=[6, 5.5, 5, 4])
            print(sweep_table.to_string())
    report = markdown(label, command, args, prep, results, scores, tables, sweep_table)
    path = ROOT / "benchmarks" / "results" / f"reconcile_{label}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report + kept_analysis(path), encoding="utf-8")
    print(f"wrote {path}")


# Everything from this line on in a results file is written by people (analysis, targets, what
# was tried): a new run replaces the tables above it and keeps it.
KEPT_MARKER = "<!-- kept: written by hand, below the generated tables -->"


def kept_analysis(path: Path) -> str:
    """The hand-written part of an earlier results file at `path` ("" when none)."""
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8")
    at = text.find(KEPT_MARKER)
    return "" if at < 0 else "\n" + text[at:]


if __name__ == "__main__":
    main()
