"""Typing of raw XML 130 rows through the declared schema: the one place where text becomes types.

Every raw field arrives as text (or null). `normalize_table` turns a table of raw text columns
(named by their XML field) into the staged columns of `schema.py` (English snake_case, typed by
kind), with `<column>_source` beside every value that was cleaned or could not be parsed and the
warning codes of ARCHITECTURE.md in `row_warnings`. Everything is computed on whole columns
(pyarrow compute); there is no per-cell Python.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.core import schema

if TYPE_CHECKING:
    from transforms.ingest._cells import Cells

NULL_TOKENS = ("nan", "null", "undefined")
# Matched case-insensitively; listing the spellings avoids lower-casing every value of every column.
_NULL_TOKEN_SPELLINGS = pa.array(
    sorted({f(t) for t in NULL_TOKENS for f in (str.lower, str.upper, str.title)} | {"NaN"})
)
KINDS_WITH_SOURCE = ("int", "decimal", "instant", "date", "birth", "dates")


_INT = r"^[+-]?\d{1,18}$"
_DECIMAL = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_EURO_THOUSANDS = r"^[+-]?\d{1,3}(\.\d{3})+,\d+$"


def staged_fields(table: schema.Table) -> list[pa.Field]:
    """The typed columns of one staged dataset, in declared order, with their `_source` columns."""
    fields = []
    for col in table.columns:
        if col.name == "encounter_id":
            continue  # the lineage column (the HOSO's key) carries it
        fields.append(pa.field(col.name, schema.ARROW_TYPE_BY_KIND[col.kind]))
        if col.kind == "birth":
            fields.append(pa.field(f"{col.name}_precision", pa.string()))
        if col.kind in KINDS_WITH_SOURCE:
            fields.append(pa.field(f"{col.name}_source", pa.string()))
    return fields


def arrow_schema(table: schema.Table) -> pa.Schema:
    """The Arrow schema of one staged dataset: lineage columns, then the declared typed columns."""
    lineage = [pa.field(name, typ) for name, typ in schema.LINEAGE_TYPES.items()]
    return pa.schema(lineage + staged_fields(table))


def source_fields(table: schema.Table) -> tuple[str, ...]:
    """The XML field names a table's raw rows are read with (the 3176 names)."""
    return tuple(c.source for c in table.columns)


def raw_columns(
    table: schema.Table, records: list[dict[str, str | None]]
) -> tuple[dict[str, pa.Array], Counter]:
    """Raw text columns (XML field -> values) of a batch of records, and the unknown-field counts.

    Old field names (`table.aliases`) are read as their 3176 name when the new one is absent.
    Fields not in the declared schema are counted, never kept.
    """
    known = source_fields(table)
    aliases = dict(table.aliases)
    accepted = set(known) | set(aliases)
    unknown: Counter = Counter()
    if set().union(*records) - accepted:  # one C-level pass; count per record only when needed
        for record in records:
            if extra := record.keys() - accepted:
                unknown.update(extra)
    # One C++ conversion of the dicts (missing keys -> null) instead of a Python loop per field.
    names = [*known, *aliases]
    struct = pa.array(records, pa.struct([pa.field(n, pa.string()) for n in names]))
    arrays = dict(zip(names, struct.flatten(), strict=True))
    for old, new in aliases.items():
        arrays[new] = pc.coalesce(arrays[new], arrays.pop(old))
    return arrays, unknown


def raw_columns_from_cells(table: schema.Table, cells: Cells) -> tuple[dict[str, pa.Array], Counter]:
    """Raw text columns (XML field -> values) of a batch of rows read by `inner.table_cells`,
    and the unknown-field counts (rows carrying each unknown field); same result as
    `raw_columns` on the rows as dicts. Old field names are read as their 3176 name when the
    new one is absent."""
    arrays = cells.columns()
    for old, new in table.aliases:
        arrays[new] = pc.coalesce(arrays[new], arrays.pop(old))
    return arrays, Counter(cells.unknown)


class _Warnings:
    """Collects (row mask, warning code) pairs and builds the `row_warnings` list column."""

    def __init__(self, n: int):
        self.n = n
        self.rows: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []

    def add(self, mask: pa.Array | pa.ChunkedArray, code: str) -> None:
        rows = np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))
        if rows.size:
            self.rows.append(rows)
            self.codes.append(np.full(rows.size, code, dtype=object))

    def add_lists(self, lists: pa.Array | pa.ChunkedArray | None) -> None:
        if lists is None:
            return
        if isinstance(lists, pa.ChunkedArray):
            lists = lists.combine_chunks()
        values = pc.list_flatten(lists)
        if len(values):
            self.rows.append(pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64))
            self.codes.append(values.to_numpy(zero_copy_only=False).astype(object))

    def column(self) -> pa.ListArray:
        if not self.rows:
            offsets = np.zeros(self.n + 1, dtype=np.int32)
            return pa.ListArray.from_arrays(pa.array(offsets), pa.array([], pa.string()))
        rows = np.concatenate(self.rows)
        codes = np.concatenate(self.codes)
        order = np.argsort(rows, kind="stable")
        offsets = np.zeros(self.n + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=self.n), out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(codes[order], pa.string()))


