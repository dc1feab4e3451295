-- One row per diagnosis code of a served encounter: position 0 is the main diagnosis, 1.. the
-- secondary ones in the order sent, each with its ICD-10 category, block and chapter.
create table diagnoses as
with staged as (
    select e.main_icd10, e.secondary_icd10, e.admitted_at::date as admitted_on, e.facility_code, v.encounter_key, v.citizen_key
    from staged_encounters as e
    inner join current_versions as v
        on v.facility_code = e.facility_code
        and v.encounter_id = e.encounter_id
        and v.version = e.version
),

main_codes as (
    select encounter_key, citizen_key, facility_code, admitted_on, 0 as position, main_icd10 as icd10
    from staged
    where main_icd10 is not null
),

secondary_codes as (
    select
        encounter_key,
        citizen_key,
        facility_code,
        admitted_on,
        unnest(generate_series(1, len(secondary_icd10))) as position,
        unnest(secondary_icd10) as icd10
    from staged
    where len(secondary_icd10) > 0
),

codes as (
    select * from main_codes
    union all
    select * from secondary_codes
),

-- the category once per code (a regular expression), then two range lookups on it: a code falls in
-- at most one chapter and one block, so each join keeps the row count
categorized as (
    select *, icd10_category(icd10) as category
    from codes
    where nullif(trim(icd10), '') is not null
),

final as (
    select
        c.encounter_key,
        c.citizen_key,
        c.facility_code,
        c.admitted_on,
        c.position::integer as position,
        c.position = 0 as is_main,
        upper(trim(c.icd10)) as icd10,
        c.category as icd10_category,
        ch.chapter as icd10_chapter,
        b.block as icd10_block
    from categorized as c
    left join icd10_chapters as ch on c.category between ch.first_category and ch.last_category
    left join icd10_blocks as b on c.category between b.first_category and b.last_category
)

select * from final
order by encounter_key, position
