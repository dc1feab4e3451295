"""The report at scale: 30 synthetic nights x 200 facilities (transforms/synth/report_history.py),
the last night a Sunday (2026-11-29) so weekends are in every window. Pages opened in headless
Chromium; one facility's chart read back and compared with its ledgers; alerts."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from lxml import etree, html

from expectations.report import build_report
from transforms.core.warehouse import Warehouse
from transforms.synth.report_history import facility_codes, synthesise

LAST = dt.date(2026, 11, 29)  # a Sunday: tonight's volumes are at the weekend share of weekdays
CODES = facility_codes(200)
SILENT, HALVED, NORMAL = CODES[0], CODES[1], CODES[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Warehouse:
    warehouse = Warehouse(tmp_path_factory.mktemp("wh30"))
    synthesise(warehouse, LAST, 30, CODES, silent=(SILENT,), halved=(HALVED,))
    # 3 versions of NORMAL wait in the pending list for a later night (a late XML7, a re-send)
    warehouse.pending.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "facility_code": [NORMAL] * 3,
            "encounter_id": ["p1", "p2", "p3"],
            "version": [1, 1, 2],
            "night": [LAST] * 3,
            "reason": ["missing_discharge_paper"] * 3,
        }
    ).to_parquet(warehouse.pending)
    build_report(warehouse, LAST, only_facilities=(SILENT, HALVED, NORMAL))
    return warehouse


def chromium_dom(page: Path, tmp_path: Path) -> html.HtmlElement:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is missing: apt-get install -y chromium (scripts/services.sh)")
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    return html.fromstring(dom)


BUILT = (SILENT, HALVED, NORMAL)


def local_links_resolve(page: Path, tree: html.HtmlElement) -> list[str]:
    """Every relative href/src of the page that does not name an existing file (the synthetic run
    has no Data Docs, and builds the pages of 3 facilities only)."""
    broken = []
    for element in tree.xpath("//*[@href or @src]"):
        target = element.get("href") or element.get("src")
        if re.match(r"^[a-z]+:", target) or target.startswith("#") or "data_docs/" in target:
            continue
        facility = re.search(r"facility/([^/]+)\.html$", target)
        if facility and facility.group(1) not in BUILT:
            continue
        if not (page.parent / target).exists():
            broken.append(target)
    return broken


def svg_line_points(svg: Path, gid: str) -> list[tuple[float, float]]:
    """The vertices of the line drawn with this gid (charts.trend_svg writes `M x y L x y ...`)."""
    root = etree.parse(str(svg)).getroot()
    group = root.find(f".//{{http://www.w3.org/2000/svg}}g[@id='{gid}']")
    path = group.find(".//{http://www.w3.org/2000/svg}path")
    numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", path.get("d"))]
    return list(zip(numbers[::2], numbers[1::2], strict=True))


def test_one_facilitys_chart_draws_its_ledgers_numbers(run):
    """The y of each drawn point is an affine function of the ledger's figure of that night:
    fitted on two nights of `received`, it must predict every other point of all three lines."""
    nights = [LAST - dt.timedelta(days=k) for k in range(29, -1, -1)]
    ledgers = [json.loads(run.ledger(n).read_text())["facilities"].get(NORMAL) for n in nights]
    expected = {
        "received": [f["received"] for f in ledgers],
        "loaded": [f["loaded"] for f in ledgers],
        "quarantined": [sum(f["quarantined"].values()) for f in ledgers],
    }
    svg = run.quality / LAST.isoformat() / "charts" / f"facility_{NORMAL}_volume.svg"
    drawn = {k: [y for _, y in svg_line_points(svg, f"line-{k}")] for k in expected}
    assert all(len(v) == 30 for v in drawn.values())
    values = expected["received"]
    i, j = values.index(min(values)), values.index(max(values))
    assert values[i] != values[j]  # weekdays and weekends differ, so the fit is defined
    scale = (drawn["received"][j] - drawn["received"][i]) / (values[j] - values[i])
    offset = drawn["received"][i] - scale * values[i]
    for key, series in expected.items():
        assert drawn[key] == pytest.approx([offset + scale * v for v in series], abs=0.02), key
    # and the JSON written beside the chart holds the same numbers
    data = json.loads(svg.with_suffix(".json").read_text())
    assert data["series"] == expected


def test_a_silent_and_a_halved_facility_raise_alerts_and_a_weekend_drop_does_not(run):
    alerts = json.loads((run.run_dir(LAST) / "alerts.json").read_text())["alerts"]
    kinds = {a["facility_code"]: a["kind"] for a in alerts}
    # every facility sends 40% on Sundays: compared with earlier Sundays, only the two flagged ones
    assert kinds == {SILENT: "silent", HALVED: "volume_drop"}
    halved = next(a for a in alerts if a["facility_code"] == HALVED)
    assert halved["received"] < halved["median_same_weekday"] / 2
    assert halved["compared_nights"] == ["2026-11-22", "2026-11-15", "2026-11-08", "2026-11-01"]


def test_the_national_page_lists_alerts_first_and_links_provinces(run, tmp_path):
    page = run.quality / LAST.isoformat() / "index.html"
    tree = chromium_dom(page, tmp_path)
    assert tree.get("lang") == "vi"
    assert "Báo cáo chất lượng dữ liệu" in tree.xpath("//h1")[0].text_content()
    first_section = tree.xpath("//section")[0]
    assert first_section.get("id") == "alerts"
    assert {r.get("data-facility") for r in first_section.xpath(".//tr[@data-facility]")} == {SILENT, HALVED}
    assert "Cảnh báo" in first_section.text_content()
    for chart in ("chart-national-volume", "chart-national-checks", "chart-heatmap"):
        (img,) = tree.xpath(f'//img[@id="{chart}"]')
        assert etree.parse(str(page.parent / img.get("src"))).getroot().tag.endswith("svg")
    provinces = tree.xpath('//table[@id="province-table"]/tbody/tr/@data-province')
    assert len(provinces) == len({c[:2] for c in CODES})
    assert local_links_resolve(page, tree) == []
    assert page.stat().st_size < 200_000


def test_the_province_page_ranks_its_facilities_in_a_sortable_table(run, tmp_path):
    province = NORMAL[:2]
    page = run.quality / LAST.isoformat() / "province" / f"{province}.html"
    tree = chromium_dom(page, tmp_path)
    rows = tree.xpath('//table[@id="scorecard"]/tbody/tr')
    mine = sorted(c for c in CODES if c[:2] == province and c != SILENT)
    assert sorted(r.get("data-facility") for r in rows) == mine
    ranks = [int(r.xpath("./td")[0].get("data-sort")) for r in rows]
    assert ranks == list(range(1, len(mine) + 1))
    assert tree.xpath('//table[@id="scorecard"]/thead/tr/th[@aria-sort="none"]')  # the script ran
    assert "Cơ sở khám chữa bệnh" in tree.text_content()
    assert tree.xpath('//img[@id="chart-province-volume"]')
    links = tree.xpath(f'//a[@href="../facility/{NORMAL}.html"]')
    assert links and (page.parent / links[0].get("href")).exists()


def test_the_facility_page_shows_30_nights_its_rank_charts_and_feedback_links(run, tmp_path):
    page = run.quality / LAST.isoformat() / "facility" / f"{NORMAL}.html"
    tree = chromium_dom(page, tmp_path)
    history = tree.xpath('//table[@id="history"]/tbody/tr')
    assert len(history) == 30 and history[0].get("data-night") == LAST.isoformat()
    ledger = json.loads(run.ledger(LAST).read_text())["facilities"][NORMAL]
    cells = [c.get("data-sort") for c in history[0].xpath("./td")]
    assert (int(cells[1]), int(cells[2])) == (ledger["received"], ledger["loaded"])
    assert int(cells[3]) == 3  # waiting: the 3 pending versions
    assert history[1].xpath("./td")[3].text_content() == "—"  # last night's pending list is not kept
    assert "Xếp hạng trong tỉnh đêm nay" in tree.xpath('//span[@id="rank"]')[0].text_content()
    assert tree.xpath('//img[@id="chart-facility-volume"]') and tree.xpath(
        '//img[@id="chart-facility-checks"]'
    )
    assert "`" not in tree.xpath('//table[@id="facility-checks"]')[0].text_content()
    assert tree.xpath('//table[@id="facility-checks"]//code')  # the fix names the fields
    assert local_links_resolve(page, tree) == []  # feedback files, province, charts, assets


def test_the_silent_facility_has_its_page_with_the_alert(run, tmp_path):
    page = run.quality / LAST.isoformat() / "facility" / f"{SILENT}.html"
    tree = chromium_dom(page, tmp_path)
    assert tree.xpath('//section[@id="alerts"]/p/@data-kind') == ["silent"]
    assert "không gửi dữ liệu" in tree.xpath('//section[@id="alerts"]')[0].text_content()
