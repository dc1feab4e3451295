-- The staged XML1 columns reconciliation reads, for a night that staged no encounter.
create or replace view encounters_source as
select
    null::varchar as facility_code,
    null::varchar as encounter_id,
    null::bigint as version,
    null::varchar as patient_name,
    null::varchar as citizen_id,
    null::date as birth_date,
    null::varchar as birth_date_precision,
    null::varchar as sex_code,
    null::varchar[] as insurance_card,
    null::varchar as province_code,
    null::varchar as ward_code,
    null::timestamp as admitted_at
where false
