-- one row per loaded encounter version (XML1); is_current marks the newest loaded version, earlier ones stay as history.
-- version_id: the version's surrogate key, allocated by the load in publish order; the other
-- encounter-version tables are keyed by it. (facility_code, encounter_id, version) stays unique.
create table if not exists encounters (
    version_id             bigint not null,
    facility_code          text not null,
    encounter_id           text not null,
    version                integer not null,
    is_current             boolean not null,
    citizen_id             text,
    visit_type             text,
    visit_reason           text,
    inpatient_reason       text,
    admitted_at            timestamp,
    inpatient_at           timestamp,
    discharged_at          timestamp,
    treatment_days         integer,
    result_code            text,
    discharge_type_code    text,
    main_icd10             text,
    -- where main_icd10 comes from: 'xml1' (MA_BENH_CHINH) or 'xml7' (the discharge paper, when
    -- XML1's is empty or not on the national ICD-10 list)
    main_icd10_source      text,
    admission_diagnosis    text,
    discharge_diagnosis    text,
    treatment_method       text,
    instructions           text,
    weight_kg              double precision,
    height_cm              double precision,
    follow_up_dates        text,
    medical_record_number  text,
    link_tier              text,
    match_weight           double precision,
    night                  date,
    source_file            text,
    hoso_index             integer,
    -- a stay published after its grace period without XML7/XML8: what it lacks,
    -- ";"-joined ("discharge_paper", "summary"); null when complete
    incomplete             text,
    primary key (version_id),
    unique (facility_code, encounter_id, version)
);
