-- one row per clinical course entry (XML5) of an encounter version
create table if not exists clinical_course (
    version_id     bigint not null,
    row_index      integer not null,
    noted_at       timestamp,
    note           text,
    disease_stage  text,
    consultation   text,
    surgery_note   text,
    primary key (version_id, row_index)
);
