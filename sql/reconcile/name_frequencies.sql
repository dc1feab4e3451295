-- Term frequency of each folded full name over the whole registry (not over the night's
-- candidates), so that "nguyen van an" weighs little wherever it is compared.
create or replace table name_frequencies as
select
    name_fold,
    count(*) / sum(count(*)) over () as tf_name_fold
from registry_identities
where name_fold is not null
group by name_fold
