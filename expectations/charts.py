"""The report's charts: static SVG files.

Line charts (`trend_svg`, two per facility page, one per province, two national) are written by
hand as SVG elements with xml.etree.ElementTree: measured on a 1,000-encounter night (51 charts),
matplotlib cost ~0.14 s per chart (a Figure, its axes and an SVG render: 7 of the report stage's
10 s), and the number of charts grows with facilities and provinces. This writer costs 1-3 ms a
chart (3 and 6 lines over 30 nights). Labels and titles come from data (check names, province
names) and are only ever set as element text or attribute values, so the serializer escapes them;
characters XML 1.0 cannot carry are dropped. Nothing random or clock-dependent goes in: the same
data gives the same bytes. Text stays text (`<text>`, the browser's fonts draw Vietnamese).

Every line is a `<g id="line-<key>">` whose first `<path>` is `M x y L x y ...`, one vertex per
night, y an affine function of the value (0 at the axis): a test reads the drawn points back and
compares them with the ledgers.

The heat map (one per night, national page: provinces x checks) is written the same way since
session 11: cells as `<rect>`s coloured by ColorBrewer's Reds at matplotlib's 256 levels, a colour
bar as a gradient. On matplotlib it cost ~1.9 s of CPU a night (its import ~1.2 s, one render
~0.7 s, 10k night), the report's largest fixed cost; matplotlib is no longer imported by a night.
"""

from __future__ import annotations

import functools
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

COLORS = {"received": "#1f77b4", "loaded": "#2ca02c", "quarantined": "#d62728", "warned": "#ff7f0e"}
# the lines without a colour of their own (check ids): matplotlib's default cycle, as before
CYCLE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
SVG_NS = "http://www.w3.org/2000/svg"
FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
PT_PER_INCH = 72.0
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: object) -> str:
    """A label as XML 1.0 can carry it (escaping is the serializer's job)."""
    return _NOT_XML.sub("", str(value))


def _num(x: float) -> str:
    """A coordinate: 3 decimals, no trailing zeros, never an exponent (deterministic)."""
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {k.replace("_", "-"): v for k, v in attrs.items()})
    if text is not None:
        element.text = _text(text)
    return element


def _svg_root(width: float, height: float) -> ET.Element:
    """An SVG of `width` x `height` points on a white background."""
    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "version": "1.1",
            "width": f"{_num(width)}pt",
            "height": f"{_num(height)}pt",
            "viewBox": f"0 0 {_num(width)} {_num(height)}",
            "font-family": FONT,
        },
    )
    _sub(svg, "rect", width=_num(width), height=_num(height), fill="#ffffff")
    return svg


def nice_ticks(top_value: float, integral: bool, target: int = 5) -> tuple[list[float], float]:
    """Ticks from 0 at a 1-2-2.5-5 x 10^k step, and the axis top (the data's maximum + 5%).

    `integral`: the values are counts, so the step is at least 1. An empty or all-zero axis runs 0..1.
    """
    top = top_value * 1.05 if top_value > 0 else 1.0
    raw = top / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    if integral:
        step = max(step, 1.0)
    count = int(math.floor(top / step + 1e-9))
    return [round(i * step, 10) for i in range(count + 1)], top


def _tick_label(value: float, step: float) -> str:
    decimals = 0 if float(step).is_integer() else max(0, -math.floor(math.log10(step - math.floor(step))) + 1)
    text = f"{value:,.{decimals}f}"
    if decimals:
        text = text.rstrip("0").rstrip(".")
    return text.replace(",", "\u202f")  # thin space between thousands, whatever the language


