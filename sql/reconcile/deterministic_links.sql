-- Outcome of tiers 1-3, one row per encounter with at least one agreeing identifier candidate:
-- `match` when exactly one citizen agrees (tier = the strongest identifier that found them),
-- `many_match` when different identifiers of the record point at different agreeing citizens.
-- Encounters without an agreeing candidate go on to the probabilistic tier.
create or replace table deterministic_links as
with agreeing as (
    select enc_key, citizen_id, min(tier_rank) as tier_rank
    from identifier_candidates
    where is_agreeing
    group by enc_key, citizen_id
),

per_encounter as (
    select
        enc_key,
        count(*) as agreeing_citizens,
        min(tier_rank) as tier_rank,
        arg_min(citizen_id, tier_rank) as citizen_id
    from agreeing
    group by enc_key
),

final as (
    select
        enc_key,
        case when agreeing_citizens = 1 then 'match' else 'many_match' end as outcome,
        citizen_id,
        case tier_rank when 1 then 'citizen_id' when 2 then 'social_insurance' else 'old_id' end as tier
    from per_encounter
)

select * from final
