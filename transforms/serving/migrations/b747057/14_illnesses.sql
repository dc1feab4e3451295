-- chronic and significant conditions of a citizen (transforms/illness.py), from the current encounters' ICD-10 codes
create table if not exists illnesses (
    citizen_id       text not null,
    icd10            text not null,
    condition        text,
    name             text,
    first_seen       date,
    last_seen        date,
    encounter_count  integer,
    primary key (citizen_id, icd10)
);
