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
import unicodedata
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from expectations.checks import Check
from transforms.core.icd10 import (
    ICD9_PROCEDURE_PATTERN,
    canonical_icd10,
    explode_codes,
    invalid_codes_in_lists,
    invalid_icd10_mask,
    is_retired_icd10,
    is_valid_icd10,
    resolve_main_icd10,
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


def _main_diagnosis(frames: Frames) -> tuple[pd.DataFrame, pd.Series, pd.Series, pd.Series] | None:
    """XML1's main code, whether it is empty / on the national list, and the resolution (XML7)."""
    if not _has(frames, "encounters", "main_icd10"):
        return None
    enc, papers = frames["encounters"], frames.get("discharge_papers")

    def derive() -> tuple[pd.Series, pd.Series, pd.DataFrame]:
        raw = enc["main_icd10"]
        empty = raw.isna() | raw.astype("str").str.strip().eq("")
        valid = ~empty & ~invalid_icd10_mask(raw)
        return empty, valid, resolve_main_icd10(enc, papers)

    # three checks of a batch read it: derived once (`_memo`)
    return enc, *_memo("main_diagnosis", (enc, papers), derive)


def check_main_icd10_valid(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    """Blocking: XML1 sends a main code that is not on the national list and XML7 has none either."""
    out = RowCheckOutcome()
    main = _main_diagnosis(frames)
    if main is not None:
        enc, empty, valid, resolved = main
        failing = ~empty & ~valid & resolved["main_icd10_source"].isna()
        out.add("encounters", enc[failing], "main_icd10", int((~empty).sum()))
    return out


def check_main_diagnosis_present(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    """Blocking: XML1's main code is empty and no XML7 of the version carries a valid one."""
    out = RowCheckOutcome()
    main = _main_diagnosis(frames)
    if main is not None:
        enc, empty, _, resolved = main
        failing = empty & resolved["main_icd10_source"].isna()
        out.add("encounters", enc[failing], "main_icd10", len(enc), values=np.full(int(failing.sum()), None))
    return out


def check_main_icd10_from_xml7(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    """Warning: XML1's main code is empty or malformed; the book shows XML7's (the facility should
    fix its XML1). The value names both codes."""
    out = RowCheckOutcome()
    main = _main_diagnosis(frames)
    if main is not None:
        enc, _, valid, resolved = main
        failing = resolved["main_icd10_source"].eq("xml7")
        values = [
            f"XML1 MA_BENH_CHINH={'' if pd.isna(sent) else sent} -> XML7 {code}"
            for sent, code in zip(
                enc.loc[failing, "main_icd10"], resolved.loc[failing, "main_icd10"], strict=True
            )
        ]
        out.add("encounters", enc[failing], "main_icd10", int((~valid).sum()), values=values)
    return out


def check_icd10_retired(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    """Warning: a main or secondary code WHO retired (D75.2, N18.8): valid, shown, reported."""
    out = RowCheckOutcome()
    if _has(frames, "encounters", "main_icd10"):
        enc = frames["encounters"]
        codes = enc["main_icd10"]
        verdict = {c: is_retired_icd10(c) for c in codes.dropna().unique()}
        retired = codes.map(verdict).eq(True).fillna(False).astype(bool)
        with_codes = codes.notna()
        if "secondary_icd10" in enc.columns:
            with_codes |= _list_len(enc["secondary_icd10"]) > 0
        out.add("encounters", enc[retired], "main_icd10", int(with_codes.sum()))
    if _has(frames, "encounters", "secondary_icd10"):
        exploded = explode_codes(frames["encounters"]["secondary_icd10"])
        retired = exploded[exploded.map(is_retired_icd10).astype(bool)] if len(exploded) else exploded
        out.add("encounters", retired, "secondary_icd10", 0)
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


# --- money: one warning check per relation (money is not part of the book) ----------------------------
# Real exports break the cross-table sums often (REAL_EXPORTS.md: T_THUOC = Σ XML2 THANH_TIEN_BV in
# 56% of a real hospital's encounters), so every relation is its own check with its own tolerance
# (checks.yaml `tolerance_vnd`) and its finding says by how much it failed.

SUPPLY_COST_GROUPS = ("10", "11")  # MA_NHOM: medical supplies (in the list / paid at a rate)


@dataclass(frozen=True)
class SumRelation:
    """An XML1 total that the 3176 annex defines as the sum of a line-item column."""

    total: str  # XML1 column
    total_field: str  # its XML 130 field, for the finding's text
    line_column: str  # the summed column of XML2/XML3
    line_field: str
    datasets: tuple[str, ...]  # summed over these line datasets
    supplies_only: bool = False  # XML3 medical-supply lines only (T_VTYT)

    def label(self) -> str:
        tables = " + ".join({"drugs": "XML2", "services": "XML3"}[d] for d in self.datasets)
        scope = " supply" if self.supplies_only else ""
        return f"Σ {tables}{scope} {self.line_field}"


SUM_RELATIONS: dict[str, SumRelation] = {
    "integrity.hospital_total_sum": SumRelation(
        "hospital_total_vnd", "T_TONGCHI_BV", "amount_vnd", "THANH_TIEN_BV", ("drugs", "services")
    ),
    "integrity.insured_total_sum": SumRelation(
        "insured_total_vnd", "T_TONGCHI_BH", "insured_amount_vnd", "THANH_TIEN_BH", ("drugs", "services")
    ),
    "integrity.drugs_total_sum": SumRelation(
        "drugs_total_vnd", "T_THUOC", "amount_vnd", "THANH_TIEN_BV", ("drugs",)
    ),
    "integrity.supplies_total_sum": SumRelation(
        "supplies_total_vnd", "T_VTYT", "amount_vnd", "THANH_TIEN_BV", ("services",), supplies_only=True
    ),
    "integrity.patient_paid_sum": SumRelation(
        "patient_paid_vnd", "T_BNTT", "patient_paid_vnd", "T_BNTT", ("drugs", "services")
    ),
    "integrity.patient_copay_sum": SumRelation(
        "patient_copay_vnd", "T_BNCCT", "patient_copay_vnd", "T_BNCCT", ("drugs", "services")
    ),
    "integrity.other_sources_sum": SumRelation(
        "other_sources_vnd", "T_NGUONKHAC", "other_sources_vnd", "T_NGUONKHAC", ("drugs", "services")
    ),
}

# XML1 identities: (check, left column, left field, [(sign, column, field)])
IDENTITIES = {
    # T_BHTT = T_TONGCHI_BH − T_BNCCT (the annex's formula for T_BHTT)
    "integrity.insurance_paid_identity": (
        "insurance_paid_vnd",
        "T_BHTT",
        [(1, "insured_total_vnd", "T_TONGCHI_BH"), (-1, "patient_copay_vnd", "T_BNCCT")],
    ),
    # T_TONGCHI_BV = T_BHTT + T_BNCCT + T_BNTT + T_NGUONKHAC (who pays the hospital's total)
    "integrity.hospital_total_identity": (
        "hospital_total_vnd",
        "T_TONGCHI_BV",
        [
            (1, "insurance_paid_vnd", "T_BHTT"),
            (1, "patient_copay_vnd", "T_BNCCT"),
            (1, "patient_paid_vnd", "T_BNTT"),
            (1, "other_sources_vnd", "T_NGUONKHAC"),
        ],
    ),
}
# the price column of each line dataset and its XML 130 field (XML2 DON_GIA, XML3 DON_GIA_BV)
LINE_PRICE_FIELDS = {"drugs": "DON_GIA", "services": "DON_GIA_BV"}


def vnd(amount: float) -> str:
    """An amount as a finding shows it: no trailing zeros ("120000", "1500.5")."""
    text = f"{amount:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _floats(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A money or quantity column as floats; a value that is no number is NaN (not verified)."""
    values = frame[column]
    if not pd.api.types.is_numeric_dtype(values.dtype):
        values = pd.to_numeric(values, errors="coerce")
    return values.to_numpy(dtype="float64", na_value=np.nan)


def is_supply_line(services: pd.DataFrame) -> pd.Series:
    """A medical-supply row of XML3 (counted in T_VTYT): it names a supply or its cost group is one."""
    named = services["supply_code"].notna() & services["supply_code"].astype("str").str.strip().ne("")
    return named | services["cost_group"].isin(SUPPLY_COST_GROUPS)


def line_sums(frames: Frames, relation: SumRelation) -> pd.Series:
    """Per encounter row (indexed like frames["encounters"]): the relation's sum over the line
    items, 0 with no line, NaN when a contributing line amount is null (the sum is unknown: a
    NaN/null token the facility sent, which ingest already flagged)."""
    enc = frames["encounters"]
    rows, amounts = [], []
    for lines in _relation_lines(frames, relation):
        at = _encounter_row_of_lines(enc, lines)
        if at is None:  # keys that are null or not unique: the general join
            return _line_sums_joined(frames, relation)
        amount = lines[relation.line_column].astype("float64").to_numpy()
        if relation.supplies_only:
            keep = is_supply_line(lines).to_numpy(dtype=bool)
            at, amount = at[keep], amount[keep]
        rows.append(at)
        amounts.append(amount)
    if not rows:
        return pd.Series(0.0, index=enc.index)
    # the lines in the order the join took them (each dataset's rows, datasets in order): pandas'
    # grouped sum then adds each encounter's amounts in the same order, to the same float
    lines = pd.DataFrame({"row": np.concatenate(rows), "amount": np.concatenate(amounts)})
    lines = lines[lines["row"] >= 0]
    lines["unknown"] = lines["amount"].isna()
    sums = lines.groupby("row", sort=False).agg(total=("amount", "sum"), unknown=("unknown", "any"))
    total = np.zeros(len(enc))
    at = sums.index.to_numpy()
    total[at] = np.where(
        sums["unknown"].to_numpy(dtype=bool), np.nan, sums["total"].to_numpy(dtype="float64")
    )
    return pd.Series(total, index=enc.index)


def _relation_lines(frames: Frames, relation: SumRelation):
    """The line frames a sum relation adds up, in its datasets' order (those present, with rows
    and the summed column)."""
    for dataset in relation.datasets:
        lines = frames.get(dataset)
        if lines is not None and not lines.empty and relation.line_column in lines.columns:
            yield lines


def _memo(name: str, frames: tuple[pd.DataFrame | None, ...], compute: Callable[[], object]):
    """`compute()` once per set of frames (by identity) for the checks of one batch that need the
    same derived value; held while the frames live, at most 8 values (no frame is kept alive:
    a value must not hold its frames)."""
    key = (name, *(id(f) for f in frames))
    hit = _MEMO.get(key)
    if hit is not None and all(
        (r() if r is not None else None) is f for r, f in zip(hit[0], frames, strict=True)
    ):
        return hit[1]
    value = compute()
    for stale in [k for k, (refs, _) in _MEMO.items() if any(r is not None and r() is None for r in refs)]:
        del _MEMO[stale]
    if len(_MEMO) >= 8:
        _MEMO.clear()
    _MEMO[key] = ([weakref.ref(f) if f is not None else None for f in frames], value)
    return value


_MEMO: dict[tuple, tuple[list, object]] = {}


def _encounter_row_of_lines(enc: pd.DataFrame, lines: pd.DataFrame) -> np.ndarray | None:
    """For each row of `lines`, the position of its encounter version's row in `enc` (-1: none);
    None when a key is null or the encounters' keys are not unique (the general join then).
    The seven sum checks of a batch share it (`_memo`) instead of a groupby and a merge on the
    three key columns each."""

    def lookup() -> np.ndarray | None:
        if enc[VERSION_KEY].isna().any().any() or lines[VERSION_KEY].isna().any().any():
            return None
        index = pd.MultiIndex.from_frame(enc[VERSION_KEY])
        return index.get_indexer(pd.MultiIndex.from_frame(lines[VERSION_KEY])) if index.is_unique else None

    return _memo("encounter_row_of_lines", (enc, lines), lookup)


def _line_sums_joined(frames: Frames, relation: SumRelation) -> pd.Series:
    """`line_sums` by a groupby on the key columns and a merge (any keys)."""
    enc = frames["encounters"]
    parts = []
    for lines in _relation_lines(frames, relation):
        if relation.supplies_only:
            lines = lines[is_supply_line(lines)]
        amounts = lines[relation.line_column].astype("float64")
        parts.append(
            pd.DataFrame({k: lines[k].to_numpy() for k in VERSION_KEY} | {"amount": amounts.to_numpy()})
        )
    if not parts:
        return pd.Series(0.0, index=enc.index)
    lines = pd.concat(parts, ignore_index=True)
    lines["unknown"] = lines["amount"].isna()
    sums = lines.groupby(VERSION_KEY, sort=False).agg(total=("amount", "sum"), unknown=("unknown", "any"))
    joined = enc[VERSION_KEY].merge(sums.reset_index(), on=VERSION_KEY, how="left")
    total = joined["total"].fillna(0.0).where(~joined["unknown"].fillna(False).astype(bool))
    return pd.Series(total.to_numpy(dtype="float64"), index=enc.index)


def _sum_check(check_id: str):
    relation = SUM_RELATIONS[check_id]

    def check(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
        out = RowCheckOutcome()
        if not _has(frames, "encounters", relation.total):
            return out
        enc = frames["encounters"]
        declared = _floats(enc, relation.total)
        computed = line_sums(frames, relation).to_numpy()
        comparable = ~np.isnan(declared) & ~np.isnan(computed)
        diff = declared - computed
        bad = comparable & (np.abs(diff) > float(check.params["tolerance_vnd"]))
        values = [
            f"{relation.total_field}={vnd(a)} vs {relation.label()}={vnd(b)} (diff {vnd(d)})"
            for a, b, d in zip(declared[bad], computed[bad], diff[bad], strict=True)
        ]
        out.add("encounters", enc[bad], relation.total, int(comparable.sum()), values=values)
        return out

    check.__name__ = f"check_{check_id.split('.')[1]}"
    check.__doc__ = f"{relation.total_field} = {relation.label()}, within the check's tolerance."
    return check


def _identity_check(check_id: str):
    left, left_field, terms = IDENTITIES[check_id]

    def check(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
        out = RowCheckOutcome()
        if not _has(frames, "encounters", left, *(c for _, c, _ in terms)):
            return out
        enc = frames["encounters"]
        declared = _floats(enc, left)
        computed = sum(sign * _floats(enc, column) for sign, column, _ in terms)
        comparable = ~np.isnan(declared) & ~np.isnan(computed)
        diff = declared - computed
        bad = comparable & (np.abs(diff) > float(check.params["tolerance_vnd"]))
        formula = " ".join(
            f"{'+' if sign > 0 else '−'} {field}" if i else (field if sign > 0 else f"−{field}")
            for i, (sign, _, field) in enumerate(terms)
        )
        values = [
            f"{left_field}={vnd(a)} vs {formula}={vnd(b)} (diff {vnd(d)})"
            for a, b, d in zip(declared[bad], computed[bad], diff[bad], strict=True)
        ]
        out.add("encounters", enc[bad], left, int(comparable.sum()), values=values)
        return out

    check.__name__ = f"check_{check_id.split('.')[1]}"
    return check


def check_line_amount(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    """THANH_TIEN_BV = SO_LUONG × DON_GIA(_BV) on every drug and service line (a line with a null
    operand is not verified)."""
    out = RowCheckOutcome()
    tolerance = float(check.params["tolerance_vnd"])
    for dataset, price_field in LINE_PRICE_FIELDS.items():
        if not _has(frames, dataset, "quantity", "unit_price_vnd", "amount_vnd"):
            continue
        lines = frames[dataset]
        quantity, price = _floats(lines, "quantity"), _floats(lines, "unit_price_vnd")
        declared = _floats(lines, "amount_vnd")
        computed = quantity * price
        comparable = ~np.isnan(declared) & ~np.isnan(computed)
        diff = declared - computed
        bad = comparable & (np.abs(diff) > tolerance)
        values = [
            f"THANH_TIEN_BV={vnd(a)} vs SO_LUONG×{price_field}={vnd(q)}×{vnd(u)}={vnd(b)} (diff {vnd(d)})"
            for a, q, u, b, d in zip(
                declared[bad], quantity[bad], price[bad], computed[bad], diff[bad], strict=True
            )
        ]
        out.add(dataset, lines[bad], "amount_vnd", int(comparable.sum()), values=values)
    return out


# --- rules of the public claim checkers (issue 15, item 5): warnings ----------------------------------

# per line dataset: (ordered column, [(later column, its XML 130 field)])
LINE_TIMES = {
    "drugs": ("ordered_at", [("administered_at", "NGAY_TH_YL")]),
    "services": ("ordered_at", [("performed_at", "NGAY_TH_YL"), ("resulted_at", "NGAY_KQ")]),
}


def _minute(values: pd.Series) -> list[str]:
    return [v.strftime("%Y%m%d%H%M") for v in values]


def check_line_time_order(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    """NGAY_TH_YL (execution) and NGAY_KQ (result) are not before NGAY_YL (the order)."""
    out = RowCheckOutcome()
    for dataset, (ordered, later) in LINE_TIMES.items():
        for column, source in later:
            if not _has(frames, dataset, ordered, column):
                continue
            lines = frames[dataset]
            both = lines[ordered].notna() & lines[column].notna()
            failing = lines[both & (lines[column] < lines[ordered])]
            values = [
                f"{source}={a} < NGAY_YL={b}"
                for a, b in zip(_minute(failing[column]), _minute(failing[ordered]), strict=True)
            ]
            out.add(dataset, failing, column, int(both.sum()), values=values)
    return out


def check_line_within_stay(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    """Orders and executions lie within NGAY_VAO..NGAY_RA of their XML1; a result may come after
    discharge (the annex allows results up to 30 days later), so NGAY_KQ only >= NGAY_VAO."""
    out = RowCheckOutcome()
    if not _has(frames, "encounters", "admitted_at", "discharged_at"):
        return out
    stay = frames["encounters"][[*VERSION_KEY, "admitted_at", "discharged_at"]].drop_duplicates(VERSION_KEY)
    for dataset, (ordered, later) in LINE_TIMES.items():
        lines = frames.get(dataset)
        if lines is None or lines.empty:
            continue
        joined = lines[VERSION_KEY].merge(stay, on=VERSION_KEY, how="left")
        start = pd.Series(joined["admitted_at"].to_numpy(), index=lines.index)
        end = pd.Series(joined["discharged_at"].to_numpy(), index=lines.index)
        for column, bounded_above in [(ordered, True), *((c, f != "NGAY_KQ") for c, f in later)]:
            if column not in lines.columns:
                continue
            at = lines[column]
            scoped = at.notna() & start.notna()
            early = scoped & (at < start)
            late = scoped & end.notna() & (at > end) if bounded_above else pd.Series(False, index=lines.index)
            failing = lines[early | late]
            values = [
                f"{a} outside {b}..{c}"
                for a, b, c in zip(
                    _minute(failing[column]),
                    _minute(start[failing.index]),
                    ["" if pd.isna(e) else e.strftime("%Y%m%d%H%M") for e in end[failing.index]],
                    strict=True,
                )
            ]
            out.add(dataset, failing, column, int(scoped.sum()), values=values)
    return out


def check_treatment_days(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    """SO_NGAY_DTRI by the 3176 annex: NGAY_RA − NGAY_VAO + 1 (calendar days) for stays and the
    other visit types it names; 0 for "09"; an examination ("01") 0 (130's rule) or the formula;
    days with services ("02", "08") at most the formula; "05"/"07" (days of drugs) not checked."""
    out = RowCheckOutcome()
    if not _has(frames, "encounters", "treatment_days", "visit_type", "admitted_at", "discharged_at"):
        return out
    enc = frames["encounters"]
    p = check.params
    days_sent = enc["treatment_days"].astype("float64")
    formula = (enc["discharged_at"].dt.normalize() - enc["admitted_at"].dt.normalize()).dt.days + 1
    visit = enc["visit_type"]
    known = days_sent.notna() & formula.notna()
    exact = visit.isin(p["formula_visit_types"])
    zero = visit.isin(p["zero_visit_types"])
    zero_or_formula = visit.isin(p["zero_or_formula_visit_types"])
    at_most = visit.isin(p["at_most_formula_visit_types"])
    bad = (
        (exact & (days_sent != formula))
        | (zero & (days_sent != 0))
        | (zero_or_formula & (days_sent != 0) & (days_sent != formula))
        | (at_most & ((days_sent < 0) | (days_sent > formula)))
    )
    scoped = known & (exact | zero | zero_or_formula | at_most)
    failing = enc[scoped & bad]
    values = [
        f"SO_NGAY_DTRI={int(d)} vs NGAY_RA-NGAY_VAO+1={int(f)} (MA_LOAI_KCB {v})"
        for d, f, v in zip(
            days_sent[failing.index], formula[failing.index], failing["visit_type"], strict=True
        )
    ]
    out.add("encounters", failing, "treatment_days", int(scoped.sum()), values=values)
    return out


def _first_card(cards: pd.Series) -> pd.Series:
    """The first card of a list column (a card changed during the stay adds more), stripped."""
    first = cards.map(lambda v: v[0] if v is not None and hasattr(v, "__len__") and len(v) else None)
    return (
        first.astype("object")
        .where(first.notna(), None)
        .map(lambda v: v.strip() or None if isinstance(v, str) else None)
    )


def check_duplicate_claim(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    """Two encounters (different MA_LK) of one facility tonight with the same card, admission,
    discharge and main code: the same visit claimed twice. Every row of such a group is listed,
    its value naming the other encounters."""
    out = RowCheckOutcome()
    columns = ("insurance_card", "admitted_at", "discharged_at", "main_icd10")
    if not _has(frames, "encounters", *columns):
        return out
    enc = frames["encounters"]
    codes = enc["main_icd10"]
    canonical = {c: canonical_icd10_or_none(c) for c in codes.dropna().unique()}  # once per code
    key = pd.DataFrame(
        {
            "facility_code": enc["facility_code"],
            "card": _first_card(enc["insurance_card"]),
            "admitted_at": enc["admitted_at"],
            "discharged_at": enc["discharged_at"],
            "main": codes.map(canonical),
            "encounter_id": enc["encounter_id"],
        },
        index=enc.index,
    )
    scoped = key.notna().all(axis=1)
    key = key[scoped]
    group = ["facility_code", "card", "admitted_at", "discharged_at", "main"]
    distinct = key.drop_duplicates([*group, "encounter_id"])
    # a group with two distinct MA_LK: vectorised first, lists only for the (rare) duplicates
    shared = distinct[distinct.duplicated(group, keep=False)]
    if shared.empty:
        out.add("encounters", enc.iloc[0:0], "insurance_card", int(scoped.sum()))
        return out
    counts = shared.groupby(group, sort=False)["encounter_id"].agg(list)
    dup = key.assign(_idx=key.index).merge(counts.rename("ids").reset_index(), on=group, how="inner")
    dup = dup.set_index("_idx").sort_index()
    failing = enc.loc[dup.index]
    values = [
        "same card, dates and main code as " + ", ".join(sorted(i for i in ids if i != own))
        for own, ids in zip(dup["encounter_id"], dup["ids"], strict=True)
    ]
    out.add("encounters", failing, "insurance_card", int(scoped.sum()), values=values)
    return out


def canonical_icd10_or_none(code) -> str | None:
    return canonical_icd10(code) if isinstance(code, str) else None


STT_DATASETS = ("drugs", "services", "lab_results", "clinical_course")


def check_unique_line_number(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    """STT is unique within one table of one encounter version (XML2-XML5)."""
    out = RowCheckOutcome()
    for dataset in STT_DATASETS:
        if not _has(frames, dataset, "line_number"):
            continue
        lines = frames[dataset]
        scoped = lines["line_number"].notna()
        dup = lines[scoped].duplicated([*VERSION_KEY, "line_number"], keep=False)
        failing = lines[scoped][dup]
        out.add(dataset, failing, "line_number", int(scoped.sum()), values=failing["line_number"].astype(str))
    return out


# a paper's demographics against its XML1: (column, XML 130 field)
PAPER_DEMOGRAPHICS = (("patient_name", "HO_TEN"), ("birth_date", "NGAY_SINH"), ("sex_code", "GIOI_TINH"))
PAPER_TABLES = {"referrals": "XML13", "follow_ups": "XML14"}


def _same_name(text: pd.Series) -> pd.Series:
    """A name as compared: NFC, case-folded, single spaces (papers are few: one call per row)."""
    return text.map(lambda v: " ".join(unicodedata.normalize("NFC", str(v)).casefold().split()))


def check_paper_demographics(frames: Frames, night: dt.date, check: Check) -> RowCheckOutcome:
    """XML13/XML14 HO_TEN, NGAY_SINH and GIOI_TINH equal XML1's (names compared without case or
    extra spaces). The value names the field, never the person's data."""
    out = RowCheckOutcome()
    if not _has(frames, "encounters", *(c for c, _ in PAPER_DEMOGRAPHICS)):
        return out
    enc = frames["encounters"][[*VERSION_KEY, *(c for c, _ in PAPER_DEMOGRAPHICS)]].drop_duplicates(
        VERSION_KEY
    )
    for dataset, table in PAPER_TABLES.items():
        papers = frames.get(dataset)
        if papers is None or papers.empty:
            continue
        joined = papers[VERSION_KEY].merge(enc, on=VERSION_KEY, how="left", suffixes=("", "_xml1"))
        for column, source in PAPER_DEMOGRAPHICS:
            if column not in papers.columns:
                continue
            mine = pd.Series(papers[column].to_numpy(), index=papers.index)
            theirs = pd.Series(joined[column].to_numpy(), index=papers.index)
            both = mine.notna() & theirs.notna()
            if column == "patient_name":
                differs = pd.Series(False, index=papers.index)
                differs[both] = _same_name(mine[both]) != _same_name(theirs[both])
            elif column == "birth_date":
                differs = pd.to_datetime(mine, errors="coerce") != pd.to_datetime(theirs, errors="coerce")
            else:
                differs = mine.astype("str") != theirs.astype("str")
            failing = papers[both & differs]
            out.add(
                dataset,
                failing,
                column,
                int(both.sum()),
                values=np.full(len(failing), f"{table} {source} differs from XML1"),
            )
    return out


# The columns each check reads, per dataset (besides the keys): the quality stage reads only these
# from staging. tests/test_quality_batches.py proves each check gives the same outcome on frames cut
# down to them.
_MAIN_DIAGNOSIS_COLUMNS = {
    "encounters": ("main_icd10",),
    "discharge_papers": ("main_icd10", "discharge_diagnosis"),
}
ROW_CHECK_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "conformance.main_icd10_valid": _MAIN_DIAGNOSIS_COLUMNS,
    "completeness.main_diagnosis_present": _MAIN_DIAGNOSIS_COLUMNS,
    "conformance.main_icd10_from_xml7": _MAIN_DIAGNOSIS_COLUMNS,
    "conformance.icd10_retired": {"encounters": ("main_icd10", "secondary_icd10")},
    "plausibility.line_time_order": {
        "drugs": ("ordered_at", "administered_at"),
        "services": ("ordered_at", "performed_at", "resulted_at"),
    },
    "plausibility.line_within_stay": {
        "encounters": ("admitted_at", "discharged_at"),
        "drugs": ("ordered_at", "administered_at"),
        "services": ("ordered_at", "performed_at", "resulted_at"),
    },
    "plausibility.treatment_days": {
        "encounters": ("treatment_days", "visit_type", "admitted_at", "discharged_at")
    },
    "integrity.duplicate_claim": {
        "encounters": ("insurance_card", "admitted_at", "discharged_at", "main_icd10")
    },
    "conformance.unique_line_number": dict.fromkeys(STT_DATASETS, ("line_number",)),
    "conformance.paper_demographics": {
        "encounters": tuple(c for c, _ in PAPER_DEMOGRAPHICS),
        **dict.fromkeys(PAPER_TABLES, tuple(c for c, _ in PAPER_DEMOGRAPHICS)),
    },
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
    **{
        check_id: {
            "encounters": (relation.total,),
            **{
                d: (relation.line_column, *(("supply_code", "cost_group") if relation.supplies_only else ()))
                for d in relation.datasets
            },
        }
        for check_id, relation in SUM_RELATIONS.items()
    },
    **{
        check_id: {"encounters": (left, *(c for _, c, _ in terms))}
        for check_id, (left, _, terms) in IDENTITIES.items()
    },
    "integrity.line_amount": {
        "drugs": ("quantity", "unit_price_vnd", "amount_vnd"),
        "services": ("quantity", "unit_price_vnd", "amount_vnd"),
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
        *SUM_RELATIONS,
        # XML1 with its XML7 (the main code may come from the discharge paper)
        "conformance.main_icd10_valid",
        "completeness.main_diagnosis_present",
        "conformance.main_icd10_from_xml7",
        # lines with their XML1, papers with their XML1, an encounter's lines whole, a facility's night
        "plausibility.line_within_stay",
        "conformance.paper_demographics",
        "conformance.unique_line_number",
        "integrity.duplicate_claim",
    }
)

ROW_CHECKS: dict[str, Callable[[Frames, dt.date, Check], RowCheckOutcome]] = {
    "conformance.main_icd10_valid": check_main_icd10_valid,
    "completeness.main_diagnosis_present": check_main_diagnosis_present,
    "conformance.main_icd10_from_xml7": check_main_icd10_from_xml7,
    "conformance.icd10_retired": check_icd10_retired,
    "plausibility.line_time_order": check_line_time_order,
    "plausibility.line_within_stay": check_line_within_stay,
    "plausibility.treatment_days": check_treatment_days,
    "integrity.duplicate_claim": check_duplicate_claim,
    "conformance.unique_line_number": check_unique_line_number,
    "conformance.paper_demographics": check_paper_demographics,
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
    **{check_id: _sum_check(check_id) for check_id in SUM_RELATIONS},
    **{check_id: _identity_check(check_id) for check_id in IDENTITIES},
    "integrity.line_amount": check_line_amount,
}

__all__ = [
    "CROSS_TABLE_CHECKS",
    "ROW_CHECKS",
    "ROW_CHECK_COLUMNS",
    "SUM_RELATIONS",
    "RowCheckOutcome",
    "explode_codes",
    "line_sums",
]
