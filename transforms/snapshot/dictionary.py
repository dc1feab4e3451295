"""The analysts' data dictionary: every table and column of the snapshot, declared once.

The snapshot stores it as its `columns` table (sql/snapshot/columns.sql) and docs/snapshot.md is
rendered from it (`python -m transforms.snapshot.dictionary > docs/snapshot.md`); a test holds the
three together. Each column line is `name | meaning | source | privacy`; source names the XML 130
table and field (XML130.md), the FHIR element, the registry column, the reference file, or
"derived"; privacy says what was done to it (a dash: nothing needed).
"""

from __future__ import annotations

import sys

import pyarrow as pa

PSEUDO_CITIZEN = "HMAC-SHA256 pseudonym of the reconciled citizen ID (keyed per deployment)"


def _keys(table: str) -> str:
    """The key columns every encounter-grain table of the snapshot starts with."""
    return "\n".join(
        (
            f"encounter_key | the encounter | {table} MA_LK | {PSEUDO_ENCOUNTER}",
            f"citizen_key | the reconciled citizen | patient_links citizen_id | {PSEUDO_CITIZEN}",
            "facility_code | facility | envelope MACSKCB | -",
        )
    )


def _line_keys(table: str) -> str:
    """The key columns of a line-item table: the encounter's, then the line's number."""
    return f"{_keys(table)}\nline_number | line number | {table} STT | -"


PSEUDO_ENCOUNTER = "HMAC-SHA256 pseudonym of facility_code:MA_LK"

