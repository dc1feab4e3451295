-- one row per paraclinical indicator (XML4) of an encounter version
create table if not exists lab_results (
    version_id      bigint not null,
    row_index       integer not null,
    service_code    text,
    indicator_code  text,
    indicator_name  text,
    value           text,
    unit            text,
    description     text,
    conclusion      text,
    reported_at     timestamp,
    primary key (version_id, row_index)
);
