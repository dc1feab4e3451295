-- the newest active copy of each FHIR Immunization resource of a citizen in the registry
create table if not exists immunizations (
    resource_id     text not null,
    citizen_id      text,
    status          text,
    vaccine_system  text,
    vaccine_code    text,
    vaccine_name    text,
    occurred_at     timestamp,
    lot_number      text,
    dose_number     integer,
    facility_code   text,
    night           date,
    source_file     text,
    line_number     integer,
    primary key (resource_id)
);
