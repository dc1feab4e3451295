-- the load's audit: every encounter version written tonight has a citizen whose registry row is
-- staged with it (a count above zero refuses the night)
select count(*)
from stage_keys as s
where s.citizen_id is null
   or not exists (select 1 from stage_citizens as c where c.citizen_id = s.citizen_id)
