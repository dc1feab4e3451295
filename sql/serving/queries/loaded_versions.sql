-- the encounter versions already published for some facilities (to tell superseded versions)
select facility_code, encounter_id, version
from encounters
where facility_code in :facility_codes
