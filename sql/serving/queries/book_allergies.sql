-- a book's allergies, newest record first
select *
from allergies
where citizen_id in :ids
order by
    case when recorded_at is null then 1 else 0 end,
    recorded_at desc,
    resource_id
