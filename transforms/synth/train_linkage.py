"""The probabilistic tier's Splink model: its structure, and its training on a generated night.

The model is trained once and versioned as `transforms/linkage_model.json` (a Splink settings
dictionary with its m and u probabilities); the nightly run only loads it, never retrains.

    .venv/bin/python -m transforms.synth.train_linkage --data DIR [--out transforms/linkage_model.json]

DIR is a generated night (registry/, truth/encounters.parquet) with its encounters ingested into
DIR/warehouse. The versioned model was trained on

    .venv/bin/python benchmarks/reconcile_accuracy.py --data /tmp/hb/train --encounters 50000 \
        --citizens 1000000 --facilities 20 --seed 3 --prepare-only
    .venv/bin/python -m transforms.synth.train_linkage --data /tmp/hb/train

(a different seed from the benchmark's night, so the benchmark measures unseen data). u probabilities come from random registry pairs; m probabilities from the truth
labels of the generated night (the generator knows who each patient really is).

Comparison columns are the standardized ones of sql/reconcile/linkage_*.sql, the same on both
sides. Levels are plain SQL over those columns (no project macros), so the JSON stays readable
and portable to Splink's Spark backend.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from transforms.reconcile.model import MODEL_PATH, MODEL_VERSION, linkage_settings, load_model, name_tf_floor

__all__ = [
    "MODEL_PATH",
    "MODEL_VERSION",
    "linkage_settings",
    "load_model",
    "smooth_probabilities",
    "train_model",
]


def smooth_probabilities(
    model: dict[str, Any], m_floor: float = 0.001, u_floor: float = 1e-8
) -> dict[str, Any]:
    """The model with every m and u probability at least its floor: a level the training night
    never (or hardly ever) saw must not weigh as if it were impossible."""
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            level["m_probability"] = max(level.get("m_probability") or 0.0, m_floor)
            level["u_probability"] = max(level.get("u_probability") or 0.0, u_floor)
    return model


def train_model(
    encounters: Any, truth: Any, registry: Any, max_pairs: float = 2e7, seed: int = 1
) -> dict[str, Any]:
    """The trained settings dictionary: u from random (encounter, citizen) pairs, m from the
    truth's (encounter, citizen) pairs of the encounters no identifier settles, term frequencies
    from the registry.

    `encounters` are staged XML1 rows (frame or Parquet path), `truth` a frame with
    facility_code, encounter_id and the true citizen_id (null when absent from the registry),
    `registry` the snapshot (frame or Parquet path).
    """
    import logging

    from splink import DuckDBAPI, Linker

    from transforms.reconcile.stage import (
        ENCOUNTER_COLUMNS,
        ReconcileSettings,
        connect,
        read_sql,
        register_source,
    )

    con = connect(ReconcileSettings())
    register_source(con, "staged_encounters", encounters)
    con.execute(
        f"create view encounters_source as select {', '.join(ENCOUNTER_COLUMNS)} from staged_encounters"
    )
    register_source(con, "registry_source", registry)
    con.register("truth", truth[["facility_code", "encounter_id", "version", "citizen_id"]])
    con.execute(read_sql("registry_identities"))
    con.execute(read_sql("encounter_identities"))
    # Train on the encounters the identifier tiers leave over, the only ones the model ever
    # scores: their slips (a typo in a self-paying patient's name, a move) are far more common
    # than in the whole night, and the m probabilities must say so.
    for name in ("identifier_candidates", "deterministic_links"):
        con.execute(read_sql(name))
    for name in ("linkage_encounters", "linkage_registry", "name_frequencies"):
        con.execute(read_sql(name))
    con.execute(
        """create table labels as
        select 'encounters' as source_dataset_l, cast(e.enc_key as varchar) as unique_id_l,
               'registry' as source_dataset_r, t.citizen_id as unique_id_r
        from encounter_identities as e
        inner join linkage_encounters as l on l.unique_id = cast(e.enc_key as varchar)
        inner join truth as t using (facility_code, encounter_id, version)
        inner join registry_identities as r on r.citizen_id = t.citizen_id"""
    )
    (registry_rows,) = con.execute("select count(*) from registry_identities").fetchall()[0]
    db_api = DuckDBAPI(connection=con)
    linker = Linker(
        [
            db_api.register("linkage_encounters", table_name="encounters"),
            db_api.register("linkage_registry", table_name="registry"),
        ],
        linkage_settings(probability_two_random_records_match=1 / registry_rows),
        log_level=logging.WARNING,
    )
    linker.table_management.register_term_frequency_lookup(
        db_api.register("name_frequencies", table_name="tf_name_fold_registry"), "name_fold"
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=seed)
    linker.training.estimate_m_from_pairwise_labels("labels")
    # the near-name levels' frequency floor follows the trained u of the exact level
    model = name_tf_floor(smooth_probabilities(linker.misc.save_model_to_json()))
    model["linker_uid"] = f"healthbook-{MODEL_VERSION}"
    con.close()
    return model


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="generated night (registry/, truth/, warehouse/staging/)")
    parser.add_argument("--night", default="2026-11-26")
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    parser.add_argument("--priors-only", action="store_true", help="write the untrained priors")
    args = parser.parse_args(argv)
    if args.priors_only:
        model = linkage_settings()
    else:
        truth = pd.read_parquet(args.data / "truth" / "encounters.parquet")
        staged = args.data / "warehouse" / "staging" / "encounters" / f"night={args.night}"
        model = train_model(staged, truth, args.data / "registry")
    args.out.write_text(json.dumps(model, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
