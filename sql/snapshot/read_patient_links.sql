-- Patient-link rows of every night so far ($files under staging/patient_links/night=<D>/), with the night.
select * exclude (night), night as link_night
from read_parquet($files, hive_partitioning = true, union_by_name = true, hive_types = {'night': date})
