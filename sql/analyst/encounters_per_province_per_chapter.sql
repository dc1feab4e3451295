-- Encounters served per province of residence and ICD-10 chapter of the main diagnosis, with the
-- province's name and the chapter's Vietnamese and English titles. One row per (province, chapter);
-- unknown province or chapter sorts last.
--
-- Parameters: none.
with encounters as (
    select patient_province_code, main_icd10_chapter
    from encounters
),

final as (
    select
        e.patient_province_code as province_code,
        p.name as province_name,
        e.main_icd10_chapter as icd10_chapter,
        ch.title_vi as chapter_title_vi,
        ch.title_en as chapter_title_en,
        count(*) as encounters
    from encounters as e
    left join icd10_chapters as ch on ch.chapter = e.main_icd10_chapter
    left join provinces as p on p.province_code = e.patient_province_code
    group by e.patient_province_code, p.name, e.main_icd10_chapter, ch.chapter_number, ch.title_vi, ch.title_en
    order by province_code nulls last, ch.chapter_number nulls last
)

select * from final
