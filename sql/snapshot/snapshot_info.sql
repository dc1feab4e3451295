-- One row describing the snapshot: its night and how its de-identification works.
create table snapshot_info as
select
    getvariable('snapshot_night') as night,
    'HMAC-SHA256 of the citizen ID (citizen_key) and of facility_code:MA_LK (encounter_key), keyed per deployment' as pseudonym_scheme,
    'five-year bands on the snapshot night; 90 and over grouped as 90+ with no birth year' as age_rule,
    'encounters: newest loaded version of each encounter over every night up to this one' as encounter_rule
