"""The report's languages: every check, reason and page text has its Vietnamese words."""

from __future__ import annotations

import json
import re
from pathlib import Path

from babel.messages.extract import extract_from_file

from expectations.checks import load_checks
from expectations.i18n import LOCALE_DIR, missing_check_texts, texts
from expectations.pages import DYNAMIC_MSGIDS
from transforms.core import reasons

ROOT = Path(__file__).resolve().parent.parent


def test_every_check_id_and_reason_code_has_a_vietnamese_text():
    check_ids = sorted(load_checks().checks)
    codes = sorted(
        {
            **reasons.FILE_REASONS,
            **reasons.ENCOUNTER_REASONS,
            **reasons.WARNING_REASONS,
            **reasons.FHIR_REASONS,
        }
    )
    missing = missing_check_texts(check_ids, codes, "vi")
    assert not missing, (
        "add these keys to expectations/locale/vi/LC_MESSAGES/checks.po, then run "
        f"scripts/compile_catalogues.py: {', '.join(missing)}"
    )


def test_every_page_text_has_a_vietnamese_translation():
    ids = set(DYNAMIC_MSGIDS)
    for template in (ROOT / "expectations" / "templates").glob("*.j2"):
        for _, message, _, _ in extract_from_file(
            "jinja2", str(template), options={"extensions": "jinja2.ext.i18n"}
        ):
            ids.add(message if isinstance(message, str) else message[0])
    ids |= set(re.findall(r'_\("([^"]+)"\)', (ROOT / "expectations" / "pages.py").read_text()))
    vi = texts("vi")
    untranslated = sorted(i for i in ids if vi.gettext(i) == i)
    assert len(ids) > 100 and not untranslated, untranslated


def test_the_compiled_catalogues_are_those_of_their_po_files():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cc", ROOT / "scripts" / "compile_catalogues.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for po in LOCALE_DIR.glob("*/LC_MESSAGES/*.po"):
        assert po.with_suffix(".mo").read_bytes() == module.compiled(po), (
            f"run scripts/compile_catalogues.py ({po})"
        )


def test_the_language_is_vietnamese_by_default_and_english_by_the_setting(monkeypatch):
    monkeypatch.delenv("HEALTHBOOK_REPORT_LANGUAGE", raising=False)
    assert texts().gettext("waiting") == "đang chờ"
    assert (
        texts()
        .check("integrity.totals_match", "fix")
        .startswith("`T_THUOC` (XML1) khác tổng `THANH_TIEN_BV` (XML2)")
    )
    monkeypatch.setenv("HEALTHBOOK_REPORT_LANGUAGE", "en")
    assert texts().gettext("waiting") == "waiting"
    assert texts().reason("invalid_icd10") == reasons.ENCOUNTER_REASONS["invalid_icd10"]


def test_the_english_setting_writes_the_pages_in_english(tmp_path, monkeypatch):
    import datetime as dt

    from expectations.report import build_report
    from transforms.core.warehouse import Warehouse
    from transforms.synth.report_history import synthesise

    night = dt.date(2026, 11, 26)
    warehouse = Warehouse(tmp_path / "wh")
    synthesise(warehouse, night, 1, ["79001"])
    monkeypatch.setenv("HEALTHBOOK_REPORT_LANGUAGE", "en")
    build_report(warehouse, night, only_facilities=("79001",))
    page = (warehouse.quality / night.isoformat() / "index.html").read_text()
    assert '<html lang="en">' in page and "Quality report — night 2026-11-26" in page
    facility = (warehouse.quality / night.isoformat() / "facility" / "79001.html").read_text()
    assert "The last 30 nights" in facility and "Báo cáo" not in facility
    # the hospital's feedback stays in Vietnamese whatever the report's language
    feedback = json.loads((warehouse.root / "feedback" / night.isoformat() / "79001.json").read_text())
    assert feedback["rows"] and all(r["fix"] for r in feedback["rows"])
    assert {r["severity"] for r in feedback["rows"]} <= {
        "Chặn (hồ sơ chưa được nạp)",
        "Cảnh báo (hồ sơ vẫn được nạp)",
    }
