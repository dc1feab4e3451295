"""Great Expectations suites as code: which rule covers which column of each staged dataset.

A builder says WHICH columns of its dataset each GX-backed check covers, as `Rule`s: each rule IS
a Great Expectations expectation (its type and arguments, `gx_expectation(rule)` gives the object);
the check's policy (severity, reason, threshold, code lists, ranges) comes from checks.yaml. Checks
GX cannot express row by row (list columns, cross-table rules, multi-column logic) are in
row_checks.py.

How the rules run (see runner.py): `rules.py` evaluates every rule vectorised on each batch,
with GX's own semantics (nulls ignored except by not-null, the same comparisons), which gives
every failing row with no cap; Great Expectations then validates one `verdict_suite` per dataset:
one expectation per check on that check's computed verdict column (`ok__<check>`), so GX records
each check's result and builds the Data Docs without filtering the whole frame once per column.
tests/test_quality_rules.py runs the per-column expectations themselves through GX and proves the
vectorised verdicts agree with GX row for row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from expectations.checks import CheckConfig
from expectations.gx_import import import_gx
from transforms.core import datasets, schema

FHIR_DATASETS = tuple(datasets.FHIR_DATASETS.values())
DATASETS = datasets.XML_TABLE_DATASETS + FHIR_DATASETS
VERDICT_PREFIX = "ok__"

# the GX expectation types a rule may be (rules.py evaluates each with GX's semantics)
LENGTHS_BETWEEN = "expect_column_value_lengths_to_be_between"
IN_SET = "expect_column_values_to_be_in_set"
MATCH_REGEX = "expect_column_values_to_match_regex"
NOT_NULL = "expect_column_values_to_not_be_null"
BETWEEN = "expect_column_values_to_be_between"
PAIR_A_GREATER_THAN_B = "expect_column_pair_values_a_to_be_greater_than_b"


def night_end(night: dt.date) -> dt.datetime:
    """The last minute of the night's date: nothing in an extract may happen after it."""
    return dt.datetime.combine(night, dt.time(23, 59, 59))


