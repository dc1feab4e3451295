-- The three-character ICD-10 category of a code as facilities send it ('e11.9', 'E119', 'G01*' -> 'E11', 'G01').
create or replace temp macro icd10_category(code) as
    nullif(left(regexp_replace(upper(code), '[^A-Z0-9]', '', 'g'), 3), '')
