"""Defects injected into a built encounter: blocking defects, money relations broken as real exports break them (REAL_EXPORTS.md), main-code shapes."""

from __future__ import annotations

import datetime as dt
import random

from transforms.synth import vocab
from transforms.synth.parts import NULL_TOKENS, EncounterPlan, instant_text, money_text


def apply_defects(plan: EncounterPlan, tables: dict[str, list[dict[str, str]]], rng: random.Random) -> None:
    """Content defects and value quirks (envelope-level ones are applied when the HOSO is packed)."""
    x1 = tables["XML1"][0]
    if "invalid_icd10" in plan.defects:
        x1["MA_BENH_CHINH"] = rng.choice(vocab.INVALID_ICD10)
        for t in ("XML13", "XML14"):
            if t in tables:
                tables[t][0]["MA_BENH_CHINH"] = x1["MA_BENH_CHINH"]
    if "discharge_before_admission" in plan.defects:
        # a clerk typed the discharge a day (or hours) before the admission
        admitted = dt.datetime.strptime(x1["NGAY_VAO"], "%Y%m%d%H%M")
        x1["NGAY_RA"] = instant_text(admitted - dt.timedelta(hours=rng.choice((3, 24, 26))))
        for t in ("XML7", "XML8"):
            if t in tables:
                tables[t][0]["NGAY_RA"] = x1["NGAY_RA"]
    if "totals_mismatch" in plan.defects:
        _drift_totals(plan, tables, rng)
    _shape_main_code(plan, tables, rng)
    if "null_token" in plan.defects:
        x1["CAN_NANG"] = rng.choice(NULL_TOKENS)
        for row in tables["XML3"]:
            row["T_TRANTT"] = rng.choice(NULL_TOKENS)
    if "comma_decimal" in plan.defects:
        if x1["CAN_NANG"] and x1["CAN_NANG"] not in NULL_TOKENS:
            x1["CAN_NANG"] = (
                x1["CAN_NANG"].replace(".", ",") if "." in x1["CAN_NANG"] else x1["CAN_NANG"] + ",0"
            )
        for row in tables["XML2"][:1]:
            for key in (
                "SO_LUONG",
                "DON_GIA",
                "THANH_TIEN_BV",
                "THANH_TIEN_BH",
                "T_BNTT",
                "T_BNCCT",
                "T_BHTT",
            ):
                if "." in row[key]:
                    row[key] = row[key].replace(".", ",")
                elif row[key] and row[key] != "0":
                    row[key] = row[key] + ",00"


# Money relations broken as real exports break them (REAL_EXPORTS.md), one tag per relation:
# `totals_drift:<relation>`; each shifts only the fields of its relation, so the others still hold.
_DRIFT_FIELDS = {
    "bhtt": (("T_BHTT", -1), ("T_NGUONKHAC", 1)),  # T_BHTT != T_TONGCHI_BH - T_BNCCT; parts add up
    "parts": (("T_BNTT", 1),),  # T_TONGCHI_BV != T_BHTT + T_BNCCT + T_BNTT + T_NGUONKHAC
    "total_bv": (("T_TONGCHI_BV", 1), ("T_NGUONKHAC", 1)),  # != Σ THANH_TIEN_BV (another source paid)
    "total_bh": (("T_TONGCHI_BH", 1), ("T_BHTT", 1)),  # != Σ THANH_TIEN_BH
    "drugs": (("T_THUOC", 1),),  # != Σ XML2 THANH_TIEN_BH and BV (a drug line added after totalling)
}


def _cents(text: str) -> int:
    return int(round(float(text or "0") * 100))


def _drift_totals(plan: EncounterPlan, tables: dict[str, list[dict[str, str]]], rng: random.Random) -> None:
    x1 = tables["XML1"][0]
    relations = [d.split(":", 1)[1] for d in plan.defects if d.startswith("totals_drift:")]
    if not relations:  # a plan tagged by hand without its relations: the grand and drug totals
        relations = ["total_bv", "drugs"]
    for relation in relations:
        if relation == "drugs_bv":
            if "drugs" in relations:
                continue  # T_THUOC already disagrees with both sums
            # T_THUOC written from the insured amounts (Σ THANH_TIEN_BH), not the hospital's;
            # when the two sums agree the relation cannot show, so shift it like "drugs"
            insured = sum(_cents(r.get("THANH_TIEN_BH", "")) for r in tables.get("XML2", []))
            hospital = sum(_cents(r.get("THANH_TIEN_BV", "")) for r in tables.get("XML2", []))
            if insured != hospital:
                x1["T_THUOC"] = money_text(insured)
                continue
            relation = "drugs"
        delta = rng.choice((1_500_000, 2_350_000, 4_000_000, 15_000))  # cents
        if relation == "bhtt":  # never below zero: the fund paid less than the insured share
            delta = min(delta, _cents(x1["T_BHTT"])) or delta
        for key, sign in _DRIFT_FIELDS[relation]:
            x1[key] = money_text(_cents(x1[key]) + sign * delta)


def _shape_main_code(
    plan: EncounterPlan, tables: dict[str, list[dict[str, str]]], rng: random.Random
) -> None:
    """The main code as real exports shape it: 3-character form, chapter XIX fifth character,
    retired codes, or empty in XML1 with the discharge diagnosis only in XML7 CHAN_DOAN_RV."""
    x1 = tables["XML1"][0]
    code, text = x1["MA_BENH_CHINH"], None
    if "icd10_three_char" in plan.defects and "." in code:
        code = code.split(".", 1)[0]
    elif "icd10_fifth_char" in plan.defects:
        code, text = rng.choice(vocab.FIFTH_CHAR_CODES)
    elif "icd10_retired" in plan.defects:
        code, text = rng.choice(vocab.RETIRED_CODES)
    elif "main_code_from_xml7" in plan.defects and "XML7" in tables:
        # XML7's discharge diagnosis carries the code ("<code> - <text>"); XML1 leaves it empty
        paper = tables["XML7"][0]
        paper["CHAN_DOAN_RV"] = f"{code} - {paper['CHAN_DOAN_RV']}"
        x1["MA_BENH_CHINH"] = ""
        return
    else:
        return
    x1["MA_BENH_CHINH"] = code
    if text:
        x1["CHAN_DOAN_RV"] = text
        for t in ("XML7", "XML8"):
            if t in tables:
                tables[t][0]["CHAN_DOAN_RV"] = text
    for t in ("XML13", "XML14"):
        if t in tables and "MA_BENH_CHINH" in tables[t][0]:
            tables[t][0]["MA_BENH_CHINH"] = code
