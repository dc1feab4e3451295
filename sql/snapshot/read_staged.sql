-- Rows of one staged dataset from its Parquet files ($files), with the hive partition values typed
-- as declared (a facility code is text: '01001' keeps its leading zero).
select *
from read_parquet($files, hive_partitioning = true, union_by_name = true, hive_types = {'night': date, 'facility_code': varchar})
