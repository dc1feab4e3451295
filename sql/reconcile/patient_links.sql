-- One row per encounter version: the outcome of reconciliation and, for a match, the citizen.
-- Deterministic links (tiers 1-3) win; the rest are decided on the probabilistic candidates:
--   match            best weight >= $match_weight and ahead of the runner-up by >= $margin
--   many_match       best and runner-up both >= $match_weight but too close to tell apart
--   potential_match  best weight >= $review_weight otherwise (the review queue)
--   no_match         no candidate, or none reaching $review_weight
-- `differences` names how the record differs from the linked (or best candidate) citizen.
create or replace table patient_links as
with encounters as (
    select * from encounter_identities
),

best as (
    select
        enc_key,
        max(match_weight) filter (where candidate_rank = 1) as top_weight,
        max(match_weight) filter (where candidate_rank = 2) as runner_up_weight,
        max(citizen_id) filter (where candidate_rank = 1) as top_citizen_id
    from probabilistic_pairs
    group by enc_key
),

probabilistic as (
    select
        enc_key,
        case
            when top_weight >= $match_weight
                and (runner_up_weight is null or top_weight - runner_up_weight >= $margin)
                then 'match'
            when top_weight >= $match_weight and runner_up_weight >= $match_weight then 'many_match'
            when top_weight >= $review_weight then 'potential_match'
            else 'no_match'
        end as outcome,
        top_citizen_id,
        top_weight,
        top_weight - runner_up_weight as margin
    from best
),

decided as (
    select
        e.enc_key,
        coalesce(d.outcome, p.outcome, 'no_match') as outcome,
        coalesce(d.tier, 'probabilistic') as tier,
        case
            when d.enc_key is not null and d.outcome = 'match' then d.citizen_id
            when d.enc_key is null and p.outcome <> 'no_match' then p.top_citizen_id
        end as candidate_citizen_id,
        case when d.enc_key is null then p.top_weight end as match_weight,
        case when d.enc_key is null then p.margin end as margin
    from encounters as e
    left join deterministic_links as d on d.enc_key = e.enc_key
    left join probabilistic as p on p.enc_key = e.enc_key
),

final as (
    select
        e.facility_code,
        e.encounter_id,
        e.version,
        d.outcome,
        case when d.outcome = 'match' then d.candidate_citizen_id end as citizen_id,
        d.tier,
        d.match_weight,
        d.margin,
        case
            when r.citizen_id is null then []
            else list_filter([
                hb_name_difference(e.patient_name, r.full_name),
                hb_birth_difference(e.birth_ymd, r.birth_ymd),
                case when e.sex <> r.sex then 'sex_differs' end,
                case when e.ward_code <> r.ward_code then 'moved_ward' end,
                case when e.province_code <> r.province_code then 'province_differs' end,
                hb_id_difference(e.citizen_id_raw, r.citizen_id)
            ], lambda x: x is not null)
        end as differences,
        d.candidate_citizen_id,
        case d.outcome
            when 'no_match' then 'patient_not_in_registry'
            when 'many_match' then 'many_match'
            when 'potential_match' then 'potential_match'
        end as reason,
        e.enc_key
    from decided as d
    inner join encounters as e on e.enc_key = d.enc_key
    left join registry_identities as r on r.citizen_id = d.candidate_citizen_id
)

select * from final
