"""Great Expectations suites as code: one builder per staged dataset.

A builder says WHICH columns of its dataset each GX-backed check covers; the check's policy
(severity, reason, threshold, code lists, ranges) comes from checks.yaml. Every expectation carries
`meta.check_id` so the runner can turn its row-level result back into findings. Checks GX cannot
report row by row (list columns, cross-table rules, multi-column logic) are in row_checks.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import great_expectations as gx
import great_expectations.expectations as gxe

from expectations.checks import CheckConfig
from transforms import schema

FHIR_DATASETS = ("immunizations", "allergies")
DATASETS = tuple(t.dataset for t in schema.TABLES) + FHIR_DATASETS


def night_end(night: dt.date) -> dt.datetime:
    """The last minute of the night's date: nothing in an extract may happen after it."""
    return dt.datetime.combine(night, dt.time(23, 59, 59))


class SuiteBuilder:
    """Collects the expectations of one dataset's suite, each tagged with its check id."""

    def __init__(self, dataset: str, config: CheckConfig, night: dt.date):
        self.dataset = dataset
        self.config = config
        self.night = night
        self.suite = gx.ExpectationSuite(
            name=f"{dataset}", meta={"checks_version": config.version, "night": night.isoformat()}
        )

    def _add(self, check_id: str, expectation: gxe.Expectation) -> None:
        check = self.config[check_id]
        expectation.meta = {
            "check_id": check_id,
            "dataset": self.dataset,
            "severity": check.severity,
            "reason": check.reason,
        }
        self.suite.add_expectation(expectation)

    def max_lengths(self) -> SuiteBuilder:
        """conformance.max_length on every text/code column with a limit in the 3176 annex."""
        table = schema.TABLES_BY_DATASET[self.dataset]
        limits = schema.max_lengths(table.loaihoso)
        for column in table.columns:
            limit = limits.get(column.source)
            if column.kind in ("text", "code") and limit:
                self._add(
                    "conformance.max_length",
                    gxe.ExpectColumnValueLengthsToBeBetween(column=column.name, max_value=limit),
                )
        return self

    def in_set(self, check_id: str, *columns: str) -> SuiteBuilder:
        value_set = list(self.config[check_id].params["value_set"])
        for column in columns:
            self._add(check_id, gxe.ExpectColumnValuesToBeInSet(column=column, value_set=value_set))
        return self

    def regex(self, check_id: str, *columns: str) -> SuiteBuilder:
        pattern = self.config[check_id].params["regex"]
        for column in columns:
            self._add(check_id, gxe.ExpectColumnValuesToMatchRegex(column=column, regex=pattern))
        return self

    def not_null(self, check_id: str, *columns: str) -> SuiteBuilder:
        for column in columns:
            self._add(check_id, gxe.ExpectColumnValuesToNotBeNull(column=column))
        return self

    def not_after_night(self, check_id: str, *columns: str) -> SuiteBuilder:
        # the runner turns date columns into timestamps, so one bound serves instants and dates
        for column in columns:
            self._add(
                check_id, gxe.ExpectColumnValuesToBeBetween(column=column, max_value=night_end(self.night))
            )
        return self

    def positive(self, check_id: str, *columns: str) -> SuiteBuilder:
        for column in columns:
            self._add(
                check_id, gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True)
            )
        return self

    def between(self, check_id: str, column: str, low: float, high: float) -> SuiteBuilder:
        self._add(check_id, gxe.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high))
        return self

    def discharge_after_admission(self, check_id: str) -> SuiteBuilder:
        self._add(
            check_id,
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="discharged_at",
                column_B="admitted_at",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            ),
        )
        return self


def build_encounters_suite(config: CheckConfig, night: dt.date) -> gx.ExpectationSuite:
    """XML1: one row per encounter version."""
    weight = config["plausibility.weight_range"].params
    return (
        SuiteBuilder("encounters", config, night)
        .max_lengths()
        .in_set("conformance.visit_type_code", "visit_type")
        .in_set("conformance.result_code", "result_code")
        .in_set("conformance.discharge_type_code", "discharge_type_code")
        .in_set("conformance.sex_code", "sex_code")
        .regex("conformance.patient_category_shape", "patient_category")
        .not_null(
            "completeness.encounter_required_fields",
            "encounter_id",
            "admitted_at",
            "discharged_at",
            "visit_type",
            "main_icd10",
        )
        .not_null(
            "completeness.encounter_expected_fields",
            "patient_name",
            "birth_date",
            "sex_code",
            "result_code",
            "discharge_type_code",
        )
        .discharge_after_admission("plausibility.discharge_before_admission")
        .not_after_night(
            "plausibility.encounter_not_after_night", "admitted_at", "inpatient_at", "discharged_at"
        )
        .between("plausibility.weight_range", "weight_kg", weight["min_kg"], weight["max_kg"])
        .suite
    )


def build_drugs_suite(config: CheckConfig, night: dt.date) -> gx.ExpectationSuite:
    """XML2: one row per drug line of an encounter version."""
    return (
        SuiteBuilder("drugs", config, night)
        .max_lengths()
        .not_null("completeness.line_required_fields", "drug_code", "drug_name", "quantity", "amount_vnd")
        .positive("plausibility.positive_quantity", "quantity")
        .positive("plausibility.positive_price", "unit_price_vnd")
        .not_after_night("plausibility.line_not_after_night", "ordered_at", "administered_at")
        .suite
    )


