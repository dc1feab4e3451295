-- personal administration of each citizen with a book, copied from the identity registry snapshot (never from what a hospital typed)
create table if not exists citizens (
    citizen_id               text not null,
    full_name                text,
    birth_date               date,
    birth_date_precision     text,
    sex_code                 text,
    ethnicity_code           text,
    nationality_code         text,
    province_code            text,
    ward_code                text,
    social_insurance_number  text,
    old_id_number            text,
    blood_group              text,
    death_date               date,
    registry_night           date,
    primary key (citizen_id)
);
