-- one row per paraclinical indicator (XML4) of an encounter version
create table if not exists lab_results (
    facility_code   text not null,
    encounter_id    text not null,
    version         integer not null,
    row_index       integer not null,
    service_code    text,
    indicator_code  text,
    indicator_name  text,
    value           text,
    unit            text,
    description     text,
    conclusion      text,
    reported_at     timestamp,
    primary key (facility_code, encounter_id, version, row_index)
);
