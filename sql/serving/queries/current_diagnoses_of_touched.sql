-- every ICD-10 code of the current encounters of the touched citizens (input of transforms/illness.py)
select
    e.citizen_id,
    e.facility_code,
    e.encounter_id,
    d.icd10,
    e.admitted_at,
    e.discharged_at
from encounters as e
inner join diagnoses as d
    on d.facility_code = e.facility_code
   and d.encounter_id = e.encounter_id
   and d.version = e.version
where e.is_current
  and e.citizen_id in (select citizen_id from stage_touched_citizens)