def _string(values) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values, pa.string())
    return values.cast(pa.string()) if values.type != pa.string() else values


def _or(*masks):
    out = masks[0]
    for m in masks[1:]:
        out = pc.or_kleene(out, m)
    return pc.fill_null(out, False)


def _parse_time(text: pa.Array, fmt: str) -> tuple[pa.Array, pa.Array]:
    """Timestamps parsed with `fmt` ("%Y%m%d" or "%Y%m%d%H%M", `text` all digits or null), and a
    mask of texts that are not a real calendar value."""
    ts = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
    # strptime rolls 20260229 over to 2026-03-01: the parsed parts must spell the same number.
    # (Arithmetic on the parts; a strftime round trip cost ~0.7 us per value, a third of typing.)
    parts = pc.add(pc.add(pc.multiply(pc.year(ts), 10_000), pc.multiply(pc.month(ts), 100)), pc.day(ts))
    if fmt == "%Y%m%d%H%M":
        parts = pc.add(pc.add(pc.multiply(parts, 10_000), pc.multiply(pc.hour(ts), 100)), pc.minute(ts))
    elif fmt != "%Y%m%d":
        raise ValueError(f"unsupported time format {fmt!r}")
    ok = pc.fill_null(pc.equal(parts, pc.cast(text, pa.int64())), False)
    ts = pc.if_else(ok, ts, pa.scalar(None, pa.timestamp("s")))
    bad = pc.and_(pc.is_valid(text), pc.invert(ok))
    return ts, bad


def _split(text: pa.Array) -> pa.ListArray:
    """ ";"-joined values -> list of trimmed, non-empty items (null stays null)."""
    lists = pc.split_pattern(text, ";")
    items = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    parents = pc.list_parent_indices(lists)
    keep = pc.not_equal(items, "")
    items, parents = items.filter(keep), parents.filter(keep)
    counts = np.bincount(parents.to_numpy(zero_copy_only=False), minlength=len(text))
    offsets = np.zeros(len(text) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), items, mask=pc.is_null(text))


