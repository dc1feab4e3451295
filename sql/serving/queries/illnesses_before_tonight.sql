-- the illness figures of the touched citizens' current encounters that tonight did not write
-- (published before tonight: a version_id below tonight's first, not rewritten tonight), per
-- citizen and 3-character category of a chronic or significant condition
-- (stage_illness_categories: transforms/load/illness.py condition_categories), each encounter seen on
-- its day of admission (of discharge when the admission time is missing). The load adds tonight's
-- own figures (illness.partial_illnesses) and writes the sum (illness.combine_illnesses).
-- Portable: date() takes the day on both engines (SQLite's cast(... as date) would keep the year),
-- and the parameter "trimmed" (illness.TRIMMED) names the characters around a code that are not part of it.
select
    e.citizen_id,
    c.category as icd10,
    min(coalesce(date(e.admitted_at), date(e.discharged_at))) as first_seen,
    max(coalesce(date(e.admitted_at), date(e.discharged_at))) as last_seen,
    count(distinct e.version_id) as encounter_count
from stage_touched_citizens as t
inner join encounters as e
    on e.citizen_id = t.citizen_id
   and e.is_current
inner join diagnoses as d
    on d.version_id = e.version_id
inner join stage_illness_categories as c
    on c.category = substr(upper(replace(trim(d.icd10, :trimmed), '.', '')), 1, 3)
where e.version_id < :first_version_id
  and not exists (select 1 from rewritten_keys as w where w.version_id = e.version_id)
group by e.citizen_id, c.category
