-- how many of tonight's versions are already published (a re-run or a re-loaded history version):
-- when none are, there is nothing to replace and the per-table deletes are skipped
select count(*)
from encounters as e
where exists (
    select 1
    from stage_keys as s
    where s.facility_code = e.facility_code
      and s.encounter_id = e.encounter_id
      and s.version = e.version
)
