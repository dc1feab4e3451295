-- every ICD-10 code of the current encounters of the touched citizens (input of transforms/illness.py),
-- seen on the day of admission (of discharge when the admission time is missing)
select
    e.citizen_id,
    e.facility_code,
    e.encounter_id,
    d.icd10,
    coalesce(cast(e.admitted_at as date), cast(e.discharged_at as date)) as seen_on
from stage_touched_citizens as t
inner join encounters as e
    on e.citizen_id = t.citizen_id
   and e.is_current
inner join diagnoses as d
    on d.version_id = e.version_id
