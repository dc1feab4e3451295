"""The generator's settings: every rate of defects, quirks and identity noise in one place, and the kinds they name."""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------
# Settings: every rate in one place
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorSettings:
    """Rates of the generated night. Each is a probability per encounter (or per file / line)."""

    # visit types "01" examination, "02" outpatient treatment, "03" inpatient, "04" day-care
    visit_type_weights: tuple[float, float, float, float] = (0.70, 0.08, 0.15, 0.07)
    referral_rate: float = 0.04
    follow_up_rate: float = 0.2
    uninsured_rate: float = 0.05  # uninsured patients who still carry their citizen ID
    local_patient_share: float = 0.8  # patients living in the facility's province
    # identity noise of patients who carry an ID
    no_citizen_id_rate: float = 0.20
    sin_in_cccd_rate: float = 0.02
    old_id_in_cccd_rate: float = 0.02
    id_one_digit_typo_rate: float = 0.01
    name_upper_rate: float = 0.03
    name_unaccented_rate: float = 0.03
    name_nfd_rate: float = 0.01
    dob_day_month_swapped_rate: float = 0.01
    # patients identified by demographics only, or not identifiable
    self_pay_rate: float = 0.02  # uninsured, no ID, no card
    self_pay_noise_rate: float = 0.5  # share of them with one name/birth/address slip
    twin_rate: float = 0.005
    not_in_registry_rate: float = 0.015
    # blocking defects (one at most per encounter)
    invalid_icd10_rate: float = 0.01
    discharge_before_admission_rate: float = 0.01
    missing_xml1_rate: float = 0.01
    base64_invalid_rate: float = 0.01
    # Real nights (REAL_EXPORTS.md); none of these blocks under the issue #15 policy.
    # Money totals that disagree with their line items, per relation (each independently):
    drift_bhtt_rate: float = 0.005  # T_BHTT != T_TONGCHI_BH - T_BNCCT (holds in 99.5%)
    drift_parts_rate: float = 0.005  # T_TONGCHI_BV != T_BHTT + T_BNCCT + T_BNTT + T_NGUONKHAC
    drift_total_bv_rate: float = 0.10  # T_TONGCHI_BV != sum of THANH_TIEN_BV (holds in 90%)
    drift_total_bh_rate: float = 0.10  # T_TONGCHI_BH != sum of THANH_TIEN_BH (holds in 90%)
    drift_drugs_rate: float = 0.29  # T_THUOC != sum of XML2 THANH_TIEN_BH (holds in 71%)
    drift_drugs_bv_rate: float = 0.15  # T_THUOC = the BH sum, not the BV sum (56% hold for BV)
    # Late tables of inpatient/day-care stays (188 real stays: 28 neither, 17 XML7 only, 5 XML8 only):
    stay_without_both_rate: float = 28 / 188
    stay_without_summary_rate: float = 17 / 188  # has XML7, no XML8
    stay_without_paper_rate: float = 5 / 188  # has XML8, no XML7
    late_resend_rate: float = 0.5  # of those stays: the missing tables come on night D+1..D+3
    late_full_resend_share: float = 0.2  # of those re-sends: the whole HOSO again (else XML7/XML8 alone)
    main_code_from_xml7_rate: float = 18 / 155  # of stays with XML7: XML1 main code empty
    # Shapes of the main code (REAL_EXPORTS.md "Diagnosis codes"):
    fifth_char_rate: float = 0.005  # chapter XIX fifth character (S72.00 closed, S72.01 open)
    three_char_rate: float = 0.3  # a 4-character code sent in its 3-character form ("J06")
    retired_code_rate: float = 0.002  # codes retired from later WHO updates (D75.2, N18.8)
    xsi_space_rate: float = 0.996  # of files: inner tables declare xmlns:xsi="...XMLSchema instance"
    # quirks (never change the outcome)
    null_token_rate: float = 0.02
    comma_decimal_rate: float = 0.02
    cdata_rate: float = 0.03
    unknown_table_rate: float = 0.02
    old_xml13_names_rate: float = 0.5  # of referrals
    no_declaration_rate: float = 0.3  # of facilities
    bom_rate: float = 0.2  # of facilities
    malformed_xmlns_rate: float = 0.2  # of facilities
    resend_rate: float = 0.01
    # files: real nights hold one encounter per file, named <MA_BN>_<MA_LK>.xml (4.5-100 KB,
    # median ~13 KB); `BATCHED` (healthbook generate --batched) keeps the older batched nights
    single_file_share: float = 1.0  # share of files holding one encounter; the rest batch 50-200
    # FHIR lines per encounter
    immunizations_per_encounter: float = 0.3
    allergies_per_encounter: float = 0.08
    fhir_removed_rate: float = 0.05
    fhir_replaced_rate: float = 0.05
    # every defect class and noise kind appears at least once from this night size on
    guarantee_from_encounters: int = 300
    parallel_from_encounters: int = 20_000
    # registry and no-ID patients (generate_citizens.IDENTITY_PROFILES): "default" or "hard"
    identity_profile: str = "default"


