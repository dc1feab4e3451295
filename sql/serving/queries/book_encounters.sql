-- a book's encounters: current versions only, newest admission first (no admission time last)
select *
from encounters
where is_current
  and citizen_id in :ids
order by
    case when admitted_at is null then 1 else 0 end,
    admitted_at desc,
    facility_code,
    encounter_id
