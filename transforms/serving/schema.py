"""The serving database's tables, declared once.

The DDL lives in `sql/serving/*.sql` (what a DBA reads and runs); this module is the same schema
as data, so that the assembler, the bulk loader and the publish statements derive their column
lists from one place, and a test (tests/test_load_schema.py) asserts that the DDL and these
declarations agree on both PostgreSQL and SQLite.

Types are the portable SQL names both engines accept: text, integer, double precision, boolean,
date, timestamp (naive local time, minute precision, as in staging).

Grain of the encounter-version tables: one row per encounter version, plus `row_index` (the row's
position in its XML table) for the line-item tables. Every version that loaded stays;
`encounters.is_current` marks the newest loaded version of each encounter.

Keys: `encounters.version_id` (bigint) is a version's surrogate key, allocated by the load in
publish order (`transforms/load/writer.py`); the natural key (facility_code, encounter_id, version) stays
unique on `encounters`. The other encounter-version tables carry only `version_id`: their primary
keys are (version_id[, row_index | position]). A bigint key appended in order costs the COPY 22%
where the text natural key cost 57% (benchmarks/pk_copy_cost.py). No foreign key: a per-row check
would cost the bulk load more than the key; the load audits that every line item has its version.

`assemble.py` builds rows in the *assembled* shape (`ServingTable.assembled_names`): the natural
key in place of `version_id`, which the load resolves when it writes.
"""

from __future__ import annotations

from dataclasses import dataclass

SQL_TYPES = ("text", "integer", "bigint", "double precision", "boolean", "date", "timestamp")

VERSION_KEY = ("facility_code", "encounter_id", "version")


@dataclass(frozen=True)
class ServingTable:
    name: str
    columns: tuple[tuple[str, str], ...]  # (column, SQL type), in DDL order
    primary_key: tuple[str, ...]
    unique: tuple[str, ...] = ()  # a second unique key (encounters: the natural version key)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    def sql_type(self, column: str) -> str:
        return dict(self.columns)[column]

    @property
    def is_per_version(self) -> bool:
        """True when rows belong to one encounter version (replaced as a whole on re-load)."""
        return "version_id" in self.column_names

    @property
    def assembled_names(self) -> tuple[str, ...]:
        """The columns of the rows `assemble.py` builds for this table: for an encounter-version
        table the natural version key in place of `version_id` (the load resolves it)."""
        if not self.is_per_version:
            return self.column_names
        rest = (c for c in self.column_names if c != "version_id" and c not in VERSION_KEY)
        return (*VERSION_KEY, *rest)

    @property
    def assembled_order(self) -> tuple[str, ...]:
        """The order of assembled rows: the primary key with the natural key for `version_id`."""
        if not self.is_per_version:
            return self.primary_key
        return (*VERSION_KEY, *(c for c in self.primary_key if c != "version_id"))


def _cols(spec: str) -> tuple[tuple[str, str], ...]:
    out = []
    for line in spec.strip().splitlines():
        if not line.strip():
            continue
        name, sql_type = line.split(maxsplit=1)
        sql_type = sql_type.strip()
        assert sql_type in SQL_TYPES, (name, sql_type)
        out.append((name, sql_type))
    return tuple(out)


_VERSION_ID = """
    version_id          bigint
"""

CITIZENS = ServingTable(
    "citizens",
    _cols(
        """
        citizen_id              text
        full_name               text
        birth_date              date
        birth_date_precision    text
        sex_code                text
        ethnicity_code          text
        nationality_code        text
        province_code           text
        ward_code               text
        social_insurance_number text
        old_id_number           text
        blood_group             text
        death_date              date
        registry_night          date
        """
    ),
    ("citizen_id",),
)

ENCOUNTERS = ServingTable(
    "encounters",
    _cols(
        """
        version_id              bigint
        facility_code           text
        encounter_id            text
        version                 integer
        is_current              boolean
        citizen_id              text
        visit_type              text
        visit_reason            text
        inpatient_reason        text
        admitted_at             timestamp
        inpatient_at            timestamp
        discharged_at           timestamp
        treatment_days          integer
        result_code             text
        discharge_type_code     text
        main_icd10              text
        main_icd10_source       text
        admission_diagnosis     text
        discharge_diagnosis     text
        treatment_method        text
        instructions            text
        weight_kg               double precision
        height_cm               double precision
        follow_up_dates         text
        medical_record_number   text
        link_tier               text
        match_weight            double precision
        night                   date
        source_file             text
        hoso_index              integer
        incomplete              text
        """
    ),
    ("version_id",),
    unique=VERSION_KEY,
)

DIAGNOSES = ServingTable(
    "diagnoses",
    _cols(
        _VERSION_ID
        + """
        position                integer
        icd10                   text
        is_main                 boolean
        diagnosis_text          text
        """
    ),
    ("version_id", "position"),
)

MEDICATIONS = ServingTable(
    "medications",
    _cols(
        _VERSION_ID
        + """
        row_index               integer
        drug_code               text
        drug_name               text
        strength                text
        route_code              text
        dosage_form             text
        dose                    text
        directions              text
        unit                    text
        quantity                double precision
        ordered_at              timestamp
        administered_at         timestamp
        physician_codes         text
        """
    ),
    ("version_id", "row_index"),
)

