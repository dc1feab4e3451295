-- Five-year age band, zero-padded so that it sorts ('00-04' ... '85-89'), and '90+' for every
-- age from 90 up (ages that high are rare enough to identify a person).
create or replace temp macro age_group(age_years) as
    case
        when age_years is null or age_years < 0 then null
        when age_years >= 90 then '90+'
        else lpad((age_years // 5 * 5)::varchar, 2, '0') || '-' || lpad((age_years // 5 * 5 + 4)::varchar, 2, '0')
    end
