-- PostgreSQL only (SQLite has no roles): the four group roles of the serving database and what
-- each may do in the current schema. Run after the DDL by every load (transforms.load.stage.apply_roles),
-- as the owner of the tables (who must be allowed to create roles, or find them made); idempotent.
-- Roles are NOLOGIN groups: a login user is granted one of them.
--   loader       writes every table (the nightly load stage); the access log only grows
--   book_reader  reads the tables a health book is made of (`healthbook book`, the VNeID back end)
--                and appends to the access log book_access, which it cannot read
--   auditor      reads the access log book_access (who read which book, when, why)
--   analyst      reads coded clinical facts only: no citizens, no FHIR rows (they carry citizen
--                IDs), no papers with names and free text (summaries, discharge papers, referrals,
--                follow-ups, clinical course), encounters and diagnoses without citizen_id or text;
--                analysts work from the de-identified snapshot
do $roles$
declare
    role_name text;
begin
    foreach role_name in array array['loader', 'book_reader', 'analyst', 'auditor'] loop
        begin
            execute format('create role %I nologin', role_name);
        exception when duplicate_object or unique_violation then
            null;  -- exists already (another database of the cluster, or a concurrent run)
        end;
    end loop;

    execute format('grant usage on schema %I to loader, book_reader, analyst, auditor', current_schema());

    execute format('grant select, insert, update, delete, truncate on all tables in schema %I to loader',
                   current_schema());
    execute format('grant create on schema %I to loader', current_schema());
    -- tables added later by the owner (a new serving table, a migration) are the loader's to write
    -- and nobody else's to read until a grant above names them: a new table never leaks to analysts
    execute format('alter default privileges in schema %I grant select, insert, update, delete, truncate '
                   'on tables to loader', current_schema());

    execute 'grant select on citizens, encounters, diagnoses, medications, procedures, lab_results,
             clinical_course, summaries, discharge_papers, referrals, follow_ups, immunizations,
             allergies, illnesses to book_reader';
    execute 'revoke insert, update, delete, truncate on all tables in schema '
            || quote_ident(current_schema()) || ' from book_reader';

    -- the access log: appended by book readers, read by auditors, never changed or erased by the
    -- load's role, never read by analysts (it names citizens); nobody else by default
    execute 'revoke all on book_access from public, analyst, book_reader';
    execute 'revoke update, delete, truncate on book_access from loader';
    execute 'grant insert on book_access to book_reader';
    execute 'grant select on book_access to auditor';

    execute 'revoke all on citizens, immunizations, allergies, illnesses, clinical_course, summaries,
             discharge_papers, referrals, follow_ups, book_access from analyst';
    execute 'grant select on medications, procedures, lab_results, load_history to analyst';
    execute 'grant select (version_id, position, icd10, is_main) on diagnoses to analyst';
    execute 'grant select (version_id, facility_code, encounter_id, version, is_current, visit_type,
             admitted_at, inpatient_at, discharged_at, treatment_days, result_code, discharge_type_code,
             main_icd10, night) on encounters to analyst';
end
$roles$;
