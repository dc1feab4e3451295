"""Checks computed row by row with pandas, where Great Expectations' row-level output is missing.

GX reports failing rows for single-column and column-pair expectations (those are in suites.py),
but not for list columns (MA_BENH_KT, MA_PTTT_QT, MA_THE_BHYT), rules across tables (a stay's
XML7/XML8, totals against line items, orphan line items) or conditional multi-column logic. Each
function here is pure: the night's frames in, every failing row out (no cap), plus how many rows it
evaluated so the report can tell "passed" from "not applicable".

Frames are the staged datasets of one night, each with a `_row_id` column (its position) and
date-kind columns already turned into timestamps by the runner.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from expectations.checks import Check
from transforms.icd10 import (
    ICD9_PROCEDURE_PATTERN,
    explode_codes,
    invalid_codes_in_lists,
    invalid_icd10_mask,
    is_valid_icd10,
)

Frames = dict[str, pd.DataFrame]
VERSION_KEY = ["facility_code", "encounter_id", "version"]
FAILURE_COLUMNS = ["dataset", "_row_id", "column", "value"]
LINE_DATASETS = (
    "drugs",
    "services",
    "lab_results",
    "clinical_course",
    "discharge_papers",
    "summaries",
    "referrals",
    "follow_ups",
)
_CARD = re.compile(r"^(?:[A-Z]{2}[1-5][0-9]{2}[0-9]{10}|[0-9]{10})$")
_CITIZEN_ID = r"^[0-9]{12}$"


@dataclass
class RowCheckOutcome:
    """Failing rows of one check (dataset, _row_id, column, value) and rows evaluated per dataset."""

    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FAILURE_COLUMNS))
    evaluated: dict[str, int] = field(default_factory=dict)

    def add(self, dataset: str, failing: pd.DataFrame | pd.Series, column: str, evaluated: int, values=None):
        """Record failing rows of `dataset` (a frame with _row_id, or a Series of values by row)."""
        self.evaluated[dataset] = self.evaluated.get(dataset, 0) + int(evaluated)
        if len(failing) == 0:
            return self
        if isinstance(failing, pd.Series):
            rows = pd.DataFrame({"_row_id": failing.index.to_numpy(), "value": failing.to_numpy()})
        else:
            source = failing[column] if values is None else values
            rows = pd.DataFrame({"_row_id": failing["_row_id"].to_numpy(), "value": np.asarray(source)})
        rows.insert(0, "dataset", dataset)
        rows.insert(2, "column", column)
        self.failures = pd.concat([self.failures, rows], ignore_index=True) if len(self.failures) else rows
        return self


def _has(frames: Frames, dataset: str, *columns: str) -> bool:
    frame = frames.get(dataset)
    return frame is not None and all(c in frame.columns for c in columns)


def _list_len(codes: pd.Series) -> pd.Series:
    return codes.map(lambda v: 0 if v is None or (not hasattr(v, "__len__")) else len(v)).astype("int64")


def _invalid_in_list(out: RowCheckOutcome, frames: Frames, dataset: str, column: str, is_valid) -> None:
    if not _has(frames, dataset, column):
        return
    codes = frames[dataset][column]
    bad = invalid_codes_in_lists(codes, is_valid)
    out.add(dataset, bad, column, evaluated=int((_list_len(codes) > 0).sum()))


def check_main_icd10_valid(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    out = RowCheckOutcome()
    if _has(frames, "encounters", "main_icd10"):
        enc = frames["encounters"]
        out.add(
            "encounters",
            enc[invalid_icd10_mask(enc["main_icd10"])],
            "main_icd10",
            enc["main_icd10"].notna().sum(),
        )
    return out


def check_secondary_icd10_valid(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    out = RowCheckOutcome()
    _invalid_in_list(out, frames, "encounters", "secondary_icd10", is_valid_icd10)
    return out


def check_secondary_icd10_count(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    out = RowCheckOutcome()
    if _has(frames, "encounters", "secondary_icd10"):
        enc = frames["encounters"]
        counts = _list_len(enc["secondary_icd10"])
        failing = enc[counts > int(check.params["max_codes"])]
        out.add(
            "encounters",
            failing,
            "secondary_icd10",
            (counts > 0).sum(),
            values=counts[failing.index].astype(str),
        )
    return out


def check_paper_icd10_valid(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    out = RowCheckOutcome()
    for dataset in ("referrals", "follow_ups"):
        if _has(frames, dataset, "main_icd10"):
            paper = frames[dataset]
            out.add(
                dataset,
                paper[invalid_icd10_mask(paper["main_icd10"])],
                "main_icd10",
                paper["main_icd10"].notna().sum(),
            )
        _invalid_in_list(out, frames, dataset, "secondary_icd10", is_valid_icd10)
    _invalid_in_list(out, frames, "services", "icd10_codes", is_valid_icd10)
    return out


def _unshaped_in_list(out: RowCheckOutcome, frames: Frames, dataset: str, column: str, pattern: str) -> None:
    """Each code of a list column that, stripped, does not match `pattern` (one regex pass, RE2)."""
    if not _has(frames, dataset, column):
        return
    codes = frames[dataset][column]
    exploded = explode_codes(codes)
    shaped = exploded.astype("str").str.strip().str.contains(pattern, regex=True, na=False)
    out.add(dataset, exploded[~shaped.to_numpy()], column, evaluated=int((_list_len(codes) > 0).sum()))


def check_procedure_icd9_shape(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    out = RowCheckOutcome()
    for dataset in ("encounters", "services"):
        _unshaped_in_list(out, frames, dataset, "procedure_icd9", ICD9_PROCEDURE_PATTERN)
    return out


def check_insurance_card_shape(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    out = RowCheckOutcome()
    _unshaped_in_list(out, frames, "encounters", "insurance_card", _CARD.pattern)
    return out


def _stays(frames: Frames, visit_types) -> pd.DataFrame:
    enc = frames["encounters"]
    return enc[enc["visit_type"].isin(list(visit_types))]


def check_inpatient_fields(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    out = RowCheckOutcome()
    if _has(frames, "encounters", "visit_type", "inpatient_at"):
        stays = _stays(frames, check.params["visit_types"])
        out.add("encounters", stays[stays["inpatient_at"].isna()], "inpatient_at", len(stays), values=None)
    return out


def _stays_without(frames: Frames, check: Check, paper_dataset: str) -> RowCheckOutcome:
    out = RowCheckOutcome()
    if not _has(frames, "encounters", "visit_type"):
        return out
    stays = _stays(frames, check.params["visit_types"])
    papers = frames.get(paper_dataset)
    if papers is None or papers.empty:
        missing = stays
    else:
        present = papers[VERSION_KEY].drop_duplicates()
        joined = stays.merge(present, on=VERSION_KEY, how="left", indicator=True)
        missing = stays[(joined["_merge"] == "left_only").to_numpy()]
    out.add("encounters", missing, "visit_type", len(stays))
    return out


def check_discharge_paper_present(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    return _stays_without(frames, check, "discharge_papers")


def check_summary_present(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    return _stays_without(frames, check, "summaries")


def check_birth_before_admission(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    out = RowCheckOutcome()
    if _has(frames, "encounters", "birth_date", "admitted_at"):
        enc = frames["encounters"]
        both = enc["birth_date"].notna() & enc["admitted_at"].notna()
        failing = enc[both & (enc["birth_date"] > enc["admitted_at"].dt.normalize())]
        out.add("encounters", failing, "birth_date", both.sum())
    return out


def check_inpatient_within_stay(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    out = RowCheckOutcome()
    if _has(frames, "encounters", "admitted_at", "inpatient_at", "discharged_at"):
        enc = frames["encounters"]
        at = enc["inpatient_at"]
        early = at.notna() & enc["admitted_at"].notna() & (at < enc["admitted_at"])
        late = at.notna() & enc["discharged_at"].notna() & (at > enc["discharged_at"])
        out.add("encounters", enc[early | late], "inpatient_at", at.notna().sum())
    return out


def _centimetres(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values.astype("str").str.strip().str.replace(",", ".", regex=False), errors="coerce")


def check_height_range(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    """Heights arrive as XML1 DU_PHONG (cm, as the 3176 annex asks) and as an XML4 indicator."""
    out = RowCheckOutcome()
    p = check.params

    def outside(cm: pd.Series) -> pd.Series:
        return (cm < p["min_cm"]) | (cm > p["max_cm"])

    if _has(frames, "encounters", "reserve"):
        enc = frames["encounters"]
        # DU_PHONG is free text in older exports: only a number is read as a height
        cm = _centimetres(enc["reserve"])
        out.add("encounters", enc[cm.notna() & outside(cm)], "reserve", cm.notna().sum())
    if _has(frames, "lab_results", "indicator_code", "indicator_name", "value"):
        labs = frames["lab_results"]
        names = labs["indicator_name"].astype("str").str.strip().str.lower()
        heights = labs[labs["indicator_code"].isin(p["indicator_codes"]) | names.isin(p["indicator_names"])]
        cm = _centimetres(heights["value"])
        out.add("lab_results", heights[cm.isna() | outside(cm)], "value", len(heights))
    return out


def check_citizen_id_agrees(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    """Digit 4 of a 12-digit ID: century and sex (0/1 1900s M/F, 2/3 2000s, 4/5 2100s); 5-6: year."""
    out = RowCheckOutcome()
    if not _has(frames, "encounters", "citizen_id", "sex_code", "birth_date"):
        return out
    enc = frames["encounters"]
    ids = enc["citizen_id"].astype("str").str.strip()
    twelve = ids.str.match(_CITIZEN_ID, na=False)
    scoped = enc[twelve]
    scoped_ids = ids[twelve]
    digit = scoped_ids.str[3].astype("int64")
    implied_year = 1900 + 100 * (digit // 2) + scoped_ids.str[4:6].astype("int64")
    implied_sex = np.where(digit % 2 == 0, "1", "2")
    sex = scoped["sex_code"]
    sex_disagrees = sex.isin(["1", "2"]) & (sex != implied_sex)
    year = scoped["birth_date"].dt.year
    year_disagrees = year.notna() & (year != implied_year)
    out.add("encounters", scoped[sex_disagrees | year_disagrees | (digit > 5)], "citizen_id", len(scoped))
    return out


def _card_periods(scoped: pd.DataFrame) -> pd.DataFrame:
    """One row per card period of each scoped encounter row (index: the row's label): start, end.

    Periods pair up by position; an encounter with no end dates has open-ended periods, and one
    with fewer ends than starts keeps only the periods that have their end position (as `zip`).
    """
    starts = scoped["card_valid_from"].explode()
    periods = pd.DataFrame(
        {
            "position": starts.groupby(level=0).cumcount().to_numpy(),
            "start": pd.to_datetime(starts.to_numpy(), errors="coerce"),
        },
        index=starts.index,
    )
    end_counts = _list_len(scoped["card_valid_to"])
    with_ends = scoped.loc[end_counts > 0, "card_valid_to"].explode()
    ends = pd.DataFrame(
        {
            "position": with_ends.groupby(level=0).cumcount().to_numpy(),
            "end": pd.to_datetime(with_ends.to_numpy(), errors="coerce"),
        },
        index=with_ends.index,
    )
    periods = periods.reset_index().merge(ends.reset_index(), on=["index", "position"], how="left")
    ends_listed = end_counts.reindex(periods["index"]).to_numpy()
    kept = (ends_listed == 0) | (periods["position"].to_numpy() < ends_listed)
    return periods[kept].set_index("index")


def check_card_valid_on_visit(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    """Card periods pair up by position (a card changed during the stay adds a period)."""
    out = RowCheckOutcome()
    if not _has(frames, "encounters", "card_valid_from", "card_valid_to", "admitted_at"):
        return out
    enc = frames["encounters"]
    scoped = enc[(_list_len(enc["card_valid_from"]) > 0) & enc["admitted_at"].notna()]
    periods = _card_periods(scoped)
    day = scoped["admitted_at"].dt.normalize().reindex(periods.index)
    covered = (periods["start"].isna() | (periods["start"] <= day)) & (
        periods["end"].isna() | (day <= periods["end"])
    )
    covered_rows = covered[covered].index.unique()
    failing = scoped[~scoped.index.isin(covered_rows)]
    value = failing["admitted_at"].dt.strftime("%Y-%m-%d")
    out.add("encounters", failing, "card_valid_to", len(scoped), values=value)
    return out


def check_line_item_has_encounter(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    out = RowCheckOutcome()
    enc = frames.get("encounters")
    known = enc[VERSION_KEY].drop_duplicates() if enc is not None and not enc.empty else None
    for dataset in LINE_DATASETS:
        lines = frames.get(dataset)
        if lines is None or lines.empty:
            continue
        if known is None:
            orphans = lines
        else:
            joined = lines[VERSION_KEY].merge(known, on=VERSION_KEY, how="left", indicator=True)
            orphans = lines[(joined["_merge"] == "left_only").to_numpy()]
        out.add(dataset, orphans, "encounter_id", len(lines))
    return out


# XML1 total -> the line-item column summed over XML2 and XML3 (3176 annex descriptions)
SUMMED_TOTALS = {
    "hospital_total_vnd": "amount_vnd",  # T_TONGCHI_BV = Σ THANH_TIEN_BV (XML2 + XML3)
    "insured_total_vnd": "insured_amount_vnd",  # T_TONGCHI_BH = Σ THANH_TIEN_BH
    "patient_paid_vnd": "patient_paid_vnd",  # T_BNTT = Σ T_BNTT
    "patient_copay_vnd": "patient_copay_vnd",  # T_BNCCT = Σ T_BNCCT
    "other_sources_vnd": "other_sources_vnd",  # T_NGUONKHAC = Σ T_NGUONKHAC
}
SUPPLY_COST_GROUPS = ("10", "11")  # MA_NHOM: medical supplies (in the list / paid at a rate)


def _sums(lines: pd.DataFrame | None, columns: list[str]) -> pd.DataFrame:
    """Per encounter version: the sum of each column and whether any of its values was null."""
    if lines is None or lines.empty:
        return pd.DataFrame(columns=VERSION_KEY)
    present = [c for c in columns if c in lines.columns]
    grouped = lines[VERSION_KEY + present].groupby(VERSION_KEY, sort=False)
    sums = grouped[present].sum(min_count=0)
    nulls = lines[present].isna().groupby([lines[k] for k in VERSION_KEY], sort=False).any()
    nulls.columns = [f"{c}__has_null" for c in present]
    return sums.join(nulls).reset_index()


def is_supply_line(services: pd.DataFrame) -> pd.Series:
    """A medical-supply row of XML3 (counted in T_VTYT): it names a supply or its cost group is one."""
    named = services["supply_code"].notna() & services["supply_code"].astype("str").str.strip().ne("")
    return named | services["cost_group"].isin(SUPPLY_COST_GROUPS)


def expected_totals(frames: Frames) -> pd.DataFrame:
    """Per encounter version: each XML1 total computed from the line items, NaN when not computable.

    Not computable means a contributing line amount is null (a NaN/null token the facility sent):
    the total cannot be verified, ingest has already flagged the row.
    """
    enc = frames["encounters"]
    drugs, services = frames.get("drugs"), frames.get("services")
    money = ["amount_vnd", "insured_amount_vnd", "patient_paid_vnd", "patient_copay_vnd", "other_sources_vnd"]
    d = _sums(drugs, money).add_prefix("d_").rename(columns={f"d_{k}": k for k in VERSION_KEY})
    s = _sums(services, money).add_prefix("s_").rename(columns={f"s_{k}": k for k in VERSION_KEY})
    supplies = services[is_supply_line(services)] if services is not None and not services.empty else None
    v = _sums(supplies, ["amount_vnd"]).add_prefix("v_").rename(columns={f"v_{k}": k for k in VERSION_KEY})
    out = enc[["_row_id", *VERSION_KEY]].copy()
    for part in (d, s, v):
        if len(part.columns) > len(VERSION_KEY):
            out = out.merge(part, on=VERSION_KEY, how="left")

    def summed(prefix: str, column: str) -> pd.Series:
        total = out.get(f"{prefix}{column}", pd.Series(0.0, index=out.index)).fillna(0.0)
        has_null = out.get(f"{prefix}{column}__has_null", pd.Series(False, index=out.index))
        return total.where(~has_null.fillna(False).astype(bool))

    result = pd.DataFrame({"_row_id": out["_row_id"].to_numpy()})
    for total, column in SUMMED_TOTALS.items():
        result[total] = (summed("d_", column) + summed("s_", column)).to_numpy()
    result["drugs_total_vnd"] = summed("d_", "amount_vnd").to_numpy()  # T_THUOC = Σ XML2 THANH_TIEN_BV
    result["supplies_total_vnd"] = summed("v_", "amount_vnd").to_numpy()  # T_VTYT = Σ XML3 supplies
    # T_BHTT = T_TONGCHI_BH - T_BNCCT, from XML1's own figures
    result["insurance_paid_vnd"] = (enc["insured_total_vnd"] - enc["patient_copay_vnd"]).to_numpy()
    return result


def check_totals_match(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    out = RowCheckOutcome()
    if not _has(
        frames, "encounters", *SUMMED_TOTALS, "drugs_total_vnd", "supplies_total_vnd", "insurance_paid_vnd"
    ):
        return out
    enc = frames["encounters"]
    expected = expected_totals(frames)
    tolerance = float(check.params["tolerance_vnd"])
    evaluated_rows = pd.Series(False, index=enc.index)
    for total in [*SUMMED_TOTALS, "drugs_total_vnd", "supplies_total_vnd", "insurance_paid_vnd"]:
        declared = enc[total].to_numpy(dtype="float64", na_value=np.nan)
        computed = expected[total].to_numpy(dtype="float64", na_value=np.nan)
        comparable = ~np.isnan(declared) & ~np.isnan(computed)
        evaluated_rows |= comparable
        bad = comparable & (np.abs(declared - computed) > tolerance)
        failing = enc[bad]
        values = [
            f"declared {a:.2f}, computed {b:.2f}" for a, b in zip(declared[bad], computed[bad], strict=True)
        ]
        out.add("encounters", failing, total, 0, values=values)
    out.evaluated["encounters"] = int(evaluated_rows.sum())
    return out


# The columns each check reads, per dataset (besides the keys): the quality stage reads only these
# from staging. tests/test_quality_batches.py proves each check gives the same outcome on frames cut
# down to them.
_TOTALS_COLUMNS = (*SUMMED_TOTALS, "drugs_total_vnd", "supplies_total_vnd", "insurance_paid_vnd")
_MONEY = tuple(SUMMED_TOTALS.values())
ROW_CHECK_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "conformance.main_icd10_valid": {"encounters": ("main_icd10",)},
    "conformance.secondary_icd10_valid": {"encounters": ("secondary_icd10",)},
    "conformance.secondary_icd10_count": {"encounters": ("secondary_icd10",)},
    "conformance.paper_icd10_valid": {
        "referrals": ("main_icd10", "secondary_icd10"),
        "follow_ups": ("main_icd10", "secondary_icd10"),
        "services": ("icd10_codes",),
    },
    "conformance.procedure_icd9_shape": {"encounters": ("procedure_icd9",), "services": ("procedure_icd9",)},
    "conformance.insurance_card_shape": {"encounters": ("insurance_card",)},
    "completeness.inpatient_fields": {"encounters": ("visit_type", "inpatient_at")},
    "completeness.discharge_paper_present": {"encounters": ("visit_type",), "discharge_papers": ()},
    "completeness.summary_present": {"encounters": ("visit_type",), "summaries": ()},
    "plausibility.birth_before_admission": {"encounters": ("birth_date", "admitted_at")},
    "plausibility.inpatient_within_stay": {"encounters": ("admitted_at", "inpatient_at", "discharged_at")},
    "plausibility.height_range": {
        "encounters": ("reserve",),
        "lab_results": ("indicator_code", "indicator_name", "value"),
    },
    "plausibility.citizen_id_agrees": {"encounters": ("citizen_id", "sex_code", "birth_date")},
    "plausibility.card_valid_on_visit": {"encounters": ("card_valid_from", "card_valid_to", "admitted_at")},
    "integrity.line_item_has_encounter": {"encounters": (), **dict.fromkeys(LINE_DATASETS, ())},
    "integrity.totals_match": {
        "encounters": _TOTALS_COLUMNS,
        "drugs": _MONEY,
        "services": (*_MONEY, "supply_code", "cost_group"),
    },
}
# Checks that join datasets on the encounter version key (VERSION_KEY): the runner gives them one
# facility partition of the night at a time (the key starts with facility_code), every other check
# one batch of rows of one dataset at a time.
CROSS_TABLE_CHECKS = frozenset(
    {
        "completeness.discharge_paper_present",
        "completeness.summary_present",
        "integrity.line_item_has_encounter",
        "integrity.totals_match",
    }
)

ROW_CHECKS: dict[str, Callable[[Frames, dt.date, Check], RowCheckOutcome]] = {
    "conformance.main_icd10_valid": check_main_icd10_valid,
    "conformance.secondary_icd10_valid": check_secondary_icd10_valid,
    "conformance.secondary_icd10_count": check_secondary_icd10_count,
    "conformance.paper_icd10_valid": check_paper_icd10_valid,
    "conformance.procedure_icd9_shape": check_procedure_icd9_shape,
    "conformance.insurance_card_shape": check_insurance_card_shape,
    "completeness.inpatient_fields": check_inpatient_fields,
    "completeness.discharge_paper_present": check_discharge_paper_present,
    "completeness.summary_present": check_summary_present,
    "plausibility.birth_before_admission": check_birth_before_admission,
    "plausibility.inpatient_within_stay": check_inpatient_within_stay,
    "plausibility.height_range": check_height_range,
    "plausibility.citizen_id_agrees": check_citizen_id_agrees,
    "plausibility.card_valid_on_visit": check_card_valid_on_visit,
    "integrity.line_item_has_encounter": check_line_item_has_encounter,
    "integrity.totals_match": check_totals_match,
}

__all__ = [
    "CROSS_TABLE_CHECKS",
    "ROW_CHECKS",
    "ROW_CHECK_COLUMNS",
    "RowCheckOutcome",
    "expected_totals",
    "explode_codes",
]
