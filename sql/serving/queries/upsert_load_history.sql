-- one row per loaded night; a re-run of the night rewrites it
insert into load_history (
    night, versions_received, versions_retried, versions_loaded, versions_quarantined,
    versions_superseded, rows_published, fhir_upserted, fhir_removed
)
values (
    :night, :versions_received, :versions_retried, :versions_loaded, :versions_quarantined,
    :versions_superseded, :rows_published, :fhir_upserted, :fhir_removed
)
on conflict (night) do update set
    versions_received = excluded.versions_received,
    versions_retried = excluded.versions_retried,
    versions_loaded = excluded.versions_loaded,
    versions_quarantined = excluded.versions_quarantined,
    versions_superseded = excluded.versions_superseded,
    rows_published = excluded.rows_published,
    fhir_upserted = excluded.fhir_upserted,
    fhir_removed = excluded.fhir_removed
