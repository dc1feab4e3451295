"""The layout of the book's PDF documents: page frame (header, footer, stamp) and the writer of sections, fields and tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import segno
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from transforms.serving import book_names
from transforms.serving.pdf_text import (
    DATE_KEYS,
    FACILITY_TEXT_NOTE,
    FIELD_LABELS,
    FONT_FAMILY,
    FONT_FILES,
    NAMED_KEYS,
    ROW_LINES,
    SHORT_CELL,
    UNKNOWN_MARK,
    UNKNOWN_NOTE,
    VALUE_LABELS,
    date_vi,
    printable,
    shown_text,
)

# ---------------------------------------------------------------------------------------------
# layout


@dataclass(frozen=True)
class Stamp:
    """What makes a document verifiable: the issue time, the content digest and the signed token."""

    issued_at: dt.datetime  # UTC, to the minute
    digest: str
    token: str


class Document(FPDF):
    """An A4 page with the document's header (citizen and document) and footer ("Trang x/y")."""

    def __init__(self, header_left: str, header_right: str, footer_left: str):
        super().__init__(format="A4")
        self.header_left, self.header_right, self.footer_left = header_left, header_right, footer_left

    def header(self) -> None:
        self.set_font(FONT_FAMILY, "", 7.5)
        self.set_text_color(90, 90, 90)
        self.cell(self.epw / 2, 4, self.header_left)
        self.cell(self.epw / 2, 4, self.header_right, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(180, 180, 180)
        self.line(self.l_margin, self.get_y() + 0.5, self.w - self.r_margin, self.get_y() + 0.5)
        self.ln(3)
        self.set_text_color(0, 0, 0)
        self.set_font(FONT_FAMILY, "", 10)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT_FAMILY, "", 7.5)
        self.set_text_color(90, 90, 90)
        self.cell(self.epw - 30, 5, self.footer_left)
        self.cell(30, 5, f"Trang {self.page_no()}/{{nb}}", align="R")
        self.set_text_color(0, 0, 0)


