-- a citizen's book: allergies of one citizen
create index if not exists allergies_citizen on allergies (citizen_id);
