-- Encounters served per province of residence and ICD-10 chapter of the main diagnosis.
-- One row per (province, chapter); unknown province or chapter sorts last.
with encounters as (
    select patient_province_code, main_icd10_chapter
    from encounters
),

final as (
    select
        e.patient_province_code as province_code,
        e.main_icd10_chapter as icd10_chapter,
        ch.title as chapter_title,
        count(*) as encounters
    from encounters as e
    left join icd10_chapters as ch on ch.chapter = e.main_icd10_chapter
    group by e.patient_province_code, e.main_icd10_chapter, ch.chapter_number, ch.title
    order by province_code nulls last, ch.chapter_number nulls last
)

select * from final
