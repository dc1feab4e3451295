-- One row per encounter currently served (its newest loaded version), with the demographics of the
-- RECONCILED citizen (current_versions.citizen_id, from patient_links), never of the ID the
-- hospital sent: an encounter matched through the insurance number, the old ID or the
-- probabilistic tier has its citizen's age group, sex and residence like any other.
-- Temp: it still holds the ward of every encounter before the k-anonymity coarsening (encounters.sql).
create temp table encounters_identified as
with staged as (
    select
        e.* exclude (citizen_id),
        v.encounter_key,
        v.citizen_key,
        v.citizen_id,
        v.incomplete,
        icd10_category(e.main_icd10) as main_category  -- once per row, not once per chapter
    from staged_encounters as e
    inner join current_versions as v
        on v.facility_code = e.facility_code
        and v.encounter_id = e.encounter_id
        and v.version = e.version
),

final as (
    select
        s.encounter_key,
        s.citizen_key,
        s.facility_code,
        left(s.facility_code, 2) as facility_province_code,
        s.version,
        s.night as received_night,
        lpad(s.visit_type, 2, '0') as visit_type,
        coalesce(lpad(s.visit_type, 2, '0') in ('03', '04'), false) as is_inpatient,
        -- dates only: the time of day of an admission narrows a person down (docs/snapshot.md)
        s.admitted_at::date as admitted_on,
        date_trunc('month', s.admitted_at)::date as admitted_month,
        s.inpatient_at::date as inpatient_on,
        s.discharged_at::date as discharged_on,
        s.treatment_days,
        s.result_code,
        s.discharge_type_code,
        -- a stay published after its grace period without XML7/XML8: what it lacks
        -- ("discharge_paper", "summary", ";"-joined); null when complete
        s.incomplete,
        upper(trim(s.main_icd10)) as main_icd10,
        ch.chapter as main_icd10_chapter,
        s.weight_kg,
        s.hospital_total_vnd,
        s.insured_total_vnd,
        s.insurance_paid_vnd,
        s.patient_paid_vnd,
        age_group(age_on(r.birth_date_text, s.admitted_at::date)) as patient_age_group,
        r.sex as patient_sex,
        r.province_code as patient_province_code,
        r.ward_code as patient_ward_code
    from staged as s
    left join registry_citizens as r on r.citizen_id = s.citizen_id
    left join icd10_chapters as ch
        on s.main_category between ch.first_category and ch.last_category
)

select * from final
