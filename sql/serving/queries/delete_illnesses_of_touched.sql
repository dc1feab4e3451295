-- the touched citizens' illness history is replaced as a whole
delete from illnesses
where citizen_id in (select citizen_id from stage_touched_citizens)
