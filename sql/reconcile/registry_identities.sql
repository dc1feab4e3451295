-- One row per citizen of the registry snapshot, identity fields standardized for matching.
-- Reads the view registry_source (the snapshot as delivered); macros from transforms/identity.py.
create or replace table registry_identities as
with source as (
    select * from registry_source
),

standardized as (
    select
        trim(citizen_id) as citizen_id,
        hb_identifier_of_kind(old_id_number, 'old_id') as old_id_number,
        hb_identifier_of_kind(social_insurance_number, 'social_insurance') as social_insurance_number,
        full_name,
        hb_fold_name(full_name) as name_fold,
        hb_registry_birth_ymd(birth_date) as birth_ymd,
        hb_sex(sex) as sex,
        hb_code2(province_code) as province_code,
        hb_code5(ward_code) as ward_code
    from source
    where regexp_full_match(trim(citizen_id), '[0-9]{12}')
),

final as (
    select
        *,
        string_split(name_fold, ' ') as name_tokens,
        string_split(name_fold, ' ')[1] as family_name,
        string_split(name_fold, ' ')[-1] as given_name,
        left(birth_ymd, 4) as birth_year
    from standardized
)

select * from final
