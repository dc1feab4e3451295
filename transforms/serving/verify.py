"""`healthbook verify`: is a book document genuine, and is it still current?

Trust model (README "Verifying a printed book"): the token in the document (its QR code, and the
PDF metadata) is signed with the healthbook Ed25519 key; only the holder of that key can issue a
token. The token names the document (citizen; encounter and version), its issue time and the
SHA-256 digest of the content it shows. Verification

1. reads the token from the file and checks its signature with the public key (else INVALID);
2. reads the same content from the serving database now and compares digests: a different digest
   means the record has changed since issue (SUPERSEDED: a newer version exists), a citizen or
   encounter no longer served is NOT_FOUND;
3. re-renders the document from that content with the token's issue time and compares the file
   byte for byte: any difference (an edited name, a removed line) is TAMPERED.
"""

from __future__ import annotations

import enum
import io
from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfReader

from transforms.serving import signing
from transforms.serving.book import books_for
from transforms.serving.pdf import document_content, issued_at_of, render_book, render_encounter

TOKEN_KEYWORD = "healthbook-token "


class Verdict(enum.IntEnum):
    """The outcome, and the exit code of `healthbook verify` (README "Verifying a printed book")."""

    GENUINE = 0  # genuine and current
    SUPERSEDED = 3  # genuine when issued, but the record has changed since (a newer version)
    TAMPERED = 4  # the file differs from what the signed token vouches for
    INVALID = 5  # no token, a malformed token, or a signature that does not verify
    NOT_FOUND = 6  # the citizen or encounter is no longer in the serving database


@dataclass(frozen=True)
class Result:
    verdict: Verdict
    message: str
    payload: dict | None = None


def token_of(pdf_bytes: bytes) -> str | None:
    """The token a healthbook document carries in its metadata (None when there is none)."""
    try:
        keywords = PdfReader(io.BytesIO(pdf_bytes)).metadata
    except Exception:  # not a readable PDF at all
        return None
    text = str((keywords or {}).get("/Keywords") or "")
    return text[len(TOKEN_KEYWORD) :].strip() if text.startswith(TOKEN_KEYWORD) else None


def verify_token(token: str, serving_url: str, public_key) -> tuple[Result, dict | None, dict | None]:
    """Steps 1-2 (signature, currency) for a token alone, as an office scanning the QR code does.
    Returns the result and, when current, the book and encounter the document shows."""
    try:
        opened = signing.open_token(token, public_key)
    except signing.InvalidToken as e:
        return Result(Verdict.INVALID, str(e)), None, None
    p = opened.payload
    kind, citizen_id = p.get("t"), p.get("c")
    if (
        kind not in ("book", "encounter")
        or not isinstance(citizen_id, str)
        or not isinstance(p.get("d"), str)
    ):
        return Result(Verdict.INVALID, "the signed token does not name a healthbook document", p), None, None
    [book] = books_for(serving_url, [citizen_id])
    if not book.get("found"):
        return (
            Result(Verdict.NOT_FOUND, f"citizen {citizen_id} has no book in the serving database", p),
            None,
            None,
        )
    encounter = None
    if kind == "encounter":
        facility, encounter_id, version = (p.get("e") or [None, None, None])[:3]
        encounter = next(
            (
                e
                for e in book.get("encounters") or []
                if e.get("facility_code") == facility and e.get("encounter_id") == encounter_id
            ),
            None,
        )
        if encounter is None:
            return (
                Result(Verdict.NOT_FOUND, f"encounter {facility}/{encounter_id} is no longer in the book", p),
                None,
                None,
            )
        if encounter.get("version") != version:
            return (
                Result(
                    Verdict.SUPERSEDED,
                    f"superseded: this is version {version} of encounter {facility}/{encounter_id}; "
                    f"the current version is {encounter.get('version')}",
                    p,
                ),
                None,
                None,
            )
    if signing.content_digest(document_content(kind, book, encounter)) != p["d"]:
        return (
            Result(
                Verdict.SUPERSEDED,
                f"superseded: the {'book' if kind == 'book' else 'record'} has changed since it was issued "
                f"at {p.get('i')}; ask for a new copy",
                p,
            ),
            None,
            None,
        )
    return Result(Verdict.GENUINE, f"genuine and current (issued {p.get('i')})", p), book, encounter


def verify_pdf(path: Path, serving_url: str, public_key) -> Result:
    """All three steps for a document file."""
    data = Path(path).read_bytes()
    token = token_of(data)
    if token is None:
        return Result(Verdict.INVALID, "the file carries no healthbook verification token")
    result, book, encounter = verify_token(token, serving_url, public_key)
    if result.verdict != Verdict.GENUINE:
        return result
    from transforms.serving.pdf_layout import Stamp

    p = result.payload
    stamp = Stamp(issued_at_of(p), p["d"], token)
    if p["t"] == "book":
        pdf, _ = render_book(book, stamp)
    else:
        pdf, _ = render_encounter(book.get("citizen") or {}, encounter, stamp)
    if bytes(pdf.output()) != data:
        return Result(
            Verdict.TAMPERED,
            "tampered: the file's content differs from the document the signed token vouches for",
            p,
        )
    return result