class Writer:
    """Lays out labelled fields, tables and papers top to bottom; keeps the characters missing."""

    def __init__(self, citizen: Mapping[str, Any], title: str, stamp: Stamp | None):
        self.missing: set[str] = set()
        self.unknown_codes = False
        self.pending: list[tuple[str, str | None]] = []  # headings waiting for their first block
        self.stamp = stamp
        name = self.t(citizen.get("full_name")) or "—"
        footer = "Sổ sức khỏe điện tử"
        if stamp:
            footer = f"Cấp lúc {stamp.issued_at:%d/%m/%Y %H:%M} UTC · mã nội dung {stamp.digest[:16]}"
        pdf = Document(
            f"SỔ SỨC KHỎE ĐIỆN TỬ · {title}", f"{name} · {self.t(citizen.get('citizen_id'))}", footer
        )
        for style, path in FONT_FILES.items():
            pdf.add_font(FONT_FAMILY, style, str(path))
        pdf.set_font(FONT_FAMILY, size=10)
        pdf.set_auto_page_break(auto=True, margin=16)
        pdf.set_title(f"{title} – {citizen.get('citizen_id')}")
        pdf.set_creator("healthbook")
        pdf.set_producer("healthbook")
        if stamp:
            # the token travels in the file's metadata too: `healthbook verify` reads it there
            pdf.set_keywords(f"healthbook-token {stamp.token}")
        # a fixed creation date (the issue time, not the clock) keeps re-renders byte-identical
        pdf.set_creation_date(stamp.issued_at if stamp else dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        pdf.add_page()
        self.pdf = pdf

    def t(self, value: Any) -> str:
        return printable(shown_text(value), self.missing)

    # --- names of codes -----------------------------------------------------------------

    def _name_of(self, kind: str, code: Any, name: str | None) -> str | None:
        """The code's name (as given, else from the reference list); None marks the document as
        holding a code the list does not know."""
        name = name or book_names.name(kind, code)
        if not name:
            self.unknown_codes = True
        return name

    def coded(self, kind: str, code: Any, name: str | None = None) -> str | None:
        """ "Name (code)" from the reference list; a code not in it as sent, with the mark."""
        if code is None or code == "":
            return None
        name = self._name_of(kind, code, name)
        return f"{name} ({code})" if name else f"{code}{UNKNOWN_MARK}"

    def named_code(self, kind: str, code: Any, name: str | None, fallback: str | None = None) -> str | None:
        """ "code – name" (ICD-10 style); an unknown code marked, with the facility's text if any."""
        if code is None or code == "":
            return fallback
        name = self._name_of(kind, code, name)
        if name:
            return f"{code} – {name}"
        return (
            f"{code}{UNKNOWN_MARK} – {fallback} {FACILITY_TEXT_NOTE}" if fallback else f"{code}{UNKNOWN_MARK}"
        )

    def diagnosis(self, d: Mapping[str, Any] | None) -> str | None:
        if not d:
            return None
        return self.named_code("icd10", d.get("icd10"), d.get("name"), fallback=d.get("text"))

    # --- blocks -------------------------------------------------------------------------

    def title(self, subtitle: str) -> None:
        pdf = self.pdf
        qr_size = 30 if self.stamp else 0
        width = pdf.epw - (qr_size + 4 if qr_size else 0)
        top = pdf.get_y()
        pdf.set_font(FONT_FAMILY, "B", 15)
        pdf.cell(width, 9, "SỔ SỨC KHỎE ĐIỆN TỬ", align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(FONT_FAMILY, "", 11)
        pdf.cell(width, 7, subtitle, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if self.stamp:
            pdf.set_font(FONT_FAMILY, "", 7.5)
            pdf.multi_cell(
                width,
                3.8,
                f"Thời điểm cấp: {self.stamp.issued_at:%d/%m/%Y %H:%M} (UTC)\n"
                f"Mã nội dung (SHA-256): {self.stamp.digest}\n"
                "Kiểm tra tính xác thực: quét mã QR, hoặc `healthbook verify <tệp PDF>` "
                "đối chiếu với cơ sở dữ liệu phục vụ (chữ ký Ed25519).",
                align="L",
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
            self._qr(self.stamp.token, pdf.w - pdf.r_margin - qr_size, top, qr_size)
            pdf.set_y(max(pdf.get_y(), top + qr_size))
        pdf.set_font(FONT_FAMILY, "", 10)
        pdf.ln(1)

    def _qr(self, token: str, x: float, y: float, size: float) -> None:
        """The token as a QR code drawn in vector squares (no image: deterministic and sharp)."""
        # a fixed mask: segno otherwise scores all eight (a third of a second per document)
        matrix = segno.make(token, error="m", micro=False, mask=0).matrix
        n = len(matrix)
        quiet = 2
        cell = size / (n + 2 * quiet)
        self.pdf.set_fill_color(0, 0, 0)
        for r, row in enumerate(matrix):
            c = 0
            while c < n:
                if row[c]:
                    start = c
                    while c < n and row[c]:
                        c += 1
                    self.pdf.rect(
                        x + (quiet + start) * cell,
                        y + (quiet + r) * cell,
                        (c - start) * cell,
                        cell,
                        style="F",
                    )
                else:
                    c += 1

    def _room(self, needed: float) -> None:
        """Start a new page when less than `needed` mm remain (a heading never ends a page)."""
        if self.pdf.get_y() + needed > self.pdf.page_break_trigger:
            self.pdf.add_page()

    def heading(self, text: str) -> None:
        """A section heading, drawn with the block that follows it (`_flush`): a heading never
        stays alone at the foot of a page."""
        self.pending.append(("heading", text))

    def subheading(self, text: str | None) -> None:
        self.pending.append(("subheading", text))

    def _flush(self, needed: float) -> None:
        """Draw the pending headings, first starting a new page unless they and `needed` mm fit."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        self._room(sum(9 if kind == "heading" else 7 for kind, _ in pending) + max(needed, 12))
        for kind, text in pending:
            if kind == "heading":
                self.pdf.ln(2)
                self.pdf.set_font(FONT_FAMILY, "B", 11)
                self.pdf.set_fill_color(230, 236, 245)
                self.pdf.cell(0, 7, self.t(text), fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            else:
                self.pdf.ln(1)
                self.pdf.set_font(FONT_FAMILY, "B", 10)
                self.pdf.multi_cell(0, 6, self.t(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self.pdf.set_font(FONT_FAMILY, "", 10)

    def field(self, label: str, value: Any) -> None:
        """One "label: value" line; a value the source did not carry shows as "—", never invented."""
        shown = self.t(value) or "—"
        self._flush(12)
        self.pdf.set_font(FONT_FAMILY, "B", 10)
        self.pdf.cell(55, 6, self.t(label))
        self.pdf.set_font(FONT_FAMILY, "", 10)
        self.pdf.multi_cell(0, 6, shown, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def mark(self, text: str) -> None:
        self._flush(12)
        self.pdf.set_font(FONT_FAMILY, "B", 10)
        self.pdf.set_text_color(160, 30, 30)
        self.pdf.multi_cell(0, 6, self.t(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.pdf.set_text_color(0, 0, 0)
        self.pdf.set_font(FONT_FAMILY, "", 10)

    def note(self, text: str) -> None:
        self._grey(8, 4.5, text)

    def none(self, text: str = "Không có") -> None:
        self._grey(10, 6, text)

    def _grey(self, size: float, height: float, text: str) -> None:
        self._flush(12)
        self.pdf.set_font(FONT_FAMILY, "", size)
        self.pdf.set_text_color(100, 100, 100)
        self.pdf.multi_cell(0, height, self.t(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.pdf.set_text_color(0, 0, 0)
        self.pdf.set_font(FONT_FAMILY, "", 10)

    def rows(
        self, items: Iterable[Mapping[str, Any]] | None, columns: tuple[tuple[str, str, float], ...]
    ) -> None:
        """A table, one row per item, with (header, key, width mm; 0 = the rest) columns.

        A row taller than ROW_LINES lines is cut into pieces of at most ROW_LINES lines per cell,
        each its own table row, so a very long cell wraps and continues on the following page.
        """
        items = list(items or [])
        if not items:
            self.none()
            return
        pdf = self.pdf
        fixed = sum(w for _, _, w in columns)
        widths = [w or max(pdf.epw - fixed, 15) for _, _, w in columns]
        scale = pdf.epw / sum(widths)
        widths = [w * scale for w in widths]
        padding = 1
        pdf.set_font(FONT_FAMILY, "", 8)
        rows = [self._pieces(self._cells(item, columns), widths, padding) for item in items]
        # room for the header row (two lines at most) and the first piece of the first row
        first = rows[0][0]
        needed = 2 * 4 + 2 * padding + self._height(first, widths, padding)
        self._flush(needed)
        self._room(needed)
        with pdf.table(
            col_widths=widths, text_align="LEFT", line_height=4, padding=padding, first_row_as_headings=True
        ) as table:
            header = table.row()
            for label, _, _ in columns:
                header.cell(self.t(label))
            for pieces in rows:
                for piece in pieces:
                    row = table.row()
                    for text in piece:
                        row.cell(text)
        pdf.set_font(FONT_FAMILY, "", 10)

    def _cells(self, item: Mapping[str, Any], columns: tuple[tuple[str, str, float], ...]) -> list[str]:
        cells = []
        for _, key, _ in columns:
            value = item.get(key)
            if key in DATE_KEYS or key.endswith("_at"):
                value = date_vi(value)
            cells.append(self.t(value))
        return cells

    def _lines(self, text: str, width: float, padding: float) -> list[str]:
        if not text:
            return [""]
        return self.pdf.multi_cell(width - 2 * padding - 0.5, 4, text, dry_run=True, output="LINES")

    def _height(self, cells: list[str], widths: list[float], padding: float) -> float:
        tallest = max(len(self._lines(t, w, padding)) for t, w in zip(cells, widths, strict=True))
        return tallest * 4 + 2 * padding

    def _pieces(self, cells: list[str], widths: list[float], padding: float) -> list[list[str]]:
        if all(len(text) <= SHORT_CELL for text in cells):
            return [cells]  # too short to reach ROW_LINES in any column: no measuring
        lines = [self._lines(text, w, padding) for text, w in zip(cells, widths, strict=True)]
        tallest = max(len(x) for x in lines)
        if tallest <= ROW_LINES:
            return [cells]
        return [
            ["\n".join(x[start : start + ROW_LINES]) for x in lines] for start in range(0, tallest, ROW_LINES)
        ]

    def paper(self, paper: Mapping[str, Any] | None) -> None:
        """A nested paper (summary, discharge paper, referral, follow-up) as labelled fields."""
        # a paper lists what it carries: the keys the source left empty are not printed one "—"
        # line each (a discharge paper has 14 keys, most empty for most stays)
        shown = {k: v for k, v in (paper or {}).items() if v not in (None, "", [], {})}
        if not shown:
            self.none()
            return
        for key, value in shown.items():
            if key.endswith("_name") and key.removesuffix("_name") in NAMED_KEYS:
                continue  # printed beside its code
            if isinstance(value, list) and value and isinstance(value[0], Mapping):
                self.field(FIELD_LABELS.get(key, key), "")
                self.rows(value, tuple((k, k, 0) for k in value[0]))
                continue
            if key in VALUE_LABELS:
                value = VALUE_LABELS[key].get(value, value)
            elif key in NAMED_KEYS:
                kind = "department" if key == "department" else "facility"
                value = self.coded(kind, value, paper.get(f"{key}_name"))
            elif key in DATE_KEYS or key.endswith("_at"):
                value = date_vi(value)
            self.field(FIELD_LABELS.get(key, key), value)

    def closing(self) -> None:
        """The notes that end every document: the unknown-code mark (when used) and the reference
        versions the names came from."""
        self._flush(12)
        self._room(14)
        self.pdf.ln(3)
        if self.unknown_codes:
            self.note(UNKNOWN_NOTE)
        self.note(f"Tên theo danh mục tham chiếu: {book_names.versions_text()}.")
