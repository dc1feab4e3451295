"""From a staged night to serving rows: which encounter versions are complete, and their rows.

Pure functions, frames in and frames out; `transforms/load/stage.py` reads the warehouse, calls these,
and writes the result to the serving database.

An encounter version loads only when it is complete (HEALTHBOOK.md "When an encounter is
complete"): no blocking ingest finding, every required table present (an inpatient "03" or
day-care "04" stay needs its XML7 discharge paper and XML8 summary), no blocking quality finding,
and its patient reconciled to exactly one citizen (link outcome `match`). Anything else is
quarantined with ONE primary reason, chosen by this precedence (the first that applies):

    1. ingest        the version could not be read whole (missing_xml1, base64_invalid, ...)
    2. completeness  a required table is missing (missing_discharge_paper, missing_summary)
    3. quality       a blocking quality check failed (discharge_before_admission, ...)
    4. reconcile     the patient is not matched to exactly one citizen

(what was sent is judged before who it belongs to: a record that cannot be shown needs no
identity). Within one stage, reasons follow the order of `transforms/core/reasons.py`.

A version is `superseded` when a newer version of the same encounter has been received (tonight,
on an earlier night, or already loaded): it never becomes current. A superseded version that is
itself complete is still published as history (`is_published`); one that is not keeps its own
reason. The ledger counts superseded versions as accounted for (the newer version carries them).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.core import reasons
from transforms.core.icd10 import is_valid_icd10, resolve_main_icd10
from transforms.serving.schema import (
    CITIZENS,
    CLINICAL_COURSE,
    DIAGNOSES,
    DISCHARGE_PAPERS,
    ENCOUNTERS,
    FOLLOW_UPS,
    LAB_RESULTS,
    MEDICATIONS,
    PROCEDURES,
    REFERRALS,
    SUMMARIES,
    VERSION_KEY,
    ServingTable,
)

KEY = list(VERSION_KEY)
ENCOUNTER_KEY = ["facility_code", "encounter_id"]

# Visit types that are stays: they need a discharge paper (XML7) and a summary (XML8).
STAY_VISIT_TYPES = ("03", "04")
REQUIRED_FOR_STAYS = {"discharge_papers": "missing_discharge_paper", "summaries": "missing_summary"}

STAGE_PRECEDENCE = ("ingest", "completeness", "quality", "reconcile")
COMPLETENESS_REASONS = ("missing_xml1", "missing_discharge_paper", "missing_summary")

LINK_REASONS = {
    "no_match": "patient_not_in_registry",
    "potential_match": "potential_match",
    "many_match": "many_match",
}

OUTCOME_COLUMNS = (
    "facility_code",
    "encounter_id",
    "version",
    "night",
    "outcome",
    "reason",
    "citizen_id",
    "is_retry",
    "is_published",
    "incomplete",
    "waiting_since",
)

# Late tables (HEALTHBOOK.md "When an encounter is complete"): a stay missing these waits for the
# grace period, then is published marked incomplete, naming what is missing (book JSON names).
LATE_REASONS = {"missing_discharge_paper": "discharge_paper", "missing_summary": "summary"}


def _reason_rank(reason: str) -> tuple[int, str]:
    order = list(reasons.ENCOUNTER_REASONS)
    return (order.index(reason) if reason in order else len(order), reason)


def blocking_reasons(
    candidates: pd.DataFrame,
    presence: pd.DataFrame,
    findings: pd.DataFrame,
    links: pd.DataFrame,
) -> pd.DataFrame:
    """Every reason that blocks each candidate version, one row per (version, reason).

    candidates: facility_code, encounter_id, version (the versions to decide).
    presence: facility_code, encounter_id, version, dataset, visit_type (one row per staged
      dataset holding rows of the version; visit_type from XML1, null elsewhere).
    findings: facility_code, encounter_id, version, stage, reason, severity.
    links: facility_code, encounter_id, version, outcome, citizen_id (the latest link of each).
    Result columns: facility_code, encounter_id, version, stage, reason.
    """
    keys = candidates[KEY].drop_duplicates()
    found: list[pd.DataFrame] = []

    blocking = findings[findings["severity"] == "blocking"][[*KEY, "stage", "reason"]].copy()
    completeness = blocking["reason"].isin(COMPLETENESS_REASONS) & (blocking["stage"] != "ingest")
    blocking.loc[completeness, "stage"] = "completeness"
    found.append(blocking)

    # Re-check completeness from what was staged: quality reports it too, but the load must not
    # depend on another stage having run to refuse an incomplete stay. One membership test per
    # required dataset (vectorised joins, no per-version Python).
    present = presence[[*KEY, "dataset"]].drop_duplicates()
    visit = presence.dropna(subset=["visit_type"]).drop_duplicates(KEY)[[*KEY, "visit_type"]]
    staged = keys.merge(visit, on=KEY, how="left")

    def has(dataset: str) -> pd.Series:
        rows = present.loc[present["dataset"] == dataset, KEY].assign(_present=True)
        return staged[KEY].merge(rows, on=KEY, how="left")["_present"].notna().to_numpy()

    is_stay = staged["visit_type"].isin(STAY_VISIT_TYPES).to_numpy()
    for dataset, reason in REQUIRED_FOR_STAYS.items():
        missing = is_stay & ~has(dataset)
        found.append(staged.loc[missing, KEY].assign(stage="completeness", reason=reason))
    no_xml1 = ~has("encounters")
    found.append(staged.loc[no_xml1, KEY].assign(stage="completeness", reason="missing_xml1"))

    linked = keys.merge(links[[*KEY, "outcome", "citizen_id"]], on=KEY, how="left")
    is_match = (linked["outcome"] == "match") & linked["citizen_id"].notna()
    link_reason = linked["outcome"].map(LINK_REASONS).fillna("not_reconciled")
    found.append(linked.loc[~is_match, KEY].assign(stage="reconcile", reason=link_reason[~is_match]))

    out = pd.concat(found, ignore_index=True)
    out = out.merge(keys, on=KEY, how="inner")
    return out.drop_duplicates([*KEY, "reason"]).reset_index(drop=True)


def primary_reasons(blocking: pd.DataFrame) -> pd.DataFrame:
    """The one reason reported for each blocked version (see the module docstring's precedence)."""
    if blocking.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in [*KEY, "reason"]})
    frame = blocking.copy()
    frame["stage_rank"] = frame["stage"].map(
        lambda s: STAGE_PRECEDENCE.index(s) if s in STAGE_PRECEDENCE else len(STAGE_PRECEDENCE)
    )
    frame["reason_rank"] = frame["reason"].map(_reason_rank)
    frame = frame.sort_values([*KEY, "stage_rank", "reason_rank"], kind="stable")
    return frame.drop_duplicates(KEY)[[*KEY, "reason"]].reset_index(drop=True)


