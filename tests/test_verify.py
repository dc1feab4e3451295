"""`healthbook verify`: a genuine current document passes; a tampered, a superseded, or a wrongly
signed one fails, each with its own exit code. On SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter
from serving_fixtures import NIGHT1, NIGHT2, context, drug, outpatient, write_links, write_staged
from test_load_serving import night_one
from typer.testing import CliRunner

from transforms.load import stage as load
from transforms.orchestration.cli import app
from transforms.serving import signing
from transforms.serving.book import books_for
from transforms.serving.pdf import write_book_pdf, write_encounter_pdfs
from transforms.serving.pdf_text import FONT_FILES
from transforms.serving.verify import Verdict, token_of, verify_pdf, verify_token

AN = "079090001234"
ISSUED = dt.datetime(2026, 11, 28, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def signing_key_setting(monkeypatch):
    monkeypatch.setenv("HEALTHBOOK_SIGNING_KEY", "33" * 32)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served(request, tmp_path):
    """Night 1 loaded: An's outpatient visit LK1 (version 1). Returns (tmp_path, serving URL)."""
    url = (
        f"sqlite:///{tmp_path / 'warehouse' / 'serving.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    ctx = context(tmp_path, NIGHT1, url)
    night_one(ctx)
    load.load_night(ctx)
    return tmp_path, url


def issue(url, out):
    """The book document and the encounter PDF, as `book --pdf` writes them."""
    [book] = books_for(url, [AN])
    key = signing.signing_key()
    return write_book_pdf(book, out, issued_at=ISSUED, key=key), write_encounter_pdfs(
        book, out, issued_at=ISSUED, key=key
    )[0]


def resend_lk1(tmp_path, url):
    """Night 2: the facility re-sends LK1 as version 2 (another main diagnosis)."""
    ctx = context(tmp_path, NIGHT2, url)
    write_staged(ctx.warehouse, "encounters", NIGHT2, [outpatient("LK1", version=2, main_icd10="I11")])
    write_staged(ctx.warehouse, "drugs", NIGHT2, [drug("LK1", version=2)])
    write_links(
        ctx.warehouse, NIGHT2, [{"encounter_id": "LK1", "version": 2, "outcome": "match", "citizen_id": AN}]
    )
    load.load_night(ctx)


def overlay(path, out):
    """A forger's edit: white out the top of page 1 and write another name, keeping the token."""
    cover = FPDF(format="A4")
    cover.add_font("F", "", str(FONT_FILES[""]))
    cover.add_page()
    cover.set_fill_color(255, 255, 255)
    cover.rect(10, 60, 120, 12, style="F")
    cover.set_font("F", "", 10)
    cover.text(12, 66, "Họ và tên  Trần Văn Giả")
    reader = PdfReader(path)
    writer = PdfWriter(clone_from=reader)
    writer.pages[0].merge_page(PdfReader(io.BytesIO(bytes(cover.output()))).pages[0])
    writer.add_metadata(dict(reader.metadata))
    with open(out, "wb") as f:
        writer.write(f)
    return out


def test_a_genuine_document_passes(served):
    tmp_path, url = served
    book_pdf, encounter_pdf = issue(url, tmp_path / "pdf")
    key = signing.verify_key()
    for path in (book_pdf, encounter_pdf):
        result = verify_pdf(path, url, key)
        assert result.verdict == Verdict.GENUINE, result.message


def test_a_tampered_document_fails(served):
    tmp_path, url = served
    book_pdf, encounter_pdf = issue(url, tmp_path / "pdf")
    key = signing.verify_key()
    for path in (book_pdf, encounter_pdf):
        forged = overlay(path, tmp_path / f"forged-{path.name}")
        assert token_of(forged.read_bytes()) == token_of(path.read_bytes())  # the real token, kept
        assert verify_pdf(forged, url, key).verdict == Verdict.TAMPERED


def test_a_token_signed_with_another_key_or_edited_is_invalid(served):
    tmp_path, url = served
    _, encounter_pdf = issue(url, tmp_path / "pdf")
    other = signing.Ed25519PrivateKey.from_private_bytes(bytes.fromhex("44" * 32)).public_key()
    assert verify_pdf(encounter_pdf, url, other).verdict == Verdict.INVALID
    token = token_of(encounter_pdf.read_bytes())
    prefix, payload, signature = token.split(".")
    edited = f"{prefix}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"
    assert verify_token(edited, url, signing.verify_key())[0].verdict == Verdict.INVALID


def test_a_superseded_document_fails_and_the_new_one_passes(served):
    tmp_path, url = served
    old_book, old_encounter = issue(url, tmp_path / "old")
    resend_lk1(tmp_path, url)
    key = signing.verify_key()
    result = verify_pdf(old_encounter, url, key)
    assert result.verdict == Verdict.SUPERSEDED and "current version is 2" in result.message
    assert verify_pdf(old_book, url, key).verdict == Verdict.SUPERSEDED  # the book changed with LK1
    new_book, new_encounter = issue(url, tmp_path / "new")
    assert verify_pdf(new_book, url, key).verdict == Verdict.GENUINE
    assert verify_pdf(new_encounter, url, key).verdict == Verdict.GENUINE


def test_the_verify_command_exit_codes(served):
    tmp_path, url = served
    book_pdf, encounter_pdf = issue(url, tmp_path / "pdf")
    forged = overlay(encounter_pdf, tmp_path / "forged.pdf")
    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, ["verify", *args, "--serving-url", url])

    genuine = run(str(book_pdf))
    assert genuine.exit_code == 0 and genuine.output.startswith("GENUINE"), genuine.output
    assert run(str(forged)).exit_code == 4
    token = token_of(encounter_pdf.read_bytes())
    assert run("--token", token).exit_code == 0  # what an office scanning the QR code checks
    not_a_document = tmp_path / "plain.pdf"
    not_a_document.write_bytes(b"%PDF-1.4 nothing")
    assert run(str(not_a_document)).exit_code == 5
    resend_lk1(tmp_path, url)
    assert run(str(encounter_pdf)).exit_code == 3
