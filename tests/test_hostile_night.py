"""Issue #16: a hostile night through the real `healthbook run` on PostgreSQL.

One generated night (2 facilities, 40 encounters) gets, beside its own files:
  - envelopes whose MACSKCB would name a path (`../../../../tmp/x`, `x/../facility_code=<F>`,
    an earlier night's partition, 250 characters, `a=b`, `a/b`) or uses fullwidth digits;
  - an envelope under one facility's folder claiming another facility, and a signed one;
  - symlinks leaving the night's folder (/etc/passwd, /proc/self/environ, an envelope of another
    folder, a FIFO that records whether anyone opened it);
  - a FHIR file of hostile lines (nesting 1,000 deep, 30-digit integers, a lone surrogate, a NUL,
    duplicate keys, a boolean id...) between good lines;
  - CAN_NANG=1e999 in one loadable encounter.
The night must complete (exit 0), its ledger balance, every hostile file or line be listed with
its reason, and the rest load. The run happens once per module; each test checks one item.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from lxml import etree
from reliability.helpers import NightRun, assert_ok, create_database, drop_database, run_environment
from test_extract import make_envelope, simple_hoso

from transforms.core import parquet_io
from transforms.core.reasons import FHIR_REASONS
from transforms.core.warehouse import Warehouse
from transforms.orchestration import ledger as ledger_mod

NIGHT = dt.date(2026, 11, 26)
EARLIER = dt.date(2026, 11, 25)
CANARY = "canary-7f3a-not-for-quarantine"  # in the environment of the run: must never be stored

# MACSKCB values of issue #16 item 1 (the `{F}` is a facility of the generated night)
BAD_CODES = {
    "traversal_tmp.xml": "../../../../tmp/x",
    "traversal_sibling.xml": "x/../facility_code={F}",
    "traversal_earlier.xml": f"x/../../night={EARLIER.isoformat()}/facility_code=01704",
    "long_code.xml": "7" * 250,
    "equals.xml": "a=b",
    "slash.xml": "a/b",
    "fullwidth.xml": "０１７０４",  # noqa: RUF001 - the lookalike digits are the point
}


def _deep(n: int) -> str:
    return "[" * n + "]" * n


def _fhir_lines(good: dict, citizen: str) -> dict[str, tuple[bytes, str | None]]:
    """name -> (line, expected quarantine reason or None when it loads / is skipped)."""

    def variant(**changes) -> dict:
        return {**json.loads(json.dumps(good)), **changes}

    def dumps(obj) -> bytes:
        return json.dumps(obj, ensure_ascii=True).encode()

    dose_30 = dumps(variant(id="h-int30", protocolApplied=[{"doseNumberPositiveInt": 1}])).replace(
        b'"doseNumberPositiveInt": 1', b'"doseNumberPositiveInt": 123456789012345678901234567890'
    )
    duplicate = dumps(variant(id="h-dup")).replace(b'"id": "h-dup"', b'"id": "h-dup", "id": "h-dup2"')
    return {
        "good_first": (dumps(variant(id="h-good-1")), None),
        "deep": (
            b'{"resourceType": "Immunization", "id": "h-deep", "extension": ' + _deep(1000).encode() + b"}",
            "json_too_deep",
        ),
        "int30": (dose_30, "number_out_of_range"),
        "str25": (
            dumps(variant(id="h-str25", protocolApplied=[{"doseNumberPositiveInt": "1" * 25}])),
            "number_out_of_range",
        ),
        "surrogate": (dumps(variant(id="h-sur", lotNumber="\ud800")), "text_invalid"),
        "nul": (dumps(variant(id="h-nul", lotNumber="L\x00T")), "text_invalid"),
        "duplicate_key": (duplicate, "json_duplicate_key"),
        "bool_id": (dumps(variant(id=True)), "type_invalid"),
        "number_id": (dumps(variant(id=12345)), "type_invalid"),
        "number_citizen": (
            dumps(
                variant(
                    id="h-numcit", patient={"identifier": {"system": "urn:vn:cccd", "value": int(citizen)}}
                )
            ),
            "type_invalid",
        ),
        "nan": (
            dumps(variant(id="h-nan")).replace(b'"lotNumber": ', b'"x": NaN, "lotNumber": '),
            "json_invalid",
        ),
        "garbage": (b"\x1b[31m" + b"\x00\x01 not json " * 700, "json_invalid"),
        "too_large": (
            b'{"resourceType": "Immunization", "pad": "' + b"x" * (2 << 20) + b'"}',
            "line_too_large",
        ),
        "skipped": (b'{"resourceType": "Patient", "id": "p-1"}', None),
        "good_last": (dumps(variant(id="h-good-2")), None),
    }


def _set_weight(envelope: Path, hoso_index: int, weight: str) -> None:
    """Rewrite CAN_NANG of one HOSO's XML1 inside a generated envelope (our own, trusted file)."""
    tree = etree.parse(str(envelope))
    hoso = tree.findall(".//HOSO")[hoso_index]
    for fh in hoso.findall("FILEHOSO"):
        if fh.findtext("LOAIHOSO") == "XML1":
            node = fh.find("NOIDUNGFILE")
            inner = base64.b64decode(node.text).decode("utf-8")
            inner, n = re.subn(
                r"<CAN_NANG>[^<]*</CAN_NANG>|<CAN_NANG\s*/>", f"<CAN_NANG>{weight}</CAN_NANG>", inner
            )
            assert n == 1
            node.text = base64.b64encode(inner.encode("utf-8")).decode("ascii")
    tree.write(str(envelope), xml_declaration=True, encoding="utf-8")


