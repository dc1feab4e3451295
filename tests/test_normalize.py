"""Typing of raw text rows through the declared schema (one place), on tiny columns."""

from __future__ import annotations

import datetime as dt
from xml.sax.saxutils import escape

import pyarrow as pa
from lxml import etree

from transforms.core import schema
from transforms.ingest import inner, normalize
from transforms.ingest.normalize import normalize_table, raw_columns


def typed(table: schema.Table, **columns: list) -> dict[str, list]:
    raw = pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})
    return normalize_table(table, raw).to_pydict()


def test_comma_decimal_is_read_and_flagged_with_its_source():
    out = typed(schema.ENCOUNTERS, T_THUOC=["12,5", "1.234,50", "7.25", "abc"])
    assert out["drugs_total_vnd"] == [12.5, 1234.5, 7.25, None]
    assert out["drugs_total_vnd_source"] == ["12,5", "1.234,50", None, "abc"]
    assert out["row_warnings"] == [
        ["comma_decimal:drugs_total_vnd"],
        ["comma_decimal:drugs_total_vnd"],
        [],
        ["unparseable:drugs_total_vnd"],
    ]


def test_nan_null_undefined_become_null_with_a_warning():
    out = typed(schema.ENCOUNTERS, CAN_NANG=["NaN", "null", "undefined", " 61.5 ", ""])
    assert out["weight_kg"] == [None, None, None, 61.5, None]
    assert out["weight_kg_source"] == ["NaN", "null", "undefined", None, None]
    assert out["row_warnings"][:3] == [["null_token:weight_kg"]] * 3
    assert out["row_warnings"][3:] == [[], []]


def test_instants_and_dates_parse_and_impossible_ones_are_unparseable():
    out = typed(schema.ENCOUNTERS, NGAY_VAO=["202611260815", "202602291200", "2026112608", None])
    assert out["admitted_at"] == [dt.datetime(2026, 11, 26, 8, 15), None, None, None]
    assert out["admitted_at_source"] == [None, "202602291200", "2026112608", None]  # 2026 is not a leap year
    out = typed(schema.DISCHARGE_PAPERS, NGAY_CT=["20261126", "20261301"])
    assert out["issued_on"] == [dt.date(2026, 11, 26), None]
    assert out["row_warnings"] == [[], ["unparseable:issued_on"]]


def test_birth_date_keeps_its_precision():
    out = typed(schema.ENCOUNTERS, NGAY_SINH=["199003140000", "19750000", "197506000000", "19751"])
    assert out["birth_date"] == [dt.date(1990, 3, 14), dt.date(1975, 1, 1), dt.date(1975, 6, 1), None]
    assert out["birth_date_precision"] == ["day", "year", "month", None]
    assert out["birth_date_source"] == [None, "19750000", "197506000000", "19751"]


def test_codes_keep_leading_zeros_and_multi_values_split_on_semicolons():
    out = typed(schema.ENCOUNTERS, MA_DANTOC=["01", " 000 "], MA_BENH_KT=["E11; I10;", None])
    assert out["ethnicity_code"] == ["01", "000"]
    assert out["secondary_icd10"] == [["E11", "I10"], None]


def test_date_lists_parse_each_item():
    out = typed(schema.ENCOUNTERS, NGAY_TAI_KHAM=["20261201;20261215", "20261201;2026xx01"])
    assert out["follow_up_dates"] == [[dt.date(2026, 12, 1), dt.date(2026, 12, 15)], [dt.date(2026, 12, 1)]]
    assert out["follow_up_dates_source"] == [None, "20261201;2026xx01"]
    assert out["row_warnings"][1] == ["unparseable:follow_up_dates"]


def test_ints_reject_non_integers():
    out = typed(schema.ENCOUNTERS, SO_NGAY_DTRI=["3", "2.5", "-1"])
    assert out["treatment_days"] == [3, None, -1]
    assert out["row_warnings"] == [[], ["unparseable:treatment_days"], []]


def test_every_declared_column_is_present_even_when_no_field_was_sent():
    out = normalize_table(schema.SUMMARIES, pa.table({"x": pa.array([1])}))
    expected = {f.name for f in normalize.staged_fields(schema.SUMMARIES)}
    assert expected <= set(out.column_names)
    assert out.num_rows == 1


def test_table_warnings_are_merged_into_row_warnings():
    raw = pa.table(
        {
            "CAN_NANG": pa.array(["NaN", "1"]),
            "table_warnings": pa.array([["namespace_repaired"], None], pa.list_(pa.string())),
        }
    )
    out = normalize_table(schema.ENCOUNTERS, raw).to_pydict()
    assert out["row_warnings"] == [["null_token:weight_kg", "namespace_repaired"], []]
    assert "table_warnings" not in out


def test_old_and_new_xml13_field_names_both_land_in_the_same_column():
    records = [
        {"MA_NOI_DI": "01001", "MA_NOI_DEN": "79001", "PP_DIEU_TRI": "stable"},
        {"MA_CSKCB_DI": "02002"},
    ]
    columns, unknown = raw_columns(schema.REFERRALS, records)
    out = typed(schema.REFERRALS, **columns)
    assert out["from_facility"] == ["01001", "02002"]
    assert out["to_facility"] == ["79001", None]
    assert out["condition_at_transfer"] == ["stable", None]
    assert unknown == {}


