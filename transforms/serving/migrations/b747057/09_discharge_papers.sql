-- the discharge paper (XML7) of an encounter version
create table if not exists discharge_papers (
    version_id               bigint not null,
    archive_number           text,
    discharge_department     text,
    discharge_diagnosis      text,
    treatment_method         text,
    note                     text,
    department_head_name     text,
    issued_on                date,
    is_pregnancy_terminated  text,
    termination_reason       text,
    terminated_at            timestamp,
    gestation_weeks          integer,
    leave_days               integer,
    leave_from               date,
    leave_to                 date,
    father_name              text,
    mother_name              text,
    primary key (version_id)
);
