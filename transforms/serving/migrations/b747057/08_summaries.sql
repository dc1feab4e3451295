-- the medical record summary (XML8) of an inpatient or day-care encounter version
create table if not exists summaries (
    version_id            bigint not null,
    admission_diagnosis   text,
    discharge_diagnosis   text,
    medical_history       text,
    paraclinical_summary  text,
    treatment_method      text,
    result_code           text,
    note                  text,
    guardian_name         text,
    father_name           text,
    mother_name           text,
    child_born_on         date,
    child_died_on         date,
    children_died         integer,
    issued_on             date,
    primary key (version_id)
);
