"""The hand-written charts (expectations/charts.py): labels from data come out escaped, the same
data gives the same bytes, each line's vertices sit where its values say, and each heat map cell
is coloured by its value on the scale of the night's largest."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from lxml import etree

from expectations.charts import REDS, heatmap_svg, nice_ticks, reds, trend_svg

SVG = "{http://www.w3.org/2000/svg}"
NIGHTS = ["2026-11-24", "2026-11-25", "2026-11-26"]
HOSTILE = "<script>alert(1)</script> & \"quoted\" 'single' Khoa Nội"


def chart(**overrides) -> str:
    args = {
        "nights": NIGHTS,
        "series": {"received": [4, 8, 2], 'check<&">': [1, 0, 3]},
        "labels": {"received": HOSTILE, 'check<&">': "B&B <i>"},
        "title": "Title </text><script>x()</script>",
        "ylabel": 'rows & "more"',
    }
    return trend_svg(**(args | overrides))


def test_labels_from_data_are_escaped_and_read_back_as_literal_text():
    svg = chart()
    assert "<script" not in svg and "<i>" not in svg  # nothing became markup
    root = etree.fromstring(svg.encode("utf-8"))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert HOSTILE in texts
    assert "B&B <i>" in texts
    assert "Title </text><script>x()</script>" in texts
    assert 'rows & "more"' in texts
    assert not list(root.iter(f"{SVG}script")) and not list(root.iter("script"))
    # a key with markup characters is an attribute value, not markup
    assert root.find(f".//{SVG}g[@id='line-check<&\">']") is not None


def test_characters_xml_cannot_carry_are_dropped_not_written():
    root = etree.fromstring(chart(title="a\x00b\x1bc").encode("utf-8"))
    assert "abc" in [t.text for t in root.iter(f"{SVG}text")]


def test_the_same_data_gives_the_same_bytes():
    assert chart() == chart()


def test_each_line_has_one_vertex_per_night_on_an_affine_scale():
    root = etree.fromstring(chart().encode("utf-8"))
    ys = {}
    for key in ("received", 'check<&">'):
        path = root.find(f".//{SVG}g[@id='line-{key}']").find(f"{SVG}path")
        numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", path.get("d"))]
        assert path.get("d").startswith("M ") and len(numbers) == 2 * len(NIGHTS)
        ys[key] = numbers[1::2]
    # received 4 and 2 fix the scale (y grows downwards): 8, and the other line's 1, 0, 3 follow
    scale = (ys["received"][2] - ys["received"][0]) / (2 - 4)
    offset = ys["received"][0] - 4 * scale
    assert ys["received"][1] == pytest.approx(offset + 8 * scale, abs=0.01)
    assert ys['check<&">'] == pytest.approx([offset + v * scale for v in (1, 0, 3)], abs=0.01)


def test_ticks_start_at_zero_with_a_round_step():
    # counts up to 58: the top is 58 x 1.05 = 60.9, 5 ticks want a step of ~12, the round one is 20
    assert nice_ticks(58, integral=True) == ([0, 20, 40, 60], 58 * 1.05)
    # counts up to 2 never get a half-row tick; shares get 0.5
    assert nice_ticks(2, integral=True)[0] == [0, 1, 2]
    assert nice_ticks(2, integral=False)[0] == [0, 0.5, 1, 1.5, 2]
    assert nice_ticks(0, integral=True) == ([0, 1], 1.0)


def heat(**overrides) -> str:
    args = {
        "rows": ["79 Hồ Chí Minh", HOSTILE],
        "columns": ["amount_positive", "B&B <i>", "c"],
        "values": [[0.0, 1.5, 3.0], [0.3, float("nan"), 30.0]],
        "title": "Title </text><script>x()</script>",
        "colorbar": 'per 100 & "more"',
    }
    return heatmap_svg(**(args | overrides))


def test_heat_map_labels_from_data_are_escaped_and_read_back_as_literal_text():
    svg = heat()
    assert "<script" not in svg and "<i>" not in svg
    root = etree.fromstring(svg.encode("utf-8"))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    for label in (
        "79 Hồ Chí Minh",
        HOSTILE,
        "B&B <i>",
        "Title </text><script>x()</script>",
        'per 100 & "more"',
    ):
        assert label in texts
    assert not list(root.iter(f"{SVG}script")) and not list(root.iter("script"))
    assert heat() == heat()  # the same data, the same bytes


def test_heat_map_cells_are_coloured_by_their_share_of_the_largest_value():
    root = etree.fromstring(heat().encode("utf-8"))
    cells = root.find(f".//{SVG}g[@id='heatmap']").findall(f"{SVG}rect")
    assert [(c.get("data-row"), c.get("data-column")) for c in cells] == [
        (str(i), str(j)) for i in range(2) for j in range(3)
    ]
    fill = {(int(c.get("data-row")), int(c.get("data-column"))): c.get("fill") for c in cells}
    assert fill[(1, 2)] == REDS[-1]  # the largest value: the darkest red
    assert fill[(0, 0)] == REDS[0]  # 0: the lightest
    assert fill[(1, 1)] == REDS[0]  # not a number: drawn as 0, not dropped
    assert fill[(0, 2)] == reds(3.0 / 30.0)
    # darker (smaller red+green+blue) as the value grows
    shade = [
        sum(int(fill[k][i : i + 2], 16) for i in (1, 3, 5)) for k in ((0, 0), (1, 0), (0, 1), (0, 2), (1, 2))
    ]
    assert shade == sorted(shade, reverse=True) and len(set(shade)) == len(shade)
    # cells of one row share a y, of one column an x, and tile the frame without gaps
    xs = sorted({float(c.get("x")) for c in cells})
    widths = {round(float(c.get("width")), 2) for c in cells}
    frame = root.find(f".//{SVG}rect[@id='frame']")
    assert len(xs) == 3 and len(widths) == 1
    assert xs[0] == pytest.approx(float(frame.get("x")))
    assert xs[-1] + widths.pop() == pytest.approx(float(frame.get("x")) + float(frame.get("width")), abs=0.01)


def test_the_colour_scale_is_matplotlibs_reds_at_256_levels():
    # values read off matplotlib 3.11's colormaps["Reds"] (the heat map's colours before session 11)
    assert (reds(0.0), reds(0.5), reds(1.0)) == ("#fff5f0", "#fb694a", "#67000d")
    assert reds(-1.0) == reds(0.0) and reds(2.0) == reds(1.0) and reds(float("nan")) == reds(0.0)


def test_an_empty_heat_map_is_still_a_valid_chart():
    root = etree.fromstring(heat(rows=[], columns=[], values=[]).encode("utf-8"))
    assert root.find(f".//{SVG}g[@id='heatmap']").findall(f"{SVG}rect") == []
    assert root.find(f".//{SVG}rect[@id='frame']") is not None


def test_the_report_warm_up_and_charts_never_import_matplotlib():
    code = (
        "import sys; from expectations.pages import warm_up_report; warm_up_report();"
        "from expectations.feedback import warm_up_feedback; warm_up_feedback();"
        "from expectations.charts import heatmap_svg; heatmap_svg(['a'], ['b'], [[1.0]], 't', 'c');"
        "print('matplotlib' in sys.modules, 'rustpy_xlsxwriter' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]  # the feedback stage's warm-up imports the XLSX writer
