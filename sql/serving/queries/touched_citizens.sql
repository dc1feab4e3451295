-- citizens whose illness history must be recomputed: everyone linked to any version of an
-- encounter published tonight (a re-send may move an encounter from one citizen to another),
-- and every citizen whose registry row is published tonight
insert into stage_touched_citizens (citizen_id)
select distinct e.citizen_id
from encounters as e
where e.citizen_id is not null
  and exists (
      select 1
      from stage_keys as s
      where s.facility_code = e.facility_code
        and s.encounter_id = e.encounter_id
  )
union
select c.citizen_id
from stage_citizens as c
