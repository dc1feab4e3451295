-- the follow-up appointment paper (XML14) of an encounter version
create table if not exists follow_ups (
    version_id           bigint not null,
    appointment_number   text,
    appointment_on       date,
    issuing_facility     text,
    discharge_diagnosis  text,
    physician_codes      text,
    issued_on            date,
    primary key (version_id)
);
