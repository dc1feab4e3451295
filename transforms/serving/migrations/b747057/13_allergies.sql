-- the newest active copy of each FHIR AllergyIntolerance resource of a citizen in the registry
create table if not exists allergies (
    resource_id          text not null,
    citizen_id           text,
    clinical_status      text,
    verification_status  text,
    substance_system     text,
    substance_code       text,
    substance_name       text,
    reaction_code        text,
    reaction_name        text,
    severity             text,
    criticality          text,
    recorded_at          timestamp,
    night                date,
    source_file          text,
    line_number          integer,
    primary key (resource_id)
);
