"""The generator's identity truth: which patients with no ID no evidence on their record can link
to their own citizen, because another citizen of the registry fits the record as well (a tie:
`non_separable`) or better (`closer_namesake`). Kept apart from the registry's construction
(citizens.py) so the truth reads only what the hospital sent and the snapshot."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

# How well a record agrees with a citizen, field by field, as ordered levels (higher = closer):
# the levels of the linkage model (transforms/synth/train_linkage.py), written here independently so
# the truth does not depend on the pipeline's code.
_TRUTH_LEVELS_SQL = """
with registry as (
    select citizen_id, {fold} as name, birth_date as birth, sex, province_code, ward_code
    from read_parquet({files})
),
records as (
    select key, citizen_id as true_citizen_id, {record_fold} as name, birth, sex, province_code, ward_code
    from presented
),
pairs as (
    select r.key, r.true_citizen_id, c.citizen_id,
        case
            when r.name = c.name then 4
            when split_part(r.name, ' ', 1) = split_part(c.name, ' ', 1)
                 and string_split(r.name, ' ')[-1] = string_split(c.name, ' ')[-1]
                 and (list_has_all(string_split(r.name, ' '), string_split(c.name, ' '))
                      or list_has_all(string_split(c.name, ' '), string_split(r.name, ' '))) then 3
            when damerau_levenshtein(r.name, c.name) <= 2 then 2
            when jaro_winkler_similarity(r.name, c.name) >= 0.9 then 1
            else 0
        end as name_level,
        case
            when r.birth = c.birth and r.birth not like '%00' then 4
            when substr(r.birth, 5, 2) = substr(c.birth, 7, 2) and substr(r.birth, 7, 2) = substr(c.birth, 5, 2)
                 and substr(r.birth, 5, 2) <> '00' and substr(r.birth, 7, 2) <> '00' then 3
            when (substr(r.birth, 5, 2) = substr(c.birth, 5, 2) or '00' in (substr(r.birth, 5, 2), substr(c.birth, 5, 2)))
                 and (substr(r.birth, 7, 2) = substr(c.birth, 7, 2) or '00' in (substr(r.birth, 7, 2), substr(c.birth, 7, 2)))
                 then 2
            else 1
        end as birth_level,
        case when r.ward_code = c.ward_code then 2 when r.province_code = c.province_code then 1 else 0 end
            as residence_level
    from records as r
    inner join registry as c
        on left(c.birth, 4) = left(r.birth, 4) and c.sex = r.sex
        and (split_part(c.name, ' ', 1) = split_part(r.name, ' ', 1)
             or string_split(c.name, ' ')[-1] = string_split(r.name, ' ')[-1])
),
truth as (
    select * from pairs where citizen_id = true_citizen_id
)
-- a citizen at least as close everywhere and closer somewhere is a closer namesake (the evidence
-- points at them); otherwise another citizen ties on every level: the record is non-separable
select t.key,
    not bool_or(o.name_level > t.name_level or o.birth_level > t.birth_level
                or o.residence_level > t.residence_level) as tied
from truth as t
inner join pairs as o
    on o.key = t.key and o.citizen_id <> t.citizen_id
    and o.name_level >= t.name_level and o.birth_level >= t.birth_level
    and o.residence_level >= t.residence_level
group by t.key
"""


def non_separable_records(registry_dir: Path, presented: list[dict[str, object]]) -> dict[int, str]:
    """The records (presented without any identifier) that another citizen of the registry fits
    at least as well as the true one on every field (name, birth date, sex, residence), by key:
    "closer_namesake" when one fits at least as well everywhere and better somewhere (the
    evidence points at them, so no rule can link the true citizen, and a link to them is wrong),
    else "non_separable" (one fits exactly as well on every field: no evidence on the record
    tells them apart, the truth is `many_match`).

    `presented`: key, citizen_id (the true citizen), name, birth (yyyymmdd, 00 unknown), sex,
    province_code, ward_code, as the hospital sent them. Answered by DuckDB over the snapshot."""
    import duckdb

    if not presented:
        return {}
    fold = "trim(regexp_replace(lower(strip_accents(replace(replace({x}, 'Đ', 'D'), 'đ', 'd'))), '[^a-z]+', ' ', 'g'))"
    files = "[" + ", ".join(f"'{p}'" for p in sorted(Path(registry_dir).glob("*.parquet"))) + "]"
    con = duckdb.connect()
    try:
        con.execute("set threads to 2")
        con.execute("set memory_limit = '1GB'")
        con.register("presented", pa.Table.from_pylist(presented))
        sql = _TRUTH_LEVELS_SQL.format(
            fold=fold.format(x="full_name"), record_fold=fold.format(x="name"), files=files
        )
        return {
            int(k): "non_separable" if tied else "closer_namesake" for k, tied in con.execute(sql).fetchall()
        }
    finally:
        con.close()
