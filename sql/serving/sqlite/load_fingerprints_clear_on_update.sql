-- a re-load of a night rewrites its load_history row (upsert: the update triggers fire)
create trigger if not exists load_history_update_clears_load_fingerprints
after update on load_history
begin
    delete from load_fingerprints;
end
