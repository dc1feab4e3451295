-- the newest published version of each candidate encounter (to tell which candidates are superseded)
select e.facility_code, e.encounter_id, max(e.version) as version
from encounters as e
inner join candidate_keys as c
    on c.facility_code = e.facility_code
   and c.encounter_id = e.encounter_id
group by e.facility_code, e.encounter_id
