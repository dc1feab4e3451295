-- One row per citizen of the registry snapshot, identity fields standardized for matching.
-- Reads the view registry_source (the snapshot as delivered); macros from transforms/reconcile/identity.py.
-- Names are folded once per distinct name (a million citizens share ~90 thousand names), and
-- identifiers are checked against the snapshot's contract form (digits only), not cleaned like
-- a clerk's SO_CCCD.
create or replace table registry_identities as
with source as (
    select * from registry_source
    where regexp_full_match(trim(citizen_id), '[0-9]{12}')
),

folded_names as materialized (
    select full_name, hb_fold_name(full_name) as name_fold
    from (select distinct full_name from source)
),

standardized as materialized (
    select
        trim(s.citizen_id) as citizen_id,
        case when regexp_full_match(trim(s.old_id_number), '[0-9]{9}') then trim(s.old_id_number) end
            as old_id_number,
        case when regexp_full_match(trim(s.social_insurance_number), '[0-9]{10}')
            then trim(s.social_insurance_number) end as social_insurance_number,
        s.full_name,
        f.name_fold,
        hb_registry_birth_ymd(s.birth_date) as birth_ymd,
        hb_sex(s.sex) as sex,
        hb_code2(s.province_code) as province_code,
        hb_code5(s.ward_code) as ward_code,
        -- date of death where recorded (a date, or YYYYMMDD text as the snapshot delivers it)
        nullif(regexp_extract(replace(trim(s.death_date::varchar), '-', ''), '^[0-9]{8}$'), '') as death_ymd
    from source as s
    left join folded_names as f on f.full_name = s.full_name
),

final as (
    select
        *,
        -- the name's tokens as a list are linkage_registry's (only Splink's candidates need them)
        string_split(name_fold, ' ')[1] as family_name,
        string_split(name_fold, ' ')[-1] as given_name,
        left(birth_ymd, 4) as birth_year
    from standardized
)

select * from final
