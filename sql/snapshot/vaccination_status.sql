-- View: one row per citizen and vaccine received (doses, first and last date), for coverage questions.
create view vaccination_status as
select
    i.citizen_key,
    i.vaccine_code,
    min(i.vaccine_name) as vaccine_name,
    count(*) as doses,
    max(i.dose_number) as highest_dose_number,
    min(i.occurred_on) as first_dose_on,
    max(i.occurred_on) as last_dose_on
from immunizations as i
group by i.citizen_key, i.vaccine_code
