-- One row per drug line (XML2) of a served encounter; the prescriber's free-text directions are left out.
create table medications as
select
    v.encounter_key,
    v.citizen_key,
    d.facility_code,
    d.line_number,
    d.cost_group,
    d.drug_code,
    d.drug_name,
    d.strength,
    d.unit,
    d.route_code,
    d.dosage_form,
    d.quantity,
    d.unit_price_vnd,
    d.amount_vnd,
    d.insurance_paid_vnd,
    d.ordered_at::date as ordered_on
from staged_drugs as d
inner join current_versions as v
    on v.facility_code = d.facility_code
    and v.encounter_id = d.encounter_id
    and v.version = d.version
order by v.encounter_key, d.line_number, d.row_index
