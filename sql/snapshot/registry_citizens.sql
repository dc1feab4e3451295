-- One row per registry citizen (temp: it holds the citizen ID, so it never lands in the snapshot file).
create temp table registry_citizens as
with registry as not materialized (
    select
        citizen_id,
        replace(birth_date::varchar, '-', '') as birth_date_text,
        sex::varchar as sex_code,
        province_code,
        ward_code,
        replace(death_date::varchar, '-', '') as death_date_text
    from registry_rows
    where citizen_id is not null
),

-- a registry extract may repeat a citizen; keep one row, the same one every time. Only the
-- repeated citizens are ranked: a window over the whole registry sorts a million rows to find
-- a handful (not materialized: reading the Parquet twice is cheaper than holding it)
repeated as (
    select citizen_id
    from registry
    group by citizen_id
    having count(*) > 1
),

deduplicated as (
    select * from registry anti join repeated using (citizen_id)
    union all
    (
        select * from registry semi join repeated using (citizen_id)
        qualify row_number() over (partition by citizen_id order by birth_date_text, province_code, ward_code) = 1
    )
),

final as (
    select
        citizen_id,
        pseudonym(citizen_id) as citizen_key,
        birth_date_text,
        try_cast(substr(birth_date_text, 1, 4) as integer) as birth_year,
        age_on(birth_date_text, getvariable('snapshot_night')) as age_years,
        case sex_code when '1' then 'male' when '2' then 'female' end as sex,
        province_code,
        ward_code,
        coalesce(death_date_text <= strftime(getvariable('snapshot_night'), '%Y%m%d'), false) as is_deceased
    from deduplicated
)

select * from final
