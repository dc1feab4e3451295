-- The identity-registry snapshot ($files: one Parquet file or every file of its folder).
select * from read_parquet($files, union_by_name = true)
