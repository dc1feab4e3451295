"""Inner tables of a HOSO: each FILEHOSO's base64 payload decoded, its XML read (a malformed
namespace repaired) and its cells read off libxml2's tree in C (`transforms.ingest._cells`)."""

from __future__ import annotations

import binascii
import codecs
import hashlib
import re
from dataclasses import dataclass, field

import pybase64
from lxml import etree

from transforms.core import schema
from transforms.ingest._cells import Cells, Layout
from transforms.ingest.extract import (
    _DECL_ENCODING,
    _INNER_PARSER,
    _NS_DECL,
    _PREFIXED_ATTR,
    _PREFIXED_TAG,
    _UTF8_BOM,
    _UTF8_NAMES,
    _XML_DECL,
    DEFAULT_LIMITS,
    Hoso,
    ReadLimits,
)


class InnerXmlError(Exception):
    """A decoded inner table that cannot be read (the encounter gets `inner_xml_malformed`)."""


def decode_base64(payload: str) -> bytes | None:
    """The bytes of a NOIDUNGFILE payload, or None when it is not valid base64.

    Whitespace and line breaks inside the payload are tolerated (common in exports); any other
    character outside the base64 alphabet, or bad padding, makes it invalid.
    """
    # pybase64 (SIMD) first: it accepts a subset of what the stdlib's strict mode accepts (it also
    # refuses excess padding) and gives the same bytes where both accept (tests/test_extract.py),
    # so the stdlib below still decides every payload it refuses: same answers, ~9x faster.
    try:
        return pybase64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        pass
    # binascii directly: base64.b64decode(validate=True) is this call after copying the text to
    # bytes (a non-ASCII character raises ValueError either way)
    try:
        return binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return binascii.a2b_base64("".join(payload.split()), strict_mode=True)
    except (binascii.Error, ValueError):
        return None


# The few declarations already seen to name UTF-8 (nearly every inner table repeats one), so that
# the encoding is not re-read from each of them; bounded, since declarations come from outside.
_UTF8_DECLS: set[bytes] = set()


def _as_utf8(data: bytes) -> bytes:
    """The inner document as UTF-8 bytes without a non-UTF-8 declaration (decoded correctly)."""
    data = data.lstrip(b" \t\r\n")
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :].lstrip(b" \t\r\n")
    elif (
        data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        or data[1:2] == b"\x00"
        or data[:1] == b"\x00"
    ):
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            codec = "utf-16"
        else:
            codec = "utf-16-le" if data[1:2] == b"\x00" else "utf-16-be"
        try:
            text = data.decode(codec)
        except UnicodeDecodeError as e:
            raise InnerXmlError(f"undecodable {codec}") from e
        return _strip_decl(text.lstrip("\ufeff").encode("utf-8"))
    decl = _XML_DECL.match(data)
    if decl and decl.group(0) not in _UTF8_DECLS:
        enc = _DECL_ENCODING.search(decl.group(0))
        name = enc.group(1).decode("ascii", "replace").strip().lower() if enc else "utf-8"
        if name in _UTF8_NAMES and len(_UTF8_DECLS) < 64:
            _UTF8_DECLS.add(decl.group(0))
        elif name not in _UTF8_NAMES:
            try:
                text = data[decl.end() :].decode(codecs.lookup(name).name)
            except (LookupError, UnicodeDecodeError) as e:
                raise InnerXmlError(f"encoding {name[:40]!r} unsupported or wrong") from e
            return text.encode("utf-8")
    return data


def _strip_decl(data: bytes) -> bytes:
    decl = _XML_DECL.match(data.lstrip())
    return data.lstrip()[decl.end() :] if decl else data


def _strip_all(data: bytes) -> bytes:
    return _PREFIXED_TAG.sub(rb"<\1", _PREFIXED_ATTR.sub(b"", _NS_DECL.sub(b"", data)))


# A plain root start tag: attribute values without quotes, "<", ">" or "=" inside them.
_PLAIN_ROOT = re.compile(
    rb"""\s*<[A-Za-z_][\w.:-]*(?:\s+[A-Za-z_][\w.:-]*\s*=\s*(?:"[^"'<>=]*"|'[^"'<>=]*'))*\s*/?>"""
)
_VALUE_NAMING_XMLNS = re.compile(rb"""=\s*["'][^"']*xmlns""")


