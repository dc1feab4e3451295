-- One row per ICD-10 chapter (WHO 2019): numeral, number, category range, Vietnamese and English title
-- (transforms/reference/icd10_chapters.csv).
create table icd10_chapters as
select chapter, chapter_number, first_category, last_category, title_vi, title_en
from ref_icd10_chapters
order by chapter_number
