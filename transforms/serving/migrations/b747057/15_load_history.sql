-- one row per loaded night: counts of the load stage (re-running a night rewrites its row)
create table if not exists load_history (
    night                 date not null,
    versions_received     integer,
    versions_retried      integer,
    versions_loaded       integer,
    versions_quarantined  integer,
    versions_superseded   integer,
    rows_published        integer,
    fhir_upserted         integer,
    fhir_removed          integer,
    primary key (night)
);
