"""Late tables across nights (issue #15 item 4, HEALTHBOOK.md "When an encounter is complete").

Inpatient stays of one facility, run end to end (`run_night`, SQLite) over five nights with the
default grace period of 3 nights:

    stay    night 1                  night 2              night 3           night 4               night 5
    ONTIME  XML1-8 (XML7 on time)    .                    .                 .                     .
    LATE    no XML7                  XML7 alone (partial) .                 .                     .
    NONE    no XML7, no XML8         .                    .                 published incomplete  XML7+XML8 alone
    RESEND  no XML8                  .                    full re-send      .                     .

The ledger must balance every night (run_night raises otherwise); its late-table keys count the
waiting and the published-incomplete stays.
"""

from __future__ import annotations

import datetime as dt
import json
import random

import duckdb
import numpy as np
import pandas as pd
import pytest
from pypdf import PdfReader

from transforms.core.context import make_context
from transforms.core.settings import Settings
from transforms.load import assemble
from transforms.orchestration.pipeline import run_night
from transforms.serving.book import books_for
from transforms.serving.pdf import write_encounter_pdfs
from transforms.synth.citizens import derive_citizens, write_registry
from transforms.synth.encounters import build_tables
from transforms.synth.envelope import envelope_bytes, inner_xml
from transforms.synth.parts import EncounterPlan
from transforms.synth.patients import make_facilities

SEED = 11
NIGHTS = [dt.date(2026, 3, 1) + dt.timedelta(days=i) for i in range(5)]
FACILITY = make_facilities(SEED, 1)[0]
STAYS = {"ONTIME": 0, "LATE": 1, "NONE": 2, "RESEND": 3}  # stay -> registry index of its patient


def stay_tables(name: str) -> dict[str, list[dict[str, str]]]:
    """The full tables of one inpatient stay (the generator's own builder, no defects)."""
    patient = derive_citizens(SEED, np.array([STAYS[name]])).row(0)
    plan = EncounterPlan(encounter_id=f"LK{name}", visit_type="03", patient=patient)
    return build_tables(plan, NIGHTS[0], FACILITY, random.Random(name), 1, str(patient["ward_code"]))


def hoso(name: str, only: tuple[str, ...] | None = None, without: tuple[str, ...] = ()) -> dict:
    tables = stay_tables(name)
    keep = [t for t in tables if tables[t] and t not in without and (only is None or t in only)]
    return {t: inner_xml(t, tables[t]) for t in keep}


def write_night(root, night: dt.date, hosos: list[dict]) -> None:
    folder = root / "extracts" / night.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    for i, h in enumerate(hosos):  # one encounter per file, as real nights
        (folder / f"{FACILITY.code}_{i}.xml").write_bytes(
            envelope_bytes(FACILITY.code, f"{night:%Y%m%d}", [h])
        )


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """Run the five nights; return (root, {night: (ledger, outcomes, retried, books)})."""
    root = tmp_path_factory.mktemp("late")
    write_registry(root / "registry", SEED, 200)
    write_night(
        root,
        NIGHTS[0],
        [
            hoso("ONTIME"),
            hoso("LATE", without=("XML7",)),
            hoso("NONE", without=("XML7", "XML8")),
            hoso("RESEND", without=("XML8",)),
        ],
    )
    write_night(root, NIGHTS[1], [hoso("LATE", only=("XML7",))])
    write_night(root, NIGHTS[2], [hoso("RESEND")])
    write_night(root, NIGHTS[3], [])
    write_night(root, NIGHTS[4], [hoso("NONE", only=("XML7", "XML8"))])
    citizens = [str(derive_citizens(SEED, np.array([i])).row(0)["citizen_id"]) for i in STAYS.values()]
    results = {}
    mp = pytest.MonkeyPatch()
    mp.setenv("HEALTHBOOK_PSEUDONYM_KEY", "ab" * 32)
    mp.delenv("HEALTHBOOK_GRACE_NIGHTS", raising=False)
    try:
        for night in NIGHTS:
            ctx = make_context(night, root / "extracts", root / "registry", root / "warehouse")
            summary = run_night(ctx)  # raises LedgerImbalance when the ledger does not balance
            outcomes = pd.read_parquet(ctx.warehouse.outcomes(night))
            retried = pd.read_parquet(ctx.warehouse.retried(night))
            books = {b["citizen"]["citizen_id"]: b for b in books_for(ctx.serving_url, citizens)}
            snap = duckdb.connect(str(ctx.warehouse.snapshot(night)), read_only=True)
            incomplete = dict(snap.execute("select version, incomplete from encounters").fetchall())
            snap.close()
            pending = len(pd.read_parquet(ctx.warehouse.pending))
            results[night] = (summary.ledger, outcomes, retried, books, incomplete, pending)
    finally:
        mp.undo()
    return root, results, dict(zip(STAYS, citizens, strict=True))


