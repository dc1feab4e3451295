-- a citizen's book: vaccinations of one citizen
create index if not exists immunizations_citizen on immunizations (citizen_id);
