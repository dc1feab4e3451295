"""The report's charts: static SVG files drawn with matplotlib.

Why matplotlib: it is the best-kept Python plotting library (releases every few months, a large
maintainer team), it was already in the lock file (a dev dependency, now a runtime one), writes SVG
with no browser or JavaScript at render time, and draws heat maps as well as lines. pygal was the
alternative: smaller, but its SVG needs its own JavaScript for tooltips and it has no heat map.
Cost: about 0.1 s per chart (benchmarks/report_national.py measures it).

Every line carries a `gid` (`<g id="...">` in the SVG) and path simplification is off, so each of
the 30 points is a vertex in the file: a test reads the drawn points back and compares them with
the ledgers.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("svg")  # no display, no GUI toolkit
matplotlib.rcParams.update(
    {
        "svg.fonttype": "none",  # text stays text: smaller files, Vietnamese rendered by the browser's fonts
        "svg.hashsalt": "healthbook",  # stable ids: the same data gives the same file
        "path.simplify": False,  # every night is a vertex
        "font.size": 8,
        "font.family": "DejaVu Sans",
    }
)
from matplotlib.figure import Figure  # noqa: E402

COLORS = {"received": "#1f77b4", "loaded": "#2ca02c", "quarantined": "#d62728", "warned": "#ff7f0e"}


def _svg(fig: Figure) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def trend_svg(
    nights: Sequence[str],
    series: dict[str, Sequence[float]],
    labels: dict[str, str],
    title: str,
    ylabel: str,
    size: tuple[float, float] = (7.0, 2.4),
) -> str:
    """One line per series over the nights; each line's gid is `line-<key>`."""
    fig = Figure(figsize=size)
    ax = fig.add_subplot()
    x = list(range(len(nights)))
    for key, values in series.items():
        ax.plot(
            x,
            list(values),
            marker="o",
            markersize=2,
            linewidth=1.2,
            color=COLORS.get(key),
            label=labels.get(key, key),
            gid=f"line-{key}",
        )
    ax.set_title(title, loc="left", fontsize=9)
    ax.set_ylabel(ylabel)
    step = max(1, len(nights) // 6)
    ax.set_xticks(x[::step], [n[5:] for n in nights][::step])
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", linewidth=0.3)
    if series:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    fig.subplots_adjust(left=0.08, right=0.72, bottom=0.15, top=0.88)
    return _svg(fig)


def heatmap_svg(
    rows: Sequence[str], columns: Sequence[str], values: Sequence[Sequence[float]], title: str, colorbar: str
) -> str:
    """Rows x columns of shares (0..1), e.g. provinces x checks; the image's gid is `heatmap`."""
    height = max(2.5, 0.22 * len(rows) + 1.6)
    width = max(7.5, 0.28 * len(columns) + 4.0)
    fig = Figure(figsize=(width, height))
    ax = fig.add_subplot()
    # pcolormesh, not imshow: vector cells (imshow would embed a PNG inside the SVG)
    image = ax.pcolormesh(
        [list(r) for r in values] if rows and columns else [[0.0]],
        cmap="Reds",
        vmin=0,
        edgecolors="white",
        linewidth=0.3,
        gid="heatmap",
    )
    ax.invert_yaxis()
    ax.set_yticks([i + 0.5 for i in range(len(rows))], list(rows), fontsize=7)
    ax.set_xticks([i + 0.5 for i in range(len(columns))], list(columns), rotation=60, ha="right", fontsize=6)
    ax.set_title(title, loc="left", fontsize=9)
    fig.colorbar(image, ax=ax, label=colorbar, fraction=0.03)
    fig.tight_layout()
    return _svg(fig)


def write_svg(path: Path, svg: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg, encoding="utf-8")
    return path
