-- The review queue: one row per (queued encounter, candidate citizen), the hospital's record and
-- the registry's citizen side by side, with each field's contribution to the match weight
-- (weight_* columns, log2 of the Bayes factor). Candidates are the best $max_candidates of the
-- probabilistic tier, or the agreeing identifier candidates of a deterministic many_match.
create or replace table review_queue as
with queued as (
    select * from patient_links
    where outcome in ('potential_match', 'many_match')
),

probabilistic_candidates as (
    select * exclude (match_probability)
    from probabilistic_pairs
    where candidate_rank <= $max_candidates
),

identifier_candidates_ranked as (
    select
        enc_key,
        citizen_id,
        cast(row_number() over (partition by enc_key order by tier_rank, citizen_id) as bigint) as candidate_rank,
        tier
    from identifier_candidates
    where is_agreeing
),

candidates as (
    select q.enc_key, c.* exclude (enc_key)
    from queued as q
    inner join probabilistic_candidates as c on c.enc_key = q.enc_key
    where q.tier = 'probabilistic'
    union all by name
    select q.enc_key, c.* exclude (enc_key)
    from queued as q
    inner join identifier_candidates_ranked as c on c.enc_key = q.enc_key
    where q.tier <> 'probabilistic'
),

final as (
    select
        q.facility_code,
        q.encounter_id,
        q.version,
        q.outcome,
        q.tier,
        c.candidate_rank,
        e.patient_name as record_name,
        r.full_name as citizen_name,
        e.citizen_id_raw as record_citizen_id,
        r.citizen_id,
        e.birth_ymd as record_birth_ymd,
        r.birth_ymd as citizen_birth_ymd,
        e.sex as record_sex,
        r.sex as citizen_sex,
        e.province_code as record_province_code,
        r.province_code as citizen_province_code,
        e.ward_code as record_ward_code,
        r.ward_code as citizen_ward_code,
        array_to_string(e.insurance_card, ';') as record_insurance_card,
        r.social_insurance_number as citizen_social_insurance_number,
        c.match_weight,
        c.* exclude (enc_key, citizen_id, candidate_rank, match_weight, tier)
    from queued as q
    inner join candidates as c on c.enc_key = q.enc_key
    inner join encounter_identities as e on e.enc_key = q.enc_key
    inner join registry_identities as r on r.citizen_id = c.citizen_id
)

select * from final
order by facility_code, encounter_id, version, candidate_rank