def outcome(frame: pd.DataFrame, stay: str) -> dict[int, tuple[str, str | None]]:
    rows = frame[frame["encounter_id"] == f"LK{stay}"]
    return {int(r.version): (r.outcome, None if pd.isna(r.reason) else r.reason) for r in rows.itertuples()}


def book_encounter(books: dict, citizens: dict, stay: str) -> dict | None:
    book = books[citizens[stay]]
    found = [e for e in book.get("encounters", []) if e["encounter_id"] == f"LK{stay}"]
    return found[0] if found else None


def test_a_stay_with_its_xml7_and_xml8_on_time_loads_complete_on_the_first_night(nights):
    _, results, citizens = nights
    ledger, outcomes, _, books, *_ = results[NIGHTS[0]]
    assert outcome(outcomes, "ONTIME") == {1: ("loaded", None)}
    assert book_encounter(books, citizens, "ONTIME")["incomplete"] is None


def test_stays_without_their_late_tables_wait_as_pending_and_the_ledger_counts_them(nights):
    root, results, citizens = nights
    ledger, outcomes, _, books, *_ = results[NIGHTS[0]]
    assert outcome(outcomes, "LATE") == {1: ("quarantined", "missing_discharge_paper")}
    assert outcome(outcomes, "NONE") == {1: ("quarantined", "missing_discharge_paper")}
    assert outcome(outcomes, "RESEND") == {1: ("quarantined", "missing_summary")}
    f = ledger["facilities"][FACILITY.code]
    # 4 received = 1 loaded + 3 quarantined, the 3 waiting for late tables
    assert (f["received"], f["loaded"], sum(f["quarantined"].values())) == (4, 1, 3)
    assert f["waiting_late_tables"] == 3 and f["published_incomplete"] == 0
    assert ledger["late_tables"]["grace_nights"] == 3
    assert results[NIGHTS[0]][5] == 3  # the pending list after night 1
    assert book_encounter(books, citizens, "NONE") is None  # waiting: not in the book yet


def test_a_late_xml7_arriving_alone_completes_the_stay_as_a_new_version(nights):
    _, results, citizens = nights
    ledger, outcomes, retried, books, *_ = results[NIGHTS[1]]
    assert outcome(outcomes, "LATE") == {2: ("loaded", None)}
    assert outcome(retried, "LATE") == {1: ("superseded", "missing_discharge_paper")}
    f = ledger["facilities"][FACILITY.code]
    assert (f["received"], f["loaded"]) == (1, 1)  # the partial re-send is a receipt that loaded
    assert ledger["late_tables"]["partial_resends_completed"] == 1
    shown = book_encounter(books, citizens, "LATE")
    assert shown["version"] == 2 and shown["incomplete"] is None
    assert shown["discharge_paper"] is not None and shown["summary"] is not None  # XML8 lent by v1
    assert shown["main_diagnosis"]["icd10"]  # XML1 lent by version 1


def test_a_full_resend_with_the_missing_table_completes_the_stay(nights):
    _, results, citizens = nights
    _, outcomes, retried, books, *_ = results[NIGHTS[2]]
    assert outcome(outcomes, "RESEND") == {2: ("loaded", None)}
    assert outcome(retried, "RESEND") == {1: ("superseded", "missing_summary")}
    assert book_encounter(books, citizens, "RESEND")["incomplete"] is None


def test_a_stay_is_waiting_until_its_grace_period_ends_then_published_marked_incomplete(nights):
    _, results, citizens = nights
    for night in NIGHTS[1:3]:  # nights 2 and 3: still waiting
        ledger, _, retried, books, *_ = results[night]
        assert outcome(retried, "NONE") == {1: ("quarantined", "missing_discharge_paper")}
        assert book_encounter(books, citizens, "NONE") is None
        assert ledger["late_tables"]["waiting_retried"] >= 1
    ledger, outcomes, retried, books, snapshot, _ = results[NIGHTS[3]]  # night 4 = night 1 + 3
    assert outcome(retried, "NONE") == {1: ("loaded", None)}
    assert retried.loc[retried["encounter_id"] == "LKNONE", "incomplete"].tolist() == [
        "discharge_paper;summary"
    ]
    assert ledger["late_tables"]["published_incomplete_retried"] == 1
    assert ledger["totals"]["received"] == 0  # nothing received on night 4; the ledger still balances
    shown = book_encounter(books, citizens, "NONE")
    assert shown["incomplete"] == ["discharge_paper", "summary"]
    assert shown["discharge_paper"] is None and shown["summary"] is None
    assert "discharge_paper;summary" in snapshot.values()


