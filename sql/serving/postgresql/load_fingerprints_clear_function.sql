-- any load's write to load_history makes the recorded load fingerprint stale
create or replace function clear_load_fingerprints() returns trigger
language plpgsql as $$
begin
    delete from load_fingerprints;
    return null;
end
$$
