"""The hand-written line charts (expectations/charts.py): labels from data come out escaped, the
same data gives the same bytes, and each line's vertices sit where its values say."""

from __future__ import annotations

import re

import pytest
from lxml import etree

from expectations.charts import nice_ticks, trend_svg

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