PROCEDURES = ServingTable(
    "procedures",
    _cols(
        _VERSION_ID
        + """
        row_index               integer
        service_code            text
        service_name            text
        procedure_icd9          text
        quantity                double precision
        ordered_at              timestamp
        performed_at            timestamp
        resulted_at             timestamp
        """
    ),
    ("version_id", "row_index"),
)

LAB_RESULTS = ServingTable(
    "lab_results",
    _cols(
        _VERSION_ID
        + """
        row_index               integer
        service_code            text
        indicator_code          text
        indicator_name          text
        value                   text
        unit                    text
        description             text
        conclusion              text
        reported_at             timestamp
        """
    ),
    ("version_id", "row_index"),
)

CLINICAL_COURSE = ServingTable(
    "clinical_course",
    _cols(
        _VERSION_ID
        + """
        row_index               integer
        noted_at                timestamp
        note                    text
        disease_stage           text
        consultation            text
        surgery_note            text
        """
    ),
    ("version_id", "row_index"),
)

SUMMARIES = ServingTable(
    "summaries",
    _cols(
        _VERSION_ID
        + """
        admission_diagnosis     text
        discharge_diagnosis     text
        medical_history         text
        paraclinical_summary    text
        treatment_method        text
        result_code             text
        note                    text
        guardian_name           text
        father_name             text
        mother_name             text
        child_born_on           date
        child_died_on           date
        children_died           integer
        issued_on               date
        """
    ),
    ("version_id",),
)

DISCHARGE_PAPERS = ServingTable(
    "discharge_papers",
    _cols(
        _VERSION_ID
        + """
        archive_number          text
        discharge_department    text
        discharge_diagnosis     text
        treatment_method        text
        note                    text
        department_head_name    text
        issued_on               date
        is_pregnancy_terminated text
        termination_reason      text
        terminated_at           timestamp
        gestation_weeks         integer
        leave_days              integer
        leave_from              date
        leave_to                date
        father_name             text
        mother_name             text
        """
    ),
    ("version_id",),
)

REFERRALS = ServingTable(
    "referrals",
    _cols(
        _VERSION_ID
        + """
        referral_number         text
        from_facility           text
        to_facility             text
        discharge_diagnosis     text
        clinical_signs          text
        condition_at_transfer   text
        referral_reason_code    text
        discharge_type_code     text
        treatment_plan          text
        transport               text
        escort_name             text
        physician_codes         text
        """
    ),
    ("version_id",),
)

FOLLOW_UPS = ServingTable(
    "follow_ups",
    _cols(
        _VERSION_ID
        + """
        appointment_number      text
        appointment_on          date
        issuing_facility        text
        discharge_diagnosis     text
        physician_codes         text
        issued_on               date
        """
    ),
    ("version_id",),
)

IMMUNIZATIONS = ServingTable(
    "immunizations",
    _cols(
        """
        resource_id             text
        citizen_id              text
        status                  text
        vaccine_system          text
        vaccine_code            text
        vaccine_name            text
        occurred_at             timestamp
        lot_number              text
        dose_number             integer
        facility_code           text
        night                   date
        source_file             text
        line_number             integer
        """
    ),
    ("resource_id",),
)

ALLERGIES = ServingTable(
    "allergies",
    _cols(
        """
        resource_id             text
        citizen_id              text
        clinical_status         text
        verification_status     text
        substance_system        text
        substance_code          text
        substance_name          text
        reaction_code           text
        reaction_name           text
        severity                text
        criticality             text
        recorded_at             timestamp
        night                   date
        source_file             text
        line_number             integer
        """
    ),
    ("resource_id",),
)

ILLNESSES = ServingTable(
    "illnesses",
    _cols(
        """
        citizen_id              text
        icd10                   text
        condition               text
        name                    text
        first_seen              date
        last_seen               date
        encounter_count         integer
        """
    ),
    ("citizen_id", "icd10"),
)

LOAD_HISTORY = ServingTable(
    "load_history",
    _cols(
        """
        night                   date
        versions_received       integer
        versions_retried        integer
        versions_loaded         integer
        versions_quarantined    integer
        versions_superseded     integer
        rows_published          integer
        fhir_upserted           integer
        fhir_removed            integer
        """
    ),
    ("night",),
)

# The access log of `healthbook book` (issue #16): written by the book command, never by the load.
BOOK_ACCESS = ServingTable(
    "book_access",
    _cols(
        """
        read_id                 text
        position                integer
        citizen_id              text
        found                   boolean
        read_at                 timestamp
        os_user                 text
        db_user                 text
        purpose                 text
        pdf                     boolean
        """
    ),
    ("read_id", "position"),
)

# Encounter-version tables in publish order (parent first).
VERSION_TABLES: tuple[ServingTable, ...] = (
    ENCOUNTERS,
    DIAGNOSES,
    MEDICATIONS,
    PROCEDURES,
    LAB_RESULTS,
    CLINICAL_COURSE,
    SUMMARIES,
    DISCHARGE_PAPERS,
    REFERRALS,
    FOLLOW_UPS,
)
FHIR_TABLES: tuple[ServingTable, ...] = (IMMUNIZATIONS, ALLERGIES)

SERVING_TABLES: tuple[ServingTable, ...] = (
    CITIZENS,
    *VERSION_TABLES,
    *FHIR_TABLES,
    ILLNESSES,
    LOAD_HISTORY,
    BOOK_ACCESS,
)
SERVING_TABLES_BY_NAME = {t.name: t for t in SERVING_TABLES}
