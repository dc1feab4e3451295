-- tonight's staged versions (is_current already true only for the newest of each encounter among
-- tonight's) stay current only when no version still published (tonight's own were deleted for
-- replacement just before) is newer: probes the encounters primary key from each staged row
update stage_encounters
set is_current = false
where is_current
  and exists (
      select 1
      from encounters as e
      where e.facility_code = stage_encounters.facility_code
        and e.encounter_id = stage_encounters.encounter_id
        and e.version > stage_encounters.version
  )
