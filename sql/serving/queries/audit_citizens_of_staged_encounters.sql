-- the load's audit: every encounter staged for publishing has a citizen whose registry row is
-- staged with it (a count above zero refuses the night)
select count(*)
from stage_encounters as e
where e.citizen_id is null
   or not exists (select 1 from stage_citizens as c where c.citizen_id = e.citizen_id)
