-- the ICD-10 codes of an encounter version: position 0 is the main diagnosis (MA_BENH_CHINH), 1.. the secondary ones (MA_BENH_KT)
create table if not exists diagnoses (
    version_id      bigint not null,
    position        integer not null,
    icd10           text,
    is_main         boolean,
    diagnosis_text  text,
    primary key (version_id, position)
);