TABLES: dict[str, tuple[str, str]] = {
    "snapshot_info": (
        "One row about the file: night, history promise, de-identification rules, measured k-anonymity.",
        """
        night | the night the snapshot was built for | derived | -
        encounters | encounters in the file (the figure the ledger and the report call "encounters now served") | derived | -
        first_night | earliest night an encounter of the file was received | derived | -
        history_promise | what history the file holds | derived | -
        pseudonym_scheme | how citizen_key and encounter_key are made | derived | -
        age_rule | how ages are banded | derived | -
        time_rule | how instants are reduced to dates | derived | -
        quasi_identifiers | the columns k-anonymity is measured on | derived | -
        k_threshold | smallest group of citizens a combination may describe (5) | derived | -
        k_before_coarsening | smallest number of citizens sharing one combination before coarsening | derived | -
        k_after_coarsening | the same after wards of small groups were left out | derived | -
        encounters_ward_coarsened | encounters whose ward was left out (province kept) | derived | -
        encounters_below_k_after_coarsening | encounters still in a group of fewer than k citizens at province level | derived | -
        """,
    ),
    "citizens": (
        "One row per citizen of the identity registry, de-identified.",
        f"""
        citizen_key | the citizen | registry citizen_id | {PSEUDO_CITIZEN}
        birth_year | year of birth | registry birth_date | year only; null from age 90
        age_group | five-year age band on the snapshot night ('00-04' .. '85-89', '90+') | registry birth_date | banded
        sex | 'male' or 'female' | registry sex | -
        province_code | province of residence (post-2025 code, see provinces) | registry province_code | -
        is_deceased | the registry records a death on or before the night | registry death_date | date dropped
        """,
    ),
    "encounters": (
        "One row per encounter currently served: the newest loaded version of every encounter loaded on any night so far.",
        f"""
        encounter_key | the encounter | XML1 MA_LK and the facility | {PSEUDO_ENCOUNTER}
        citizen_key | the reconciled citizen (null if none) | patient_links citizen_id | {PSEUDO_CITIZEN}
        facility_code | facility that treated (see facilities) | envelope MACSKCB | -
        facility_province_code | province of the facility (first two characters of its code) | envelope MACSKCB | -
        version | version of the encounter (1 = first sent; a re-send replaces it) | ingest | -
        received_night | night the served version arrived | ingest | -
        visit_type | MA_LOAI_KCB: 01 examination, 02 outpatient treatment, 03 inpatient, 04 day-care | XML1 MA_LOAI_KCB | -
        is_inpatient | visit type 03 or 04 | XML1 MA_LOAI_KCB | -
        admitted_on | day of admission | XML1 NGAY_VAO | date only (time dropped)
        admitted_month | first day of the admission month (a quasi-identifier) | XML1 NGAY_VAO | month
        inpatient_on | day of admission to inpatient care | XML1 NGAY_VAO_NOI_TRU | date only (time dropped)
        discharged_on | day of discharge | XML1 NGAY_RA | date only (time dropped)
        treatment_days | days of treatment | XML1 SO_NGAY_DTRI | -
        result_code | treatment result | XML1 KET_QUA_DTRI | -
        discharge_type_code | kind of discharge | XML1 MA_LOAI_RV | -
        incomplete | a stay published after its grace period without its late tables: what it lacks ('discharge_paper', 'summary', ';'-joined); null when complete | XML7/XML8 absence | -
        main_icd10 | main diagnosis, upper-cased | XML1 MA_BENH_CHINH | -
        main_icd10_chapter | ICD-10 chapter of the main diagnosis (see icd10_chapters) | XML1 MA_BENH_CHINH | -
        weight_kg | weight | XML1 CAN_NANG | -
        hospital_total_vnd | total cost (VND) | XML1 T_TONGCHI_BV | -
        insured_total_vnd | cost within insurance scope (VND) | XML1 T_TONGCHI_BH | -
        insurance_paid_vnd | paid by insurance (VND) | XML1 T_BHTT | -
        patient_paid_vnd | paid by the patient (VND) | XML1 T_BNTT | -
        patient_age_group | five-year age band on the admission day | registry birth_date of the reconciled citizen | banded; a quasi-identifier
        patient_sex | sex of the reconciled citizen | registry sex | a quasi-identifier
        patient_province_code | province of residence of the reconciled citizen | registry province_code | -
        patient_ward_code | ward of residence (see wards) | registry ward_code | null where fewer than 5 citizens share age group, sex, ward and month
        patient_residence_level | 'ward' when the ward is given, 'province' when it was left out | derived | -
        """,
    ),
    "diagnoses": (
        "One row per diagnosis code of a served encounter; position 0 is the main diagnosis.",
        f"""
        {_keys("XML1")}
        admitted_on | day of admission | XML1 NGAY_VAO | date only
        position | 0 main, 1.. secondary in the order sent | XML1 MA_BENH_CHINH, MA_BENH_KT | -
        is_main | position 0 | derived | -
        icd10 | the code as sent, upper-cased and trimmed | XML1 MA_BENH_CHINH, MA_BENH_KT | -
        icd10_category | its three-character category | derived | -
        icd10_chapter | its chapter (see icd10_chapters) | derived | -
        icd10_block | its block (see icd10_blocks) | derived | -
        """,
    ),
    "medications": (
        "One row per drug line (XML2) of a served encounter; the directions (free text) are left out.",
        f"""
        {_line_keys("XML2")}
        cost_group | cost group (see service_groups) | XML2 MA_NHOM | -
        drug_code | drug code | XML2 MA_THUOC | -
        drug_name | drug name | XML2 TEN_THUOC | -
        strength | strength | XML2 HAM_LUONG | -
        unit | unit | XML2 DON_VI_TINH | -
        route_code | route of administration | XML2 DUONG_DUNG | -
        dosage_form | dosage form | XML2 DANG_BAO_CHE | -
        quantity | quantity | XML2 SO_LUONG | -
        unit_price_vnd | unit price (VND) | XML2 DON_GIA | -
        amount_vnd | amount (VND) | XML2 THANH_TIEN_BV | -
        insurance_paid_vnd | paid by insurance (VND) | XML2 T_BHTT | -
        ordered_on | day of the order | XML2 NGAY_YL | date only
        """,
    ),
    "procedures": (
        "One row per ICD-9-CM code of a surgery or procedure line (XML3) of a served encounter.",
        f"""
        {_line_keys("XML3")}
        service_code | service code | XML3 MA_DICH_VU | -
        service_name | service name | XML3 TEN_DICH_VU | -
        cost_group | cost group (see service_groups) | XML3 MA_NHOM | -
        icd9_code | ICD-9-CM procedure code (null: none sent) | XML3 MA_PTTT_QT | -
        quantity | quantity | XML3 SO_LUONG | -
        performed_on | day performed | XML3 NGAY_TH_YL | date only
        """,
    ),
    "lab_results": (
        "One row per lab result line (XML4) of a served encounter, with its unit.",
        f"""
        {_line_keys("XML4")}
        service_code | the test (service) | XML4 MA_DICH_VU | -
        indicator_code | the indicator measured | XML4 MA_CHI_SO | -
        indicator_name | its name | XML4 TEN_CHI_SO | -
        value_number | the value, when it reads as a finite number ('5,6' = 5.6) | XML4 GIA_TRI | -
        value_text | the value when not a number and at most 20 characters ('Âm tính') | XML4 GIA_TRI | longer text dropped (may be free text)
        unit | unit of the value | XML4 DON_VI_DO | -
        reported_on | day reported | XML4 NGAY_KQ | date only; description, conclusion and reading doctors dropped
        """,
    ),
    "immunizations": (
        "One row per active vaccination (the newest copy of each FHIR Immunization).",
        f"""
        citizen_key | the citizen | FHIR Immunization.patient identifier | {PSEUDO_CITIZEN}
        vaccine_system | code system | FHIR Immunization.vaccineCode.coding.system | -
        vaccine_code | vaccine | FHIR Immunization.vaccineCode.coding.code | -
        vaccine_name | vaccine name | FHIR Immunization.vaccineCode.coding.display | -
        occurred_on | day of the dose | FHIR Immunization.occurrenceDateTime | date only
        dose_number | dose number | FHIR Immunization.protocolApplied.doseNumber | -
        lot_number | vaccine lot | FHIR Immunization.lotNumber | -
        facility_code | facility that vaccinated | FHIR Immunization.performer | -
        age_group_at_dose | age band on the day of the dose | registry birth_date | banded
        """,
    ),
    "allergies": (
        "One row per active allergy (the newest copy of each FHIR AllergyIntolerance, not refuted).",
        f"""
        citizen_key | the citizen | FHIR AllergyIntolerance.patient identifier | {PSEUDO_CITIZEN}
        clinical_status | clinical status | FHIR AllergyIntolerance.clinicalStatus | -
        verification_status | verification status | FHIR AllergyIntolerance.verificationStatus | -
        substance_system | code system | FHIR AllergyIntolerance.code.coding.system | -
        substance_code | substance | FHIR AllergyIntolerance.code.coding.code | -
        substance_name | substance name | FHIR AllergyIntolerance.code.coding.display | -
        reaction_code | reaction | FHIR AllergyIntolerance.reaction.manifestation | -
        reaction_name | reaction name | FHIR AllergyIntolerance.reaction.manifestation.display | -
        severity | severity | FHIR AllergyIntolerance.reaction.severity | -
        criticality | criticality | FHIR AllergyIntolerance.criticality | -
        recorded_on | day recorded | FHIR AllergyIntolerance.recordedDate | date only
        """,
    ),
    "icd10_chapters": (
        "ICD-10 chapters (WHO 2019) with Vietnamese and English titles.",
        """
        chapter | Roman numeral | reference/icd10_chapters.csv | -
        chapter_number | 1..22 | reference/icd10_chapters.csv | -
        first_category | first three-character category | reference/icd10_chapters.csv | -
        last_category | last three-character category | reference/icd10_chapters.csv | -
        title_vi | Vietnamese title | reference/icd10_chapters.csv | -
        title_en | English title | reference/icd10_chapters.csv | -
        """,
    ),
    "icd10_blocks": (
        "ICD-10 blocks (WHO 2019), English titles (Vietnamese ones not yet supplied).",
        """
        block | block range ('A00-A09') | reference/icd10_blocks.csv | -
        chapter | its chapter | reference/icd10_blocks.csv | -
        first_category | first category | reference/icd10_blocks.csv | -
        last_category | last category | reference/icd10_blocks.csv | -
        title_vi | Vietnamese title (empty for now) | reference/icd10_blocks.csv | -
        title_en | English title | reference/icd10_blocks.csv | -
        """,
    ),
    "provinces": (
        "Post-2025 provinces (34).",
        """
        province_code | two-digit code | reference/provinces.csv | -
        name | name | reference/provinces.csv | -
        division_type | kind of unit | reference/provinces.csv | -
        """,
    ),
    "wards": (
        "Post-2025 wards and communes.",
        """
        ward_code | five-digit code | reference/wards.csv | -
        name | name | reference/wards.csv | -
        division_type | kind of unit | reference/wards.csv | -
        province_code | its province | reference/wards.csv | -
        """,
    ),
    "service_groups": (
        "Cost groups (MA_NHOM) of drug and service lines.",
        """
        group_code | MA_NHOM code | reference/service_groups.csv | -
        name_vi | Vietnamese name | reference/service_groups.csv | -
        name_en | English name | reference/service_groups.csv | -
        kind | drug, service, supply, blood, bed or other | reference/service_groups.csv | -
        """,
    ),
    "facilities": (
        "Facilities of the list, plus any facility seen in the data and missing from it (is_listed false).",
        """
        facility_code | five-character code | reference/facilities.csv | -
        name | name | reference/facilities.csv | -
        province_code | province | reference/facilities.csv | -
        level | ban_dau, co_ban or chuyen_sau (Law on Medical Examination and Treatment 2023) | reference/facilities.csv | -
        is_listed | the facility is in the reference list | derived | -
        """,
    ),
    "reference_sources": (
        "Which file, source and version each reference table came from.",
        """
        table_name | reference table | reference/*.csv | -
        file | file name | reference/*.csv | -
        is_packaged | the packaged file (false: dropped in through HEALTHBOOK_REFERENCE_DIR) | derived | -
        source | where the list comes from | reference/*.csv header | -
        version | its version | reference/*.csv header | -
        """,
    ),
    "encounter_details": (
        "View: encounters with the names of their codes and the citizen's current demographics.",
        """
        * | every column of encounters | encounters | as in encounters
        main_icd10_chapter_title_vi | Vietnamese chapter title | icd10_chapters | -
        main_icd10_chapter_title_en | English chapter title | icd10_chapters | -
        facility_name | facility name | facilities | -
        facility_level | facility level | facilities | -
        facility_province_name | facility's province name | provinces | -
        patient_province_name | patient's province name | provinces | -
        patient_ward_name | patient's ward name (null where coarsened) | wards | -
        birth_year | citizen's birth year | citizens | as in citizens
        current_age_group | citizen's age band on the snapshot night | citizens | banded
        is_deceased | citizen died on or before the night | citizens | -
        """,
    ),
    "vaccination_status": (
        "View: one row per citizen and vaccine received.",
        f"""
        citizen_key | the citizen | immunizations | {PSEUDO_CITIZEN}
        vaccine_code | vaccine | immunizations | -
        vaccine_name | vaccine name | immunizations | -
        doses | doses received | derived | -
        highest_dose_number | highest dose number | derived | -
        first_dose_on | day of the first dose | derived | date only
        last_dose_on | day of the last dose | derived | date only
        """,
    ),
    "columns": (
        "This data dictionary.",
        """
        table_name | table or view | transforms/snapshot/dictionary.py | -
        column_position | position of the column in its table | derived | -
        column_name | column | transforms/snapshot/dictionary.py | -
        data_type | DuckDB type | derived | -
        meaning | what it holds | transforms/snapshot/dictionary.py | -
        source | where it comes from | transforms/snapshot/dictionary.py | -
        privacy | what was done to protect the people behind it | transforms/snapshot/dictionary.py | -
        """,
    ),
}

