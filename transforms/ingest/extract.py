"""Safe reading of XML 130 envelopes (untrusted input); a night's files are found by discovery.py.

An envelope comes from outside the agency: it is read as hostile. The rules, in order:
  - only UTF-8 (with or without a byte-order mark); a UTF-16/32 file or a declared non-UTF-8
    encoding is refused (`encoding_unsupported`), and bytes that are not UTF-8 are refused by the
    parser rather than mis-decoded;
  - the prolog is scanned before any parsing: a DOCTYPE (hence any ENTITY) is refused unread
    (`xml_entity_declared`), so no entity is ever expanded and no external resource is named;
  - lxml runs with no DTD loading, no entity resolution, no network and libxml2's default limits
    (`huge_tree=False`: 10 MB per text node, nesting 256) plus our own file-size and depth limits;
  - an envelope larger than one read chunk (1 MB) is read incrementally (a pull parser fed in
    chunks) and each HOSO is released once read, so memory is bounded by one HOSO, not by the
    file; a smaller one (nearly all: ~13 KB each) is parsed in one call.
A file that breaks part-way (truncated, malformed) is rejected whole: the HOSOs read before the
break are NOT received (the consumer discards what it already got); its declared count is still
reported when the header was read. A re-sent complete file is then an ordinary first receipt.

Inner tables (base64 of an XML document) are decoded and parsed one at a time with the same safe
parser; their failures are encounter-level findings (`base64_invalid`, `inner_xml_malformed`,
`inner_too_large`, `missing_xml1`), never an exception.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from transforms.core.digest import DigestMemo
from transforms.ingest._cells import depth_below, depth_of, envelope_items, filehosos

ENVELOPE_ROOT = "GIAMDINHHS"


@dataclass(frozen=True)
class ReadLimits:
    """Limits that make a hostile file fail fast instead of exhausting the machine."""

    # 256 MiB: a large hospital's whole night is ~100 MB; a bigger single file is refused unread
    max_file_bytes: int = 256 << 20
    max_depth: int = 32  # the envelope is 6 deep; an XML signature adds ~8
    max_inner_bytes: int = 16 << 20  # decoded size of one inner table
    max_prolog_bytes: int = 1 << 20
    chunk_bytes: int = 1 << 20
    # 256 MiB: an NDJSON file over this is refused unread (as an envelope is), whatever its lines
    max_ndjson_bytes: int = 256 << 20


DEFAULT_LIMITS = ReadLimits()

# No DTD, no entities, no network; libxml2's default size limits (huge_tree=False).
_SAFE_PARSER_OPTIONS = dict(
    resolve_entities=False,
    no_network=True,
    dtd_validation=False,
    load_dtd=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)
_INNER_PARSER = etree.XMLParser(**_SAFE_PARSER_OPTIONS)


# The standard's facility code (MACSKCB, MA_CSKCB): 5 characters, the first 2 the province; every
# code issued is 5 ASCII digits. Only a code of this shape ever names a facility, a partition
# folder or a ledger entry: fullwidth or other Unicode digits (`str.isdigit` accepts them) are not.
FACILITY_CODE = re.compile(r"[0-9]{5}", re.ASCII)


def valid_facility_code(code: object) -> bool:
    """True when `code` has the standard's facility-code shape (5 ASCII digits), nothing else."""
    return isinstance(code, str) and FACILITY_CODE.fullmatch(code) is not None


def folder_facility(source_file: str) -> str | None:
    """The facility a file's folder names, from its path relative to the night's folder.

    A deployment gives each facility its own folder: the first folder level under the night's
    folder whose name has the facility-code shape names the facility of every file below it
    (the generator writes `<province>/<facility>/<file>.xml`: "01" has not the shape, "01704"
    has). A file with no such folder (directly in the night's folder, or under `fhir/`) names
    none and is not checked.
    """
    for part in source_file.split("/")[:-1]:
        if valid_facility_code(part):
            return part
    return None