def _stripped_plain_head(head: bytes) -> bytes | None:
    """`head` (an XML declaration, then a root start tag) stripped, when its root tag is plain and
    nothing before it holds a ":" or "xmlns"; else None."""
    decl = _XML_DECL.match(head)
    start = decl.end() if decl else 0
    root = _PLAIN_ROOT.match(head, start)
    if (
        root is None
        or root.end() != len(head)
        or b":" in head[:start]
        or b"xmlns" in head[:start]
        or _VALUE_NAMING_XMLNS.search(head)
    ):
        return None
    return _strip_all(head)


_PLAIN_HEADS: dict[bytes, bytes | None] = {}  # bounded: heads come from outside


def strip_namespaces(data: bytes, head: bytes | None = None) -> bytes:
    """The document with every namespace declaration, prefixed attribute and tag prefix removed.

    Real inner tables declare their (often malformed) namespaces on the root only: when the root
    start tag is plain and nothing after it holds a ":" or "xmlns", no removal can reach past the
    root tag, so only the tag is rewritten (the same bytes as rewriting the whole document, which
    costs a third of a small file's parse), once per distinct tag. `head`: `_head_of(data)`, when
    the caller has it already."""
    head = _head_of(data) if head is None else head
    if head is not None:
        if head in _PLAIN_HEADS:
            stripped = _PLAIN_HEADS[head]
        else:
            stripped = _stripped_plain_head(head)
            if len(_PLAIN_HEADS) < 64:
                _PLAIN_HEADS[head] = stripped
        end = len(head)
        if stripped is not None and data.find(b":", end) < 0 and data.find(b"xmlns", end) < 0:
            return b"".join((stripped, memoryview(data)[end:]))  # one copy of the body, not two
    return _strip_all(data)


# Root start tags (with the XML declaration before them) that made a document fail where they
# stand: every document that starts with one fails its first parse the same way, so the repair is
# tried first (a failing lxml parse costs ~2.5x a good one; nearly every real table repeats one).
_FAILING_HEADS: set[bytes] = set()
_HEAD_MARGIN = 8  # the error must stand this many characters before the tag's end (no look-ahead)


def _head_of(data: bytes) -> bytes | None:
    """The document up to the end of its first start tag (after an XML declaration), or None."""
    end = data.find(b">")
    if data.startswith(b"<?"):
        end = data.find(b">", end + 1) if end >= 0 else -1
    return data[: end + 1] if end >= 0 else None


def _fails_in_head(error: etree.XMLSyntaxError, head: bytes | None) -> bool:
    """True when the parse error stands inside `head` (ASCII: libxml2's columns are characters)."""
    if head is None or not head.isascii() or not error.position:
        return False
    line, column = error.position
    lines = head.split(b"\n")
    if line < len(lines):
        return True
    return line == len(lines) and 0 < column <= len(lines[-1]) - _HEAD_MARGIN


def parse_inner(data: bytes) -> tuple[etree._Element, list[str]]:
    """The root element of one inner table and the table-level warnings raised reading it.

    Raises InnerXmlError when the document is not readable XML (after one attempt to repair
    malformed namespace declarations, which adds the warning `namespace_repaired`).
    """
    data = _as_utf8(data)
    # One scan for "<!" (rare: DOCTYPE, ENTITY, comment, CDATA), the two names only then.
    if b"<!" in data and (b"<!DOCTYPE" in data or b"<!ENTITY" in data):
        raise InnerXmlError("DOCTYPE/ENTITY refused")
    head = _head_of(data)
    if head is not None and head in _FAILING_HEADS:  # the first parse would fail: repair first
        repaired = strip_namespaces(data, head)
        if repaired != data:
            try:
                return etree.fromstring(repaired, _INNER_PARSER), ["namespace_repaired"]
            except etree.XMLSyntaxError:
                pass  # both fail: the error reported is the first parse's, as below
    try:
        return etree.fromstring(data, _INNER_PARSER), []
    except etree.XMLSyntaxError as first:
        if len(_FAILING_HEADS) < 64 and _fails_in_head(first, head):
            _FAILING_HEADS.add(head)
        repaired = strip_namespaces(data, head)
        if repaired == data:
            raise InnerXmlError(str(first)[:300]) from first
        try:
            return etree.fromstring(repaired, _INNER_PARSER), ["namespace_repaired"]
        except etree.XMLSyntaxError as e:
            raise InnerXmlError(str(first)[:300]) from e


def cell_layout(table: schema.Table) -> Layout:
    """The fields whose cells are kept for `table`: the 3176 names, then the old aliases."""
    layout = _LAYOUTS.get(table.dataset)
    if layout is None:
        names = tuple(c.source for c in table.columns) + tuple(old for old, _ in table.aliases)
        layout = _LAYOUTS[table.dataset] = Layout(names)
    return layout