def test_the_late_tables_of_an_incomplete_stay_arriving_alone_complete_it(nights):
    _, results, citizens = nights
    _, outcomes, _, books, snapshot, _ = results[NIGHTS[4]]
    assert outcome(outcomes, "NONE") == {2: ("loaded", None)}
    shown = book_encounter(books, citizens, "NONE")
    assert shown["version"] == 2 and shown["incomplete"] is None
    assert shown["discharge_paper"] is not None and shown["summary"] is not None
    assert "discharge_paper;summary" not in snapshot.values()


def test_the_report_counts_the_stays_published_incomplete(nights):
    root, _, _ = nights
    page = (root / "warehouse" / "quality" / NIGHTS[3].isoformat() / "index.html").read_text()
    # the report is in Vietnamese by default: "1 published marked incomplete"
    assert 'id="late-tables"' in page and "1 đã công bố với dấu chưa đầy đủ" in page


def test_the_pdf_of_an_incomplete_stay_names_what_is_missing(nights, tmp_path):
    _, results, citizens = nights
    book = results[NIGHTS[3]][3][citizens["NONE"]]
    book = {**book, "encounters": [e for e in book["encounters"] if e["encounter_id"] == "LKNONE"]}
    (path,) = write_encounter_pdfs(book, tmp_path)
    text = "".join(page.extract_text() for page in PdfReader(path).pages)
    assert "Hồ sơ chưa đầy đủ" in text and "Giấy ra viện (XML7)" in text


def test_the_grace_period_is_a_setting():
    assert Settings.resolve(environ={"HEALTHBOOK_GRACE_NIGHTS": "0"}).load.grace_nights == 0
    with pytest.raises(ValueError, match="HEALTHBOOK_GRACE_NIGHTS"):
        Settings.resolve(environ={"HEALTHBOOK_GRACE_NIGHTS": "-1"})
    assert Settings.resolve(environ={}).load.grace_nights == 3


def test_every_night_s_manifest_and_ledger_agree_on_the_waiting_stays(nights):
    root, results, _ = nights
    # night 1: LATE, NONE, RESEND wait; 2: NONE, RESEND; 3: NONE; 4 and 5: none
    expected = [3, 2, 1, 0, 0]
    for night, want in zip(NIGHTS, expected, strict=True):
        load = json.loads((root / "warehouse" / "runs" / night.isoformat() / "load.json").read_text())
        figures = load["late_tables"]
        assert figures["waiting_received_tonight"] + figures["waiting_retried"] == want, night


# --- the grace decision alone (assemble.decide_outcomes), hand-made frames --------------------

F = "94170"
KEYS = ["facility_code", "encounter_id", "version"]


def _decide(night: dt.date, since: dt.date, published: bool = False, datasets=("encounters",)) -> tuple:
    candidates = pd.DataFrame(
        [{"facility_code": F, "encounter_id": "A", "version": 1, "night": since, "is_retry": night != since}]
    )
    presence = pd.DataFrame(
        [
            {"facility_code": F, "encounter_id": "A", "version": 1, "dataset": d, "visit_type": "03"}
            for d in datasets
        ]
    )
    findings = pd.DataFrame(columns=[*KEYS, "stage", "reason", "severity"])
    links = pd.DataFrame(
        [{"facility_code": F, "encounter_id": "A", "version": 1, "outcome": "match", "citizen_id": "C"}]
    )
    shown = pd.DataFrame([{"facility_code": F, "encounter_id": "A"}]) if published else None
    out = assemble.decide_outcomes(
        candidates, presence, findings, links, candidates[KEYS], night, 3, shown
    ).iloc[0]
    return out["outcome"], out["reason"], out["incomplete"]


D1 = dt.date(2026, 3, 1)


def test_a_stay_missing_both_papers_waits_two_nights_after_receipt_and_publishes_on_the_third():
    # received on D1, grace 3: D1, D1+1, D1+2 wait; D1+3 publishes marked incomplete
    for days in (0, 1, 2):
        assert _decide(D1 + dt.timedelta(days=days), D1) == ("quarantined", "missing_discharge_paper", None)
    assert _decide(D1 + dt.timedelta(days=3), D1) == ("loaded", None, "discharge_paper;summary")


def test_a_stay_missing_only_its_summary_names_only_the_summary_after_the_grace_period():
    out = _decide(D1 + dt.timedelta(days=3), D1, datasets=("encounters", "discharge_papers"))
    assert out == ("loaded", None, "summary")


def test_a_new_version_of_a_stay_already_in_the_book_does_not_wait_again():
    assert _decide(D1, D1, published=True) == ("loaded", None, "discharge_paper;summary")


def test_a_stay_with_both_papers_is_never_marked_incomplete():
    out = _decide(D1, D1, datasets=("encounters", "discharge_papers", "summaries"))
    assert out == ("loaded", None, None)
