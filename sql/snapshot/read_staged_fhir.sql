-- Rows of one staged FHIR dataset ($files, partitioned by night only) with the night typed as a date.
select *
from read_parquet($files, hive_partitioning = true, union_by_name = true, hive_types = {'night': date})
