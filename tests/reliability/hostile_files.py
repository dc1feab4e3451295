"""Hostile XML 130 envelopes, each written small or sparse into a night folder, with the reason
code it must be rejected with (None: any rejection or encounter-level quarantine will do)."""

from __future__ import annotations

import base64
import random
import unicodedata
from pathlib import Path

FACILITY = "01999"  # a facility of its own: the hostile files never hide a real facility's rows
HEADER = (
    '<?xml version="1.0" encoding="utf-8"?>\n<GIAMDINHHS><THONGTINDONVI><MACSKCB>{facility}</MACSKCB>'
    "</THONGTINDONVI><THONGTINHOSO><NGAYLAP>20261126</NGAYLAP><SOLUONGHOSO>1</SOLUONGHOSO><DANHSACHHOSO>"
)
FOOTER = "</DANHSACHHOSO></THONGTINHOSO><CHUKYDONVI/></GIAMDINHHS>"
XML1 = "<TONG_HOP><MA_LK>{ma_lk}</MA_LK><HO_TEN>{name}</HO_TEN><MA_CSKCB>{facility}</MA_CSKCB></TONG_HOP>"
SPARSE_BYTES = 500 * 10**6  # "a 500 MB file": sparse, so it costs no disk and no time to write
HUGE_PAYLOAD_BYTES = 48 << 20  # one base64 payload of 48 MiB in a file under the size limit


def _cp1258(text: str) -> bytes:
    """Windows-1258 bytes (Vietnamese in the legacy code page: base letters + combining marks)."""
    return unicodedata.normalize("NFD", text).encode("cp1258", errors="replace")


def _envelope(hoso_xml: str, facility: str = FACILITY) -> str:
    return HEADER.format(facility=facility) + hoso_xml + FOOTER


def _hoso(inner: bytes, table: str = "XML1") -> str:
    payload = base64.b64encode(inner).decode()
    return (
        f"<HOSO><FILEHOSO><LOAIHOSO>{table}</LOAIHOSO><NOIDUNGFILE>{payload}</NOIDUNGFILE></FILEHOSO></HOSO>"
    )


def _plain_hoso(ma_lk: str = "HOSTILE1", name: str = "Nguyễn Văn An") -> str:
    return _hoso(XML1.format(ma_lk=ma_lk, name=name, facility=FACILITY).encode())


def write_hostile_files(folder: Path) -> dict[str, str | None]:
    """Write every hostile file into `folder`; file name -> the file-level reason it must get."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str | None] = {}

    def put(name: str, data: bytes, reason: str | None) -> None:
        (folder / name).write_bytes(data)
        expected[name] = reason

    laughs = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))  # 10^9 "lol"
    put(
        "entity_expansion.xml",
        f'<?xml version="1.0"?><!DOCTYPE GIAMDINHHS [<!ENTITY l0 "lol">{laughs}]>'.encode()
        + _envelope(_plain_hoso(name="&l9;")).split("?>", 1)[1].encode(),
        "xml_entity_declared",
    )
    put(
        "external_entity.xml",
        b'<?xml version="1.0"?><!DOCTYPE GIAMDINHHS [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
        + _envelope(_plain_hoso(name="&secret;")).split("?>", 1)[1].encode(),
        "xml_entity_declared",
    )
    put(
        "external_dtd.xml",
        b'<?xml version="1.0"?><!DOCTYPE GIAMDINHHS SYSTEM "http://127.0.0.1:9/evil.dtd">'
        + _envelope(_plain_hoso()).split("?>", 1)[1].encode(),
        "xml_entity_declared",
    )
    deep = "<X>" * 100_000 + "</X>" * 100_000
    put("deep_nesting.xml", _envelope(f"<HOSO>{deep}</HOSO>").encode(), "xml_too_deep")
    put("binary_garbage.xml", random.Random(130).randbytes(64 << 10), None)
    vietnamese = _envelope(_plain_hoso(name="Trần Thị Hằng"))
    put(
        "windows_1258_declared.xml",
        _cp1258(vietnamese.replace("utf-8", "windows-1258")),
        "encoding_unsupported",
    )
    undeclared = vietnamese.replace(' encoding="utf-8"', "")
    # base64 hides the name; a windows-1258 byte in the envelope itself is what must be refused
    put(
        "windows_1258_undeclared.xml",
        _cp1258(undeclared.replace("<CHUKYDONVI/>", "<CHUKYDONVI>Chữ ký</CHUKYDONVI>")),
        None,
    )
    put("utf16_with_bom.xml", undeclared.encode("utf-16"), "encoding_unsupported")
    put("utf16_without_bom.xml", undeclared.encode("utf-16-le"), None)

    # a valid envelope whose one payload is enormous: streamed, never held whole
    with open(folder / "huge_base64_payload.xml", "wb") as f:
        f.write(HEADER.format(facility=FACILITY).encode())
        f.write(b"<HOSO><FILEHOSO><LOAIHOSO>XML1</LOAIHOSO><NOIDUNGFILE>")
        block = base64.b64encode(b"\0" * (3 << 18))  # 1 MiB of base64
        for _ in range(HUGE_PAYLOAD_BYTES // len(block)):
            f.write(block)
        f.write(b"</NOIDUNGFILE></FILEHOSO></HOSO>" + FOOTER.encode())
    expected["huge_base64_payload.xml"] = None

    # 500 MB: a valid head and tail around a sparse hole inside the payload; refused by its size
    with open(folder / "file_of_500_mb.xml", "wb") as f:
        f.write(HEADER.format(facility=FACILITY).encode())
        f.write(b"<HOSO><FILEHOSO><LOAIHOSO>XML1</LOAIHOSO><NOIDUNGFILE>")
        tail = b"</NOIDUNGFILE></FILEHOSO></HOSO>" + FOOTER.encode()
        f.seek(SPARSE_BYTES - len(tail))
        f.write(tail)
    expected["file_of_500_mb.xml"] = "xml_too_large"
    return expected
