-- One row per encounter currently in the serving database: the newest version of each encounter key
-- whose latest outcome (over every night so far) is 'loaded', with its reconciled citizen.
-- Temp: it holds the encounter ID and citizen ID, so it never lands in the snapshot file.
create temp table current_versions as
with latest_outcomes as (
    select facility_code, encounter_id, version, outcome, incomplete
    from outcome_rows
    -- a pending version retried on a later night gets a later outcome; the latest one counts
    qualify row_number() over (
        partition by facility_code, encounter_id, version order by run_night desc
    ) = 1
),

loaded_versions as (
    select facility_code, encounter_id, version, incomplete
    from latest_outcomes
    where outcome = 'loaded'
),

current_loaded as (
    select *
    from loaded_versions
    qualify row_number() over (partition by facility_code, encounter_id order by version desc) = 1
),

latest_links as (
    select facility_code, encounter_id, version, outcome, citizen_id
    from patient_link_rows
    qualify row_number() over (
        partition by facility_code, encounter_id, version order by link_night desc
    ) = 1
),

final as (
    select
        c.facility_code,
        c.encounter_id,
        c.version,
        l.citizen_id,
        c.incomplete,
        pseudonym(c.facility_code || ':' || c.encounter_id) as encounter_key,
        pseudonym(l.citizen_id) as citizen_key
    from current_loaded as c
    left join latest_links as l
        on l.facility_code = c.facility_code
        and l.encounter_id = c.encounter_id
        and l.version = c.version
        and l.outcome = 'match'
)

select * from final