ENCOUNTER_DETAILS_BASE = "encounters"  # the view's "*" expands to this table's columns


def declared_columns() -> list[dict[str, object]]:
    """Every declared column, in table order then column order ("*" expanded)."""
    rows: list[dict[str, object]] = []
    for table, (_, spec) in TABLES.items():
        position = 0
        for line in spec.strip().splitlines():
            name, meaning, source, privacy = (part.strip() for part in line.split("|"))
            expanded = [(name, meaning, source, privacy)]
            if name == "*":
                expanded = [
                    (n, m, f"{ENCOUNTER_DETAILS_BASE}.{n}", p)
                    for n, m, _, p in _column_lines(ENCOUNTER_DETAILS_BASE)
                ]
            for n, m, s, p in expanded:
                position += 1
                rows.append(
                    {
                        "table_name": table,
                        "column_position": position,
                        "column_name": n,
                        "meaning": m,
                        "source": s,
                        "privacy": p,
                    }
                )
    return rows


def _column_lines(table: str) -> list[tuple[str, ...]]:
    return [tuple(p.strip() for p in line.split("|")) for line in TABLES[table][1].strip().splitlines()]


def columns_table() -> pa.Table:
    """The declaration as the snapshot's `columns` input (sql/snapshot/columns.sql)."""
    schema = pa.schema(
        [
            ("table_name", pa.string()),
            ("column_position", pa.int32()),
            ("column_name", pa.string()),
            ("meaning", pa.string()),
            ("source", pa.string()),
            ("privacy", pa.string()),
        ]
    )
    return pa.Table.from_pylist(declared_columns(), schema=schema)