def outside_night(path: Path | str, night_dir: Path, seen_dirs: dict[str, bool] | None = None) -> bool:
    """True when `path` resolves (through any symlink) to a place outside the night's folder.

    A symlink inside the night's folder to another file of it is followed; one to `/etc/passwd`,
    `/proc/self/environ` or another night's envelope is not: the file is rejected unread.

    `seen_dirs` (a dict the caller keeps for one batch of files) makes a file that is not itself a
    symlink cost one lstat: it resolves inside exactly when its folder does, which is resolved
    once per folder and remembered there."""
    if seen_dirs is not None:
        try:
            mode = os.lstat(path).st_mode
        except OSError:  # missing: as resolve(strict=True) would say
            return True
        if not stat.S_ISLNK(mode):
            folder = os.path.dirname(path)
            if folder not in seen_dirs:
                seen_dirs[folder] = outside_night(Path(folder), night_dir)
            return seen_dirs[folder]
    try:
        target = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):  # a dangling link, a loop
        return True
    return not target.is_relative_to(night_dir.resolve())


def printable_excerpt(data: bytes | str, limit: int = 200) -> str:
    """A bounded, printable excerpt of hostile content for a quarantine: at most `limit`
    characters (and "…" when cut), every control or unprintable character (NUL, ESC, a lone
    surrogate...) escaped as `\\xNN`/`\\uNNNN`. Never the whole foreign content: a quarantine
    keeps this and a SHA-256 of the bytes."""
    text = data[: limit * 4].decode("utf-8", "replace") if isinstance(data, bytes | bytearray) else data
    out: list[str] = []
    size = 0
    for c in text:
        if not c.isprintable() or 0xD800 <= ord(c) <= 0xDFFF:
            c = c.encode("unicode_escape", "backslashreplace").decode("ascii")
        if size + len(c) > limit:
            return "".join(out) + "…"
        out.append(c)
        size += len(c)
    cut = isinstance(data, bytes | bytearray) and len(data) > limit * 4
    return "".join(out) + ("…" if cut else "")


class EnvelopeRejected(Exception):
    """The file is refused as a whole; `reason` is one of reasons.FILE_REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class EnvelopeHeader:
    """What the envelope says about itself (filled while reading; None when absent)."""

    facility_code: str | None = None  # MACSKCB, only when it has the standard's shape
    facility_code_raw: str | None = None  # MACSKCB as sent, at most 64 characters (for the reason)
    signed: bool = False  # a non-empty CHUKYDONVI (the facility's XML signature) is present
    created_on: str | None = None  # NGAYLAP, raw text (yyyymmdd)
    declared: int | None = None  # SOLUONGHOSO
    declared_raw: str | None = None


@dataclass(frozen=True)
class Hoso:
    """One HOSO of an envelope: its 0-based position and its (LOAIHOSO, base64 payload) pairs."""

    index: int
    files: tuple[tuple[str, str], ...]


_UTF8_BOM = codecs.BOM_UTF8
_WIDE_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_XML_DECL = re.compile(rb"<\?xml\s[^>]*?\?>")
_DECL_ENCODING = re.compile(rb"""encoding\s*=\s*["']([^"']*)["']""")
_UTF8_NAMES = {"utf-8", "utf8"}
# Namespace declarations and prefixed attributes of a start tag, removed when malformed.
_NS_DECL = re.compile(rb"""\s+xmlns(?::[^\s=>/]*)?(?:\s*=\s*(?:"[^"]*"|'[^']*'))?""")
_PREFIXED_ATTR = re.compile(rb"""\s+[A-Za-z_][\w.-]*:[\w.-]+\s*=\s*(?:"[^"]*"|'[^']*')""")
_PREFIXED_TAG = re.compile(rb"<(/?)[A-Za-z_][\w.-]*:(?=[A-Za-z_])")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2] if tag[0] == "{" else tag


