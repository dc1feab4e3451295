-- Outcome of tiers 1-3, one row per encounter with at least one agreeing identifier candidate.
-- One agreeing citizen: `match`, decided by the identifier (tier = the strongest identifier that
-- found them). Several (different identifiers of the record point at different citizens): `match`
-- only when one of them agrees at least as closely on every field (name, birth, sex, residence)
-- and more closely on one, the deciding field; otherwise no field separates them: `many_match`.
-- Encounters without an agreeing candidate go on to the probabilistic tier.
create or replace table deterministic_links as
with agreeing as (
    select
        enc_key,
        citizen_id,
        min(tier_rank) as tier_rank,
        max(name_level) as name_level,
        max(birth_level) as birth_level,
        max(sex_level) as sex_level,
        max(residence_level) as residence_level
    from identifier_candidates
    where is_agreeing
    group by enc_key, citizen_id
),

ranked as (
    select
        *,
        row_number() over (
            partition by enc_key
            order by name_level + birth_level + sex_level + residence_level desc, tier_rank, citizen_id
        ) as candidate_rank,
        count(*) over (partition by enc_key) as agreeing_citizens
    from agreeing
),

-- the other candidates the best does not beat: closer on no field, or farther on some field
unbeaten as (
    select t.enc_key, count(*) as unbeaten
    from ranked as t
    inner join ranked as o on o.enc_key = t.enc_key and o.candidate_rank > 1
    where t.candidate_rank = 1
        and not (
            t.name_level >= o.name_level and t.birth_level >= o.birth_level
            and t.sex_level >= o.sex_level and t.residence_level >= o.residence_level
            and (t.name_level > o.name_level or t.birth_level > o.birth_level
                 or t.sex_level > o.sex_level or t.residence_level > o.residence_level)
        )
    group by t.enc_key
),

runner_up as (
    select * from ranked where candidate_rank = 2
),

final as (
    select
        t.enc_key,
        case when coalesce(u.unbeaten, 0) = 0 then 'match' else 'many_match' end as outcome,
        t.citizen_id,
        case t.tier_rank when 1 then 'citizen_id' when 2 then 'social_insurance' else 'old_id' end as tier,
        case
            when coalesce(u.unbeaten, 0) > 0 then null
            when t.agreeing_citizens = 1
                then case t.tier_rank when 1 then 'citizen_id' when 2 then 'social_insurance' else 'old_id' end
            when t.name_level > s.name_level then 'name'
            when t.birth_level > s.birth_level then 'birth'
            when t.sex_level > s.sex_level then 'sex'
            when t.residence_level > s.residence_level then 'residence'
        end as deciding_field
    from ranked as t
    left join runner_up as s on s.enc_key = t.enc_key
    left join unbeaten as u on u.enc_key = t.enc_key
    where t.candidate_rank = 1
)

select * from final
