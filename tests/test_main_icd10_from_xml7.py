"""End to end (issue 15): an inpatient stay whose XML1 has an empty MA_BENH_CHINH while its XML7
carries the discharge diagnosis code loads, and the book shows XML7's code with source "xml7"
next to the facility's diagnosis text; one whose XML7 has no code either stays out."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow.parquet as pq

from transforms.core.context import make_context
from transforms.orchestration.pipeline import run_night
from transforms.serving.book import books_for
from transforms.synth.citizens import write_registry
from transforms.synth.envelope import envelope_bytes, inner_xml

NIGHT = dt.date(2026, 11, 26)
FACILITY = "79001"


def xml1(ma_lk: str, citizen: dict, main: str) -> dict[str, str]:
    birth = citizen["birth_date"]
    return {
        "MA_LK": ma_lk,
        "STT": "1",
        "MA_BN": f"BN{ma_lk}",
        "HO_TEN": citizen["full_name"],
        "SO_CCCD": citizen["citizen_id"],
        "NGAY_SINH": f"{birth}0000",
        "GIOI_TINH": citizen["sex"],
        "MA_THE_BHYT": f"DN479{citizen['social_insurance_number']}",
        "CHAN_DOAN_RV": "",
        "MA_BENH_CHINH": main,
        "MA_BENH_KT": "",
        "MA_DOITUONG_KCB": "1.1",
        "NGAY_VAO": "202611200800",
        "NGAY_VAO_NOI_TRU": "202611200900",
        "NGAY_RA": "202611251000",
        "SO_NGAY_DTRI": "6",
        "KET_QUA_DTRI": "2",
        "MA_LOAI_RV": "1",
        "MA_LOAI_KCB": "03",
        "MA_CSKCB": FACILITY,
        "CAN_NANG": "60",
    }


def xml7(ma_lk: str, main: str, text: str) -> dict[str, str]:
    return {
        "MA_LK": ma_lk,
        "NGAY_VAO": "202611200800",
        "NGAY_RA": "202611251000",
        "CHAN_DOAN_RV": text,
        "MA_BENH_CHINH": main,
        "NGAY_CT": "20261125",
    }


def xml8(ma_lk: str) -> dict[str, str]:
    return {"MA_LK": ma_lk, "MA_LOAI_KCB": "03", "NGAY_VAO": "202611200800", "NGAY_RA": "202611251000"}


def test_an_empty_xml1_main_code_is_taken_from_xml7_and_the_book_names_its_source(tmp_path):
    registry = tmp_path / "registry"
    write_registry(registry, seed=11, citizens=40)
    citizens = pq.read_table(registry).to_pandas()
    alive = citizens[citizens["death_date"].isna() & citizens["birth_date"].str.match(r"^\d{8}$")]
    alive = alive.drop_duplicates(["full_name", "birth_date"], keep=False)  # no twins
    first, second = alive.iloc[0].to_dict(), alive.iloc[1].to_dict()

    hosos = [
        {  # XML1 empty; XML7 MA_BENH_CHINH S72.00 (a fifth-character fracture code)
            "XML1": inner_xml("XML1", [xml1("LK7", first, "")]),
            "XML7": inner_xml("XML7", [xml7("LK7", "S72.00", "Gãy kín cổ xương đùi phải")]),
            "XML8": inner_xml("XML8", [xml8("LK7")]),
        },
        {  # XML1 empty and XML7 without a code: no main diagnosis the book could show
            "XML1": inner_xml("XML1", [xml1("LK8", second, "")]),
            "XML7": inner_xml("XML7", [xml7("LK8", "", "Theo dõi")]),
            "XML8": inner_xml("XML8", [xml8("LK8")]),
        },
    ]
    extracts = tmp_path / "extracts"
    night_dir = extracts / NIGHT.isoformat()
    night_dir.mkdir(parents=True)
    (night_dir / "BN_LK7.xml").write_bytes(envelope_bytes(FACILITY, "20261126", hosos))
    ctx = make_context(NIGHT, extracts, registry, tmp_path / "wh")
    run_night(ctx)

    outcomes = pd.read_parquet(ctx.warehouse.outcomes(NIGHT)).set_index("encounter_id")
    assert outcomes.loc["LK7", "outcome"] == "loaded", outcomes.to_dict("index")
    assert outcomes.loc["LK8", ["outcome", "reason"]].tolist() == ["quarantined", "missing_required_field"]

    book = books_for(ctx.serving_url, [first["citizen_id"]])[0]
    [visit] = book["encounters"]
    assert visit["encounter_id"] == "LK7"
    assert visit["main_diagnosis"] == {
        "icd10": "S72.00",
        "text": "Gãy kín cổ xương đùi phải",
        "source": "xml7",
        "name": None,  # S72.00 has no title in transforms/reference/icd10_vi.csv: none is invented
    }

    findings = pd.read_parquet(ctx.warehouse.quarantine("findings", NIGHT) / "quality.parquet")
    warned = findings[findings.check_id == "conformance.main_icd10_from_xml7"]
    assert warned[["encounter_id", "severity", "value"]].values.tolist() == [
        ["LK7", "warning", "XML1 MA_BENH_CHINH= -> XML7 S72.00"]
    ]
