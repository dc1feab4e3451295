-- the referral paper (XML13) of an encounter version
create table if not exists referrals (
    facility_code          text not null,
    encounter_id           text not null,
    version                integer not null,
    referral_number        text,
    from_facility          text,
    to_facility            text,
    discharge_diagnosis    text,
    clinical_signs         text,
    condition_at_transfer  text,
    referral_reason_code   text,
    discharge_type_code    text,
    treatment_plan         text,
    transport              text,
    escort_name            text,
    physician_codes        text,
    primary key (facility_code, encounter_id, version)
);