def build_services_suite(config: CheckConfig, night: dt.date) -> gx.ExpectationSuite:
    """XML3: one row per service or supply line of an encounter version."""
    return (
        SuiteBuilder("services", config, night)
        .max_lengths()
        .not_null("completeness.line_required_fields", "quantity", "amount_vnd")
        .positive("plausibility.positive_quantity", "quantity")
        .positive("plausibility.positive_price", "unit_price_vnd")
        .not_after_night("plausibility.line_not_after_night", "ordered_at", "performed_at", "resulted_at")
        .suite
    )


def build_lab_results_suite(config: CheckConfig, night: dt.date) -> gx.ExpectationSuite:
    """XML4: one row per paraclinical indicator of an encounter version."""
    return (
        SuiteBuilder("lab_results", config, night)
        .max_lengths()
        .not_null("completeness.line_required_fields", "service_code")
        .not_after_night("plausibility.line_not_after_night", "reported_at")
        .suite
    )


def build_clinical_course_suite(config: CheckConfig, night: dt.date) -> gx.ExpectationSuite:
    """XML5: one row per clinical-course note of an encounter version."""
    return (
        SuiteBuilder("clinical_course", config, night)
        .max_lengths()
        .not_null("completeness.line_required_fields", "note")
        .not_after_night("plausibility.line_not_after_night", "noted_at")
        .suite
    )


def build_discharge_papers_suite(config: CheckConfig, night: dt.date) -> gx.ExpectationSuite:
    """XML7: one discharge paper per encounter version."""
    return (
        SuiteBuilder("discharge_papers", config, night)
        .max_lengths()
        .not_null("completeness.line_required_fields", "discharged_at")
        .discharge_after_admission("plausibility.paper_discharge_before_admission")
        .not_after_night("plausibility.line_not_after_night", "discharged_at", "issued_on")
        .suite
    )


def build_summaries_suite(config: CheckConfig, night: dt.date) -> gx.ExpectationSuite:
    """XML8: one medical-record summary per encounter version."""
    return (
        SuiteBuilder("summaries", config, night)
        .max_lengths()
        .in_set("conformance.visit_type_code", "visit_type")
        .in_set("conformance.result_code", "result_code")
        .discharge_after_admission("plausibility.paper_discharge_before_admission")
        .not_after_night("plausibility.line_not_after_night", "discharged_at", "issued_on")
        .suite
    )


def build_referrals_suite(config: CheckConfig, night: dt.date) -> gx.ExpectationSuite:
    """XML13: one referral paper per encounter version."""
    return (
        SuiteBuilder("referrals", config, night)
        .max_lengths()
        .in_set("conformance.sex_code", "sex_code")
        .in_set("conformance.discharge_type_code", "discharge_type_code")
        .not_null("completeness.line_required_fields", "to_facility")
        .discharge_after_admission("plausibility.paper_discharge_before_admission")
        .suite
    )


def build_follow_ups_suite(config: CheckConfig, night: dt.date) -> gx.ExpectationSuite:
    """XML14: one follow-up appointment paper per encounter version."""
    return (
        SuiteBuilder("follow_ups", config, night)
        .max_lengths()
        .in_set("conformance.sex_code", "sex_code")
        .regex("conformance.patient_category_shape", "patient_category")
        .not_null("completeness.line_required_fields", "appointment_on")
        .discharge_after_admission("plausibility.paper_discharge_before_admission")
        .not_after_night("plausibility.line_not_after_night", "issued_on")
        .suite
    )


def build_immunizations_suite(config: CheckConfig, night: dt.date) -> gx.ExpectationSuite:
    """FHIR Immunization: one row per NDJSON line."""
    return (
        SuiteBuilder("immunizations", config, night)
        .regex("conformance.fhir_citizen_id_shape", "citizen_id")
        .not_null("completeness.line_required_fields", "vaccine_code", "occurred_at")
        .not_after_night("plausibility.line_not_after_night", "occurred_at")
        .suite
    )


def build_allergies_suite(config: CheckConfig, night: dt.date) -> gx.ExpectationSuite:
    """FHIR AllergyIntolerance: one row per NDJSON line."""
    return (
        SuiteBuilder("allergies", config, night)
        .regex("conformance.fhir_citizen_id_shape", "citizen_id")
        .not_null("completeness.line_required_fields", "substance_code")
        .not_after_night("plausibility.line_not_after_night", "recorded_at")
        .suite
    )


SUITE_BUILDERS: dict[str, Callable[[CheckConfig, dt.date], gx.ExpectationSuite]] = {
    "encounters": build_encounters_suite,
    "drugs": build_drugs_suite,
    "services": build_services_suite,
    "lab_results": build_lab_results_suite,
    "clinical_course": build_clinical_course_suite,
    "discharge_papers": build_discharge_papers_suite,
    "summaries": build_summaries_suite,
    "referrals": build_referrals_suite,
    "follow_ups": build_follow_ups_suite,
    "immunizations": build_immunizations_suite,
    "allergies": build_allergies_suite,
}


def suite_columns(suite: gx.ExpectationSuite) -> set[str]:
    """Every column an expectation of the suite reads (the frame handed to GX keeps only these)."""
    out = set()
    for e in suite.expectations:
        for key in ("column", "column_A", "column_B"):
            if value := getattr(e, key, None):
                out.add(value)
    return out
