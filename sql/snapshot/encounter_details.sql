-- View: one row per served encounter with the title of its main diagnosis chapter and the
-- citizen's current demographics (for questions that start from encounters).
create view encounter_details as
select
    e.*,
    ch.title as main_icd10_chapter_title,
    c.birth_year,
    c.age_group as current_age_group,
    c.is_deceased
from encounters as e
left join icd10_chapters as ch on ch.chapter = e.main_icd10_chapter
left join citizens as c on c.citizen_key = e.citizen_key
