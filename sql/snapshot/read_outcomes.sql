-- Outcome rows of every run so far ($files are runs/<D>/outcomes.parquet), with the run's night.
select
    *,
    regexp_extract(filename, '([0-9]{4}-[0-9]{2}-[0-9]{2})[/\\]outcomes\.parquet$', 1)::date as run_night
from read_parquet($files, union_by_name = true, filename = true)
