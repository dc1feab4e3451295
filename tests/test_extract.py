"""Discovery and safe reading of XML 130 envelopes, on tiny hand-made files."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.ingest import discovery, extract, inner
from transforms.ingest.discovery import discover_envelopes
from transforms.ingest.extract import EnvelopeReader, Hoso
from transforms.ingest.inner import decode_hoso

XML1 = "<TONG_HOP><MA_LK>{ma_lk}</MA_LK><HO_TEN>Nguyễn Văn An</HO_TEN><T_THUOC>12.5</T_THUOC></TONG_HOP>"
XML2 = (
    "<CHITIEU_CHITIET_THUOC><DSACH_CHI_TIET_THUOC>"
    "<CHI_TIET_THUOC><MA_LK>{ma_lk}</MA_LK><STT>1</STT><TEN_THUOC>Paracetamol</TEN_THUOC></CHI_TIET_THUOC>"
    "<CHI_TIET_THUOC><MA_LK>{ma_lk}</MA_LK><STT>2</STT><TEN_THUOC>Amoxicillin</TEN_THUOC></CHI_TIET_THUOC>"
    "</DSACH_CHI_TIET_THUOC></CHITIEU_CHITIET_THUOC>"
)


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode("utf-8") if isinstance(text, str) else text).decode("ascii")


def hoso_xml(tables: list[tuple[str, str]]) -> str:
    """One HOSO element; tables are (LOAIHOSO, payload already base64-encoded)."""
    parts = "".join(
        f"<FILEHOSO><LOAIHOSO>{k}</LOAIHOSO><NOIDUNGFILE>{p}</NOIDUNGFILE></FILEHOSO>" for k, p in tables
    )
    return f"<HOSO>{parts}</HOSO>"


def make_envelope(
    hosos: list[list[tuple[str, str]]],
    facility: str = "01234",
    created_on: str = "20261126",
    declared: int | None = None,
    root_attrs: str = ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"',
    prolog: str = '<?xml version="1.0" encoding="utf-8"?>',
) -> bytes:
    """An envelope (bytes) with the given HOSOs; each HOSO is a list of (LOAIHOSO, base64)."""
    declared = len(hosos) if declared is None else declared
    body = "".join(hoso_xml(h) for h in hosos)
    return (
        f"{prolog}<GIAMDINHHS{root_attrs}><THONGTINDONVI><MACSKCB>{facility}</MACSKCB></THONGTINDONVI>"
        f"<THONGTINHOSO><NGAYLAP>{created_on}</NGAYLAP><SOLUONGHOSO>{declared}</SOLUONGHOSO>"
        f"<DANHSACHHOSO>{body}</DANHSACHHOSO></THONGTINHOSO><CHUKYDONVI/></GIAMDINHHS>"
    ).encode()


def simple_hoso(ma_lk: str = "LK1") -> list[tuple[str, str]]:
    return [("XML1", b64(XML1.format(ma_lk=ma_lk))), ("XML2", b64(XML2.format(ma_lk=ma_lk)))]


def read_all(data: bytes, limits=extract.DEFAULT_LIMITS) -> tuple[EnvelopeReader, list[Hoso]]:
    reader = EnvelopeReader(data, limits)
    return reader, list(reader)


def test_envelope_header_and_hosos_are_read():
    reader, hosos = read_all(make_envelope([simple_hoso("A"), simple_hoso("B")]))
    assert reader.rejection is None
    assert (reader.header.facility_code, reader.header.created_on, reader.header.declared) == (
        "01234",
        "20261126",
        2,
    )
    assert [h.index for h in hosos] == [0, 1]
    assert [k for k, _ in hosos[0].files] == ["XML1", "XML2"]


def test_utf8_byte_order_mark_is_accepted():
    reader, hosos = read_all(b"\xef\xbb\xbf" + make_envelope([simple_hoso()]))
    assert reader.rejection is None and len(hosos) == 1


def test_malformed_namespace_on_the_envelope_root_is_tolerated():
    reader, hosos = read_all(make_envelope([simple_hoso()], root_attrs=" xmlns:xsi xmlns:xsd=''"))
    assert reader.rejection is None and len(hosos) == 1


def test_billion_laughs_is_refused_unexpanded_with_bounded_memory():
    # lol9 expands to 10^9 "lol": 3 GB if a parser ever expanded it.
    lol = '<!ENTITY lol0 "lol">' + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    data = f'<?xml version="1.0"?><!DOCTYPE GIAMDINHHS [{lol}]><GIAMDINHHS>&lol9;</GIAMDINHHS>'.encode()
    tracemalloc.start()
    reader, hosos = read_all(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert reader.rejection[0] == "xml_entity_declared"
    assert hosos == []
    assert peak < 5_000_000  # expanded, lol9 would be 10^9 characters


def test_external_entity_file_is_refused_without_reading_it(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    data = (
        f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        "<GIAMDINHHS><THONGTINDONVI><MACSKCB>&xxe;</MACSKCB></THONGTINDONVI></GIAMDINHHS>"
    ).encode()
    reader, hosos = read_all(data)
    assert reader.rejection[0] == "xml_entity_declared"
    assert "TOP-SECRET" not in repr(reader.header) + repr(reader.rejection)


def test_doctype_after_a_comment_is_still_refused():
    data = b'<?xml version="1.0"?><!-- <a> --><!DOCTYPE GIAMDINHHS SYSTEM "http://evil/x.dtd"><GIAMDINHHS/>'
    assert read_all(data)[0].rejection[0] == "xml_entity_declared"


def test_truncated_file_is_rejected_but_its_declared_count_is_known():
    data = make_envelope([simple_hoso("A"), simple_hoso("B"), simple_hoso("C")])
    reader, _ = read_all(data[: len(data) * 2 // 3])
    assert reader.rejection[0] == "xml_malformed"
    assert reader.header.declared == 3 and reader.header.facility_code == "01234"


def test_utf16_file_is_refused_not_misread():
    data = make_envelope([simple_hoso()], prolog="").decode("utf-8").encode("utf-16-le")
    assert read_all(data)[0].rejection[0] == "encoding_unsupported"
    assert read_all(b"\xff\xfe" + data)[0].rejection[0] == "encoding_unsupported"


def test_declared_windows_1258_file_is_refused():
    data = make_envelope([simple_hoso()], prolog='<?xml version="1.0" encoding="windows-1258"?>')
    assert read_all(data)[0].rejection[0] == "encoding_unsupported"


def test_non_utf8_bytes_claiming_utf8_are_refused_not_misdecoded():
    # "Nguyễn" in windows-1258 is not valid UTF-8 (0xD2 starts a 2-byte sequence, then 'n').
    data = make_envelope([simple_hoso()], facility="01234").replace(
        b"01234", "Nguy\u00ean".encode("cp1258") + b"\xd2n"
    )
    reader, _ = read_all(data)
    assert reader.rejection[0] == "encoding_unsupported"


def test_other_root_element_is_not_an_envelope():
    assert read_all(b"<html><body/></html>")[0].rejection[0] == "not_an_envelope"


def test_nesting_deeper_than_the_limit_is_refused():
    data = b"<GIAMDINHHS>" + b"<a>" * 50 + b"</a>" * 50 + b"</GIAMDINHHS>"
    assert read_all(data)[0].rejection[0] == "xml_too_deep"


def test_nesting_is_checked_wherever_it_is_in_the_envelope():
    deep = "<a>" * 40 + "</a>" * 40
    good = make_envelope([simple_hoso("A")]).decode()
    places = {
        "in a HOSO": good.replace("<FILEHOSO>", f"<FILEHOSO>{deep}", 1),
        "in the signature": good.replace("</GIAMDINHHS>", f"<CHUKYDONVI>{deep}</CHUKYDONVI></GIAMDINHHS>"),
        "in the HOSO list": good.replace("<HOSO>", f"<X>{deep}</X><HOSO>", 1),
        "in an unknown element": good.replace("</GIAMDINHHS>", f"<Z>{deep}</Z></GIAMDINHHS>"),
    }
    assert "<HOSO>" in good and "<FILEHOSO>" in good
    for place, data in places.items():
        assert read_all(data.encode())[0].rejection[0] == "xml_too_deep", place
    shallow = good.replace("</GIAMDINHHS>", "<Z>" + "<a>" * 20 + "</a>" * 20 + "</Z></GIAMDINHHS>")
    reader, hosos = read_all(shallow.encode())
    assert reader.rejection is None and len(hosos) == 1


def test_a_prefixed_root_of_another_name_is_not_an_envelope():
    assert read_all(b'<x:html xmlns:x="urn:x"><x:body/></x:html>')[0].rejection[0] == "not_an_envelope"
    reader, hosos = read_all(make_envelope([simple_hoso("A")]).replace(b"GIAMDINHHS", b"p:GIAMDINHHS"))
    assert reader.rejection[0] != "not_an_envelope"  # the prefix is unbound: malformed, not foreign


def test_file_over_the_size_limit_is_refused():
    limits = extract.ReadLimits(max_file_bytes=100)
    assert read_all(make_envelope([simple_hoso()]), limits)[0].rejection[0] == "xml_too_large"


def test_envelope_without_facility_code_is_refused():
    data = make_envelope([simple_hoso()]).replace(b"<MACSKCB>01234</MACSKCB>", b"")
    assert read_all(data)[0].rejection[0] == "facility_code_missing"


def test_empty_and_garbage_files_are_rejections_not_crashes():
    for data in (b"", b"   ", b"\x00\x01\x02", b"hello", b"<"):
        reader, hosos = read_all(data)
        assert reader.rejection is not None and hosos == []


def test_hosos_are_decoded_into_raw_rows_with_a_content_hash():
    decoded = decode_hoso(Hoso(0, tuple(simple_hoso("LK9"))))
    assert decoded.encounter_id == "LK9"
    assert decoded.rows["XML1"][0]["HO_TEN"] == "Nguyễn Văn An"
    assert [r["STT"] for r in decoded.rows["XML2"]] == ["1", "2"]
    assert decoded.findings == [] and len(decoded.content_hash) == 64


def test_inner_table_in_cdata_with_declaration_and_bom_is_read():
    inner = (
        '\ufeff<?xml version="1.0" encoding="utf-8"?><TONG_HOP><MA_LK><![CDATA[LK<1>]]></MA_LK></TONG_HOP>'
    )
    decoded = decode_hoso(Hoso(0, (("XML1", b64(inner)),)))
    assert decoded.encounter_id == "LK<1>"


def test_inner_base64_with_line_breaks_is_accepted():
    payload = b64(XML1.format(ma_lk="LK1"))
    wrapped = "\n".join(payload[i : i + 76] for i in range(0, len(payload), 76))
    assert decode_hoso(Hoso(0, (("XML1", wrapped),))).encounter_id == "LK1"


def test_malformed_inner_namespace_is_repaired_with_a_warning():
    inner = '<TONG_HOP xmlns:xsi xmlns:xsd="not a uri" xsi:nil="true"><MA_LK>LK1</MA_LK></TONG_HOP>'
    decoded = decode_hoso(Hoso(0, (("XML1", b64(inner)),)))
    assert decoded.encounter_id == "LK1"
    assert decoded.table_warnings["XML1"] == ["namespace_repaired"]
    assert decoded.findings == []


def test_inner_table_with_a_valid_default_namespace_is_read():
    inner = '<TONG_HOP xmlns="urn:x"><MA_LK>LK1</MA_LK></TONG_HOP>'
    assert decode_hoso(Hoso(0, (("XML1", b64(inner)),))).encounter_id == "LK1"


def test_inner_declared_windows_1258_is_decoded_correctly():
    inner = '<?xml version="1.0" encoding="windows-1258"?><TONG_HOP><MA_LK>1</MA_LK><HO_TEN>Lê Văn</HO_TEN></TONG_HOP>'
    decoded = decode_hoso(Hoso(0, (("XML1", b64(inner.encode("cp1258"))),)))
    assert decoded.rows["XML1"][0]["HO_TEN"] == "Lê Văn"


def test_inner_undeclared_non_utf8_is_malformed_not_misdecoded():
    inner = "<TONG_HOP><MA_LK>1</MA_LK><HO_TEN>Lê Văn</HO_TEN></TONG_HOP>".encode("cp1258")
    decoded = decode_hoso(Hoso(0, (("XML1", b64(inner)),)))
    assert [f[0] for f in decoded.findings] == ["inner_xml_malformed"]


def test_inner_doctype_is_refused():
    inner = '<!DOCTYPE x [<!ENTITY a "b">]><TONG_HOP><MA_LK>&a;</MA_LK></TONG_HOP>'
    decoded = decode_hoso(Hoso(0, (("XML1", b64(inner)),)))
    assert decoded.findings[0][0] == "inner_xml_malformed"


def test_broken_base64_is_a_finding_and_the_rest_is_read():
    decoded = decode_hoso(Hoso(0, (("XML1", b64(XML1.format(ma_lk="LK1"))), ("XML2", "@@not base64@@"))))
    assert decoded.encounter_id == "LK1"
    assert [f[:2] for f in decoded.findings] == [("base64_invalid", "XML2")]


def test_hoso_without_xml1_is_a_finding_keyed_by_another_tables_ma_lk():
    decoded = decode_hoso(Hoso(3, (("XML2", b64(XML2.format(ma_lk="LK7"))),)))
    assert [f[0] for f in decoded.findings] == ["missing_xml1"]
    assert decoded.encounter_id == "LK7"


def test_inner_table_that_is_not_xml_is_malformed():
    decoded = decode_hoso(
        Hoso(0, (("XML1", b64(XML1.format(ma_lk="1"))), ("XML2", b64("this is not xml <"))))
    )
    assert [f[:2] for f in decoded.findings] == [("inner_xml_malformed", "XML2")]


def test_raw_only_and_unknown_tables_are_kept_raw():
    decoded = decode_hoso(
        Hoso(
            0, (("XML1", b64(XML1.format(ma_lk="1"))), ("XML9", b64("<X>birth</X>")), ("XML99", b64("junk")))
        )
    )
    assert [(k, d) for k, d in decoded.raw_tables] == [("XML9", b"<X>birth</X>"), ("XML99", b"junk")]
    assert decoded.findings == []


def test_xml1_without_ma_lk_is_a_missing_encounter_id_finding():
    decoded = decode_hoso(Hoso(0, (("XML1", b64("<TONG_HOP><HO_TEN>x</HO_TEN></TONG_HOP>")),)))
    assert decoded.encounter_id is None
    assert [f[0] for f in decoded.findings] == ["missing_encounter_id"]


def test_discovery_finds_envelopes_at_any_depth_and_name(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("x.xml", "a/y.XML", "a/b/z.xml", "a/b/notes.txt", "a/f.ndjson"):
        (tmp_path / name).write_text("")
    assert [p.relative_to(tmp_path).as_posix() for p in discover_envelopes(tmp_path)] == [
        "a/b/z.xml",
        "a/y.XML",
        "x.xml",
    ]
    assert [p.name for p in discovery.discover_fhir(tmp_path)] == ["f.ndjson"]
    assert discover_envelopes(tmp_path / "missing") == []


def test_refused_doctype_file_still_reports_its_facility_and_declared_count():
    data = make_envelope([simple_hoso()], declared=7).replace(
        b"<GIAMDINHHS", b'<!DOCTYPE GIAMDINHHS [<!ENTITY a "b">]><GIAMDINHHS', 1
    )
    reader, hosos = read_all(data)
    assert reader.rejection[0] == "xml_entity_declared" and hosos == []
    assert (reader.header.facility_code, reader.header.declared) == ("01234", 7)


def test_namespace_repair_of_the_root_tag_only_gives_the_bytes_of_the_whole_document_repair():
    """strip_namespaces rewrites only a plain root tag when nothing after it can match: the
    result must be the bytes the whole-document rewrite gives, on any input (seeded fuzz)."""
    import random

    from transforms.ingest import inner

    pieces = [b"<A", b'<?xml version="1.0"?>', b' xmlns:x="a b"', b' xmlns="q"', b" y='1'", b' p:q="2"',
              b">", b"<B>", b"</B>", b"1:2", b"xmlns", b"<p:C/>", b'"', b"'", b"=", b"\n", b" ", b"a"]  # fmt: skip
    rnd = random.Random(7)
    for _ in range(20_000):
        doc = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 10)))
        assert inner.strip_namespaces(doc) == inner._strip_all(doc), doc


def test_a_known_failing_root_tag_gives_the_same_roots_warnings_and_errors():
    """The repair is tried first for a root tag that failed where it stands: same outcome as
    parsing first (a tree and `namespace_repaired`, or the first parse's error)."""
    from lxml import etree

    from transforms.ingest import inner

    bad = b'<TONG_HOP xmlns:xsi="http://www.w3.org/2001/XMLSchema instance" xmlns:xsd="http://x">'
    docs = [bad + b"<MA_LK>1</MA_LK></TONG_HOP>", bad + b"<MA_LK>1</MA_LK>", bad + b"<x:A>1</x:A></TONG_HOP>",
            b'<?xml version="1.0"?>\n' + bad + b"<B>1</C></TONG_HOP>", b"<T><MA_LK>2</MA_LK></T>"]  # fmt: skip

    def outcomes():
        out = []
        for doc in docs:
            try:
                root, warnings = inner.parse_inner(doc)
                out.append((etree.tostring(root), warnings))
            except inner.InnerXmlError as e:
                out.append(("error", str(e)))
        return out

    inner._FAILING_HEADS.clear()
    first = outcomes()
    assert bad in inner._FAILING_HEADS
    assert outcomes() == first
    assert first[0] == (b"<TONG_HOP><MA_LK>1</MA_LK></TONG_HOP>", ["namespace_repaired"])
    assert first[1][0] == "error" and "not a valid URI" in first[1][1]


def _outcome(data: bytes, expected_facility: str | None = None) -> tuple:
    reader = EnvelopeReader(data, expected_facility=expected_facility)
    hosos = list(reader)
    return hosos, dataclasses.asdict(reader.header), reader.rejection, reader.hoso_count


def test_a_small_file_parsed_whole_gives_what_the_stream_gives(monkeypatch):
    # A file the first chunk holds is parsed in one call and its tree walked in C; the
    # stream (forced here) must see the same HOSOs, header and rejection, good file or hostile.
    good = make_envelope([simple_hoso("A"), simple_hoso("B")]).decode()
    deep = "<a>" * 40 + "</a>" * 40
    cases = {
        "good": good,
        "signed, children": good.replace("<CHUKYDONVI/>", "<CHUKYDONVI><Sig>x</Sig><Sig/></CHUKYDONVI>"),
        "signed, text": good.replace("<CHUKYDONVI/>", "<CHUKYDONVI> abc </CHUKYDONVI>"),
        "two signatures": good.replace("<CHUKYDONVI/>", "<CHUKYDONVI>x</CHUKYDONVI><CHUKYDONVI/>"),
        "nested HOSO": good.replace("<HOSO>", "<HOSO><HOSO>", 1).replace("</HOSO>", "</HOSO></HOSO>", 1),
        "header twice": good.replace(
            "</THONGTINHOSO>", "<NGAYLAP>1</NGAYLAP><SOLUONGHOSO>9</SOLUONGHOSO></THONGTINHOSO>"
        ),
        "MACSKCB twice": good.replace("</THONGTINDONVI>", "<MACSKCB>99999</MACSKCB></THONGTINDONVI>"),
        "MACSKCB in a HOSO": good.replace("<HOSO>", "<HOSO><MACSKCB>x</MACSKCB>", 1),
        "junk between HOSOs": good.replace("</HOSO><HOSO>", "</HOSO><X>1</X><HOSO>", 1),
        "facility invalid": good.replace("01234", "0123X"),
        "facility empty": good.replace("01234", " "),
        "no MACSKCB": good.replace("<MACSKCB>01234</MACSKCB>", ""),
        "declared not a number": good.replace("<SOLUONGHOSO>2<", "<SOLUONGHOSO>two<"),
        "deep in a HOSO": good.replace("<FILEHOSO>", f"<FILEHOSO>{deep}", 1),
        "deep after the HOSOs": good.replace("</GIAMDINHHS>", f"<Z>{deep}</Z></GIAMDINHHS>"),
        "deep in the header": good.replace("<MACSKCB>", f"{deep}<MACSKCB>"),
        "truncated": good[: len(good) // 2],
        "junk after the root": good + "<GIAMDINHHS/>",
        "doctype": good.replace("<GIAMDINHHS", "<!DOCTYPE x><GIAMDINHHS", 1),
        "namespaced": good.replace("<GIAMDINHHS", '<GIAMDINHHS xmlns="urn:x"', 1),
        "prefixed header": good.replace(
            "<MACSKCB>01234</MACSKCB>", '<p:MACSKCB xmlns:p="urn:p">01234</p:MACSKCB>'
        ),
        "signature in a HOSO": good.replace("<HOSO>", "<HOSO><CHUKYDONVI>x</CHUKYDONVI>", 1),
        "HOSO in the header": good.replace("<MACSKCB>01234</MACSKCB>", "<MACSKCB><HOSO/>01234</MACSKCB>"),
        "header after the HOSOs": good.replace("<MACSKCB>01234</MACSKCB>", "").replace(
            "</GIAMDINHHS>", "<MACSKCB>01234</MACSKCB></GIAMDINHHS>"
        ),
        "CDATA and entities": good.replace("<NGAYLAP>", "<NGAYLAP><![CDATA[20]]>&#50;"),
        "invalid after the HOSOs": good.replace("</GIAMDINHHS>", "<SOLUONGHOSO>7</SOLUONGHOSO></GIAMDINHHS>")
        .replace("<MACSKCB>01234</MACSKCB>", "")
        .replace("</GIAMDINHHS>", "<MACSKCB>1x</MACSKCB><NGAYLAP>9</NGAYLAP></GIAMDINHHS>"),
    }
    assert all(text != good for name, text in cases.items() if name != "good")
    parsed_whole = []
    whole_tree = extract._whole_tree
    monkeypatch.setattr(
        extract, "_whole_tree", lambda *a: parsed_whole.append(whole_tree(*a)) or parsed_whole[-1]
    )
    for name, text in cases.items():
        data = text.encode()
        whole = _outcome(data), _outcome(data, "01234"), _outcome(data, "79002")
        with monkeypatch.context() as m:
            m.setattr(extract, "_whole_tree", lambda data, max_depth: None)
            streamed = _outcome(data), _outcome(data, "01234"), _outcome(data, "79002")
        assert whole == streamed, name
    assert _outcome(cases["good"].encode())[2] is None and len(_outcome(cases["good"].encode())[0]) == 2
    assert sum(root is not None for root in parsed_whole) >= 3 * 12  # most cases were parsed whole


def _stdlib_base64(payload: str) -> bytes | None:
    """decode_base64 as it was before pybase64 (the stdlib's strict decoder, then without
    whitespace): the reference the fast path must agree with."""
    for text in (payload, "".join(payload.split())):
        try:
            return binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError):
            continue
    return None


_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@st.composite
def _near_base64(draw) -> str:
    """Base64 of random bytes with a few characters inserted or removed (padding, whitespace,
    URL-safe letters, non-ASCII, NUL), or any short string over those characters."""
    pool = _B64_ALPHABET + "= \n\r\t-_*é\x00"
    if draw(st.booleans()):
        return draw(st.text(alphabet=pool, max_size=24))
    text = base64.b64encode(draw(st.binary(max_size=30))).decode()
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()) and text:
            text = text[: max(0, at - 1)] + text[at:]
        else:
            text = text[:at] + draw(st.sampled_from(pool)) + text[at:]
    return text


