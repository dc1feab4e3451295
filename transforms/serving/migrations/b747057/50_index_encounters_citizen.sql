-- a citizen's book: the current encounters of one citizen
create index if not exists encounters_citizen_current on encounters (citizen_id, is_current);
