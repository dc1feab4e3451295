-- One row per vaccination shown in a book: the newest copy of each FHIR Immunization that is
-- active, keyed by citizen pseudonym, with the citizen's age group on the day of the dose.
create table immunizations as
with newest as (
    select *
    from staged_immunizations
    qualify row_number() over (
        partition by resource_id order by night desc, source_file desc, line_number desc
    ) = 1
),

final as (
    select
        pseudonym(n.citizen_id) as citizen_key,
        n.vaccine_system,
        n.vaccine_code,
        n.vaccine_name,
        n.occurred_at::date as occurred_on,
        n.dose_number,
        n.lot_number,
        n.facility_code,
        age_group(age_on(r.birth_date_text, n.occurred_at::date)) as age_group_at_dose
    from newest as n
    left join registry_citizens as r on r.citizen_id = n.citizen_id
    where n.is_active
)

select * from final
order by citizen_key, occurred_on, vaccine_code