def _fifo_watch(path: Path) -> dict:
    """A FIFO whose opening for reading is recorded: a thread blocks opening it for writing until
    a reader opens it (then writes a line, so that a reader is never stuck)."""
    os.mkfifo(path)
    state = {"opened": False}

    def writer() -> None:
        with open(path, "wb") as f:  # blocks until someone opens the FIFO to read it
            state["opened"] = True
            f.write(b"read\n")

    state["thread"] = threading.Thread(target=writer, daemon=True)
    state["thread"].start()
    return state


def _release_fifo(path: Path, state: dict) -> None:
    if state["thread"].is_alive():
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer's open return
        state["thread"].join(timeout=10)
        os.close(fd)


def _files_outside(root: Path, warehouse: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if not p.is_relative_to(warehouse)}


@pytest.fixture(scope="module")
def hostile(clean_night, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_night")
    source = _copy(clean_night, root / "source")  # the clean night, generated once for the module
    night_dir = source / "extracts" / NIGHT.isoformat()
    truth = pd.read_parquet(source / "truth" / "encounters.parquet")
    facilities = sorted(truth["facility_code"].unique())
    F, G = facilities[0], facilities[1]

    # item 1: malformed facility codes, directly in the night's folder (no facility folder)
    for i, (name, code) in enumerate(BAD_CODES.items()):
        (night_dir / name).write_bytes(
            make_envelope([simple_hoso(f"HOSTILE-{i}")], facility=code.format(F=F))
        )
    # item 7: facility G's file in facility F's folder; a signed file of F in F's folder
    province = next(night_dir.glob(f"*/{F}")).parent.name
    (night_dir / province / F / "mismatch.xml").write_bytes(
        make_envelope([simple_hoso("MISMATCH-1")], facility=G)
    )
    signed = make_envelope([simple_hoso("SIGNED-1")], facility=F).replace(
        b"<CHUKYDONVI/>",
        b"<CHUKYDONVI><Signature><SignatureValue>c2ln</SignatureValue></Signature></CHUKYDONVI>",
    )
    (night_dir / province / F / "signed.xml").write_bytes(signed)
    # item 8: CAN_NANG=1e999 in the first plain loaded encounter
    plain = truth[
        (truth["expected_outcome"] == "load")
        & (truth["version"] == 1)
        & ~truth["is_superseded"]
        & truth["defects"].map(len).eq(0)
        & truth["identity_noise"].map(len).eq(0)
    ].iloc[0]
    _set_weight(night_dir / plain["source_file"], int(plain["hoso_index"]), "1e999")
    # item 3: symlinks that leave the night's folder
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "other.xml").write_bytes(make_envelope([simple_hoso("OUTSIDE-1")], facility=F))
    fifo = elsewhere / "pipe"
    fifo_state = _fifo_watch(fifo)
    links = {
        "fhir/environ.ndjson": Path("/proc/self/environ"),
        "fhir/passwd.ndjson": Path("/etc/passwd"),
        "fhir/pipe.ndjson": fifo,
        "passwd.xml": Path("/etc/passwd"),
        "outside.xml": elsewhere / "other.xml",
        "pipe.xml": fifo,
    }
    for name, target in links.items():
        (night_dir / name).symlink_to(target)
    # items 2, 9, 12: hostile FHIR lines between good ones
    good = json.loads((night_dir / "fhir" / "Immunization-0001.ndjson").read_text().splitlines()[0])
    citizen = good["patient"]["identifier"]["value"]
    lines = _fhir_lines(good, citizen)
    (night_dir / "fhir" / "hostile.ndjson").write_bytes(
        b"\n".join(line for line, _ in lines.values()) + b"\n"
    )

    # an earlier night's partition of facility 01704 and tonight's of F must not be touched
    warehouse = root / "warehouse"
    earlier = warehouse / "staging" / "encounters" / f"night={EARLIER.isoformat()}" / "facility_code=01704"
    earlier.mkdir(parents=True)
    pq.write_table(pa.table({"encounter_id": ["E1"]}), earlier / "part-0.parquet")
    earlier_digest = hashlib.sha256((earlier / "part-0.parquet").read_bytes()).hexdigest()
    outside_before = _files_outside(root, warehouse)
    tmp_x_before = Path("/tmp/x").exists()

    url = create_database()
    os.environ[f"HB_{CANARY.replace('-', '_').upper()}"] = CANARY  # inherited by the run
    try:
        result = NightRun(source, warehouse, url).run()
        book_ids = [plain["citizen_id"]]
        book = subprocess.run(
            [
                sys.executable,
                "-m",
                "transforms.orchestration.cli",
                "book",
                "--serving-url",
                url,
                "--citizen",
                *book_ids,
            ],
            cwd=Path(__file__).parents[1],
            env=run_environment(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        imm_ids: set[str] = set()
        if result.returncode == 0:  # else every test fails on assert_ok, with the run's message
            engine = sa.create_engine(url)
            with engine.connect() as conn:
                imm_ids = set(conn.execute(sa.text("select resource_id from immunizations")).scalars())
            engine.dispose()
        fifo_opened = fifo_state["opened"]  # before _release_fifo opens it itself
    finally:
        os.environ.pop(f"HB_{CANARY.replace('-', '_').upper()}", None)
        _release_fifo(fifo, fifo_state)
        drop_database(url)
    yield {
        "result": result,
        "warehouse": warehouse,
        "root": root,
        "night_dir": night_dir,
        "truth": truth,
        "F": F,
        "G": G,
        "province": province,
        "earlier": earlier / "part-0.parquet",
        "earlier_digest": earlier_digest,
        "outside_before": outside_before,
        "tmp_x_before": tmp_x_before,
        "fifo_opened": fifo_opened,
        "lines": lines,
        "plain": plain,
        "book": book,
        "immunizations": imm_ids,
    }


def _ledger(h) -> dict:
    assert_ok(h["result"])
    return json.loads((h["warehouse"] / "runs" / NIGHT.isoformat() / "ledger.json").read_text())


def _rejected(h) -> dict[str, dict]:
    return {r["file"]: r for r in _ledger(h)["files"]["rejected"]}


def test_malformed_facility_codes_are_rejected_and_write_nothing_outside_their_partition(hostile):
    h = hostile
    ledger = _ledger(h)  # the night completed (exit 0)
    assert ledger_mod.imbalances(ledger) == []
    rejected = _rejected(h)
    for name in BAD_CODES:
        assert rejected[name]["reason"] == "facility_code_invalid", name
    # nothing new outside the warehouse; no /tmp/x; the earlier night's partition unchanged
    assert _files_outside(h["root"], h["warehouse"]) == h["outside_before"]
    assert Path("/tmp/x").exists() == h["tmp_x_before"]
    assert hashlib.sha256(h["earlier"].read_bytes()).hexdigest() == h["earlier_digest"]
    # every staged facility partition is a 5-digit code; the hostile HOSOs are nowhere
    staging = h["warehouse"] / "staging"
    partitions = {p.name for p in staging.glob("*/night=*/*") if p.is_dir()}
    assert partitions and all(re.fullmatch(r"facility_code=[0-9]{5}", p) for p in partitions), partitions
    # facility F's partition holds F's generated HOSOs and nothing of `x/../facility_code=F`
    staged = pq.read_table(staging / "encounters" / f"night={NIGHT.isoformat()}" / f"facility_code={h['F']}")
    truth_f = h["truth"][h["truth"]["facility_code"] == h["F"]]
    # (and signed.xml, a valid file of F added beside them)
    assert sorted(staged.column("encounter_id").to_pylist()) == sorted([*truth_f["encounter_id"], "SIGNED-1"])
    # the ledger names no facility after a hostile code: rejected files count under "unknown"
    assert all(re.fullmatch(r"[0-9]{5}|unknown", code) for code in ledger["facilities"]), ledger["facilities"]
    # 7 bad codes + mismatch.xml + 3 symlinks (passwd.xml, outside.xml, pipe.xml): no valid header
    assert ledger["facilities"]["unknown"]["files"] == len(BAD_CODES) + 1 + 3
    # the snapshot was built (a=b used to fail it)
    assert (h["warehouse"] / "snapshots" / f"{NIGHT.isoformat()}.duckdb").exists()


def test_a_file_claiming_another_facility_than_its_folder_is_rejected(hostile):
    h = hostile
    rejected = _rejected(h)
    folder = f"{h['province']}/{h['F']}"
    assert rejected[f"{folder}/mismatch.xml"]["reason"] == "facility_mismatch"
    assert rejected["fullwidth.xml"]["reason"] == "facility_code_invalid"
    # the generated files, each in its own facility's folder, all pass the check
    assert not [f for f in rejected if f.startswith(folder) and f.endswith(".xml") and "_2026" in f]
    ledger = _ledger(h)
    assert ledger["facilities"][h["G"]]["received"] == int((h["truth"]["facility_code"] == h["G"]).sum())


def test_signature_presence_is_recorded_per_received_file(hostile):
    h = hostile
    manifest = json.loads((h["warehouse"] / "runs" / NIGHT.isoformat() / "ingest.json").read_text())
    # one row per accepted envelope in a Parquet file beside the manifest, which names it
    received = pq.read_table(h["warehouse"] / manifest["received_files"]).to_pylist()
    assert manifest["received_files"] == f"runs/{NIGHT.isoformat()}/received_files.parquet"
    signed = {f["file"]: f["signed"] for f in received}
    assert len(signed) == len(received) == manifest["totals"]["files"] - manifest["totals"]["files_rejected"]
    folder = f"{h['province']}/{h['F']}"
    assert signed[f"{folder}/signed.xml"] is True
    generated = [f for f in signed if f != f"{folder}/signed.xml"]  # the generator's own files
    assert generated and not any(
        signed[f] for f in generated
    )  # the generator writes <CHUKYDONVI></CHUKYDONVI>
    assert manifest["facilities"][h["F"]]["files_signed"] == 1


def test_symlinks_leaving_the_night_are_rejected_and_never_read(hostile):
    h = hostile
    rejected = _rejected(h)
    for name in (
        "fhir/environ.ndjson",
        "fhir/passwd.ndjson",
        "fhir/pipe.ndjson",
        "passwd.xml",
        "outside.xml",
        "pipe.xml",
    ):
        assert rejected[name]["reason"] == "symlink_outside_night", name
    assert h["fifo_opened"] is False  # the FIFO behind two links was never opened
    # nothing of /etc/passwd, the environment or the other folder's envelope got in anywhere
    for path in h["warehouse"].rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert CANARY.encode() not in data, path
            assert b"root:x:0:0" not in data, path
    staged = parquet_io.read_staged_table(Warehouse(h["warehouse"]), "encounters", NIGHT)
    assert "OUTSIDE-1" not in staged.column("encounter_id").to_pylist()


def test_hostile_fhir_lines_are_quarantined_with_a_reason_and_the_rest_loads_on_postgresql(hostile):
    h = hostile
    ledger = _ledger(h)
    quarantine = pq.read_table(
        h["warehouse"] / "quarantine" / "fhir" / f"night={NIGHT.isoformat()}"
    ).to_pylist()
    names = list(h["lines"])
    got = {
        names[r["line_number"] - 1]: r["reason"]
        for r in quarantine
        if r["source_file"] == "fhir/hostile.ndjson"
    }
    expected = {name: reason for name, (_, reason) in h["lines"].items() if reason}
    assert got == expected
    assert set(got.values()) <= set(FHIR_REASONS)
    # the good lines around them loaded into PostgreSQL (a NUL used to fail the COPY)
    assert {"h-good-1", "h-good-2"} <= h["immunizations"]
    assert not {"h-nul", "h-sur", "h-int30", "h-str25", "h-dup", "h-numcit"} & h["immunizations"]
    assert ledger["fhir"]["Patient"]["skipped"] >= 1


def test_the_fhir_ledger_counts_every_line_and_balances(hostile):
    ledger = _ledger(hostile)
    fhir = ledger["fhir"]
    for kind, f in fhir.items():
        assert f["received"] == f["loaded"] + sum(f["quarantined"].values()) + f["skipped"], kind
    # lines that are no FHIR resource (json_invalid, line_too_large...) are under "unknown":
    # of the hostile file, deep + duplicate_key + nan + garbage + too_large = 5
    unknown = fhir["unknown"]["quarantined"]
    assert unknown["json_too_deep"] == 1 and unknown["json_duplicate_key"] == 1
    assert unknown["line_too_large"] == 1 and unknown["json_invalid"] >= 2
    assert fhir["Patient"]["skipped"] >= 1 and fhir["Patient"]["loaded"] == 0
    # type_invalid: bool id, number id, number citizen id = 3; number_out_of_range 2; text_invalid 2
    imm = fhir["Immunization"]["quarantined"]
    assert (imm["type_invalid"], imm["number_out_of_range"], imm["text_invalid"]) == (3, 2, 2)


def test_quarantine_keeps_a_bounded_printable_excerpt_and_a_hash(hostile):
    h = hostile
    quarantine = pq.read_table(
        h["warehouse"] / "quarantine" / "fhir" / f"night={NIGHT.isoformat()}"
    ).to_pylist()
    by_line = {r["line_number"]: r for r in quarantine if r["source_file"] == "fhir/hostile.ndjson"}
    names = list(h["lines"])
    garbage = by_line[names.index("garbage") + 1]
    raw = h["lines"]["garbage"][0]
    assert len(garbage["line"]) <= 201 and garbage["line"].isprintable()  # 200 characters + "…"
    assert garbage["line"].startswith("\\x1b[31m\\x00\\x01 not json")
    assert garbage["line_sha256"] == hashlib.sha256(raw).hexdigest()
    assert garbage["line_bytes"] == len(raw)
    too_large = by_line[names.index("too_large") + 1]
    assert too_large["line"] is None and too_large["line_bytes"] == len(h["lines"]["too_large"][0])


def test_an_infinite_weight_is_null_with_a_warning_and_the_book_is_strict_json(hostile):
    h = hostile
    _ledger(h)
    staged = parquet_io.read_staged_table(Warehouse(h["warehouse"]), "encounters", NIGHT).to_pandas()
    row = staged[staged["encounter_id"] == h["plain"]["encounter_id"]].iloc[0]
    assert pd.isna(row["weight_kg"]) and "non_finite:weight_kg" in list(row["row_warnings"])
    assert h["book"].returncode == 0, h["book"].stderr[-3000:]

    def refuse(name):
        raise AssertionError(f"{name} in the book JSON")

    book = json.loads(h["book"].stdout.splitlines()[0], parse_constant=refuse)
    encounter = next(e for e in book["encounters"] if e["encounter_id"] == h["plain"]["encounter_id"])
    assert encounter["indicators"]["weight_kg"] is None


# --- one defect per night: each of these fails on b747057 for its own reason --------------------


@pytest.fixture(scope="module")
def clean_night(tmp_path_factory) -> Path:
    from transforms.synth.generate import generate_night

    out = tmp_path_factory.mktemp("clean_night")
    generate_night(out, NIGHT, facilities=2, encounters=40, citizens=400, seed=11)
    return out


def _copy(clean: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(clean, to)
    return to


def test_a_nul_in_a_fhir_string_is_quarantined_before_the_postgresql_copy(clean_night, tmp_path, pg_url):
    # b747057 staged the line and the load's COPY failed ("invalid byte sequence ... 0x00"): exit 1
    source = _copy(clean_night, tmp_path / "source")
    fhir_dir = source / "extracts" / NIGHT.isoformat() / "fhir"
    good = json.loads((fhir_dir / "Immunization-0001.ndjson").read_text().splitlines()[0])
    nul = json.dumps({**good, "id": "h-nul", "lotNumber": "L\x00T"}).encode()
    (fhir_dir / "nul.ndjson").write_bytes(nul + b"\n" + json.dumps({**good, "id": "h-ok"}).encode() + b"\n")
    run = NightRun(source, tmp_path / "warehouse", pg_url)
    assert_ok(run.run())
    ledger = run.ledger()
    assert ledger_mod.imbalances(ledger) == []
    assert ledger["fhir"]["Immunization"]["quarantined"]["text_invalid"] == 1
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        ids = set(conn.execute(sa.text("select resource_id from immunizations")).scalars())
    engine.dispose()
    assert "h-ok" in ids and "h-nul" not in ids


def test_invalid_lines_and_skipped_types_are_in_the_fhir_ledger_and_the_book_has_no_infinity(
    clean_night, tmp_path
):
    # b747057: the ledger's fhir held Immunization and AllergyIntolerance only, and book printed
    # "weight_kg": Infinity for CAN_NANG=1e999
    source = _copy(clean_night, tmp_path / "source")
    night_dir = source / "extracts" / NIGHT.isoformat()
    (night_dir / "fhir" / "odd.ndjson").write_bytes(
        b'{"resourceType": "Flag", "id": "f1"}\n{"resourceType": "Flag", "id": "f2"}\n{oops\n'
    )
    truth = pd.read_parquet(source / "truth" / "encounters.parquet")
    plain = truth[
        (truth["expected_outcome"] == "load")
        & (truth["version"] == 1)
        & ~truth["is_superseded"]
        & truth["defects"].map(len).eq(0)
        & truth["identity_noise"].map(len).eq(0)
    ].iloc[0]
    _set_weight(night_dir / plain["source_file"], int(plain["hoso_index"]), "1e999")
    serving = f"sqlite:///{tmp_path / 'serving.db'}"
    run = NightRun(source, tmp_path / "warehouse", serving)
    assert_ok(run.run())
    fhir = run.ledger()["fhir"]
    # odd.ndjson: 2 Flag lines skipped (the generator writes none), 1 line that is no JSON
    assert fhir["Flag"] == {"received": 2, "loaded": 0, "quarantined": {}, "skipped": 2}
    assert fhir["unknown"]["quarantined"].get("json_invalid", 0) >= 1
    for kind, f in fhir.items():
        assert f["received"] == f["loaded"] + sum(f["quarantined"].values()) + f["skipped"], kind
    book = subprocess.run(
        [
            sys.executable,
            "-m",
            "transforms.orchestration.cli",
            "book",
            "--serving-url",
            serving,
            "--citizen",
            plain["citizen_id"],
        ],
        cwd=Path(__file__).parents[1],
        env=run_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert book.returncode == 0, book.stderr[-3000:]
    assert "Infinity" not in book.stdout and "NaN" not in book.stdout
    encounter = next(
        e
        for e in json.loads(book.stdout.splitlines()[0])["encounters"]
        if e["encounter_id"] == plain["encounter_id"]
    )
    assert encounter["indicators"]["weight_kg"] is None
