-- a book's illness history, in the order the illnesses first appeared
select *
from illnesses
where citizen_id in :ids
order by first_seen, icd10
