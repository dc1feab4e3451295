-- Tiers 1-3: one row per (encounter, citizen, tier) found through an exact identifier, with how
-- the citizen's name, birth date and sex agree with the record. A candidate is agreeing when all
-- three agree, tolerating the known noise (case, diacritics, NFD, swapped day and month, a
-- partial birth date, a dropped middle name, a small typo). The residence never vetoes: a
-- differing ward or province only ranks two agreeing citizens (residence_level).
create or replace table identifier_candidates as
with encounters as (
    select * from encounter_identities
),

-- not materialized: each join reads only the columns it needs of a million citizens
registry as not materialized (
    select * from registry_identities
),

encounter_social_insurance as (
    select enc_key, unnest(social_insurance_numbers) as social_insurance_number
    from encounters
),

by_citizen_id as (
    select e.enc_key, r.citizen_id, 'citizen_id' as tier, 1 as tier_rank
    from encounters as e
    inner join registry as r on r.citizen_id = e.citizen_id
),

by_social_insurance as (
    select distinct s.enc_key, r.citizen_id, 'social_insurance' as tier, 2 as tier_rank
    from encounter_social_insurance as s
    inner join registry as r on r.social_insurance_number = s.social_insurance_number
),

by_old_id as (
    select e.enc_key, r.citizen_id, 'old_id' as tier, 3 as tier_rank
    from encounters as e
    inner join registry as r on r.old_id_number = e.old_id_number
),

candidates as (
    select * from by_citizen_id
    union all
    select * from by_social_insurance
    union all
    select * from by_old_id
),

final as (
    select
        c.enc_key,
        c.citizen_id,
        c.tier,
        c.tier_rank,
        hb_name_agreement(e.name_fold, r.name_fold) as name_agreement,
        hb_birth_agreement(e.birth_ymd, r.birth_ymd) as birth_agreement,
        coalesce(e.sex = r.sex, true) as is_sex_agreeing,
        -- each field's agreement as an ordered level (higher = closer), to tell two agreeing
        -- citizens apart: a field separates them when one agrees more closely than the other
        case hb_name_agreement(e.name_fold, r.name_fold)
            when 'same' then 3 when 'dropped_middle_name' then 2 when 'name_typo' then 1 else 0
        end as name_level,
        case hb_birth_agreement(e.birth_ymd, r.birth_ymd)
            when 'same' then 3 when 'dob_day_month_swapped' then 2 when 'birth_date_partial' then 1 else 0
        end as birth_level,
        case when e.sex = r.sex then 1 else 0 end as sex_level,
        case when e.ward_code = r.ward_code then 2 when e.province_code = r.province_code then 1 else 0 end
            as residence_level,
        (
            hb_name_agreement(e.name_fold, r.name_fold) is not null
            and hb_birth_agreement(e.birth_ymd, r.birth_ymd) is not null
            and coalesce(e.sex = r.sex, true)
        ) as is_agreeing
    from candidates as c
    inner join encounters as e on e.enc_key = c.enc_key
    inner join registry as r on r.citizen_id = c.citizen_id
)

select * from final
