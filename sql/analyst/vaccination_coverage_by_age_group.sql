-- Share of living citizens, per age group on the snapshot night, who received at least one dose of
-- a vaccine. One row per age group.
--
-- Parameters (DuckDB variables; each has a default, so the file runs as shipped):
--   vaccine_code  default NULL = any vaccine. Set it first, e.g. `set variable vaccine_code = 'BCG';`
--                 (run_analyst_query(path, name, {"vaccine_code": "BCG"}) does the same).
with living as (
    select citizen_key, age_group
    from citizens
    where not is_deceased and age_group is not null
),

vaccinated as (
    select distinct citizen_key
    from immunizations
    where getvariable('vaccine_code') is null or vaccine_code = getvariable('vaccine_code')
),

final as (
    select
        l.age_group,
        count(*) as citizens,
        count(v.citizen_key) as vaccinated,
        round(count(v.citizen_key) / count(*), 4) as coverage
    from living as l
    left join vaccinated as v on v.citizen_key = l.citizen_key
    group by l.age_group
    order by l.age_group
)

select * from final
