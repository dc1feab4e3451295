-- One row per registry citizen, de-identified: pseudonym, birth year (none from age 90), age group
-- on the snapshot night, sex and province of residence. No ward: an analyst joining an encounter to
-- its citizen must not get back the ward the encounters table left out for k-anonymity.
create table citizens as
select
    citizen_key,
    case when age_years < 90 then birth_year end as birth_year,
    age_group(age_years) as age_group,
    sex,
    province_code,
    is_deceased
from registry_citizens
order by citizen_key
