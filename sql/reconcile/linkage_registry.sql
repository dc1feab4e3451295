-- Tier 4 input, right side: every citizen of the registry, in the model's column names.
create or replace view linkage_registry as
select
    citizen_id as unique_id,
    name_fold,
    string_split(name_fold, ' ') as name_tokens,
    family_name,
    given_name,
    birth_ymd,
    birth_year,
    sex,
    citizen_id,
    social_insurance_number,
    province_code,
    ward_code
from registry_identities
