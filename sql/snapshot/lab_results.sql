-- One row per lab result line (XML4) of a served encounter: the indicator, its value and unit, the
-- day it was reported. The value is kept as a number when it reads as one ('5,6' and '5.6' alike);
-- as text only when it is short (<= 20 characters: 'Âm tính', '++'), since a longer value may be
-- free text. The description, conclusion and the reading doctors' codes are left out.
create table lab_results as
with lines as (
    select l.*, v.encounter_key, v.citizen_key
    from staged_lab_results as l
    inner join current_versions as v
        on v.facility_code = l.facility_code
        and v.encounter_id = l.encounter_id
        and v.version = l.version
),

parsed as (
    select
        *,
        try_cast(replace(trim(value), ',', '.') as double) as parsed_number
    from lines
),

final as (
    select
        encounter_key,
        citizen_key,
        facility_code,
        line_number,
        row_index,
        service_code,
        indicator_code,
        indicator_name,
        -- 'NaN' and 'inf' read as numbers but are none
        case when isfinite(parsed_number) then parsed_number end as value_number,
        case when parsed_number is null and length(trim(value)) <= 20 then nullif(trim(value), '') end as value_text,
        nullif(trim(unit), '') as unit,
        reported_at::date as reported_on
    from parsed
)

select * exclude (row_index) from final
order by encounter_key, line_number, row_index