def check_prolog(head: bytes, limits: ReadLimits = DEFAULT_LIMITS) -> int | None:
    """Scan the bytes before the root element; return the offset of the root start tag.

    Returns None when `head` ends before the root element starts (read more). Raises
    EnvelopeRejected for a DOCTYPE/ENTITY, a non-UTF-8 encoding, or junk before the root.
    """
    if head.startswith(_WIDE_BOMS) or b"\x00" in head[:4]:
        raise EnvelopeRejected("encoding_unsupported", "UTF-16/UTF-32 (only UTF-8 is accepted)")
    pos = len(_UTF8_BOM) if head.startswith(_UTF8_BOM) else 0
    decl = _XML_DECL.match(head, pos)
    if decl:
        enc = _DECL_ENCODING.search(decl.group(0))
        if enc and enc.group(1).decode("ascii", "replace").strip().lower() not in _UTF8_NAMES:
            raise EnvelopeRejected("encoding_unsupported", f"declared encoding {enc.group(1)[:40]!r}")
        pos = decl.end()
    elif head.startswith(b"<?xml", pos) and len(head) - pos < limits.max_prolog_bytes:
        return None
    while True:
        while pos < len(head) and head[pos] in b" \t\r\n":
            pos += 1
        if pos >= len(head) or len(head) - pos < 10:
            if len(head) >= limits.max_prolog_bytes:
                raise EnvelopeRejected("xml_malformed", "prolog too long")
            return None
        if head.startswith(b"<?", pos):
            end = head.find(b"?>", pos)
            if end < 0:
                return None
            pos = end + 2
        elif head.startswith(b"<!--", pos):
            end = head.find(b"-->", pos)
            if end < 0:
                return None
            pos = end + 3
        elif head.startswith(b"<!", pos):
            word = head[pos + 2 : pos + 9].upper()
            if word.startswith((b"DOCTYPE", b"ENTITY")):
                raise EnvelopeRejected("xml_entity_declared", "DOCTYPE/ENTITY refused before parsing")
            raise EnvelopeRejected("xml_malformed", "markup declaration before the root element")
        elif head[pos : pos + 1] == b"<":
            return pos
        else:
            raise EnvelopeRejected("xml_malformed", "content before the root element")


def _repair_root_tag(data: bytes, root_at: int) -> bytes:
    """Drop namespace declarations and prefixed attributes from the envelope's root start tag.

    The standard's envelope uses no prefixed element; its `xmlns:xsi`/`xmlns:xsd` are decoration
    and are often malformed (no value, not a URI), which would make a correct file unreadable.
    """
    end = data.find(b">", root_at)
    if end < 0:
        return data
    tag = data[root_at:end]
    fixed = _REPAIRED_ROOT_TAGS.get(tag)
    if fixed is None:
        fixed = _PREFIXED_ATTR.sub(b"", _NS_DECL.sub(b"", tag))
        if len(_REPAIRED_ROOT_TAGS) < 64:  # bounded: tags come from outside
            _REPAIRED_ROOT_TAGS[tag] = fixed
    return data[:root_at] + fixed + data[end:] if fixed != tag else data


# Root start tags already repaired (nearly every envelope of a facility repeats one): the two
# regular expressions run once per distinct tag, not once per file.
_REPAIRED_ROOT_TAGS: dict[bytes, bytes] = {}


def _classify_syntax_error(error: Exception) -> str:
    message = str(error)
    if "UTF-8" in message or "encoding" in message.lower() or "Char 0x" in message:
        return "encoding_unsupported"
    # before "huge": libxml2's own depth limit says "Excessive depth ... use XML_PARSE_HUGE"
    if "Excessive depth" in message or "depth" in message.lower():
        return "xml_too_deep"
    if "huge" in message.lower() or "too large" in message.lower():
        return "xml_too_large"
    if "Entity" in message or "DOCTYPE" in message:
        return "xml_entity_declared"
    return "xml_malformed"