def type_column(col: schema.Column, raw, warnings: _Warnings) -> dict[str, pa.Array]:
    """The staged column(s) of one declared field from its raw text (plus `_source`/precision)."""
    trimmed = pc.utf8_trim_whitespace(_string(raw))
    is_token = pc.fill_null(pc.is_in(trimmed, value_set=_NULL_TOKEN_SPELLINGS), False)
    warnings.add(is_token, f"null_token:{col.name}")
    empty = pc.fill_null(pc.equal(trimmed, ""), True)
    text = pc.if_else(_or(is_token, empty), pa.scalar(None, pa.string()), trimmed)
    null_str = pa.scalar(None, pa.string())
    kind = col.kind
    out: dict[str, pa.Array] = {}
    cleaned = is_token  # rows whose raw text is kept in `_source`
    if kind in ("text", "code"):
        out[col.name] = text
    elif kind == "int":
        ok = pc.fill_null(pc.match_substring_regex(text, _INT), False)
        out[col.name] = pc.cast(pc.if_else(ok, text, null_str), pa.int64())
        bad = pc.and_(pc.is_valid(text), pc.invert(ok))
        warnings.add(bad, f"unparseable:{col.name}")
        cleaned = _or(cleaned, bad)
    elif kind == "decimal":
        has_comma = pc.fill_null(pc.match_substring(text, ","), False)
        fixed = text
        if pc.any(has_comma).as_py():  # most batches have no comma: skip the regex and rewrites
            euro = pc.fill_null(pc.match_substring_regex(text, _EURO_THOUSANDS), False)
            fixed = pc.if_else(euro, pc.replace_substring(text, ".", ""), text)
            fixed = pc.replace_substring(fixed, ",", ".")
        ok = pc.fill_null(pc.match_substring_regex(fixed, _DECIMAL), False)
        number = pc.cast(pc.if_else(ok, fixed, null_str), pa.float64())
        # "1e999" has the decimal shape but is no number (inf): null with a warning, so that no
        # Infinity or NaN reaches the serving database or a book
        infinite = pc.fill_null(pc.invert(pc.is_finite(number)), False)
        out[col.name] = pc.if_else(infinite, pa.scalar(None, pa.float64()), number)
        comma = pc.and_(has_comma, ok)
        bad = pc.and_(pc.is_valid(text), pc.invert(ok))
        warnings.add(comma, f"comma_decimal:{col.name}")
        warnings.add(bad, f"unparseable:{col.name}")
        warnings.add(infinite, f"non_finite:{col.name}")
        cleaned = _or(cleaned, comma, bad, infinite)
    elif kind in ("instant", "date"):
        digits = 12 if kind == "instant" else 8
        shaped = pc.fill_null(pc.match_substring_regex(text, rf"^\d{{{digits}}}$"), False)
        fmt = "%Y%m%d%H%M" if kind == "instant" else "%Y%m%d"
        ts, bad_calendar = _parse_time(pc.if_else(shaped, text, null_str), fmt)
        out[col.name] = ts if kind == "instant" else pc.cast(ts, pa.date32())
        bad = _or(pc.and_(pc.is_valid(text), pc.invert(shaped)), bad_calendar)
        warnings.add(bad, f"unparseable:{col.name}")
        cleaned = _or(cleaned, bad)
    elif kind == "birth":
        shaped = pc.fill_null(pc.match_substring_regex(text, r"^\d{8}(\d{4})?$"), False)
        text8 = pc.utf8_slice_codeunits(pc.if_else(shaped, text, null_str), 0, 8)
        month = pc.utf8_slice_codeunits(text8, 4, 6)
        day = pc.utf8_slice_codeunits(text8, 6, 8)
        no_month = pc.fill_null(pc.equal(month, "00"), False)
        no_day = pc.fill_null(pc.equal(day, "00"), False)
        full = pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(text8, 0, 4),
            pc.if_else(no_month, "01", month),
            pc.if_else(_or(no_day, no_month), "01", day),
            "",
        )
        ts, bad_calendar = _parse_time(full, "%Y%m%d")
        out[col.name] = pc.cast(ts, pa.date32())
        precision = pc.if_else(no_month, "year", pc.if_else(no_day, "month", "day"))
        out[f"{col.name}_precision"] = pc.if_else(pc.is_valid(ts), precision, null_str)
        bad = _or(pc.and_(pc.is_valid(text), pc.invert(shaped)), bad_calendar)
        warnings.add(bad, f"unparseable:{col.name}")
        cleaned = _or(cleaned, bad, no_month, no_day)
    elif kind == "codes":
        out[col.name] = _split(text)
    elif kind == "dates":
        lists = _split(text)
        items = pc.list_flatten(lists)
        shaped = pc.fill_null(pc.match_substring_regex(items, r"^\d{8}$"), False)
        ts, bad_calendar = _parse_time(pc.if_else(shaped, items, null_str), "%Y%m%d")
        good = pc.is_valid(ts)
        parents = pc.list_parent_indices(lists).filter(good)
        dates = pc.cast(ts.filter(good), pa.date32())
        counts = np.bincount(parents.to_numpy(zero_copy_only=False), minlength=len(text))
        offsets = np.zeros(len(text) + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        out[col.name] = pa.ListArray.from_arrays(pa.array(offsets), dates, mask=pc.is_null(text))
        bad_items = pc.list_parent_indices(lists).filter(pc.invert(good)).to_numpy(zero_copy_only=False)
        bad = np.zeros(len(text), dtype=bool)
        bad[bad_items] = True
        warnings.add(pa.array(bad), f"unparseable:{col.name}")
        cleaned = _or(cleaned, pa.array(bad))
    if kind in KINDS_WITH_SOURCE:
        out[f"{col.name}_source"] = pc.if_else(cleaned, trimmed, null_str)
    return out


def normalize_table(table: schema.Table, raw: pa.Table) -> pa.Table:
    """Typed staged rows of one table: one output row per raw row, same order.

    `raw` holds the raw text columns named by XML field (missing fields are all-null) and any
    lineage columns (passed through unchanged; a list<string> `table_warnings` column, if
    present, is merged into `row_warnings`). The result has the declared typed columns, their
    `_source`/`_precision` companions and `row_warnings`, then the pass-through columns.
    """
    n = raw.num_rows
    warnings = _Warnings(n)
    typed: dict[str, pa.Array] = {}
    for col in table.columns:
        if col.name == "encounter_id":
            continue
        values = raw.column(col.source) if col.source in raw.column_names else pa.nulls(n, pa.string())
        typed.update(type_column(col, values, warnings))
    for name in ("table_warnings", "mismatch_warnings"):
        if name in raw.column_names:
            warnings.add_lists(raw.column(name))
    source_names = set(source_fields(table))
    passthrough = {
        name: raw.column(name)
        for name in raw.column_names
        if name not in source_names and name not in ("table_warnings", "mismatch_warnings", "row_warnings")
    }
    return pa.table({**passthrough, "row_warnings": warnings.column(), **typed})


# Tables of the standard the book does not use (schema.RAW_ONLY_TABLES, or an unknown LOAIHOSO):
# one row per FILEHOSO, payload kept decoded so nothing sent is lost.
RAW_TABLES_SCHEMA = pa.schema(
    [
        pa.field("night", pa.date32()),
        pa.field("facility_code", pa.string()),
        pa.field("encounter_id", pa.string()),
        pa.field("version", pa.int64()),
        pa.field("source_file", pa.string()),
        pa.field("hoso_index", pa.int64()),
        pa.field("loaihoso", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("sha256", pa.string()),
        pa.field("payload", pa.binary()),
    ]
)
