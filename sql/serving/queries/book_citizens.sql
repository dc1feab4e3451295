-- a book's personal administration (registry copy) for some citizens
select *
from citizens
where citizen_id in :ids
