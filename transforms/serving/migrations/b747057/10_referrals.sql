-- the referral paper (XML13) of an encounter version
create table if not exists referrals (
    version_id             bigint not null,
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
    primary key (version_id)
);
