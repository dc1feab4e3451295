-- One row per encounter version: the outcome of reconciliation and, for a match, the citizen.
-- Deterministic links (tiers 1-3) win; the rest are decided on the probabilistic candidates
-- (table probabilistic_decisions: best, runner-up, margin, deciding field, ties):
--   many_match       another candidate agrees with the record exactly as closely on every field
--                    as the best does: no evidence tells them apart, whatever the weights
--   no_match         no candidate, or none reaching $review_weight
--   match            best weight >= $match_weight and ahead of the runner-up by >= $margin, a
--                    margin some field explains (deciding_field: the best agrees more closely)
--   potential_match  otherwise (the review queue), and a best candidate the registry records as
--                    dead before the encounter's admission, whatever the weights
--                    (difference died_before_admission); an identifier tier still links such
--                    a citizen, with that difference: the identifier and the demographics agree
-- The thresholds apply to the decision weight: the best's weight with a residence that differs
-- counted as no evidence (weak evidence: it ranks the candidates and may explain the margin, it
-- never vetoes a patient who moved); match_weight is Splink's, residence included.
-- `differences` names how the record differs from the linked (or best candidate) citizen.
-- A reviewer's decision (table review_decisions) replaces the automatic outcome afterwards
-- (reconcile.apply_review_decisions), never the other way round.
create or replace table patient_links as
with encounters as (
    select * from encounter_identities
),

probabilistic as (
    select
        p.enc_key,
        case
            when tied > 0 then 'many_match'
            when decision_weight < $review_weight then 'no_match'
            when decision_weight >= $match_weight and (runner_up_weight is null or margin >= $margin)
                and deciding_field is not null
                and not coalesce(r.death_ymd < e.admitted_ymd, false)
                then 'match'
            else 'potential_match'
        end as outcome,
        top_citizen_id,
        top_weight,
        decision_weight,
        margin,
        case when tied > 0 then null else deciding_field end as deciding_field
    from probabilistic_decisions as p
    left join registry_identities as r on r.citizen_id = p.top_citizen_id
    left join encounter_identities as e on e.enc_key = p.enc_key
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
        case when d.enc_key is null then p.decision_weight end as decision_weight,
        case when d.enc_key is null then p.margin end as margin,
        case when d.enc_key is null and p.outcome <> 'no_match' then p.deciding_field else d.deciding_field end
            as deciding_field
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
        d.decision_weight,
        d.margin,
        case
            when r.citizen_id is null then []
            else list_filter([
                hb_name_difference(e.patient_name, r.full_name),
                hb_birth_difference(e.birth_ymd, r.birth_ymd),
                case when e.sex <> r.sex then 'sex_differs' end,
                case when e.ward_code <> r.ward_code then 'moved_ward' end,
                case when e.province_code <> r.province_code then 'province_differs' end,
                hb_id_difference(e.citizen_id_raw, r.citizen_id),
                case when r.death_ymd < e.admitted_ymd then 'died_before_admission' end
            ], lambda x: x is not null)
        end as differences,
        d.candidate_citizen_id,
        d.deciding_field,
        null::varchar as decided_by,
        null::timestamp as decided_at,
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
