"""Late tables: partial re-sends that complete a known stay.

HEALTHBOOK.md "When an encounter is complete": an inpatient ("03") or day-care ("04") stay waits
for its discharge paper (XML7) and summary (XML8) for a grace period (the setting
load.grace_nights, HEALTHBOOK_GRACE_NIGHTS, default 3: transforms/core/settings.py);
a later XML7 or XML8 completes it as a new version, whether it comes in a full re-send or alone.

A HOSO that carries only XML7 and/or XML8 (no XML1) for an encounter received before is a
*partial re-send*. Ingest finds it as `missing_xml1`; `complete_partial_resends` (the last step of
ingest, before the manifest) turns it into a complete version in staging: the version it follows
(the newest earlier version of the encounter that has its XML1) lends every table the partial
HOSO did not carry, under the partial's version number, lineage (night, source_file, hoso_index)
and a row warning `carried_from_version:<n>`; its `missing_xml1` finding is dropped. Every later
stage (quality, reconcile, load, snapshot) then sees an ordinary complete version, and the newest
version wins as always. A partial HOSO with no known earlier version, or one that carries other
tables as well, stays `missing_xml1`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from transforms.core import parquet_io
from transforms.core.datasets import XML_TABLE_DATASETS
from transforms.core.warehouse import Warehouse

# The tables a partial re-send may carry (the late ones), by staged dataset, and the names the
# book JSON's `incomplete` list gives them.
LATE_DATASETS = {"discharge_papers": "discharge_paper", "summaries": "summary"}
KEY = ["facility_code", "encounter_id", "version"]
CARRIED_WARNING = "carried_from_version:"


def _keys(table: pa.Table) -> set[tuple[str, str, int]]:
    cols = [table.column(c).to_pylist() for c in KEY]
    return set(zip(*cols, strict=True))


def _rows_of(warehouse: Warehouse, dataset: str, night: dt.date, keys: set[tuple[str, str, int]]) -> pa.Table:
    """The staged rows (all columns) of some versions on one night."""
    files = parquet_io.staged_files(warehouse, dataset, night)
    schema_ = parquet_io.known_schema(dataset)
    if not files or not keys:
        return schema_.empty_table()
    ids = pa.array(sorted({k[1] for k in keys}), pa.string())
    table = pads.dataset([str(f) for f in files], format="parquet", schema=schema_).to_table(
        filter=pads.field("encounter_id").isin(ids)
    )
    table = parquet_io._normalize_types(table)
    if not table.num_rows:
        return table
    mask = [k in keys for k in zip(*(table.column(c).to_pylist() for c in KEY), strict=True)]
    return table.filter(pa.array(mask, pa.bool_()))


def _ingest_findings(warehouse: Warehouse, night: dt.date) -> pa.Table | None:
    path = warehouse.quarantine("findings", night) / "ingest.parquet"
    return parquet_io.read_table(path) if path.exists() else None


def _set_column(table: pa.Table, name: str, value) -> pa.Table:
    index = table.schema.get_field_index(name)
    field = table.schema.field(index)
    return table.set_column(index, field, pa.array([value] * table.num_rows, field.type))


def complete_partial_resends(
    warehouse: Warehouse,
    night: dt.date,
    findings: pa.Table,
    carried: dict[tuple[str, str, int], set[str]],
) -> tuple[pa.Table, int]:
    """Complete tonight's partial re-sends in staging (module docstring); returns (tonight's ingest
    findings without the completed versions' `missing_xml1`, how many versions were completed).

    `carried`: for each version whose only ingest finding is `missing_xml1`, the staged datasets
    that hold rows of it tonight (the stage learns them as it writes them, instead of reading
    every dataset back). Reads only the staged rows of the partial re-sends and of the versions
    they follow, so its cost follows the number of partial HOSOs, not the night.
    """
    reason = findings.column("reason")
    no_xml1 = findings.filter(pc.equal(reason, "missing_xml1"))
    if not no_xml1.num_rows:
        return findings, 0
    other = findings.filter(pc.invert(pc.fill_null(pc.equal(reason, "missing_xml1"), False)))
    blocked_otherwise = _keys(other)
    candidates = _keys(no_xml1) - blocked_otherwise
    if not candidates:
        return findings, 0

    # What each candidate carried tonight (its lineage-only encounters row does not count).
    tables = set(XML_TABLE_DATASETS) - {"encounters"}
    carried = {k: carried[k] & tables for k in candidates}
    partial = {k for k, ds in carried.items() if ds and ds <= set(LATE_DATASETS)}
    if not partial:
        return findings, 0

    # The version each follows: the newest earlier version with its XML1 (tonight's or before).
    from transforms.ingest.versions import earlier_versions  # ingest imports this module

    encounters = pa.table(
        {
            "facility_code": pa.array([k[0] for k in partial], pa.string()),
            "encounter_id": pa.array([k[1] for k in partial], pa.string()),
        }
    ).to_pandas()
    earlier = earlier_versions(warehouse, night, encounters)
    versions: dict[tuple[str, str], list[tuple[int, dt.date]]] = {}
    for row in earlier.itertuples(index=False):
        versions.setdefault((row.facility_code, row.encounter_id), []).append((int(row.version), row.night))
    tonight_rows = _rows_of(
        warehouse,
        "encounters",
        night,
        {(f, e, v) for f, e, _ in partial for v in range(1, _max_version(partial, f, e))},
    )
    for f, e, v in _keys(tonight_rows):
        versions.setdefault((f, e), []).append((v, night))
    without_xml1: dict[dt.date, set] = {}

    def lacks_xml1(key: tuple, at: dt.date) -> bool:
        if at not in without_xml1:
            table = findings if at == night else _ingest_findings(warehouse, at)
            if table is None:
                without_xml1[at] = set()
            else:
                table = table.filter(pc.equal(table.column("reason"), "missing_xml1"))
                without_xml1[at] = _keys(table)
        return key in without_xml1[at]

    base: dict[tuple, tuple[int, dt.date]] = {}
    for key in sorted(partial):
        f, e, v = key
        for version, at in sorted(versions.get((f, e), []), reverse=True):
            if version >= v:
                continue
            earlier_key = (f, e, version)
            # an earlier partial of tonight completed just before this one counts as having XML1
            if earlier_key in base or not lacks_xml1(earlier_key, at):
                base[key] = (version, at)
                break
    if not base:
        return findings, 0

    completed = set(base)
    partial_lineage = {}
    lineage = _rows_of(warehouse, "encounters", night, completed)
    for row in lineage.select([*KEY, "source_file", "hoso_index"]).to_pylist():
        partial_lineage[(row["facility_code"], row["encounter_id"], row["version"])] = row

    # Resolve chains (a partial following a partial completed tonight) to the version holding rows.
    def origin(key: tuple) -> tuple[tuple, dt.date]:
        version, at = base[key]
        source = (key[0], key[1], version)
        return origin(source) if source in base else (source, at)

    by_night: dict[dt.date, set] = {}
    sources = {}
    for key in completed:
        source, at = origin(key)
        sources[key] = (source, at)
        by_night.setdefault(at, set()).add(source)

    for dataset in XML_TABLE_DATASETS:
        skip = {k for k in completed if dataset in carried[k]}  # what the partial HOSO brought itself
        lent = {n: _rows_of(warehouse, dataset, n, keys) for n, keys in by_night.items()}
        out = []
        for key in sorted(completed - skip):
            source, at = sources[key]
            rows = lent[at]
            if not rows.num_rows:
                continue
            mask = [k == source for k in zip(*(rows.column(c).to_pylist() for c in KEY), strict=True)]
            rows = rows.filter(pa.array(mask, pa.bool_()))
            if not rows.num_rows:
                continue
            rows = _set_column(rows, "version", key[2])
            rows = _set_column(rows, "night", night)
            rows = _set_column(rows, "source_file", partial_lineage[key]["source_file"])
            rows = _set_column(rows, "hoso_index", partial_lineage[key]["hoso_index"])
            warnings = [
                [*(w or []), f"{CARRIED_WARNING}{source[2]}"] for w in rows.column("row_warnings").to_pylist()
            ]
            index = rows.schema.get_field_index("row_warnings")
            rows = rows.set_column(
                index, rows.schema.field(index), pa.array(warnings, rows.schema.field(index).type)
            )
            out.append(rows)
        if dataset == "encounters":
            _drop_rows(warehouse, dataset, night, completed)
        if out:
            _append_rows(warehouse, dataset, night, pa.concat_tables(out))

    keep = pc.invert(
        pa.array(
            [
                r == "missing_xml1" and k in completed
                for r, k in zip(
                    reason.to_pylist(),
                    zip(*(findings.column(c).to_pylist() for c in KEY), strict=True),
                    strict=True,
                )
            ],
            pa.bool_(),
        )
    )
    return findings.filter(keep), len(completed)


def _max_version(partial: set, facility: str, encounter: str) -> int:
    return max(v for f, e, v in partial if f == facility and e == encounter)


def _facility_file(warehouse: Warehouse, dataset: str, night: dt.date, facility: str, name: str) -> Path:
    return warehouse.staging_night(dataset, night) / f"facility_code={facility}" / name


def _drop_rows(warehouse: Warehouse, dataset: str, night: dt.date, keys: set) -> None:
    """Rewrite tonight's files of the facilities concerned without the given versions' rows."""
    for facility in sorted({k[0] for k in keys}):
        folder = warehouse.staging_night(dataset, night) / f"facility_code={facility}"
        for path in sorted(folder.glob("*.parquet")):
            table = parquet_io._normalize_types(parquet_io.read_table(path))
            mask = [k not in keys for k in zip(*(table.column(c).to_pylist() for c in KEY), strict=True)]
            if all(mask):
                continue
            parquet_io.write_table(table.filter(pa.array(mask, pa.bool_())), path)


def _append_rows(warehouse: Warehouse, dataset: str, night: dt.date, rows: pa.Table) -> None:
    """Tonight's completed versions' rows: one more file per facility partition (`part-late`)."""
    target = parquet_io.known_schema(dataset)
    for facility in sorted(set(rows.column("facility_code").to_pylist())):
        part = rows.filter(pc.equal(rows.column("facility_code"), facility))
        path = _facility_file(warehouse, dataset, night, facility, "part-late.parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        parquet_io.write_table(part.select(target.names).cast(target), path)
