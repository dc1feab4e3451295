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
}

# encounter level (the encounter version is quarantined)
ENCOUNTER_REASONS = {
    "missing_xml1": "a HOSO without its XML1 summary",
    "base64_invalid": "a FILEHOSO whose payload is not valid base64",
    "inner_xml_malformed": "a decoded inner table that is not well-formed XML",
    "inner_too_large": "a decoded inner table over the size limit",
    "invalid_icd10": "a diagnosis code that is not a WHO ICD-10 code",
    "discharge_before_admission": "discharge earlier than admission",
    "missing_discharge_paper": "an inpatient or day-care stay without its XML7 discharge paper",
    "missing_summary": "an inpatient or day-care stay without its XML8 summary",
    "totals_mismatch": "XML1 totals differ from the sums of the line items",
    "patient_not_in_registry": "no citizen of the registry matches the patient",
    "potential_match": "the patient matches a citizen without enough confidence (review queue)",
    "many_match": "the patient matches several citizens equally well",
}
