-- a version published tonight makes the earlier current version of its encounter history
update encounters
set is_current = false
where is_current
  and exists (
      select 1
      from stage_keys as s
      where s.facility_code = encounters.facility_code
        and s.encounter_id = encounters.encounter_id
        and s.version > encounters.version
  )
