-- The reference tables of transforms/reference/ (names for codes), as shipped or as dropped in by
-- the deployment (HEALTHBOOK_REFERENCE_DIR); reference_sources says which file and version each is.
create table icd10_blocks as
select block, chapter, first_category, last_category, title_vi, title_en
from ref_icd10_blocks
order by first_category;

create table provinces as
select province_code, name, division_type
from ref_provinces
order by province_code;

create table wards as
select ward_code, name, division_type, province_code
from ref_wards
order by ward_code;

create table service_groups as
select group_code, name_vi, name_en, kind
from ref_service_groups
order by try_cast(group_code as integer), group_code;

-- every facility of the list, and every facility seen in the data but missing from the list (with
-- its province from the code and no name), so that a join on facility_code never loses a row
create table facilities as
with listed as (
    select facility_code, name, province_code, level, true as is_listed
    from ref_facilities
),

seen as (
    select distinct facility_code from staged_encounters where facility_code is not null
),

final as (
    select * from listed
    union all
    select s.facility_code, null, left(s.facility_code, 2), null, false
    from seen as s
    anti join listed as l on l.facility_code = s.facility_code
)

select * from final
order by facility_code;

create table reference_sources as
select * from ref_sources
order by table_name;
