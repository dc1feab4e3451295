-- View: one row per served encounter with the names of its codes (main diagnosis chapter, facility,
-- provinces, ward) and the citizen's current demographics, for questions that start from encounters.
create view encounter_details as
select
    e.*,
    ch.title_vi as main_icd10_chapter_title_vi,
    ch.title_en as main_icd10_chapter_title_en,
    f.name as facility_name,
    f.level as facility_level,
    fp.name as facility_province_name,
    pp.name as patient_province_name,
    w.name as patient_ward_name,
    c.birth_year,
    c.age_group as current_age_group,
    c.is_deceased
from encounters as e
left join icd10_chapters as ch on ch.chapter = e.main_icd10_chapter
left join facilities as f on f.facility_code = e.facility_code
left join provinces as fp on fp.province_code = e.facility_province_code
left join provinces as pp on pp.province_code = e.patient_province_code
left join wards as w on w.ward_code = e.patient_ward_code
left join citizens as c on c.citizen_key = e.citizen_key
