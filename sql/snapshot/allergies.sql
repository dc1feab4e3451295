-- One row per allergy shown in a book: the newest copy of each FHIR AllergyIntolerance that is
-- active (not entered-in-error, not refuted), keyed by citizen pseudonym.
create table allergies as
with newest as (
    select *
    from staged_allergies
    qualify row_number() over (
        partition by resource_id order by night desc, source_file desc, line_number desc
    ) = 1
),

final as (
    select
        pseudonym(citizen_id) as citizen_key,
        clinical_status,
        verification_status,
        substance_system,
        substance_code,
        substance_name,
        reaction_code,
        reaction_name,
        severity,
        criticality,
        recorded_at::date as recorded_on
    from newest
    where is_active
)

select * from final
order by citizen_key, recorded_on, substance_code
