-- one row per technical service line (XML3 rows with a service code: examinations, tests, surgery, procedures)
create table if not exists procedures (
    version_id      bigint not null,
    row_index       integer not null,
    service_code    text,
    service_name    text,
    procedure_icd9  text,
    quantity        double precision,
    ordered_at      timestamp,
    performed_at    timestamp,
    resulted_at     timestamp,
    primary key (version_id, row_index)
);