_LAYOUTS: dict[str, Layout] = {}


def new_cells(table: schema.Table) -> Cells:
    """An empty batch of raw cells for `table` (`transforms.ingest._cells.Cells`)."""
    return Cells(cell_layout(table))


def table_cells(root: etree._Element, table: schema.Table) -> Cells:
    """The raw cells of an inner table, read off libxml2's tree in C; a flat table gives one row.

    Rows are the elements named like the table's row (any depth, local names: a namespace is
    ignored); a field's text is lxml's `.text`; fields outside the table's schema are counted
    (`Cells.unknown`), not kept.
    """
    cells = new_cells(table)
    if table.is_flat:
        cells.add(root, None, table.root)
    else:
        cells.add(root, table.row_path[-1])
    return cells


@dataclass
class DecodedHoso:
    """One HOSO decoded: raw cells per table, raw-only payloads, findings and its identity."""

    index: int
    encounter_id: str | None = None
    cells: dict[str, Cells] = field(default_factory=dict)  # LOAIHOSO -> cells
    table_warnings: dict[str, list[str]] = field(default_factory=dict)  # LOAIHOSO -> warnings
    raw_tables: list[tuple[str, bytes]] = field(default_factory=list)  # (LOAIHOSO, decoded bytes)
    findings: list[tuple[str, str, str]] = field(default_factory=list)  # (reason, LOAIHOSO, detail)
    content_hash: str = ""

    @property
    def rows(self) -> dict[str, list[dict[str, str]]]:
        """Raw rows per table as dicts of the non-null fields (for inspection; the stage reads
        `cells`)."""
        return {kind: cells.rows() for kind, cells in self.cells.items()}


def decode_hoso(hoso: Hoso, limits: ReadLimits = DEFAULT_LIMITS) -> DecodedHoso:
    """Decode every FILEHOSO of a HOSO and read the declared tables into raw text cells.

    Never raises on bad content: a broken payload or table becomes a finding and the rest of the
    HOSO is still read. `content_hash` is the SHA-256 of the (LOAIHOSO, payload) sequence.
    """
    out = DecodedHoso(hoso.index)
    digest = hashlib.sha256()
    kinds = set()
    for kind, payload in hoso.files:
        kinds.add(kind)
        digest.update(kind.encode("utf-8", "replace") + b"\x00")
        if len(payload) // 4 * 3 > limits.max_inner_bytes * 1.4:
            digest.update(payload.encode("utf-8", "replace"))
            out.findings.append(("inner_too_large", kind, f"{len(payload)} base64 characters"))
            continue
        data = decode_base64(payload)
        if data is None:
            digest.update(payload.encode("utf-8", "replace") + b"\x00")
            out.findings.append(("base64_invalid", kind, f"{len(payload)} characters"))
            continue
        digest.update(data)
        digest.update(b"\x00")
        if len(data) > limits.max_inner_bytes:
            out.findings.append(("inner_too_large", kind, f"{len(data)} bytes"))
            continue
        table = schema.TABLES_BY_LOAIHOSO.get(kind)
        if table is None:
            out.raw_tables.append((kind, data))
            continue
        try:
            root, warnings = parse_inner(data)
            cells = table_cells(root, table)
        except InnerXmlError as e:
            out.findings.append(("inner_xml_malformed", kind, str(e)))
            continue
        if kind in out.cells:
            out.cells[kind].extend(cells)
        else:
            out.cells[kind] = cells
        if warnings:
            out.table_warnings.setdefault(kind, []).extend(warnings)
    out.content_hash = digest.hexdigest()
    if "XML1" not in kinds:
        out.findings.append(("missing_xml1", "XML1", f"tables {sorted(kinds)}"))
    out.encounter_id = _encounter_id(out)
    if out.encounter_id is None and _has_rows(out, "XML1"):
        out.findings.append(("missing_encounter_id", "XML1", "MA_LK is empty"))
    return out


def _has_rows(decoded: DecodedHoso, kind: str) -> bool:
    cells = decoded.cells.get(kind)
    return bool(cells and cells.nrows)


def _encounter_id(decoded: DecodedHoso) -> str | None:
    """MA_LK from XML1, else from the first other table that carries one."""
    if _has_rows(decoded, "XML1"):
        return decoded.cells["XML1"].first_value("MA_LK")  # never borrow another table's key
    for kind in sorted(k for k in decoded.cells if k != "XML1"):
        if value := decoded.cells[kind].first_value("MA_LK"):
            return value
    return None