@settings(max_examples=3000, deadline=None)
@given(_near_base64())
def test_the_fast_base64_decoder_gives_the_stdlibs_answer(payload):
    # pybase64 decides first; it must never accept what the stdlib refuses nor decode otherwise
    assert inner.decode_base64(payload) == _stdlib_base64(payload)


def test_the_fast_base64_decoder_on_known_edges():
    cases = {
        "QUJD": b"ABC",
        "QUI=": b"AB",
        "QUJD=": b"ABC",  # padding after a whole group: pybase64 refuses it, the stdlib accepts it
        "QUI==": None,  # data after the padding
        "QUI=QUI=": None,
        "QU\nJD": b"ABC",  # a line break: tolerated
        "QUJD\r\n": b"ABC",
        "QU-D": None,  # URL-safe alphabet: not base64 here
        "QUJDé": None,
        "QUJ": None,
        "=QUJD": None,
        "": b"",
    }
    for payload, expected in cases.items():
        assert inner.decode_base64(payload) == expected == _stdlib_base64(payload), payload


def test_a_file_that_cannot_be_read_is_rejected_unreadable(tmp_path):
    # gone between the plan and the read, or a folder named like an envelope: a rejection with
    # the system's reason, never an exception
    gone = EnvelopeReader(tmp_path / "gone.xml")
    assert list(gone) == [] and gone.rejection == (
        "file_unreadable",
        "FileNotFoundError: No such file or directory",
    )
    (tmp_path / "folder.xml").mkdir()
    folder = EnvelopeReader(tmp_path / "folder.xml")
    assert list(folder) == [] and folder.rejection == ("file_unreadable", "IsADirectoryError: Is a directory")
    good = tmp_path / "good.xml"
    good.write_bytes(make_envelope([simple_hoso("A")]))
    reader = EnvelopeReader(good)
    assert len(list(reader)) == 1 and reader.rejection is None


def test_read_ahead_never_blocks_follows_a_link_or_raises(tmp_path):
    # the kernel is asked to read the next files; whatever they are, the hint returns at once and
    # silently (the reader itself decides on each file)
    from transforms.ingest.parse import _read_ahead

    regular = tmp_path / "a.xml"
    regular.write_bytes(make_envelope([simple_hoso("A")]))
    fifo = tmp_path / "fifo.xml"
    os.mkfifo(fifo)  # opening it for reading without O_NONBLOCK would wait for a writer
    link = tmp_path / "link.xml"
    link.symlink_to("/etc/passwd")
    (tmp_path / "folder.xml").mkdir()
    for path in (regular, fifo, link, tmp_path / "folder.xml", tmp_path / "gone.xml"):
        assert _read_ahead(str(path)) is None
    assert len(list(EnvelopeReader(regular))) == 1  # and the file reads as before