@dataclass(frozen=True)
class Rule:
    """One GX expectation on one column of a dataset, tagged with the check it implements.

    `column` is the checked column (column_A of a pair); `kwargs` the expectation's other arguments.
    """

    check_id: str
    dataset: str
    expectation_type: str
    column: str
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the rule reads."""
        other = self.kwargs.get("column_B")
        return (self.column, other) if other else (self.column,)

    def describe(self) -> str:
        """The rule as one line of the Data Docs notes: `type(column, args)`."""
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.expectation_type}({self.column}{', ' + args if args else ''})"


def gx_expectation(rule: Rule):
    """The Great Expectations expectation object the rule is (tests run these per column)."""
    import_gx()
    import great_expectations.expectations as gxe

    classes = {
        LENGTHS_BETWEEN: gxe.ExpectColumnValueLengthsToBeBetween,
        IN_SET: gxe.ExpectColumnValuesToBeInSet,
        MATCH_REGEX: gxe.ExpectColumnValuesToMatchRegex,
        NOT_NULL: gxe.ExpectColumnValuesToNotBeNull,
        BETWEEN: gxe.ExpectColumnValuesToBeBetween,
        PAIR_A_GREATER_THAN_B: gxe.ExpectColumnPairValuesAToBeGreaterThanB,
    }
    column_key = "column_A" if rule.expectation_type == PAIR_A_GREATER_THAN_B else "column"
    return classes[rule.expectation_type](
        **{column_key: rule.column}, **rule.kwargs, meta={"check_id": rule.check_id}
    )


class SuiteBuilder:
    """Collects the rules of one dataset's suite, each tagged with its check id."""

    def __init__(self, dataset: str, config: CheckConfig, night: dt.date):
        self.dataset = dataset
        self.config = config
        self.night = night
        self.rules: list[Rule] = []

    def _add(self, check_id: str, expectation_type: str, column: str, **kwargs) -> None:
        self.config[check_id]  # an unknown check id fails here, at build time
        self.rules.append(Rule(check_id, self.dataset, expectation_type, column, kwargs))

    @property
    def suite(self) -> list[Rule]:
        return self.rules

    def max_lengths(self) -> SuiteBuilder:
        """conformance.max_length on every text/code column with a limit in the 3176 annex."""
        table = schema.TABLES_BY_DATASET[self.dataset]
        limits = schema.max_lengths(table.loaihoso)
        for column in table.columns:
            limit = limits.get(column.source)
            if column.kind in ("text", "code") and limit:
                self._add("conformance.max_length", LENGTHS_BETWEEN, column.name, max_value=limit)
        return self

    def in_set(self, check_id: str, *columns: str) -> SuiteBuilder:
        value_set = list(self.config[check_id].params["value_set"])
        for column in columns:
            self._add(check_id, IN_SET, column, value_set=value_set)
        return self

    def regex(self, check_id: str, *columns: str) -> SuiteBuilder:
        pattern = self.config[check_id].params["regex"]
        for column in columns:
            self._add(check_id, MATCH_REGEX, column, regex=pattern)
        return self

    def not_null(self, check_id: str, *columns: str) -> SuiteBuilder:
        for column in columns:
            self._add(check_id, NOT_NULL, column)
        return self

    def not_after_night(self, check_id: str, *columns: str) -> SuiteBuilder:
        # the runner turns date columns into timestamps, so one bound serves instants and dates
        for column in columns:
            self._add(check_id, BETWEEN, column, max_value=night_end(self.night))
        return self

    def positive(self, check_id: str, *columns: str) -> SuiteBuilder:
        for column in columns:
            self._add(check_id, BETWEEN, column, min_value=0, strict_min=True)
        return self

    def between(self, check_id: str, column: str, low: float, high: float) -> SuiteBuilder:
        self._add(check_id, BETWEEN, column, min_value=low, max_value=high)
        return self

    def discharge_after_admission(self, check_id: str) -> SuiteBuilder:
        self._add(
            check_id,
            PAIR_A_GREATER_THAN_B,
            "discharged_at",
            column_B="admitted_at",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        )
        return self


def build_encounters_suite(config: CheckConfig, night: dt.date) -> list[Rule]:
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
        )
        .not_null(
            "completeness.encounter_expected_fields",
            "patient_name",
            "birth_date",
            "sex_code",
            "result_code",
            "discharge_type_code",
            "visit_type",
        )
        .discharge_after_admission("plausibility.discharge_before_admission")
        .not_after_night(
            "plausibility.encounter_not_after_night", "admitted_at", "inpatient_at", "discharged_at"
        )
        .between("plausibility.weight_range", "weight_kg", weight["min_kg"], weight["max_kg"])
        .suite
    )


def build_drugs_suite(config: CheckConfig, night: dt.date) -> list[Rule]:
    """XML2: one row per drug line of an encounter version."""
    return (
        SuiteBuilder("drugs", config, night)
        .max_lengths()
        .in_set("conformance.cost_group_code", "cost_group")
        .in_set("conformance.coverage_scope_code", "coverage_scope")
        .not_null("completeness.line_required_fields", "drug_code", "drug_name", "quantity", "amount_vnd")
        .positive("plausibility.positive_quantity", "quantity")
        .positive("plausibility.positive_price", "unit_price_vnd")
        .not_after_night("plausibility.line_not_after_night", "ordered_at", "administered_at")
        .suite
    )


def build_services_suite(config: CheckConfig, night: dt.date) -> list[Rule]:
    """XML3: one row per service or supply line of an encounter version."""
    return (
        SuiteBuilder("services", config, night)
        .max_lengths()
        .in_set("conformance.cost_group_code", "cost_group")
        .in_set("conformance.coverage_scope_code", "coverage_scope")
        .not_null("completeness.line_required_fields", "quantity", "amount_vnd")
        .positive("plausibility.positive_quantity", "quantity")
        .positive("plausibility.positive_price", "unit_price_vnd")
        .not_after_night("plausibility.line_not_after_night", "ordered_at", "performed_at", "resulted_at")
        .suite
    )