def trend_svg(
    nights: Sequence[str],
    series: dict[str, Sequence[float]],
    labels: dict[str, str],
    title: str,
    ylabel: str,
    size: tuple[float, float] = (7.0, 2.4),
) -> str:
    """One line per series over the nights (ISO dates, x labels `MM-DD`); each line's group id is
    `line-<key>`, the legend (labels[key], else key) on the right."""
    width, height = size[0] * PT_PER_INCH, size[1] * PT_PER_INCH
    values = {key: [float(v) for v in vs] for key, vs in series.items()}
    every = [v for vs in values.values() for v in vs if math.isfinite(v)]
    ticks, top = nice_ticks(max(every, default=0.0), all(v.is_integer() for v in every))
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    tick_labels = [_tick_label(v, step) for v in ticks]
    # the plot box: room on the left for the y label and the widest tick label (~0.6 em per digit)
    left = max(0.08 * width, 14.0 + 7.0 + 0.6 * 8.0 * max(len(t) for t in tick_labels))
    right, bottom, upper = 0.72 * width, 0.85 * height, 0.12 * height
    n = len(nights)
    pad = 0.05 * (n - 1) if n > 1 else 0.5  # matplotlib's 5% margins either side
    x_low, x_span = -pad, max(n - 1, 0) + 2 * pad

    def x_of(i: int) -> float:
        return left + (i - x_low) / x_span * (right - left)

    def y_of(v: float) -> float:
        return bottom - v / top * (bottom - upper)

    svg = _svg_root(width, height)
    # y axis: grid lines, ticks and their labels
    grid = _sub(svg, "g", id="grid", stroke="#b0b0b0", stroke_width="0.3")
    axis = _sub(svg, "g", id="ticks", stroke="#000000", stroke_width="0.8")
    y_labels = _sub(svg, "g", id="y-tick-labels", font_size="8", text_anchor="end")
    for value, label in zip(ticks, tick_labels, strict=True):
        y = _num(y_of(value))
        _sub(grid, "line", x1=_num(left), x2=_num(right), y1=y, y2=y)
        _sub(axis, "line", x1=_num(left - 3.5), x2=_num(left), y1=y, y2=y)
        _sub(y_labels, "text", label, x=_num(left - 6), y=y, dy="0.35em")
    # x axis: every `every_n`-th night as MM-DD
    every_n = max(1, n // 6)
    x_labels = _sub(svg, "g", id="x-tick-labels", font_size="8", text_anchor="middle")
    for i in range(0, n, every_n):
        x = _num(x_of(i))
        _sub(axis, "line", x1=x, x2=x, y1=_num(bottom), y2=_num(bottom + 3.5))
        _sub(x_labels, "text", str(nights[i])[5:], x=x, y=_num(bottom + 13.5))
    _sub(
        svg,
        "rect",
        id="frame",
        x=_num(left),
        y=_num(upper),
        width=_num(right - left),
        height=_num(bottom - upper),
        fill="none",
        stroke="#000000",
        stroke_width="0.8",
    )
    _sub(svg, "text", title, id="title", x=_num(left), y=_num(upper - 6), font_size="9")
    mid = _num((upper + bottom) / 2)
    rotate = f"rotate(-90 12 {mid})"
    _sub(
        svg, "text", ylabel, id="ylabel", x="12", y=mid, font_size="8", text_anchor="middle", transform=rotate
    )
    # the lines, then the legend
    legend = _sub(svg, "g", id="legend", font_size="7")
    legend_x, row = right + 8.0, 10.5
    for k, (key, vs) in enumerate(values.items()):
        color = COLORS.get(key, CYCLE[k % len(CYCLE)])
        group = _sub(svg, "g", id=f"line-{key}", stroke=color, fill=color)
        # a value that is not a number leaves a gap: the line starts again after it
        points = [(_num(x_of(i)), _num(y_of(v))) if math.isfinite(v) else None for i, v in enumerate(vs)]
        d = " ".join(
            f"{'M' if i == 0 or points[i - 1] is None else 'L'} {p[0]} {p[1]}"
            for i, p in enumerate(points)
            if p is not None
        )
        if d:
            _sub(group, "path", d=d, fill="none", stroke_width="1.2", stroke_linejoin="round")
            for p in points:
                if p is not None:
                    _sub(group, "circle", cx=p[0], cy=p[1], r="1")
        y = upper + 6.0 + k * row
        entry = _sub(legend, "g", stroke=color, fill=color)
        _sub(
            entry,
            "line",
            x1=_num(legend_x),
            x2=_num(legend_x + 14),
            y1=_num(y),
            y2=_num(y),
            stroke_width="1.2",
        )
        _sub(entry, "circle", cx=_num(legend_x + 7), cy=_num(y), r="1")
        _sub(legend, "text", labels.get(key, key), x=_num(legend_x + 18), y=_num(y), dy="0.35em")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(svg, encoding="unicode") + "\n"


# ColorBrewer's 9-class Reds (matplotlib's "Reds", which the heat map used before): light to dark
REDS = ("#fff5f0", "#fee0d2", "#fcbba1", "#fc9272", "#fb6a4a", "#ef3b2c", "#cb181d", "#a50f15", "#67000d")
# a colour map's levels, as matplotlib samples one: a share picks one of 256 evenly spaced colours
COLOR_LEVELS = 256
EM = 0.6  # the average width of a character, in em, for laying out labels (DejaVu Sans: ~0.55-0.6)


@functools.cache
def _reds_level(level: int) -> str:
    """The colour of level 0..COLOR_LEVELS-1, interpolated linearly between the REDS anchors."""
    position = level / (COLOR_LEVELS - 1) * (len(REDS) - 1)
    low = min(int(position), len(REDS) - 2)
    frac = position - low
    a, b = REDS[low], REDS[low + 1]
    channels = (
        round(int(a[i : i + 2], 16) + (int(b[i : i + 2], 16) - int(a[i : i + 2], 16)) * frac)
        for i in (1, 3, 5)
    )
    return "#" + "".join(f"{c:02x}" for c in channels)


def reds(share: float) -> str:
    """The heat map's colour of a share 0..1 of the colour bar (outside: clipped; not a number: 0)."""
    if not math.isfinite(share):
        share = 0.0
    return _reds_level(min(max(int(share * COLOR_LEVELS), 0), COLOR_LEVELS - 1))


def heatmap_svg(
    rows: Sequence[str], columns: Sequence[str], values: Sequence[Sequence[float]], title: str, colorbar: str
) -> str:
    """Rows x columns of values (e.g. failing rows per 100 versions, provinces x checks), coloured
    from 0 (lightest) to the largest value (darkest), with a colour bar. The cells are the `<rect>`s
    of `<g id="heatmap">`, row by row, each with `data-row`, `data-column` (positions) and
    `data-value`; the sizes in inches are matplotlib's figure sizes of before."""
    n_rows, n_cols = len(rows), len(columns)
    width = max(7.5, 0.28 * n_cols + 4.0) * PT_PER_INCH
    height = max(2.5, 0.22 * n_rows + 1.6) * PT_PER_INCH
    cells = [[float(v) for v in row] for row in values] if n_rows and n_cols else []
    finite = [v for row in cells for v in row if math.isfinite(v)]
    top_value = max(finite, default=0.0)
    # margins from the labels' lengths: row labels at 7 pt on the left, column labels at 6 pt
    # turned 60 degrees below, the colour bar with its ticks and label on the right
    longest_row = max((len(_text(r)) for r in rows), default=0)
    longest_col = max((len(_text(c)) for c in columns), default=0)
    left = min(8.0 + EM * 7.0 * longest_row, 0.45 * width)
    bar_width = 10.0
    bar_x = width - 8.0 - 12.0 - EM * 7.0 * 6 - bar_width  # the bar's label, then 6 characters of ticks
    right = bar_x - 14.0
    upper = 24.0
    bottom = max(height - 8.0 - math.sin(math.radians(60)) * EM * 6.0 * longest_col, upper + 20.0)
    cell_w = (right - left) / max(n_cols, 1)
    cell_h = (bottom - upper) / max(n_rows, 1)

    svg = _svg_root(width, height)
    _sub(svg, "text", title, id="title", x=_num(left), y=_num(upper - 9), font_size="9")
    grid = _sub(svg, "g", id="heatmap", stroke="#ffffff", stroke_width="0.3")
    for i, row in enumerate(cells):
        for j, value in enumerate(row):
            _sub(
                grid,
                "rect",
                x=_num(left + j * cell_w),
                y=_num(upper + i * cell_h),
                width=_num(cell_w),
                height=_num(cell_h),
                fill=reds(value / top_value if top_value > 0 else 0.0),
                data_row=str(i),
                data_column=str(j),
                data_value=_num(value) if math.isfinite(value) else "",
            )
    _sub(
        svg,
        "rect",
        id="frame",
        x=_num(left),
        y=_num(upper),
        width=_num(right - left),
        height=_num(bottom - upper),
        fill="none",
        stroke="#000000",
        stroke_width="0.8",
    )
    row_labels = _sub(svg, "g", id="row-labels", font_size="7", text_anchor="end")
    for i, label in enumerate(rows):
        _sub(row_labels, "text", label, x=_num(left - 4), y=_num(upper + (i + 0.5) * cell_h), dy="0.35em")
    col_labels = _sub(svg, "g", id="column-labels", font_size="6", text_anchor="end")
    for j, label in enumerate(columns):
        x, y = _num(left + (j + 0.5) * cell_w), _num(bottom + 5)
        _sub(col_labels, "text", label, x=x, y=y, transform=f"rotate(-60 {x} {y})")
    # the colour bar: the map as a gradient (dark at the top), ticks at round values of the scale
    defs = _sub(svg, "defs")
    gradient = _sub(defs, "linearGradient", id="reds", x1="0", y1="1", x2="0", y2="0")
    for k, color in enumerate(REDS):
        _sub(gradient, "stop", offset=_num(k / (len(REDS) - 1)), stop_color=color)
    bar = _sub(svg, "g", id="colorbar", font_size="7")
    _sub(
        bar,
        "rect",
        x=_num(bar_x),
        y=_num(upper),
        width=_num(bar_width),
        height=_num(bottom - upper),
        fill="url(#reds)",
        stroke="#000000",
        stroke_width="0.8",
    )
    scale = top_value if top_value > 0 else 1.0
    ticks, _top = nice_ticks(scale, False)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    for value in (t for t in ticks if t <= scale * (1 + 1e-9)):
        y = _num(bottom - value / scale * (bottom - upper))
        _sub(
            bar,
            "line",
            x1=_num(bar_x + bar_width),
            x2=_num(bar_x + bar_width + 3.5),
            y1=y,
            y2=y,
            stroke="#000000",
        )
        _sub(bar, "text", _tick_label(value, step), x=_num(bar_x + bar_width + 5.5), y=y, dy="0.35em")
    mid_y, label_x = (upper + bottom) / 2, width - 8.0
    _sub(
        bar,
        "text",
        colorbar,
        x=_num(label_x),
        y=_num(mid_y),
        font_size="8",
        text_anchor="middle",
        transform=f"rotate(-90 {_num(label_x)} {_num(mid_y)})",
    )
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(svg, encoding="unicode") + "\n"


def write_svg(path: Path, svg: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg, encoding="utf-8")
    return path
