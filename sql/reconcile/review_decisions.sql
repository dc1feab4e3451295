-- A reviewer's decision replaces the automatic outcome of every version of the encounter that
-- the night reconciles (tonight's, or pending from an earlier night): `link` -> match to the
-- citizen the reviewer chose (tier and deciding_field `reviewer`), `reject` -> outcome
-- `rejected`, ledger reason not_reconciled. Reads the table review_decisions (one valid, newest
-- decision per encounter, from reconcile.read_review_decisions); a link to a citizen absent from
-- tonight's registry is not applied (reconcile counts it as `citizen_not_in_registry`).
update patient_links as p
set
    outcome = case d.decision when 'link' then 'match' else 'rejected' end,
    citizen_id = case d.decision when 'link' then d.citizen_id end,
    candidate_citizen_id = case d.decision when 'link' then d.citizen_id else p.candidate_citizen_id end,
    tier = 'reviewer',
    deciding_field = 'reviewer',
    match_weight = null,
    decision_weight = null,
    margin = null,
    differences = case d.decision when 'link' then d.differences else p.differences end,
    decided_by = d.reviewer,
    decided_at = d.decided_at,
    reason = case d.decision when 'link' then null else 'not_reconciled' end
from (
    select
        q.enc_key,
        v.decision,
        v.citizen_id,
        v.reviewer,
        v.decided_at,
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
        end as differences
    from patient_links as q
    inner join review_decisions as v
        on v.facility_code = q.facility_code and v.encounter_id = q.encounter_id
    inner join encounter_identities as e on e.enc_key = q.enc_key
    left join registry_identities as r on r.citizen_id = v.citizen_id
    where v.decision = 'reject' or r.citizen_id is not null
) as d
where d.enc_key = p.enc_key
