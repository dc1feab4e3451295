-- any load's new load_history row makes the recorded load fingerprint stale
create trigger if not exists load_history_insert_clears_load_fingerprints
after insert on load_history
begin
    delete from load_fingerprints;
end
