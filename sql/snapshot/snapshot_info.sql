-- One row describing the snapshot: its night, what it holds (the history promise), how its
-- de-identification works, and the k-anonymity measured on the encounters' quasi-identifiers
-- (age group, sex, ward, admission month) before and after the ward was coarsened.
create table snapshot_info as
with before_classes as (
    select count(distinct citizen_key) as citizens
    from encounters_identified
    group by patient_age_group, patient_sex, patient_ward_code, admitted_month
),

after_classes as (
    select count(distinct citizen_key) as citizens, count(*) as encounters
    from encounters
    group by patient_age_group, patient_sex, coalesce(patient_ward_code, 'province ' || patient_province_code), admitted_month
),

measures as (
    select
        (select min(citizens) from before_classes) as k_before_coarsening,
        (select min(citizens) from after_classes) as k_after_coarsening,
        (select count(*) from encounters_identified as i where i.patient_ward_code is not null)
        - (select count(*) from encounters as e where e.patient_ward_code is not null) as encounters_ward_coarsened,
        (
            select coalesce(sum(encounters), 0)
            from after_classes
            where citizens < getvariable('k_threshold')
        ) as encounters_below_k_after_coarsening
)

select
    getvariable('snapshot_night') as night,
    (select count(*) from encounters) as encounters,
    (select min(received_night) from encounters) as first_night,
    'every encounter loaded on any night up to this one, newest loaded version only; '
    || 'a superseded or quarantined version never appears, an encounter loaded later does' as history_promise,
    'HMAC-SHA256 of the citizen ID (citizen_key) and of facility_code:MA_LK (encounter_key), keyed per deployment' as pseudonym_scheme,
    'five-year bands on the snapshot night; 90 and over grouped as 90+ with no birth year' as age_rule,
    'dates only: admission, discharge, orders, results, doses keep the day, never the time' as time_rule,
    'patient_age_group, patient_sex, patient_ward_code, admitted_month' as quasi_identifiers,
    getvariable('k_threshold') as k_threshold,
    m.k_before_coarsening,
    m.k_after_coarsening,
    m.encounters_ward_coarsened,
    m.encounters_below_k_after_coarsening
from measures as m
