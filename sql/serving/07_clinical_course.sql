-- one row per clinical course entry (XML5) of an encounter version
create table if not exists clinical_course (
    facility_code  text not null,
    encounter_id   text not null,
    version        integer not null,
    row_index      integer not null,
    noted_at       timestamp,
    note           text,
    disease_stage  text,
    consultation   text,
    surgery_note   text,
    primary key (facility_code, encounter_id, version, row_index)
);
