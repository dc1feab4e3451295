-- Outcome rows of every run so far ($files are runs/<D>/outcomes.parquet and runs/<D>/retried.parquet),
-- with the run's night taken from the folder name.
select
    *,
    regexp_extract(filename, '([0-9]{4}-[0-9]{2}-[0-9]{2})[/\\][a-z_]+\.parquet$', 1)::date as run_night
from read_parquet($files, union_by_name = true, filename = true)
