-- at most one row: the last load of a night whose fingerprint the pipeline recorded (re-run skip).
-- Not numbered: ensure_schema does not create it; transforms/orchestration/fingerprint.py does, with the
-- trigger that empties it whenever any night's load writes load_history (in the load's own
-- transaction), so a row here means no load has happened since it was written.
create table if not exists load_fingerprints (
    night        date not null,
    fingerprint  text not null,
    recorded_at  timestamp not null,
    primary key (night)
)
