-- every published version of the candidate encounters with its version_id: the newest tells which
-- candidates are superseded, and a version written again keeps its id
select e.facility_code, e.encounter_id, e.version, e.version_id
from encounters as e
inner join candidate_keys as c
    on c.facility_code = e.facility_code
   and c.encounter_id = e.encounter_id
