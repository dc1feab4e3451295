-- The data dictionary: one row per column of every table and view of this file, with its type,
-- meaning, source (an XML 130 field, a FHIR element, the registry, a reference file, or derived)
-- and privacy treatment. Declared once in transforms/snapshot/dictionary.py, which also renders
-- docs/snapshot.md; a column the file has and the declaration lacks shows with meaning null.
create table columns as
with actual as (
    select table_name, column_name, ordinal_position, data_type
    from information_schema.columns
    where table_catalog = 'snapshot' and table_schema = 'main'
),

final as (
    select
        coalesce(d.table_name, a.table_name) as table_name,
        coalesce(a.ordinal_position, d.column_position) as column_position,
        coalesce(d.column_name, a.column_name) as column_name,
        a.data_type,
        d.meaning,
        d.source,
        d.privacy
    from ref_columns as d
    full join actual as a on a.table_name = d.table_name and a.column_name = d.column_name
)

select * from final
order by table_name, column_position;

update columns set data_type = a.data_type
from information_schema.columns as a
where a.table_catalog = 'snapshot' and a.table_name = 'columns' and a.column_name = columns.column_name
    and columns.table_name = 'columns';
