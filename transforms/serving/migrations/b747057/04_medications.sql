-- one row per drug line (XML2) of an encounter version
create table if not exists medications (
    version_id       bigint not null,
    row_index        integer not null,
    drug_code        text,
    drug_name        text,
    strength         text,
    route_code       text,
    dosage_form      text,
    dose             text,
    directions       text,
    unit             text,
    quantity         double precision,
    ordered_at       timestamp,
    administered_at  timestamp,
    primary key (version_id, row_index)
);