class EnvelopeReader:
    """Iterate over the HOSOs of one envelope, never raising on bad input.

    After (or during) iteration: `header` holds MACSKCB, NGAYLAP, SOLUONGHOSO as read so far;
    `rejection` is (reason, detail) when the file was refused, in which case every HOSO already
    yielded must be discarded; `hoso_count` is the number of HOSOs yielded.
    """

    def __init__(
        self,
        source: Path | str | bytes,
        limits: ReadLimits = DEFAULT_LIMITS,
        expected_facility: str | None = None,
        night_dir: Path | None = None,
        seen_dirs: dict[str, bool] | None = None,
    ):
        """`expected_facility`: the facility the file's folder names (`folder_facility`); a file
        claiming another MACSKCB is rejected `facility_mismatch`. `night_dir`: the night's
        folder; a path resolving outside it (a symlink) is rejected `symlink_outside_night`
        (`seen_dirs`: the folders already resolved, see `outside_night`)."""
        self.source = source
        self.limits = limits
        self.expected_facility = expected_facility
        self.night_dir = night_dir
        self.seen_dirs = seen_dirs
        self.header = EnvelopeHeader()
        self.rejection: tuple[str, str] | None = None
        self.hoso_count = 0
        self._head = b""
        # (size, mtime_ns, ctime_ns, inode, device, SHA-256) of a file read from its path to its
        # end: the stat of the file opened, taken before the read, and the digest of the bytes
        # read (core.digest.DigestMemo's entry: the ingest fingerprint need not read it again)
        self.content_digest: tuple | None = None

    def __iter__(self) -> Iterator[Hoso]:
        try:
            yield from self._read()
        except EnvelopeRejected as e:
            self.rejection = (e.reason, e.detail)
            if e.reason == "xml_entity_declared":
                self._read_header_without_doctype()
        except etree.XMLSyntaxError as e:
            self.rejection = (_classify_syntax_error(e), str(e)[:300])
        except OSError as e:
            self.rejection = ("file_unreadable", f"{type(e).__name__}: {e.strerror or e}"[:300])
        except Exception as e:  # noqa: BLE001 - any other failure of a hostile file is a rejection
            self.rejection = ("xml_malformed", f"{type(e).__name__}: {e}"[:300])

    def _read_header_without_doctype(self) -> None:
        """Fill the header of a refused file from its first bytes with the DOCTYPE cut out.

        The refused file still counts for its facility (files, declared). Nothing declared in the
        DOCTYPE survives the cut, so no entity can be expanded; an entity reference in the
        header simply ends the attempt.
        """
        head = self._head[: self.limits.max_prolog_bytes]
        start = head.find(b"<!DOCTYPE")
        if start < 0:
            return
        subset = head.find(b"[", start)
        close = head.find(b">", start)
        if 0 <= subset < close:
            end = head.find(b"]", subset)
            close = head.find(b">", end) if end >= 0 else -1
        if close < 0:
            return
        peek = EnvelopeReader(head[:start] + head[close + 1 :], self.limits)
        try:
            for _ in peek._read_header_only():
                pass
        except Exception:  # noqa: BLE001 - best effort: the file is rejected either way
            pass
        self.header = peek.header

    def _read_header_only(self) -> Iterator[None]:
        """Pull-parse until the HOSO list starts, copying the header fields into `self.header`."""
        parser = etree.XMLPullParser(events=("end",), **_SAFE_PARSER_OPTIONS)
        parser.feed(self.source)
        for _, el in parser.read_events():
            name = _local(el.tag) if isinstance(el.tag, str) else ""
            if name in ("MACSKCB", "NGAYLAP", "SOLUONGHOSO"):
                text = (el.text or "").strip() or None
                if name == "MACSKCB":
                    self.header.facility_code = text if valid_facility_code(text) else None
                    self.header.facility_code_raw = text[:64] if text else None
                elif name == "NGAYLAP":
                    self.header.created_on = text
                elif text and text.isdigit():
                    self.header.declared = int(text)
            yield None

    def _chunks(self) -> Iterator[bytes]:
        limit = self.limits.max_file_bytes
        if isinstance(self.source, bytes | bytearray):
            if len(self.source) > limit:
                raise EnvelopeRejected("xml_too_large", f"{len(self.source)} bytes > {limit}")
            step = self.limits.chunk_bytes
            for i in range(0, len(self.source), step):
                yield bytes(self.source[i : i + step])
            return
        if self.night_dir is not None and outside_night(self.source, self.night_dir, self.seen_dirs):
            raise EnvelopeRejected("symlink_outside_night", "the path leaves the night's folder (not read)")
        # os-level calls (no file object; the size of the file opened, not of the path): a
        # million small files pay these per file
        fd = os.open(os.fspath(self.source), os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            size = st.st_size
            if size > limit:
                raise EnvelopeRejected("xml_too_large", f"{size} bytes > {limit}")
            total = 0
            step = self.limits.chunk_bytes
            digest = hashlib.sha256()
            # Each read asks for what is left of the size seen (+1 to see the end) when that is
            # less than a chunk: a read allocates what it asks for, and nearly every file is small.
            while chunk := os.read(fd, step if total > size else min(step, size - total + 1)):
                total += len(chunk)
                if total > limit:  # the file grew while we read it
                    raise EnvelopeRejected("xml_too_large", f"more than {limit} bytes")
                digest.update(chunk)
                yield chunk
            if total == size and stat.S_ISREG(st.st_mode):
                self.content_digest = (*DigestMemo.stat_key(st), digest.hexdigest())
        finally:
            os.close(fd)

    def _read(self) -> Iterator[Hoso]:
        chunks = self._chunks()
        head = b""
        root_at = None
        for chunk in chunks:
            head += chunk
            self._head = head
            root_at = check_prolog(head, self.limits)
            if root_at is not None:
                break
        if root_at is None:
            root_at = check_prolog(head + b" " * 10, self.limits)  # a tiny file: decide now
            if root_at is None:
                raise EnvelopeRejected("xml_malformed", "no root element")
        root = _ROOT_NAME.match(head, root_at)
        name = _local((root.group(1) if root else b"").decode("utf-8", "replace").rpartition(":")[2] or "?")
        if name != ENVELOPE_ROOT:
            raise EnvelopeRejected("not_an_envelope", f"root element {name[:60]!r}")
        head = _repair_root_tag(head, root_at)
        # A file that the first chunk holds whole (nearly all: one encounter is ~13 KB) is parsed
        # in one call and the finished tree walked once in C (`envelope_items`: the header
        # fields, the signature and the HOSOs in the order their elements end), which costs a
        # fraction of the pull parser's events; only when it parses and no element is nested
        # deeper than the limit, so that no depth check could fail. Otherwise, and for a larger
        # file, it is read as a stream. Either way the handler sees the same items in the same
        # order.
        deferred: BaseException | None = None  # what reading on raised, re-raised in its turn
        if len(head) < self.limits.chunk_bytes:
            try:
                rest = next(chunks, None)
            except (OSError, EnvelopeRejected) as e:
                rest, deferred = b"", e
            root = _whole_tree(head, self.limits.max_depth) if rest is None else None
            if root is not None:
                state = _EnvelopeState(self)
                yield from state.consume_tree(root)
                self._finish(state)
                return
            if rest:
                chunks = itertools.chain([rest], chunks)
        parser = etree.XMLPullParser(events=("start", "end"), tag=_EVENT_TAGS, **_SAFE_PARSER_OPTIONS)
        state = _EnvelopeState(self)
        parser.feed(head)
        yield from state.consume(parser.read_events())
        if deferred is not None:
            raise deferred
        for chunk in chunks:
            parser.feed(chunk)
            yield from state.consume(parser.read_events())
        parser.close()
        yield from state.consume(parser.read_events())
        self._finish(state)

    def _finish(self, state: _EnvelopeState) -> None:
        if not state.saw_root:
            raise EnvelopeRejected("xml_malformed", "no root element")
        if not self.header.facility_code:
            raise EnvelopeRejected("facility_code_missing", "the envelope has no MACSKCB")


# The elements the envelope's pull parser reports (lxml filters the others in C; they are still
# parsed into the tree): the root, HOSO, the header fields and the envelope's own containers.
# Nesting is checked on the tree in C instead of per event: a HOSO's subtree when it ends, the
# rest of the envelope when the root ends (a file nested deeper than libxml2's own limit, 256,
# fails while parsing).
_EVENT_TAGS = tuple(
    f"{{*}}{name}"
    for name in (
        ENVELOPE_ROOT,
        "HOSO",
        "MACSKCB",
        "NGAYLAP",
        "SOLUONGHOSO",
        "THONGTINDONVI",
        "THONGTINHOSO",
        "DANHSACHHOSO",
        "CHUKYDONVI",
    )
)
_ROOT_NAME = re.compile(rb"<([^\s/>]+)")


_ENVELOPE_PARSER = etree.XMLParser(**_SAFE_PARSER_OPTIONS)


def _whole_tree(data: bytes, max_depth: int) -> etree._Element | None:
    """The envelope `data` parsed in one call, when it parses and no element in it is nested
    deeper than `max_depth` (then no depth check of the stream could fail); else None."""
    try:
        root = etree.fromstring(data, _ENVELOPE_PARSER)
    except Exception:  # noqa: BLE001 - the stream reads it again and says why it fails
        return None
    return root if depth_of(root) + depth_below(root) <= max_depth else None


class _EnvelopeState:
    """The event handler of EnvelopeReader: checks depth, fills the header, emits HOSOs.

    `consume` takes the stream's events (checking depth and releasing what it has read);
    `consume_tree` a finished tree already checked whole (`_whole_tree`), walked in C."""

    def __init__(self, reader: EnvelopeReader):
        self.reader = reader
        self.saw_root = False
        self.in_hoso = 0

    def _check_depth(self, el: etree._Element) -> None:
        max_depth = self.reader.limits.max_depth
        if depth_of(el) + depth_below(el) > max_depth:
            raise EnvelopeRejected("xml_too_deep", f"nesting deeper than {max_depth}")

    def _hoso(self, files: tuple[tuple[str, str], ...]) -> Hoso:
        hoso = Hoso(self.reader.hoso_count, files)
        self.reader.hoso_count += 1
        return hoso

    def _unread(self, name: str) -> bool:
        """True when `name` is a header field (MACSKCB, NGAYLAP, SOLUONGHOSO) not read yet: the
        first of each counts."""
        header = self.reader.header
        return (
            (name == "MACSKCB" and header.facility_code_raw is None)
            or (name == "NGAYLAP" and header.created_on is None)
            or (name == "SOLUONGHOSO" and header.declared_raw is None)
        )

    def _header_field(self, name: str, text: str | None) -> None:
        """MACSKCB, NGAYLAP or SOLUONGHOSO (outside any HOSO), when not read yet (`_unread`)."""
        if not self._unread(name):
            return
        header = self.reader.header
        if name == "MACSKCB":
            text = (text or "").strip()
            header.facility_code_raw = text[:64]
            if not text:
                return  # facility_code_missing at the end
            if not valid_facility_code(text):
                raise EnvelopeRejected("facility_code_invalid", f"MACSKCB {printable_excerpt(text, 40)!r}")
            expected = self.reader.expected_facility
            if expected is not None and text != expected:
                raise EnvelopeRejected(
                    "facility_mismatch", f"MACSKCB {text} in the folder of facility {expected}"
                )
            header.facility_code = text
        elif name == "NGAYLAP":
            header.created_on = (text or "").strip() or None
        else:
            header.declared_raw = (text or "").strip()
            if header.declared_raw.isdigit():
                header.declared = int(header.declared_raw)

    def _signature(self, text: str | None, has_element_child: bool) -> None:
        """A CHUKYDONVI outside any HOSO (the last one counts): signed when it has text or an
        element (an XML signature), recorded, not verified."""
        self.reader.header.signed = bool((text or "").strip()) or has_element_child

    def consume_tree(self, root: etree._Element) -> Iterator[Hoso]:
        self.saw_root = _local(root.tag) == ENVELOPE_ROOT
        for item in envelope_items(root):
            name = item[0]
            if name == "HOSO":
                yield self._hoso(item[1])
            elif name == "CHUKYDONVI":
                self._signature(item[1], item[2])
            else:
                self._header_field(name, item[1])

    def consume(self, events: Iterator[tuple[str, etree._Element]]) -> Iterator[Hoso]:
        for event, el in events:
            name = _local(el.tag)
            if event == "start":
                if name == "HOSO":
                    self.in_hoso += 1
                elif name == ENVELOPE_ROOT and not self.saw_root:
                    self.saw_root = True
                continue
            if name == "HOSO":
                self.in_hoso -= 1
                if self.in_hoso == 0:
                    self._check_depth(el)
                    # elements before it in the list are released with it: check them first
                    before = el.getprevious()
                    while before is not None:
                        self._check_depth(before)
                        before = before.getprevious()
                    hoso = self._hoso(filehosos(el))
                    _release(el)
                    yield hoso
            elif self.in_hoso:
                continue
            elif self._unread(name):
                self._header_field(name, el.text)  # a second one is released below, as any
            elif el.getparent() is None:
                self._check_depth(el)  # the root: what is left of the envelope
            elif name == "CHUKYDONVI":
                self._check_depth(el)
                self._signature(el.text, len(el) > 0)
                _release(el)
            elif depth_of(el) <= 2:
                self._check_depth(el)
                _release(el)  # e.g. a large CHUKYDONVI signature


def _release(el: etree._Element) -> None:
    el.clear(keep_tail=False)
    parent = el.getparent()
    if parent is not None:
        while el.getprevious() is not None:
            del parent[0]
