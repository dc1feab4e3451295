-- Inpatient and day-care stays followed by another such stay of the same citizen (at any facility)
-- admitted within 30 days after the discharge. One row per facility of the first stay, and a
-- total row (facility_code null) last. Dates are days (the snapshot keeps no time): a stay admitted
-- on the day of the previous discharge counts.
--
-- Parameters: none.
with stays as (
    select citizen_key, facility_code, admitted_on, discharged_on
    from encounters
    where is_inpatient and citizen_key is not null and admitted_on is not null
),

with_next as (
    select
        *,
        lead(admitted_on) over (partition by citizen_key order by admitted_on, discharged_on) as next_admitted_on
    from stays
),

flagged as (
    select
        facility_code,
        coalesce(
            next_admitted_on >= discharged_on and next_admitted_on <= discharged_on + 30, false
        ) as is_readmitted
    from with_next
),

final as (
    select
        facility_code,
        count(*) as index_stays,
        count(*) filter (where is_readmitted) as readmitted_within_30_days,
        round(count(*) filter (where is_readmitted) / count(*), 4) as readmission_rate
    from flagged
    group by grouping sets ((facility_code), ())
    order by facility_code nulls last
)

select * from final
