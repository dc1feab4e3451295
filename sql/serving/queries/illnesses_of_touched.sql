-- the illness history of the touched citizens, recomputed in one statement from the ICD-10 codes
-- of their current encounters (seen on the day of admission, of discharge when the admission time
-- is missing): one row per citizen and 3-character category of a chronic or significant condition
-- (stage_illness_categories: transforms/illness.py condition_categories, with the WHO title).
-- The same result as transforms/illness.py illnesses_from_diagnoses (tests/test_illness_sql.py).
insert into illnesses (citizen_id, icd10, condition, name, first_seen, last_seen, encounter_count)
select
    citizen_id,
    category,
    condition,
    name,
    min(seen_on) as first_seen,
    max(seen_on) as last_seen,
    count(*) as encounter_count
from (
    -- each encounter once per category (two codes of one category at one encounter count once)
    select distinct
        e.citizen_id,
        c.category,
        c.condition,
        c.name,
        e.version_id,
        coalesce(cast(e.admitted_at as date), cast(e.discharged_at as date)) as seen_on
    from stage_touched_citizens as t
    inner join encounters as e
        on e.citizen_id = t.citizen_id
       and e.is_current
    inner join diagnoses as d
        on d.version_id = e.version_id
    inner join stage_illness_categories as c
        on c.category = substr(upper(replace(trim(d.icd10), '.', '')), 1, 3)
) as seen
group by citizen_id, category, condition, name
