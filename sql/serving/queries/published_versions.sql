-- every published version of the candidate encounters with its version_id and citizen: the newest
-- tells which candidates are superseded, a version written again keeps its id, an older one is
-- retired by a newer one, and its citizen's illnesses are recomputed
select e.facility_code, e.encounter_id, e.version, e.version_id, e.citizen_id
from encounters as e
inner join candidate_keys as c
    on c.facility_code = e.facility_code
   and c.encounter_id = e.encounter_id
