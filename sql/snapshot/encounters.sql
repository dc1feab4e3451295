-- One row per encounter currently served (its newest loaded version), without direct identifiers
-- or free text: encounter and citizen pseudonyms, facility, times, visit type, result, main
-- diagnosis with its chapter, totals, and the patient's age group, sex and residence.
create table encounters as
with staged as (
    select e.*, v.encounter_key, v.citizen_key, v.citizen_id, v.incomplete
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
        s.admitted_at,
        s.inpatient_at,
        s.discharged_at,
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
        on icd10_category(s.main_icd10) between ch.first_category and ch.last_category
)

select * from final
order by facility_code, admitted_at, encounter_key
