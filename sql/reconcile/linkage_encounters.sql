-- Tier 4 input, left side: encounters that no identifier settled, in the model's column names.
create or replace table linkage_encounters as
select
    cast(e.enc_key as varchar) as unique_id,
    e.name_fold,
    e.name_tokens,
    e.family_name,
    e.given_name,
    e.birth_ymd,
    e.birth_year,
    e.sex,
    e.citizen_id,
    e.social_insurance_number,
    e.province_code,
    e.ward_code
from encounter_identities as e
anti join deterministic_links as d on d.enc_key = e.enc_key
