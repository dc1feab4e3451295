-- statement level: an upsert fires it once, for its insert or its update
create or replace trigger load_history_clears_load_fingerprints
after insert or update on load_history
for each statement execute function clear_load_fingerprints()
