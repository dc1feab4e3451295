-- SQLite variant: timestamps are ISO text there, and cast(... as date) would keep only the year;
-- date() takes the day; trim(x, characters) names the characters trimmed (space, tab, CR, LF).
-- Otherwise the same as sql/serving/queries/illnesses_before_tonight.sql
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
    on c.category = substr(upper(replace(trim(d.icd10, ' ' || char(9) || char(13) || char(10)), '.', '')), 1, 3)
where e.version_id < :first_version_id
  and not exists (select 1 from rewritten_keys as w where w.version_id = e.version_id)
group by e.citizen_id, c.category
