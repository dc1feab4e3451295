"""The review queue page: candidates side by side, the separating fields marked, decisions linked."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from test_report_pages import chromium_dom

from expectations.report import build_report
from transforms.core.warehouse import Warehouse
from transforms.synth.report_history import synthesise

NIGHT = dt.date(2026, 11, 26)


def queue(with_identity_columns: bool) -> pd.DataFrame:
    """Encounter E1 of 79001 and two candidates who differ only by birth date."""
    base = {
        "facility_code": "79001",
        "encounter_id": "E1",
        "version": 1,
        "outcome": "potential_match",
        "tier": "probabilistic",
        "record_name": "Nguyễn Văn An",
        "record_citizen_id": None,
        "record_birth_ymd": "19900101",
        "record_sex": "male",
        "citizen_sex": "male",
        "citizen_name": "Nguyễn Văn An",
    }
    rows = [
        {**base, "candidate_rank": 1, "citizen_id": "079090001234", "citizen_birth_ymd": "19900101",
         "match_weight": 6.5, "weight_birth_ymd": 4.0},
        {**base, "candidate_rank": 2, "citizen_id": "079090005678", "citizen_birth_ymd": "19900110",
         "match_weight": 3.1, "weight_birth_ymd": -1.2},
    ]  # fmt: skip
    frame = pd.DataFrame(rows)
    if with_identity_columns:
        frame["deciding_field"] = "birth_ymd"
        frame["margin"] = 3.4
    return frame


def build(tmp_path, with_identity_columns: bool) -> Warehouse:
    warehouse = Warehouse(tmp_path / "wh")
    synthesise(warehouse, NIGHT, 1, ["79001", "79002"])
    folder = warehouse.review(NIGHT)
    folder.mkdir(parents=True)
    queue(with_identity_columns).to_parquet(folder / "review_queue.parquet")
    decisions = warehouse.root / "review" / "decisions"
    decisions.mkdir(parents=True)
    (decisions / "reviewer_a.csv").write_text(
        "facility_code,encounter_id,decision,citizen_id,reviewer,decided_at\n"
        "79001,E1,link,079090001234,lan,2026-11-27T09:00\n"
        "79001,E2,maybe,,lan,2026-11-27T09:05\n"  # not link/reject: invalid, counted
    )
    build_report(warehouse, NIGHT, only_facilities=())
    return warehouse


def test_the_review_page_shows_candidates_side_by_side_and_links_the_decisions(tmp_path):
    warehouse = build(tmp_path, with_identity_columns=True)
    page = warehouse.quality / NIGHT.isoformat() / "review.html"
    tree = chromium_dom(page, tmp_path)
    (item,) = tree.xpath('//section[@class="review-item"]')
    assert item.get("data-encounter") == "E1"
    rows = {r.xpath("./th")[0].text_content(): r for r in item.xpath(".//tbody/tr")}
    # only the birth date separates the two candidates; names and IDs are masked
    assert rows["Ngày sinh"].get("class") == "differs"
    assert [c.text_content() for c in rows["Ngày sinh"].xpath("./td")] == ["19900101", "19900101", "19900110"]
    assert rows["Họ tên"].get("class") is None
    assert [c.text_content() for c in rows["Họ tên"].xpath("./td")] == ["N. V. A."] * 3
    assert [c.text_content() for c in rows["Số CCCD"].xpath("./td")][1:] == ["079*******34", "079*******78"]
    assert item.xpath('.//strong[@class="deciding-field"]')[0].text == "birth_ymd"
    assert item.xpath('.//span[@class="margin"]')[0].text == "3.40"
    assert "liên kết" in item.xpath('.//span[@class="decided"]')[0].text_content()
    (link,) = tree.xpath('//ul[@id="decision-files"]//a')
    assert (page.parent / link.get("href")).resolve() == (
        warehouse.root / "review/decisions/reviewer_a.csv"
    ).resolve()
    assert "1 quyết định, 1 dòng không hợp lệ" in tree.xpath('//ul[@id="decision-files"]')[0].text_content()
    assert "079090001234" not in page.read_text()


def test_the_review_page_works_without_the_identity_helpers_columns(tmp_path):
    warehouse = build(tmp_path, with_identity_columns=False)
    text = (warehouse.quality / NIGHT.isoformat() / "review.html").read_text()
    assert 'class="review-item"' in text and "deciding-field" not in text