def _after_grace(
    blocking: pd.DataFrame,
    out: pd.DataFrame,
    tonight: dt.date,
    grace_nights: int,
    published_encounters: pd.DataFrame | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Lift the late-table reasons of versions whose grace period is over; name what is missing.

    The grace period is over when `grace_nights` nights have passed since the encounter started
    waiting, or at once when a version of the encounter is already published (the book shows
    the stay already: a newer version replaces it rather than waiting behind it).
    """
    elapsed = out["waiting_since"].map(lambda d: (tonight - d).days)
    over = elapsed >= grace_nights
    if published_encounters is not None and not published_encounters.empty:
        shown = out[ENCOUNTER_KEY].merge(
            published_encounters[ENCOUNTER_KEY].drop_duplicates().assign(_shown=True),
            on=ENCOUNTER_KEY,
            how="left",
        )["_shown"]
        over = over | shown.notna().to_numpy()
    lifted_keys = out.loc[over.to_numpy(), KEY]
    late = blocking["reason"].isin(list(LATE_REASONS))
    hit = blocking[late].merge(lifted_keys, on=KEY, how="inner")
    if hit.empty:
        return blocking, out
    names = (
        hit.assign(name=hit["reason"].map(LATE_REASONS))
        .sort_values([*KEY, "name"])
        .groupby(KEY)["name"]
        .agg(lambda v: ";".join(sorted(set(v), key=list(LATE_REASONS.values()).index)))
        .rename("_incomplete")
        .reset_index()
    )
    out = out.merge(names, on=KEY, how="left")
    out["incomplete"] = out["_incomplete"].astype("object").where(out["_incomplete"].notna(), None)
    out = out.drop(columns="_incomplete")
    marked = blocking.merge(hit[[*KEY, "reason"]].assign(_lift=True), on=[*KEY, "reason"], how="left")
    return blocking[marked["_lift"].isna().to_numpy()].reset_index(drop=True), out


def decide_outcomes(
    candidates: pd.DataFrame,
    presence: pd.DataFrame,
    findings: pd.DataFrame,
    links: pd.DataFrame,
    known_versions: pd.DataFrame,
    tonight: dt.date | None = None,
    grace_nights: int | None = None,
    published_encounters: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The outcome of each candidate version: one row per version (OUTCOME_COLUMNS).

    candidates: facility_code, encounter_id, version, night (received), is_retry, and optionally
      waiting_since (when the encounter started waiting for its late tables; default its night).
    known_versions: facility_code, encounter_id, version of every version received by tonight or
      already in the serving database (candidates included), to tell which are superseded.
    tonight, grace_nights: with both, a stay whose grace period is over is published without its
      XML7/XML8, `incomplete` naming them ("discharge_paper;summary"); without them a stay waits.
    published_encounters: facility_code, encounter_id of encounters with a published version.
    outcome: loaded | quarantined | superseded; is_published: its rows go to the serving database.
    """
    out = candidates[[*KEY, "night", "is_retry"]].drop_duplicates(KEY).copy()
    # When the encounter started waiting: the earliest receipt among its versions decided here
    # (and what the pending list remembers of versions already gone), so that a re-send does
    # not restart the grace period.
    since = candidates.drop_duplicates(KEY)
    since = since["waiting_since"] if "waiting_since" in since.columns else since["night"]
    # the minimum over datetime64 (a vectorised groupby); over date objects pandas falls back to
    # one Python call per encounter (a third of the load's time on a 100k night)
    out["waiting_since"] = pd.to_datetime(since.fillna(candidates.drop_duplicates(KEY)["night"])).to_numpy()
    out["waiting_since"] = out.groupby(ENCOUNTER_KEY)["waiting_since"].transform("min").dt.date
    blocking = blocking_reasons(out, presence, findings, links)
    out["incomplete"] = None
    if tonight is not None and grace_nights is not None and not blocking.empty:
        blocking, out = _after_grace(blocking, out, tonight, grace_nights, published_encounters)
    primary = primary_reasons(blocking)
    out = out.merge(primary, on=KEY, how="left")

    newest = known_versions.groupby(ENCOUNTER_KEY)["version"].max().rename("newest_version").reset_index()
    out = out.merge(newest, on=ENCOUNTER_KEY, how="left")
    is_superseded = out["newest_version"].notna() & (out["version"] < out["newest_version"])
    is_complete = out["reason"].isna()

    out["outcome"] = np.where(is_superseded, "superseded", np.where(is_complete, "loaded", "quarantined"))
    out["is_published"] = is_complete.to_numpy()
    matched = links[(links["outcome"] == "match")][[*KEY, "citizen_id"]].drop_duplicates(KEY)
    out = out.merge(matched, on=KEY, how="left")
    out.loc[~out["is_published"], "citizen_id"] = None
    out.loc[~out["is_published"], "incomplete"] = None
    for column in ("reason", "citizen_id", "incomplete"):
        out[column] = out[column].astype("object").where(out[column].notna(), None)
    out["version"] = out["version"].astype("int64")
    out["is_retry"] = out["is_retry"].astype(bool)
    out = out.sort_values(KEY, kind="stable").reset_index(drop=True)
    return out[list(OUTCOME_COLUMNS)]


# ---------------------------------------------------------------------------------------------
# serving rows


def _join_codes(values) -> str | None:
    """A list column (codes, dates) as the ";"-joined text the serving tables keep."""
    if isinstance(values, str):  # joined already (files.joined_text, as below)
        return values
    if values is None or (not isinstance(values, list | tuple | np.ndarray) and pd.isna(values)):
        return None
    parts = [v.isoformat() if isinstance(v, dt.date) else str(v) for v in values if v is not None]
    return ";".join(parts) if parts else None


def _joined(values: pd.Series) -> pd.Series:
    """A list column as `_join_codes` text; a text column (joined when read) as it is."""
    if values.dtype != object and pd.api.types.is_string_dtype(values.dtype):
        return values
    return values.map(_join_codes)


def empty_rows(table: ServingTable) -> pd.DataFrame:
    """No rows, in the assembled shape of `table` (ServingTable.assembled_names)."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in table.assembled_names})


def _select(frame: pd.DataFrame, table: ServingTable, renames: dict[str, str] | None = None) -> pd.DataFrame:
    """The frame's columns named as the serving table's assembled shape (ServingTable.assembled_names:
    the natural version key in place of version_id), in DDL order (absent ones null)."""
    frame = frame.rename(columns=renames or {})
    out = pd.DataFrame(index=frame.index)
    for column in table.assembled_names:
        out[column] = frame[column] if column in frame.columns else None
    return out.reset_index(drop=True)


def version_key_strings(frame: pd.DataFrame) -> pa.Array:
    """One string per row: its version key (facility_code, encounter_id, version) joined by a unit
    separator, null when a key part is missing."""
    parts = [pa.array(frame[c], from_pandas=True).cast(pa.string()) for c in KEY[:2]]
    version = pa.array(frame["version"].astype("int64")).cast(pa.string())
    return pc.binary_join_element_wise(*parts, version, "\x1f")


def rows_of_versions(frame: pd.DataFrame, versions: pd.DataFrame) -> pd.DataFrame:
    """The rows of `frame` whose version (KEY) is one of `versions`' (a frame of unique keys), in
    frame order: an inner merge on KEY, as one Arrow hash lookup instead of a 3-column join."""
    found = pc.is_in(version_key_strings(frame), value_set=version_key_strings(versions))
    return frame[found.fill_null(False).to_numpy(zero_copy_only=False)].reset_index(drop=True)


def _of_published(staged: pd.DataFrame | None, published: pd.DataFrame) -> pd.DataFrame | None:
    if staged is None or staged.empty:
        return None
    return rows_of_versions(staged, published)


def _line_items(staged: pd.DataFrame | None, published: pd.DataFrame, table: ServingTable, renames=None):
    rows = _of_published(staged, published)
    if rows is None or rows.empty:
        return empty_rows(table)
    rows = rows.sort_values([*KEY, "row_index"], kind="stable")
    # Numbered again within the version so that two inner tables of the same kind in one HOSO
    # (their row_index both start at 0) keep every line instead of colliding on the key.
    rows["row_index"] = rows.groupby(KEY).cumcount()
    return _select(rows, table, renames)


def _flat(staged: pd.DataFrame | None, published: pd.DataFrame, table: ServingTable, renames=None):
    rows = _of_published(staged, published)
    if rows is None or rows.empty:
        return empty_rows(table)
    sort = [*KEY, "row_index"] if "row_index" in rows.columns else KEY
    rows = rows.sort_values(sort, kind="stable").drop_duplicates(KEY)
    return _select(rows, table, renames)


def encounter_rows(encounters: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """One serving row per published encounter version (is_current is set at publish time).

    The citizen is the reconciled one (the link's citizen_id), never the SO_CCCD the hospital typed.
    """
    source = _of_published(encounters, published)
    if source is None or source.empty:
        return empty_rows(ENCOUNTERS)
    sort = [*KEY, "row_index"] if "row_index" in source.columns else KEY
    source = source.sort_values(sort, kind="stable").drop_duplicates(KEY)
    carried = [c for c in ("citizen_id", "link_tier", "match_weight", "incomplete") if c in published]
    source = source.drop(columns=[c for c in carried if c in source])
    source = source.merge(published[[*KEY, *carried]], on=KEY, how="left")
    if "follow_up_dates" in source.columns:
        source["follow_up_dates"] = _joined(source["follow_up_dates"])
    source["is_current"] = False
    return _select(source, ENCOUNTERS)


def mark_current(encounters: pd.DataFrame, newest_remaining: pd.DataFrame) -> pd.DataFrame:
    """encounters with is_current set: the version is the newest of its encounter among tonight's
    rows and the versions already published (`newest_remaining`: facility_code, encounter_id,
    version, one row per encounter)."""
    out = encounters.copy()
    if out.empty:
        return out
    tonight = out.groupby(ENCOUNTER_KEY)["version"].transform("max")
    earlier = out[ENCOUNTER_KEY].merge(
        newest_remaining.rename(columns={"version": "published_version"}), on=ENCOUNTER_KEY, how="left"
    )["published_version"]
    newest = np.fmax(tonight.to_numpy(dtype="float64"), earlier.to_numpy(dtype="float64"))
    out["is_current"] = out["version"].to_numpy(dtype="float64") >= newest
    return out


def diagnosis_rows(encounters: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """One row per ICD-10 code of a published version: position 0 main, then the secondary ones
    (numbered 1.. over the valid codes present, in their order; empty and invalid entries skipped).
    The main row's text is the facility's CHAN_DOAN_RV (XML1's, else XML7's: `main_diagnosis_text`
    from `with_main_diagnosis`)."""
    source = _of_published(encounters, published)
    if source is None or source.empty:
        return empty_rows(DIAGNOSES)
    source = source.sort_values(KEY).drop_duplicates(KEY).reset_index(drop=True)
    parts = []
    if "main_icd10" in source.columns:
        main = source[source["main_icd10"].notna()]
        text = main["discharge_diagnosis"] if "discharge_diagnosis" in main.columns else None
        if text is not None and "main_diagnosis_text" in main.columns:
            text = main["main_diagnosis_text"]
        parts.append(
            main[KEY].assign(
                position=0, icd10=main["main_icd10"], is_main=True, diagnosis_text=text, _order=0
            )
        )
    if "secondary_icd10" in source.columns:
        lists = source["secondary_icd10"].map(lambda v: v if isinstance(v, list | tuple | np.ndarray) else [])
        codes = source[KEY].assign(icd10=lists).explode("icd10", ignore_index=True)
        # a code not on the national list is left out of the book (quality warns the facility:
        # conformance.secondary_icd10_valid); the facility's diagnosis text still shows
        codes = codes[codes["icd10"].map(lambda c: isinstance(c, str) and is_valid_icd10(c)).astype(bool)]
        codes = codes.assign(
            position=codes.groupby(KEY, sort=False).cumcount() + 1,
            is_main=False,
            diagnosis_text=None,
            _order=1,
        )
        parts.append(codes)
    parts = [p for p in parts if not p.empty]
    if not parts:
        return empty_rows(DIAGNOSES)
    out = pd.concat(parts, ignore_index=True).sort_values([*KEY, "_order", "position"], kind="stable")
    out = out.astype({"position": "int64"})
    return _select(out, DIAGNOSES)


def with_main_diagnosis(encounters: pd.DataFrame, papers: pd.DataFrame | None) -> pd.DataFrame:
    """encounters with the main diagnosis the book shows (icd10.resolve_main_icd10): main_icd10
    from XML1, or from the version's XML7 when XML1's is empty or malformed, its source
    (main_icd10_source: "xml1" | "xml7") and its text (main_diagnosis_text: XML1's CHAN_DOAN_RV,
    else XML7's)."""
    resolved = resolve_main_icd10(encounters, papers)
    text = encounters["discharge_diagnosis"] if "discharge_diagnosis" in encounters.columns else None
    paper_text = resolved["paper_diagnosis"].astype("object").where(resolved["paper_diagnosis"].notna(), None)
    return encounters.assign(
        main_icd10=resolved["main_icd10"],
        main_icd10_source=resolved["main_icd10_source"],
        main_diagnosis_text=paper_text
        if text is None
        else text.astype("object").where(text.notna(), paper_text),
    )


HEIGHT_INDICATORS = ("CHIEU_CAO",)  # XML4 MA_CHI_SO of a height measured during the stay


def _number(text) -> float | None:
    """A plain decimal number from text ("165", "165.5", "165,5"), else None."""
    if text is None or (not isinstance(text, str) and pd.isna(text)):
        return None
    cleaned = str(text).strip().replace(",", ".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def heights_cm(encounters: pd.DataFrame, lab_results: pd.DataFrame | None) -> pd.DataFrame:
    """The patient's height in cm per version: XML1 DU_PHONG (`reserve`), where decision 3176 puts
    it, else an XML4 height indicator in cm. Columns: facility_code, encounter_id, version, height_cm.
    """
    out = encounters[KEY].copy()
    reserve = encounters["reserve"] if "reserve" in encounters.columns else pd.Series(None, index=out.index)
    out["height_cm"] = [_number(v) for v in reserve]
    if lab_results is not None and not lab_results.empty:
        rows = lab_results[lab_results["indicator_code"].isin(HEIGHT_INDICATORS)]
        rows = rows[rows["unit"].fillna("").str.strip().str.lower() == "cm"]
        measured = rows.sort_values([*KEY, "row_index"]).drop_duplicates(KEY)
        measured = measured.assign(measured_cm=[_number(v) for v in measured["value"]])[[*KEY, "measured_cm"]]
        out = out.merge(measured, on=KEY, how="left")
        out["height_cm"] = out["height_cm"].fillna(out["measured_cm"])
    return out[[*KEY, "height_cm"]]


def serving_rows(staged: dict[str, pd.DataFrame], published: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The serving rows of every published version, one frame per encounter-version table.

    staged: dataset name -> staged rows (schema.py columns + lineage) of at least the published
      versions. published: facility_code, encounter_id, version, citizen_id, link_tier,
      match_weight of the versions to publish.
    """
    encounters = staged.get("encounters")
    procedures = staged.get("services")
    if procedures is not None and not procedures.empty:
        procedures = procedures[procedures["service_code"].notna()].copy()
        procedures["procedure_icd9"] = _joined(procedures["procedure_icd9"])
    referrals = staged.get("referrals")
    if referrals is not None and not referrals.empty:
        referrals = referrals.assign(physician_codes=_joined(referrals["physician_codes"]))
    drugs = staged.get("drugs")
    if drugs is not None and not drugs.empty and "physician_codes" in drugs.columns:
        drugs = drugs.assign(physician_codes=_joined(drugs["physician_codes"]))
    follow_ups = staged.get("follow_ups")
    if follow_ups is not None and not follow_ups.empty:
        follow_ups = follow_ups.assign(physician_codes=_joined(follow_ups["physician_codes"]))
    if encounters is not None and not encounters.empty:
        encounters = with_main_diagnosis(encounters, staged.get("discharge_papers"))
        heights = heights_cm(encounters, staged.get("lab_results"))
        encounters = encounters.drop(columns=["height_cm"], errors="ignore").merge(
            heights, on=KEY, how="left"
        )
    return {
        "encounters": encounter_rows(encounters, published)
        if encounters is not None
        else empty_rows(ENCOUNTERS),
        "diagnoses": diagnosis_rows(encounters, published)
        if encounters is not None
        else empty_rows(DIAGNOSES),
        "medications": _line_items(drugs, published, MEDICATIONS),
        "procedures": _line_items(procedures, published, PROCEDURES),
        "lab_results": _line_items(staged.get("lab_results"), published, LAB_RESULTS),
        "clinical_course": _line_items(staged.get("clinical_course"), published, CLINICAL_COURSE),
        "summaries": _flat(staged.get("summaries"), published, SUMMARIES),
        "discharge_papers": _flat(staged.get("discharge_papers"), published, DISCHARGE_PAPERS),
        "referrals": _flat(referrals, published, REFERRALS),
        "follow_ups": _flat(follow_ups, published, FOLLOW_UPS),
    }


# ---------------------------------------------------------------------------------------------
# citizens (from the registry snapshot) and FHIR resources


def parse_registry_birth(text: str | None) -> tuple[dt.date | None, str | None]:
    """A registry birth date ("yyyymmdd", "00" for an unknown month or day) -> (date, precision).

    The unknown parts are set to 01 and the precision says how much is known: "day", "month"
    (day unknown) or "year" (month unknown). A part that no calendar has is unknown, never an
    error that would stop the night's load: year 0000 -> no date; month 13-99 -> the year only;
    a day the month lacks (30 Feb) -> the month only.
    """
    if text is None or pd.isna(text) or len(str(text)) < 4 or not str(text)[:4].isdigit():
        return None, None
    text = str(text)
    year, month, day = int(text[:4]), text[4:6], text[6:8]
    if year < dt.MINYEAR:
        return None, None
    if not month.isdigit() or not 1 <= int(month) <= 12:
        return dt.date(year, 1, 1), "year"
    if not day.isdigit() or int(day) == 0:
        return dt.date(year, int(month), 1), "month"
    try:
        return dt.date(year, int(month), int(day)), "day"
    except ValueError:
        return dt.date(year, int(month), 1), "month"


def parse_registry_births(texts: pd.Series) -> tuple[pd.Series, pd.Series]:
    """`parse_registry_birth` of every value: (dates, precisions), each with `texts`' index.

    The registry's usual shape, eight ASCII digits with a real month (or "00"), is parsed with
    numpy (a national night stages ~700,000 citizens: 3.8 s value by value, ~0.3 s here); any
    other value goes through `parse_registry_birth` itself, so the answers are the same."""
    values = texts.to_numpy(dtype=object, na_value=None)
    dates = np.full(len(values), None, dtype=object)
    precisions = np.full(len(values), None, dtype=object)
    shaped = np.flatnonzero(texts.astype("str").str.fullmatch(r"[0-9]{8}").fillna(False).to_numpy(dtype=bool))
    done = np.zeros(len(values), dtype=bool)
    if len(shaped):
        digits = np.array(values[shaped].tolist(), dtype="S8").view(np.uint8).reshape(-1, 8) - ord("0")
        year = digits[:, 0:4].astype(np.int64) @ np.array([1000, 100, 10, 1])
        month = digits[:, 4].astype(np.int64) * 10 + digits[:, 5]
        day = digits[:, 6].astype(np.int64) * 10 + digits[:, 7]
        # year 0 and a month beyond 12 are left to the reference function (datetime refuses them)
        fast = (year >= 1) & (month <= 12)
        first_of_month = (
            ((year - 1970) * 12 + np.where(month == 0, 0, month - 1))
            .astype("datetime64[M]")
            .astype("datetime64[D]")
        )
        in_month = (day >= 1) & (day <= _days_in_month(first_of_month))
        precision = np.where(month == 0, "year", np.where((day == 0) | ~in_month, "month", "day"))
        date = np.where(
            precision == "day",
            first_of_month + np.maximum(day - 1, 0).astype("timedelta64[D]"),
            first_of_month,
        )
        dates[shaped[fast]] = date[fast].astype(object)
        precisions[shaped[fast]] = precision[fast].astype(object)
        done[shaped[fast]] = True
    for i in np.flatnonzero(~done):
        dates[i], precisions[i] = parse_registry_birth(values[i])
    return pd.Series(dates, index=texts.index, dtype=object), pd.Series(list(precisions), index=texts.index)


def _days_in_month(first_of_month: np.ndarray) -> np.ndarray:
    """The number of days of each month given by its first day (datetime64[D])."""
    month = first_of_month.astype("datetime64[M]")
    return ((month + 1).astype("datetime64[D]") - month.astype("datetime64[D]")).astype(np.int64)


def citizen_rows(registry: pd.DataFrame, night: dt.date) -> pd.DataFrame:
    """One serving row per registry citizen given (personal administration, never hospital data)."""
    if registry.empty:
        return empty_rows(CITIZENS)
    rows = registry.drop_duplicates("citizen_id").copy()
    rows["birth_date"], rows["birth_date_precision"] = parse_registry_births(rows["birth_date"])
    if "death_date" in rows:
        deaths, death_precisions = parse_registry_births(rows["death_date"])
        rows["death_date"] = deaths.where(death_precisions == "day", None)
    else:
        rows["death_date"] = None
    rows["sex_code"] = rows.get("sex")
    rows["registry_night"] = night
    return _select(rows.sort_values("citizen_id"), CITIZENS)


FHIR_ORDER = ["night", "source_file", "line_number"]


def fhir_changes(
    staged: pd.DataFrame,
    registry_ids: set[str],
    table: ServingTable,
    other_copies: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, list[str], dict]:
    """What tonight's staged FHIR lines of one kind change in the serving database.

    Per resource_id the newest copy (night, source_file, line_number) wins, looked for among
    tonight's lines and `other_copies` (the same resources staged on other nights, so that
    re-running an old night never brings back a copy a later night replaced or removed): an active
    one is upserted when its citizen is in the registry; an inactive one (entered-in-error,
    refuted) removes the resource. Result: (rows to upsert in the table's columns, resource_ids to
    remove, counts over tonight's lines: upserted, removed, replaced (a newer copy exists),
    quarantined by reason). received == upserted + removed + replaced + quarantined.
    """
    counts = {"received": len(staged), "upserted": 0, "removed": 0, "replaced": 0, "quarantined": {}}
    if staged.empty:
        return empty_rows(table), [], counts
    frames = [staged.assign(is_tonight=True)]
    if other_copies is not None and not other_copies.empty:
        frames.append(other_copies.assign(is_tonight=False))
    combined = pd.concat(frames, ignore_index=True).sort_values(FHIR_ORDER, kind="stable")
    newest = combined.drop_duplicates("resource_id", keep="last")
    active = newest["is_active"].fillna(False).astype(bool)
    in_registry = newest["citizen_id"].isin(registry_ids)
    removed = newest.loc[~active, "resource_id"].tolist()
    upserts = newest[active & in_registry]

    mine = newest["is_tonight"].astype(bool)
    counts["upserted"] = int((mine & active & in_registry).sum())
    counts["removed"] = int((mine & ~active).sum())
    if not_found := int((mine & active & ~in_registry).sum()):
        counts["quarantined"] = {"patient_not_in_registry": not_found}
    counts["replaced"] = len(staged) - int(mine.sum())
    return _select(upserts, table), sorted(removed), counts
