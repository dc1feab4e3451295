-- The review queue, a worklist: one row per (queued encounter, candidate citizen), the hospital's
-- record and the registry's citizen side by side, with each field's level and contribution to the
-- match weight (level_*, weight_* columns, log2 of the Bayes factor), and the fields that separate
-- the candidate from the other contender or fail to (fields_separating, fields_not_separating).
-- Candidates are the best $max_candidates of the probabilistic tier, or the agreeing identifier
-- candidates of a deterministic many_match. Ranked by how close the decision was (review_rank 1
-- = closest): the margin over the runner-up (0 for candidates no field separates), else how far
-- the best's decision weight (patient_links.sql) is above the review threshold.
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
        tier,
        name_level,
        birth_level,
        sex_level,
        residence_level
    from (
        select
            enc_key,
            citizen_id,
            min(tier_rank) as tier_rank,
            min(tier) as tier,
            max(name_level) as name_level,
            max(birth_level) as birth_level,
            max(sex_level) as sex_level,
            max(residence_level) as residence_level
        from identifier_candidates
        where is_agreeing
        group by enc_key, citizen_id
    )
),

identifier_fields as (
    select
        p.enc_key,
        p.citizen_id,
        list_filter([
            case when p.name_level <> o.name_level then 'name' end,
            case when p.birth_level <> o.birth_level then 'birth' end,
            case when p.sex_level <> o.sex_level then 'sex' end,
            case when p.residence_level <> o.residence_level then 'residence' end
        ], lambda x: x is not null) as fields_separating,
        list_filter([
            case when p.name_level = o.name_level then 'name' end,
            case when p.birth_level = o.birth_level then 'birth' end,
            case when p.sex_level = o.sex_level then 'sex' end,
            case when p.residence_level = o.residence_level then 'residence' end
        ], lambda x: x is not null) as fields_not_separating
    from identifier_candidates_ranked as p
    inner join identifier_candidates_ranked as o
        on o.enc_key = p.enc_key and o.candidate_rank = case when p.candidate_rank = 1 then 2 else 1 end
),

candidates as (
    select q.enc_key, c.* exclude (enc_key), f.fields_separating, f.fields_not_separating
    from queued as q
    inner join probabilistic_candidates as c on c.enc_key = q.enc_key
    left join candidate_fields as f on f.enc_key = c.enc_key and f.citizen_id = c.citizen_id
    where q.tier = 'probabilistic'
    union all by name
    select q.enc_key, c.* exclude (enc_key), f.fields_separating, f.fields_not_separating
    from queued as q
    inner join identifier_candidates_ranked as c on c.enc_key = q.enc_key
    left join identifier_fields as f on f.enc_key = c.enc_key and f.citizen_id = c.citizen_id
    where q.tier <> 'probabilistic'
),

ranked_queue as (
    select
        *,
        dense_rank() over (
            order by
                case when outcome = 'many_match' then 0 else coalesce(margin, decision_weight - $review_weight) end,
                facility_code, encounter_id, version
        ) as review_rank
    from queued
),

final as (
    select
        q.review_rank,
        q.facility_code,
        q.encounter_id,
        q.version,
        q.outcome,
        q.tier,
        q.margin,
        q.deciding_field,
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
        c.fields_separating,
        c.fields_not_separating,
        c.match_weight,
        c.* exclude (enc_key, citizen_id, candidate_rank, match_weight, tier, fields_separating, fields_not_separating)
    from ranked_queue as q
    inner join candidates as c on c.enc_key = q.enc_key
    inner join encounter_identities as e on e.enc_key = q.enc_key
    inner join registry_identities as r on r.citizen_id = c.citizen_id
)

select * from final
order by review_rank, candidate_rank