INTRO = """# The analysts' snapshot

<!-- Rendered by `python -m transforms.snapshot.dictionary > docs/snapshot.md` from
transforms/snapshot/dictionary.py; tests/test_snapshot_dictionary.py fails when they differ. -->

Every night the pipeline writes `<warehouse>/snapshots/<D>.duckdb` (and points
`snapshots/latest.json` at the newest). Open it read-only with DuckDB; the same dictionary is inside
it as the `columns` table, and `snapshot_info` describes the file. Example queries live in
`sql/analyst/` (each documents its parameters and their defaults; run them as shipped with
`transforms.snapshot.stage.run_analyst_query` or the DuckDB command line).

## The history promise

A snapshot of night D holds **every encounter loaded on any night up to D, in its newest loaded
version only** ("encounters now served": the same figure the ledger and the quality report print).
A superseded version, a quarantined version and an encounter still waiting for its patient never
appear; an encounter quarantined one night and loaded a later night appears from that later night
on; a resent encounter replaces its earlier version. Citizens are the registry of night D. Each
night's file is complete on its own: analysts never need an older file to see older encounters.

## What an analyst can and cannot learn

You can learn: counts, rates and costs of encounters, diagnoses, drugs, procedures, lab results,
vaccinations and allergies by facility, province, ward (where at least 5 citizens share it, see
below), age group, sex, month and day; follow one pseudonymous citizen over time and across
facilities (readmissions, care paths), because `citizen_key` is stable for a deployment's key.

You cannot learn, from this file alone: who anyone is. It holds no name, citizen ID, old ID,
social-insurance or card number, phone, address, MA_LK, doctor code or free text (visit reasons,
directions, conclusions, long lab values). Pseudonyms are keyed HMACs: without the deployment's key
they cannot be recomputed from a known citizen ID. Birth dates are reduced to the year (none from
age 90, "90+"); instants are reduced to the day (no time of admission or discharge); residence is a
province and, only where at least 5 citizens share the same age group, sex, ward and admission
month, a ward (k-anonymity with k = 5; `snapshot_info` records the smallest group before and after
this coarsening and how many encounters remain in groups below 5 at province level). The citizens
table carries the province only, so that joining an encounter to its citizen cannot bring a
left-out ward back.

What remains possible, and is the analyst's duty not to attempt: someone who already knows a
person's admission day, facility and diagnosis may single out that person's encounter (rare
diagnoses, small facilities, 90+ patients); combining birth year with other columns narrows groups
below the measured k, which is measured on the four quasi-identifiers above only. Publish
aggregates, never rows, and suppress cells below 5.

## Tables and columns

Source names an XML 130 field as `XMLn FIELD` (see docs/XML130.md and docs/INTERFACES.md), a FHIR
element, the identity registry, a reference file under `transforms/reference/` (a deployment can
drop in its own list through `HEALTHBOOK_REFERENCE_DIR`), or `derived`.
"""


def render_markdown() -> str:
    """docs/snapshot.md."""
    out = [INTRO]
    by_table: dict[str, list[dict[str, object]]] = {}
    for row in declared_columns():
        by_table.setdefault(str(row["table_name"]), []).append(row)
    for table, (meaning, _) in TABLES.items():
        out.append(
            f"\n### `{table}`\n\n{meaning}\n\n| column | meaning | source | privacy |\n|---|---|---|---|\n"
        )
        for row in by_table[table]:
            out.append(
                f"| `{row['column_name']}` | {row['meaning']} | {row['source']} | {row['privacy']} |\n"
            )
    return "".join(out)


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
