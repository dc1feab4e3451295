-- One row per ICD-10 chapter (WHO 2019): its Roman numeral, number, category range and title.
create table icd10_chapters as
select chapter, chapter_number, first_category, last_category, title
from icd10_chapter_ranges
order by chapter_number
