"""Building blocks of XML 130 files: inner tables (base64 in FILEHOSO) and GIAMDINHHS envelopes; also used by tests for hand-made files."""

from __future__ import annotations

import base64
from xml.sax.saxutils import escape

from transforms.core import schema

# ---------------------------------------------------------------------------------------------
# Building blocks: inner tables and envelopes
# ---------------------------------------------------------------------------------------------

# Root and row path of the tables the pipeline keeps raw (free-form here).
RAW_TABLE_PATHS = {
    "XML0": ("CHI_TIEU_TRANG_THAI_KCB", ("DSACH_TRANG_THAI_KCB", "TRANG_THAI_KCB")),
    "XML6": ("CHI_TIEU_HO_SO_BENH_AN_CHAM_SOC_VA_DIEU_TRI_HIV_AIDS", ()),
    "XML15": (
        "CHI_TIEU_DU_LIEU_DIEU_TRI_BENH_LAO",
        ("DSACH_CHI_TIET_DIEU_TRI_BENH_LAO", "CHI_TIET_DIEU_TRI_BENH_LAO"),
    ),
}
XMLNS = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
# Seen in real exports: relative namespace URIs (libxml2 warns, the document is still well-formed).
XMLNS_MALFORMED = 'xmlns:xsi="XMLSchema-instance" xmlns:xsd="XMLSchema"'
DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>\n'
# what real inner tables declare (REAL_EXPORTS.md "XML quirks"): a space, not a hyphen
XSI_SPACE = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema instance"'
XSD = 'xmlns:xsd="http://www.w3.org/2001/XMLSchema"'


def _text(value: str, cdata: bool) -> str:
    if cdata and value and not value.replace(".", "").isdigit():
        return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"
    return escape(value)


def inner_xml(
    loaihoso: str,
    rows: list[dict[str, str]],
    cdata: bool = False,
    declaration: bool = True,
    xsi_space: bool = False,
) -> bytes:
    """One inner table (what NOIDUNGFILE carries, before base64) as UTF-8 bytes.

    `rows` maps raw field names to text, in the order to write; a flat table (XML1, XML7, XML8,
    XML13, XML14) takes exactly one row. Element paths come from `transforms.core.schema`; XML0, XML6
    and XML15 use `RAW_TABLE_PATHS`. `cdata` wraps non-numeric values in CDATA sections.
    `xsi_space` declares xmlns:xsi with the space real exports carry ("XMLSchema instance").
    """
    if loaihoso in schema.TABLES_BY_LOAIHOSO:
        table = schema.TABLES_BY_LOAIHOSO[loaihoso]
        root, row_path = table.root, table.row_path
    elif loaihoso in RAW_TABLE_PATHS:
        root, row_path = RAW_TABLE_PATHS[loaihoso]
    else:
        raise ValueError(f"unknown table {loaihoso}")
    if not row_path and len(rows) != 1:
        raise ValueError(f"{loaihoso} is a flat table: one row, got {len(rows)}")

    def fields(row: dict[str, str]) -> str:
        return "".join(f"<{k}>{_text(v, cdata)}</{k}>" for k, v in row.items())

    if row_path:
        list_tag, row_tag = row_path
        body = (
            f"<{list_tag}>" + "".join(f"<{row_tag}>{fields(r)}</{row_tag}>" for r in rows) + f"</{list_tag}>"
        )
    else:
        body = fields(rows[0])
    namespaces = f" {XSI_SPACE} {XSD}" if xsi_space else ""
    return (DECLARATION if declaration else b"") + f"<{root}{namespaces}>{body}</{root}>".encode()


def envelope_bytes(
    facility_code: str,
    ngaylap: str,
    hosos: list[dict[str, bytes | str]],
    declared: int | None = None,
    bom: bool = False,
    malformed_xmlns: bool = False,
    doctype: str = "",
) -> bytes:
    """One GIAMDINHHS envelope.

    Each hoso maps LOAIHOSO ("XML1", ...) to the inner XML bytes (base64-encoded here), or to a str
    written verbatim as NOIDUNGFILE (to craft broken base64). `declared` is SOLUONGHOSO (default:
    the number of hosos); `bom` prefixes a UTF-8 byte-order mark; `doctype` is written before the
    root (for entity-declaration tests).
    """
    parts = [
        DECLARATION.decode(),
        doctype,
        f"<GIAMDINHHS {XMLNS_MALFORMED if malformed_xmlns else XMLNS}>",
        f"<THONGTINDONVI><MACSKCB>{escape(facility_code)}</MACSKCB></THONGTINDONVI>",
        f"<THONGTINHOSO><NGAYLAP>{escape(ngaylap)}</NGAYLAP>",
        f"<SOLUONGHOSO>{len(hosos) if declared is None else declared}</SOLUONGHOSO><DANHSACHHOSO>",
    ]
    for hoso in hosos:
        parts.append("<HOSO>")
        for loaihoso, payload in hoso.items():
            content = payload if isinstance(payload, str) else base64.b64encode(payload).decode("ascii")
            parts.append(
                f"<FILEHOSO><LOAIHOSO>{loaihoso}</LOAIHOSO><NOIDUNGFILE>{content}</NOIDUNGFILE></FILEHOSO>"
            )
        parts.append("</HOSO>")
    parts.append("</DANHSACHHOSO></THONGTINHOSO><CHUKYDONVI></CHUKYDONVI></GIAMDINHHS>\n")
    return (b"\xef\xbb\xbf" if bom else b"") + "".join(parts).encode()


BILLION_LAUGHS = (
    '<!DOCTYPE GIAMDINHHS [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10)
    )
    + "]>\n"
)


def broken_base64(payload: bytes) -> str:
    """Base64 text no decoder accepts: a stray non-alphabet run and a length of 4n+1 characters."""
    text = base64.b64encode(payload).decode("ascii").rstrip("=")
    middle = len(text) // 2
    text = text[:middle] + "!#%*" + text[middle + 4 :]
    while len(text.replace("!#%*", "")) % 4 != 1:
        text = text[:-1]
    return text
