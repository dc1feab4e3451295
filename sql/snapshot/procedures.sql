-- One row per ICD-9-CM procedure code of a surgery or procedure line (XML3 lines of cost group 8,
-- "phẫu thuật, thủ thuật", or carrying MA_PTTT_QT codes) of a served encounter; a procedure line
-- without a code gives one row with icd9_code null.
create table procedures as
with lines as (
    select s.*, v.encounter_key, v.citizen_key
    from staged_services as s
    inner join current_versions as v
        on v.facility_code = s.facility_code
        and v.encounter_id = s.encounter_id
        and v.version = s.version
    where s.cost_group = '8' or len(s.procedure_icd9) > 0
),

final as (
    select
        encounter_key,
        citizen_key,
        facility_code,
        line_number,
        row_index,
        service_code,
        service_name,
        cost_group,
        unnest(case when len(procedure_icd9) > 0 then procedure_icd9 else [null::varchar] end) as icd9_code,
        quantity,
        performed_at::date as performed_on
    from lines
)

select * exclude (row_index) from final
order by encounter_key, line_number, row_index, icd9_code
