-- One row per encounter version to reconcile, identity fields standardized like the registry's.
-- Reads the view encounters_source (staged XML1 rows); macros from transforms/reconcile/identity.py.
create or replace table encounter_identities as
with source as (
    select
        row_number() over (order by facility_code, encounter_id, version) as enc_key,
        *
    from encounters_source
),

standardized as materialized (
    select
        enc_key,
        facility_code,
        encounter_id,
        version,
        patient_name,
        citizen_id as citizen_id_raw,
        insurance_card,
        hb_identifier_kind(citizen_id) as identifier_kind,
        hb_identifier_of_kind(citizen_id, 'citizen_id') as citizen_id,
        hb_identifier_of_kind(citizen_id, 'old_id') as old_id_number,
        -- a 10-digit SO_CCCD first, then every card's last 10 digits
        list_distinct(list_filter(
            list_concat(
                [hb_identifier_of_kind(citizen_id, 'social_insurance')],
                list_transform(coalesce(insurance_card, []), lambda c: hb_social_insurance_from_card(c))
            ),
            lambda s: s is not null
        )) as social_insurance_numbers,
        hb_fold_name(patient_name) as name_fold,
        hb_birth_ymd(birth_date, birth_date_precision) as birth_ymd,
        hb_sex(sex_code) as sex,
        hb_code2(province_code) as province_code,
        hb_code5(ward_code) as ward_code,
        strftime(admitted_at, '%Y%m%d') as admitted_ymd
    from source
),

final as (
    select
        *,
        social_insurance_numbers[1] as social_insurance_number,
        string_split(name_fold, ' ') as name_tokens,
        string_split(name_fold, ' ')[1] as family_name,
        string_split(name_fold, ' ')[-1] as given_name,
        left(birth_ymd, 4) as birth_year
    from standardized
)

select * from final
