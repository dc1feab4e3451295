"""Reason codes: why a file, an encounter or a row did not load. One list, documented in the README."""

from __future__ import annotations

# file level (the file is rejected; its HOSOs are not received)
FILE_REASONS = {
    "xml_entity_declared": "the file declares a DTD or an entity (refused unread: entity expansion, external entity)",
    "xml_malformed": "the envelope is not well-formed XML (for example a truncated file)",
    "xml_too_large": "the file exceeds the size limit",
    "xml_too_deep": "the envelope nests deeper than the limit",
    "not_an_envelope": "the root element is not GIAMDINHHS",
    "encoding_unsupported": "the file is not UTF-8 (or declares an encoding we refuse)",
    "facility_code_missing": "the envelope carries no MACSKCB (its rows could not be attributed)",
    "file_unreadable": "the file could not be opened or read (permissions, I/O error)",
    "facility_code_invalid": "MACSKCB has not the standard's shape (5 ASCII digits): it never names a path",
    "facility_mismatch": "MACSKCB differs from the facility whose folder the file arrived in",
    "symlink_outside_night": "a symlink leaving the night's folder (not followed, never read)",
    "ndjson_too_large": "an NDJSON file over the size limit (refused unread)",
}

# encounter level (the encounter version is quarantined)
ENCOUNTER_REASONS = {
    "missing_xml1": "a HOSO without its XML1 summary (unless it carries only XML7/XML8 for a known stay)",
    "missing_encounter_id": "an XML1 whose MA_LK is empty (the encounter has no key)",
    "base64_invalid": "a FILEHOSO whose payload is not valid base64",
    "inner_xml_malformed": "a decoded inner table that is not well-formed XML",
    "inner_too_large": "a decoded inner table over the size limit",
    "invalid_icd10": "a diagnosis code that is not a WHO ICD-10 code",
    "discharge_before_admission": "discharge earlier than admission",
    "missing_discharge_paper": "an inpatient or day-care stay without its XML7 discharge paper "
    "(waits for the grace period, then loads marked incomplete)",
    "missing_summary": "an inpatient or day-care stay without its XML8 summary "
    "(waits for the grace period, then loads marked incomplete)",
    "patient_not_in_registry": "no citizen of the registry matches the patient",
    "potential_match": "the patient matches a citizen without enough confidence (review queue)",
    "many_match": "the patient matches several citizens equally well",
    "missing_required_field": "a field the legal record cannot do without is empty (quality check)",
    "date_after_night": "an admission or discharge later than the night the extract was delivered",
    "not_reconciled": "the encounter version has no patient link (the reconcile stage did not decide it)",
}

# row level, warning severity: the encounter loads and the finding is reported (quality stage,
# expectations/checks.yaml says which check raises which)
WARNING_REASONS = {
    "value_too_long": "a value longer than the field's maximum length in the XML 130 annex",
    "code_not_in_list": "a code outside its code list (visit type, result, discharge type, sex...)",
    "invalid_icd9_procedure": "a procedure code without the shape of an ICD-9-CM code",
    "invalid_insurance_card": "an insurance card number of neither the 15-character nor the 10-digit form",
    "invalid_citizen_id": "a citizen ID that is not 12 digits where one is required (FHIR)",
    "too_many_codes": "more secondary diagnoses than the 12 the standard allows",
    "birth_after_admission": "a birth date later than the admission",
    "implausible_date": "an inpatient admission outside the stay, or another impossible date order",
    "implausible_measurement": "a weight or height outside human ranges",
    "non_positive_amount": "a quantity or a price that is zero or negative",
    "citizen_id_inconsistent": "the citizen ID's century/sex digit or year disagrees with sex or birth date",
    "card_not_valid_on_visit": "no insurance card period covers the visit date",
    # money (not part of the book: warnings for the facility, never a reason to keep a record out)
    "totals_mismatch": "an XML1 total differs from the sum of its line items (which relation, by how much)",
    "totals_identity_mismatch": "XML1's own totals break an identity of the annex (T_BHTT, T_TONGCHI_BV)",
    "line_amount_mismatch": "a line's THANH_TIEN_BV differs from SO_LUONG × its unit price",
    # diagnosis codes
    "icd10_retired": "a diagnosis code WHO retired (e.g. D75.2, N18.8): shown as sent, the facility is warned",
    "invalid_secondary_icd10": "a secondary diagnosis code not on the national ICD-10 list: left out of the book's codes",
    "main_icd10_from_xml7": "XML1's main diagnosis is empty or malformed; the book takes XML7's discharge diagnosis",
    # claim-checker rules (item 5 of issue 15)
    "order_after_execution": "a result or execution time (NGAY_KQ, NGAY_TH_YL) before its order (NGAY_YL)",
    "line_outside_stay": "a line's order, execution or result time outside admission..discharge",
    "treatment_days_mismatch": "SO_NGAY_DTRI disagrees with the annex's formula for the visit type",
    "duplicate_claim": "another encounter of the night has the same card, dates, main diagnosis and facility",
    "duplicate_line_number": "two rows of one table of an encounter share an STT",
    "paper_demographics_differ": "a referral or follow-up paper's name, birth date or sex differs from XML1",
}

# FHIR NDJSON lines that cannot be typed (quarantine/fhir/)
FHIR_REASONS = {
    "json_invalid": "the line is not a JSON object (or not UTF-8)",
    "line_too_large": "the line exceeds the size limit",
    "json_too_deep": "the JSON nests deeper than the parser allows",
    "json_duplicate_key": "a JSON object with the same key twice",
    "number_out_of_range": "an integer outside the 64-bit range (a 30-digit dose number)",
    "type_invalid": "a field FHIR types as a string (id, identifier value, code...) is a number or a boolean",
    "text_invalid": "a text value holding a NUL or an unpaired surrogate (cannot be stored)",
    "missing_resource_id": "the resource has no id",
    "missing_citizen_id": "the resource names no patient citizen ID",
}
