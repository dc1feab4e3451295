-- a book's vaccinations, newest first
select *
from immunizations
where citizen_id in :ids
order by
    case when occurred_at is null then 1 else 0 end,
    occurred_at desc,
    resource_id
