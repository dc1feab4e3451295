-- SQLite variant: timestamps are ISO text there, and cast(... as date) would keep only the year;
-- date() takes the day. Otherwise the same as sql/serving/queries/illnesses_of_touched.sql
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
        coalesce(date(e.admitted_at), date(e.discharged_at)) as seen_on
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
