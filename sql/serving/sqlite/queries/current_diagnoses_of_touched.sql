-- SQLite variant: timestamps are ISO text there, and cast(... as date) would keep only the year;
-- date() takes the day. Otherwise the same as sql/serving/queries/current_diagnoses_of_touched.sql
select
    e.citizen_id,
    e.facility_code,
    e.encounter_id,
    d.icd10,
    coalesce(date(e.admitted_at), date(e.discharged_at)) as seen_on
from stage_touched_citizens as t
inner join encounters as e
    on e.citizen_id = t.citizen_id
   and e.is_current
inner join diagnoses as d
    on d.version_id = e.version_id