SETTINGS = GeneratorSettings()
BATCHED_FILE_SHARE = 0.3  # `--batched`: the share of one-encounter files of the older nights
# The rates whose expected outcome ("load") needs the issue #15 checks policy (totals as warnings,
# the national ICD-10 list, XML7-sourced main codes): zero them to judge a branch without it.
POLICY_DEPENDENT_RATES = (
    "drift_bhtt_rate",
    "drift_parts_rate",
    "drift_total_bv_rate",
    "drift_total_bh_rate",
    "drift_drugs_rate",
    "drift_drugs_bv_rate",
    "main_code_from_xml7_rate",
    "fifth_char_rate",
    "retired_code_rate",
)

# True defects: the encounter must stay out of the book (one at most per encounter).
BLOCKING_DEFECTS = (
    "invalid_icd10",
    "discharge_before_admission",
    "missing_xml1",
    "base64_invalid",
)
# Late tables: the stay waits (quarantined with this reason) for the grace period, then loads
# marked incomplete unless the table arrives (truth: late_resend_night).
LATE_DEFECTS = ("missing_discharge_paper", "missing_summary")
# Real-file shapes that must load (warnings at most): totals drift, code shapes, XML7 main code.
DRIFT_RELATIONS = ("bhtt", "parts", "total_bv", "total_bh", "drugs", "drugs_bv")
CODE_SHAPES = ("icd10_fifth_char", "icd10_three_char", "icd10_retired", "main_code_from_xml7")
QUIRKS = ("null_token", "comma_decimal", "cdata", "old_xml13_names", "unknown_table", "no_xml_declaration")
ID_NOISE = ("no_citizen_id", "sin_in_cccd", "old_id_in_cccd", "id_one_digit_typo")
NAME_FORM_NOISE = ("name_upper", "name_unaccented", "name_nfd")
SELF_PAY_NOISE = ("name_typo", "dropped_middle_name", "dob_day_month_swapped", "moved_ward")
FILE_DEFECTS = ("xml_malformed", "xml_entity_declared", "declared_count_mismatch")
FILE_QUIRKS = ("bom", "malformed_xmlns")
# Every kind the night guarantees: (what it is, its name)
GUARANTEED = (
    [("defect", d) for d in BLOCKING_DEFECTS + LATE_DEFECTS]
    + [("defect", q) for q in QUIRKS]
    + [("defect", "resend")]
    + [("noise", n) for n in ID_NOISE + NAME_FORM_NOISE]
    + [("noise", "dob_day_month_swapped")]
    + [("patient", "self_pay_no_id"), ("patient", "indistinguishable_twin"), ("patient", "not_in_registry")]
    + [("self_pay_noise", n) for n in ("name_typo", "dropped_middle_name", "moved_ward")]
)
