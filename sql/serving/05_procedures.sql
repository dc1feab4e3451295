-- one row per technical service line (XML3 rows with a service code: examinations, tests, surgery, procedures)
create table if not exists procedures (
    facility_code   text not null,
    encounter_id    text not null,
    version         integer not null,
    row_index       integer not null,
    service_code    text,
    service_name    text,
    procedure_icd9  text,
    quantity        double precision,
    ordered_at      timestamp,
    performed_at    timestamp,
    resulted_at     timestamp,
    primary key (facility_code, encounter_id, version, row_index)
);
