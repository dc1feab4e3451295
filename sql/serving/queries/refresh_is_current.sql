-- after a publish: the newest loaded version of each encounter touched tonight is the current one
update encounters
set is_current = (
    version = (
        select max(newest.version)
        from encounters as newest
        where newest.facility_code = encounters.facility_code
          and newest.encounter_id = encounters.encounter_id
    )
)
where exists (
    select 1
    from stage_encounters as s
    where s.facility_code = encounters.facility_code
      and s.encounter_id = encounters.encounter_id
)
