-- One row per encounter currently served (its newest loaded version), without direct identifiers
-- or free text: encounter and citizen pseudonyms, facility, dates (no times), visit type, result,
-- main diagnosis with its chapter, totals, and the patient's age group, sex and residence.
-- k-anonymity on (age group, sex, ward, admission month): where fewer than $k (5) citizens share
-- a combination, the ward is left out (residence at province level only: patient_residence_level).
create table encounters as
with classes as (
    select
        *,
        count(distinct citizen_key) over (
            partition by patient_age_group, patient_sex, patient_ward_code, admitted_month
        ) as class_citizens
    from encounters_identified
),

final as (
    select
        * exclude (patient_ward_code, class_citizens),
        case when class_citizens >= getvariable('k_threshold') then patient_ward_code end as patient_ward_code,
        case
            when patient_province_code is null then null
            when patient_ward_code is not null and class_citizens >= getvariable('k_threshold') then 'ward'
            else 'province'
        end as patient_residence_level
    from classes
)

select * from final
order by facility_code, admitted_on, encounter_key
