-- The ten drugs prescribed in the most encounters: encounters, citizens, total quantity and amount.
-- Ties are broken by drug code.
--
-- Parameters: none.
with lines as (
    select drug_code, drug_name, encounter_key, citizen_key, quantity, amount_vnd
    from medications
    where drug_code is not null
),

final as (
    select
        drug_code,
        mode(drug_name) as drug_name,
        count(distinct encounter_key) as encounters,
        count(distinct citizen_key) as citizens,
        sum(quantity) as total_quantity,
        sum(amount_vnd) as total_amount_vnd
    from lines
    group by drug_code
    order by encounters desc, drug_code
    limit 10
)

select * from final