def test_unknown_fields_are_counted_not_kept():
    columns, unknown = raw_columns(schema.ENCOUNTERS, [{"MA_LK": "1", "FOO": "x"}, {"FOO": "y", "BAR": ""}])
    assert unknown == {"FOO": 2, "BAR": 1}
    assert "FOO" not in columns


def test_arrow_schema_follows_the_architecture_kinds():
    s = normalize.arrow_schema(schema.ENCOUNTERS)
    assert s.field("admitted_at").type == pa.timestamp("s")
    assert s.field("birth_date").type == pa.date32()
    assert s.field("secondary_icd10").type == pa.list_(pa.string())
    assert s.field("follow_up_dates").type == pa.list_(pa.date32())
    assert s.field("row_warnings").type == pa.list_(pa.string())
    assert s.names[:8] == list(schema.LINEAGE_COLUMNS)


def cells_of(table: schema.Table, records: list[list[tuple[str, str | None]]]):
    """The records as an inner-table document (None: an empty element) read by the C reader."""

    def field(name, value):
        return f"<{name}/>" if value is None else f"<{name}>{escape(value)}</{name}>"

    if table.is_flat:
        (record,) = records
        doc = f"<{table.root}>{''.join(field(n, v) for n, v in record)}</{table.root}>"
    else:
        row = table.row_path[-1]
        rows = "".join(f"<{row}>{''.join(field(n, v) for n, v in r)}</{row}>" for r in records)
        doc = f"<CHITIEU><DSACH>{rows}</DSACH></CHITIEU>"
    return inner.table_cells(etree.fromstring(doc.encode()), table)


def test_columns_from_cells_equal_columns_from_dicts_with_aliases_gaps_and_unknown_fields():
    records = [
        [("MA_NOI_DI", "01001"), ("MA_NOI_DEN", "79001"), ("FOO", "x")],
        [],  # a row without any field
        [("MA_CSKCB_DI", "02002"), ("MA_LK", None), ("FOO", "y"), ("BAR", "")],
    ]
    table = schema.REFERRALS
    if table.is_flat:  # XML13 is one record per document: read each, then append
        cells = inner.new_cells(table)
        for r in records:
            cells.extend(cells_of(table, [r]))
    else:
        cells = cells_of(table, records)
    expected, expected_unknown = raw_columns(table, [dict(r) for r in records])
    columns, unknown = normalize.raw_columns_from_cells(table, cells)
    assert {k: v.to_pylist() for k, v in columns.items()} == {k: v.to_pylist() for k, v in expected.items()}
    # "" and an empty element both read as null: XML has no way to tell them apart
    assert unknown == expected_unknown == {"FOO": 2, "BAR": 1}
    assert columns["MA_CSKCB_DI"].to_pylist() == ["01001", None, "02002"]


def test_a_field_repeated_in_a_row_keeps_its_last_value_as_a_dict_would():
    cells = cells_of(schema.ENCOUNTERS, [[("MA_LK", "1"), ("HO_TEN", "first"), ("HO_TEN", "last")]])
    columns, _ = normalize.raw_columns_from_cells(schema.ENCOUNTERS, cells)
    assert columns["HO_TEN"].to_pylist() == ["last"]


def test_cells_keep_text_cdata_entities_and_vietnamese_exactly():
    doc = (
        "<TONG_HOP xmlns='urn:x'><MA_LK> LK1 </MA_LK><HO_TEN>Nguy&#7877;n <![CDATA[<Văn>]]> &amp; An</HO_TEN>"
        "<DIA_CHI></DIA_CHI><GHI_CHU>   </GHI_CHU></TONG_HOP>"
    )
    root = etree.fromstring(doc.encode())
    cells = inner.table_cells(root, schema.ENCOUNTERS)
    columns, _ = normalize.raw_columns_from_cells(schema.ENCOUNTERS, cells)
    assert columns["HO_TEN"].to_pylist() == [root[1].text] == ["Nguyễn <Văn> & An"]
    assert columns["MA_LK"].to_pylist() == [" LK1 "] and cells.first_value("MA_LK") == "LK1"
    assert columns["DIA_CHI"].to_pylist() == [None]  # no text node: lxml's .text is None too
    assert columns["GHI_CHU"].to_pylist() == ["   "]


def test_rows_are_every_row_element_at_any_depth_in_document_order():
    doc = (
        "<CHITIEU><DSACH><CHI_TIET_THUOC><STT>1</STT></CHI_TIET_THUOC></DSACH>"
        "<X><Y><CHI_TIET_THUOC><STT>2</STT></CHI_TIET_THUOC></Y></X><CHI_TIET_THUOC/></CHITIEU>"
    )
    cells = inner.table_cells(etree.fromstring(doc.encode()), schema.DRUGS)
    assert cells.rows() == [{"STT": "1"}, {"STT": "2"}, {}]
    assert cells.rows() == [
        {c.tag: c.text for c in row if c.text is not None}
        for row in etree.fromstring(doc.encode()).iter("CHI_TIET_THUOC")
    ]


def test_non_finite_decimals_become_null_with_a_warning():
    # "1e999" and "-1e999" have a number's shape but overflow float64 to ±inf; "inf" has not
    out = typed(schema.ENCOUNTERS, CAN_NANG=["1e999", "-1e999", "inf", "61.5"])
    assert out["weight_kg"] == [None, None, None, 61.5]
    assert out["weight_kg_source"] == ["1e999", "-1e999", "inf", None]
    assert out["row_warnings"] == [
        ["non_finite:weight_kg"],
        ["non_finite:weight_kg"],
        ["unparseable:weight_kg"],
        [],
    ]
