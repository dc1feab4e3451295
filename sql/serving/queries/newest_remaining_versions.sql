-- the newest version already published of each encounter loading tonight (after tonight's own
-- versions were deleted for replacement): tonight's rows are current only when at least as new
select e.facility_code, e.encounter_id, max(e.version) as version
from encounters as e
where exists (
    select 1
    from stage_keys as s
    where s.facility_code = e.facility_code
      and s.encounter_id = e.encounter_id
)
group by e.facility_code, e.encounter_id
