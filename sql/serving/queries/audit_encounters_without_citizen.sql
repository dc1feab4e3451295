-- audit before publish: staged encounters whose citizen is missing from the staged registry rows
select count(*)
from stage_encounters as s
where s.citizen_id is null
   or not exists (select 1 from stage_citizens as c where c.citizen_id = s.citizen_id)