def build_lab_results_suite(config: CheckConfig, night: dt.date) -> list[Rule]:
    """XML4: one row per paraclinical indicator of an encounter version."""
    return (
        SuiteBuilder("lab_results", config, night)
        .max_lengths()
        .not_null("completeness.line_required_fields", "service_code")
        .not_after_night("plausibility.line_not_after_night", "reported_at")
        .suite
    )


def build_clinical_course_suite(config: CheckConfig, night: dt.date) -> list[Rule]:
    """XML5: one row per clinical-course note of an encounter version."""
    return (
        SuiteBuilder("clinical_course", config, night)
        .max_lengths()
        .not_null("completeness.line_required_fields", "note")
        .not_after_night("plausibility.line_not_after_night", "noted_at")
        .suite
    )


def build_discharge_papers_suite(config: CheckConfig, night: dt.date) -> list[Rule]:
    """XML7: one discharge paper per encounter version."""
    return (
        SuiteBuilder("discharge_papers", config, night)
        .max_lengths()
        .not_null("completeness.line_required_fields", "discharged_at")
        .discharge_after_admission("plausibility.paper_discharge_before_admission")
        .not_after_night("plausibility.line_not_after_night", "discharged_at", "issued_on")
        .suite
    )


def build_summaries_suite(config: CheckConfig, night: dt.date) -> list[Rule]:
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


def build_referrals_suite(config: CheckConfig, night: dt.date) -> list[Rule]:
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


def build_follow_ups_suite(config: CheckConfig, night: dt.date) -> list[Rule]:
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


def build_immunizations_suite(config: CheckConfig, night: dt.date) -> list[Rule]:
    """FHIR Immunization: one row per NDJSON line."""
    return (
        SuiteBuilder("immunizations", config, night)
        .regex("conformance.fhir_citizen_id_shape", "citizen_id")
        .not_null("completeness.line_required_fields", "vaccine_code", "occurred_at")
        .not_after_night("plausibility.line_not_after_night", "occurred_at")
        .suite
    )


def build_allergies_suite(config: CheckConfig, night: dt.date) -> list[Rule]:
    """FHIR AllergyIntolerance: one row per NDJSON line."""
    return (
        SuiteBuilder("allergies", config, night)
        .regex("conformance.fhir_citizen_id_shape", "citizen_id")
        .not_null("completeness.line_required_fields", "substance_code")
        .not_after_night("plausibility.line_not_after_night", "recorded_at")
        .suite
    )


SUITE_BUILDERS: dict[str, Callable[[CheckConfig, dt.date], list[Rule]]] = {
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


def suite_columns(rules: list[Rule]) -> set[str]:
    """Every column a suite's rules read."""
    return {column for rule in rules for column in rule.columns}


def verdict_column(check_id: str) -> str:
    """The computed column holding a check's verdict per row: True = the row passes every rule."""
    return VERDICT_PREFIX + check_id.replace(".", "__")


def verdict_suite(dataset: str, rules: list[Rule], config: CheckConfig, night: dt.date):
    """The suite GX validates for a dataset: per check, its verdict column is all True.

    Each expectation carries the check's policy in `meta` and its column rules in `notes`, so the
    Data Docs say what was checked; the verdict frame holds no identity (only booleans).
    """
    gx = import_gx()
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(
        name=dataset, meta={"checks_version": config.version, "night": night.isoformat()}
    )
    by_check: dict[str, list[Rule]] = {}
    for rule in rules:
        by_check.setdefault(rule.check_id, []).append(rule)
    for check_id, check_rules in by_check.items():
        check = config[check_id]
        expectation = gxe.ExpectColumnValuesToBeInSet(
            column=verdict_column(check_id),
            value_set=[True],
            meta={
                "check_id": check_id,
                "dataset": dataset,
                "category": check.category,
                "severity": check.severity,
                "reason": check.reason,
                "threshold": check.threshold,
                "columns": sorted({r.column for r in check_rules}),
            },
            notes=f"{check.description}. Rules: " + "; ".join(r.describe() for r in check_rules),
        )
        suite.add_expectation(expectation)
    return suite
