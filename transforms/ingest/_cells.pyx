# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Raw text cells of XML 130 inner tables, read straight off libxml2's tree into Arrow columns.

The inner tables are parsed by lxml with the safe parser of `transforms.extract` (no DTD, no
entities, no network, libxml2's size limits); this module only READS the finished tree through
lxml's public C API (`_Element._c_node`): it walks the row elements, takes each field's text as
the UTF-8 bytes libxml2 already holds and appends them to one buffer, row-major. No Python
object is made per cell (lxml would make an element proxy and a `str` for each): a batch of rows
becomes one Arrow string array per field in `columns()`.

Semantics are those of lxml's `element.text` and a dict per row:
  - a field's text is the concatenation of its leading text and CDATA nodes; a field with no
    text node is null, one whose text nodes are all empty is "";
  - a field repeated in a row keeps its last value; a field absent from a row is null;
  - names are compared on the local name (a namespace prefix or default namespace is ignored);
  - fields not in `names` are not kept: `unknown` counts the rows that carry each of them.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset, strcmp, strlen

cimport lxml.includes.etreepublic as cetree
from lxml.includes cimport tree

import pyarrow as pa

cetree.import_lxml__etree()

cdef extern from *:
    """
    #define HB_ELEMENT 1
    #define HB_TEXT 3
    #define HB_CDATA 4
    #define HB_XINCLUDE_START 19
    #define HB_XINCLUDE_END 20
    """
    int HB_ELEMENT, HB_TEXT, HB_CDATA, HB_XINCLUDE_START, HB_XINCLUDE_END

cdef int64_t _MAX_STRING_BYTES = 2147483647  # Arrow `string` offsets are int32


cdef inline tree.xmlNode* _text_or_skip(tree.xmlNode* node) noexcept:
    """`node` when it is a text or CDATA node, skipping XInclude markers; else NULL (lxml's rule)."""
    while node is not NULL:
        if node.type == HB_TEXT or node.type == HB_CDATA:
            return node
        if node.type == HB_XINCLUDE_START or node.type == HB_XINCLUDE_END:
            node = node.next
            continue
        return NULL
    return NULL


cdef tree.xmlNode* _find_element(tree.xmlNode* top, const char* name) noexcept:
    """The first element named `name` in document order under `top`, `top` included; or NULL."""
    cdef tree.xmlNode* node = top
    while node is not NULL:
        if node.type == HB_ELEMENT and strcmp(<const char*>node.name, name) == 0:
            return node
        if node.children is not NULL and node.type == HB_ELEMENT:
            node = node.children
            continue
        while node is not top and node.next is NULL:
            node = node.parent
        if node is top:
            return NULL
        node = node.next
    return NULL


cdef class Layout:
    """The fields of one table, shared by all its `Cells` (built once per table, not per HOSO)."""

    cdef readonly tuple names
    cdef dict _index  # bytes name -> column
    cdef list _bnames  # bytes names, kept alive for `_cname`
    cdef const char** _cname
    cdef int* _next  # per column (and the row start, at ncols): the column seen after it last time
    cdef Py_ssize_t ncols

    def __cinit__(self, names):
        cdef Py_ssize_t j
        self.names = tuple(names)
        self.ncols = len(self.names)
        self._bnames = [n.encode("utf-8") for n in self.names]
        self._index = {b: j for j, b in enumerate(self._bnames)}
        if len(self._index) != self.ncols:
            raise ValueError("column names must be unique")
        self._cname = <const char**>malloc(max(1, self.ncols) * sizeof(char*))
        self._next = <int*>malloc((self.ncols + 1) * sizeof(int))
        if self._cname is NULL or self._next is NULL:
            raise MemoryError()
        for j in range(self.ncols):
            self._cname[j] = <const char*>(<bytes>self._bnames[j])
        for j in range(self.ncols + 1):
            self._next[j] = -1

    def __dealloc__(self):
        free(self._cname)
        free(self._next)

    cdef int column(self, const char* name, int prev) except -2:
        """The column of field `name` (-1: not a field of the table), `prev` the row's previous
        column: fields come in the same order row after row, so the column that followed `prev`
        last time is tried first (one strcmp) before the dictionary."""
        cdef int j = self._next[prev]
        if j >= 0 and strcmp(name, self._cname[j]) == 0:
            return j
        found = self._index.get(PyBytes_FromStringAndSize(name, strlen(name)))
        if found is None:
            return -1
        j = <int>found
        self._next[prev] = j
        return j


cdef class Cells:
    """A growing batch of rows of one table: per row and field, a slice of one byte buffer."""

    cdef readonly Layout layout
    cdef readonly dict unknown  # field not in the layout -> number of rows carrying it
    cdef Py_ssize_t ncols
    cdef readonly Py_ssize_t nrows
    cdef Py_ssize_t _cap_rows
    cdef int64_t* _start  # nrows x ncols, row-major
    cdef int64_t* _len  # -1: null
    cdef char* _data
    cdef int64_t _data_len, _data_cap

    def __cinit__(self, Layout layout not None):
        self.layout = layout
        self.ncols = layout.ncols
        self.unknown = {}
        self.nrows = 0
        self._cap_rows = 0
        self._start = NULL
        self._len = NULL
        self._data = NULL
        self._data_len = 0
        self._data_cap = 0

    @property
    def names(self):
        return self.layout.names

    def __dealloc__(self):
        free(self._start)
        free(self._len)
        free(self._data)

    # --- growth ------------------------------------------------------------------------------

    cdef int _reserve_rows(self, Py_ssize_t more) except -1:
        cdef Py_ssize_t need = self.nrows + more, cap = self._cap_rows
        cdef int64_t* start
        cdef int64_t* length
        if need <= cap:
            return 0
        cap = max(need, cap * 2, 4)
        start = <int64_t*>realloc(self._start, cap * max(1, self.ncols) * sizeof(int64_t))
        if start is NULL:
            raise MemoryError()
        self._start = start
        length = <int64_t*>realloc(self._len, cap * max(1, self.ncols) * sizeof(int64_t))
        if length is NULL:
            raise MemoryError()
        self._len = length
        self._cap_rows = cap
        return 0

    cdef int _reserve_data(self, int64_t more) except -1:
        cdef int64_t need = self._data_len + more, cap = self._data_cap
        cdef char* data
        if need <= cap:
            return 0
        cap = max(need, cap * 2, 1024)
        data = <char*>realloc(self._data, cap)
        if data is NULL:
            raise MemoryError()
        self._data = data
        self._data_cap = cap
        return 0

    cdef int _new_row(self) except -1:
        cdef Py_ssize_t j, base
        self._reserve_rows(1)
        base = self.nrows * self.ncols
        for j in range(self.ncols):
            self._len[base + j] = -1
        self.nrows += 1
        return 0

    # --- reading a tree ----------------------------------------------------------------------

    cdef int _store_text(self, Py_ssize_t cell, tree.xmlNode* field) except -1:
        cdef tree.xmlNode* node = _text_or_skip(field.children)
        cdef int64_t size
        if node is NULL:
            self._len[cell] = -1
            return 0
        self._start[cell] = self._data_len
        while node is not NULL:
            if node.content is not NULL:
                size = strlen(<const char*>node.content)
                self._reserve_data(size)
                memcpy(self._data + self._data_len, node.content, size)
                self._data_len += size
            node = _text_or_skip(node.next)
        self._len[cell] = self._data_len - self._start[cell]
        return 0

    cdef int _add_row(self, tree.xmlNode* row) except -1:
        cdef tree.xmlNode* child = row.children
        cdef Py_ssize_t base
        cdef int j, prev = <int>self.ncols
        cdef set extra = None
        self._new_row()
        base = (self.nrows - 1) * self.ncols
        while child is not NULL:
            if child.type == HB_ELEMENT:
                j = self.layout.column(<const char*>child.name, prev)
                if j >= 0:
                    self._store_text(base + j, child)
                    prev = j
                else:
                    if extra is None:
                        extra = set()
                    extra.add(PyBytes_FromStringAndSize(<const char*>child.name, strlen(<const char*>child.name)).decode("utf-8", "replace"))
            child = child.next
        if extra is not None:
            for name in extra:
                self.unknown[name] = self.unknown.get(name, 0) + 1
        return 0

    def add(self, cetree._Element root, row_name, record_name=None):
        """Append the rows of an inner table; returns the number of rows added.

        `row_name`: every element of that local name under `root` (`root` included), in
        document order, is a row. Else a flat table: its one row is the first `record_name`
        element (or `root` itself when there is none).
        """
        cdef tree.xmlNode* top = root._c_node
        cdef tree.xmlNode* node
        cdef bytes name
        cdef Py_ssize_t before = self.nrows
        if row_name is None:
            name = (record_name or "").encode("utf-8")
            node = _find_element(top, name) if name else NULL
            self._add_row(top if node is NULL else node)
            return 1
        name = row_name.encode("utf-8")
        node = _find_element(top, name)
        while node is not NULL:
            self._add_row(node)
            node = _next_match(top, node, name)
        return self.nrows - before

    def add_empty_row(self):
        """Append one row with every field null (a HOSO that keeps a lineage-only row)."""
        self._new_row()

    def extend(self, Cells other not None):
        """Append the rows of `other` (same names) and its unknown-field counts."""
        cdef Py_ssize_t k, n = other.nrows * self.ncols, base
        cdef int64_t shift = self._data_len
        if other.layout is not self.layout:
            raise ValueError("Cells.extend: different column names")
        self._reserve_rows(other.nrows)
        self._reserve_data(other._data_len)
        if other._data_len:
            memcpy(self._data + self._data_len, other._data, other._data_len)
        self._data_len += other._data_len
        base = self.nrows * self.ncols
        for k in range(n):
            self._len[base + k] = other._len[k]
            self._start[base + k] = other._start[k] + shift
        self.nrows += other.nrows
        for name, count in other.unknown.items():
            self.unknown[name] = self.unknown.get(name, 0) + count

    # --- reading back ------------------------------------------------------------------------

    cdef int _column_of(self, name) except -2:
        try:
            return self.layout.names.index(name)
        except ValueError:
            return -1

    def first_value(self, name):
        """The first non-blank value of field `name`, stripped, or None."""
        cdef int j = self._column_of(name)
        cdef Py_ssize_t r, cell
        if j < 0:
            return None
        for r in range(self.nrows):
            cell = r * self.ncols + j
            if self._len[cell] > 0:
                text = self._data[self._start[cell] : self._start[cell] + self._len[cell]].decode(
                    "utf-8", "replace"
                ).strip()
                if text:
                    return text
        return None

    def rows(self):
        """One dict per row (field -> text) of the non-null fields (for inspection and tests)."""
        cdef Py_ssize_t r, j, cell
        out = []
        for r in range(self.nrows):
            row = {}
            for j in range(self.ncols):
                cell = r * self.ncols + j
                if self._len[cell] >= 0:
                    row[self.layout.names[j]] = self._data[
                        self._start[cell] : self._start[cell] + self._len[cell]
                    ].decode("utf-8")
            out.append(row)
        return out

    def columns(self):
        """One Arrow `string` array per name, `nrows` long (null where a row lacks the field)."""
        cdef Py_ssize_t r, j, cell, n = self.nrows, nulls
        cdef int64_t total
        cdef int32_t* offsets
        cdef uint8_t* valid
        cdef char* data
        cdef int64_t length
        out = {}
        for j in range(self.ncols):
            total = 0
            nulls = 0
            for r in range(n):
                length = self._len[r * self.ncols + j]
                if length < 0:
                    nulls += 1
                else:
                    total += length
            if total > _MAX_STRING_BYTES:
                raise OverflowError(f"column {self.layout.names[j]!r}: {total} bytes in one batch")
            offsets_buf = PyByteArray_FromStringAndSize(NULL, (n + 1) * sizeof(int32_t))
            data_buf = PyByteArray_FromStringAndSize(NULL, total)
            offsets = <int32_t*>PyByteArray_AS_STRING(offsets_buf)
            data = PyByteArray_AS_STRING(data_buf)
            valid_buf = None
            valid = NULL
            if nulls:
                valid_buf = PyByteArray_FromStringAndSize(NULL, (n + 7) // 8)
                valid = <uint8_t*>PyByteArray_AS_STRING(valid_buf)
                memset(valid, 0, (n + 7) // 8)
            total = 0
            offsets[0] = 0
            for r in range(n):
                cell = r * self.ncols + j
                length = self._len[cell]
                if length > 0:
                    memcpy(data + total, self._data + self._start[cell], length)
                    total += length
                if length >= 0 and valid is not NULL:
                    valid[r >> 3] |= <uint8_t>(1 << (r & 7))
                offsets[r + 1] = <int32_t>total
            out[self.layout.names[j]] = pa.Array.from_buffers(
                pa.string(),
                n,
                [None if valid_buf is None else pa.py_buffer(valid_buf), pa.py_buffer(offsets_buf), pa.py_buffer(data_buf)],
                null_count=nulls,
            )
        return out


cdef tree.xmlNode* _next_match(tree.xmlNode* top, tree.xmlNode* node, const char* name) noexcept:
    """The next element named `name` after `node` in document order under `top` (descending
    into `node` first, as lxml's `iter` does), or NULL."""
    while True:
        if node.children is not NULL and node.type == HB_ELEMENT:
            node = node.children
        else:
            while node is not top and node.next is NULL:
                node = node.parent
            if node is top:
                return NULL
            node = node.next
        if node.type == HB_ELEMENT and strcmp(<const char*>node.name, name) == 0:
            return node


cdef str _text_of(tree.xmlNode* element):
    """lxml's `element.text`: its leading text and CDATA nodes joined, or None."""
    cdef tree.xmlNode* node = _text_or_skip(element.children)
    if node is NULL:
        return None
    if _text_or_skip(node.next) is NULL:
        return (<const char*>node.content).decode("utf-8") if node.content is not NULL else ""
    parts = []
    while node is not NULL:
        if node.content is not NULL:
            parts.append(<bytes>(<const char*>node.content))
        node = _text_or_skip(node.next)
    return b"".join(parts).decode("utf-8")


def filehosos(cetree._Element hoso):
    """The (LOAIHOSO, NOIDUNGFILE) text pairs of every FILEHOSO under a HOSO element, in
    document order (local names: with or without a namespace). LOAIHOSO is stripped and upper-
    cased, a missing part is ""; the last LOAIHOSO / NOIDUNGFILE of a FILEHOSO wins."""
    return _filehosos(hoso._c_node)


cdef tuple _filehosos(tree.xmlNode* top):
    cdef tree.xmlNode* node = _find_element(top, b"FILEHOSO")
    cdef tree.xmlNode* part
    out = []
    while node is not NULL:
        kind, payload = "", ""
        part = node.children
        while part is not NULL:
            if part.type == HB_ELEMENT:
                if strcmp(<const char*>part.name, b"LOAIHOSO") == 0:
                    kind = (_text_of(part) or "").strip().upper()
                elif strcmp(<const char*>part.name, b"NOIDUNGFILE") == 0:
                    payload = _text_of(part) or ""
            part = part.next
        out.append((kind, payload))
        node = _next_match(top, node, b"FILEHOSO")
    return tuple(out)


cdef inline bint _named(tree.xmlNode* node, const char* name) noexcept:
    return strcmp(<const char*>node.name, name) == 0


cdef bint _has_element_child(tree.xmlNode* element) noexcept:
    cdef tree.xmlNode* node = element.children
    while node is not NULL:
        if node.type == HB_ELEMENT:
            return True
        node = node.next
    return False


def envelope_items(cetree._Element root):
    """What the envelope's event handler needs from a finished envelope tree, in the order the
    elements END (the order of the stream's "end" events), outside any HOSO (local names):
      ("HOSO", filehosos)                      each outermost HOSO;
      ("MACSKCB" | "NGAYLAP" | "SOLUONGHOSO", text)   lxml's `.text` (or None);
      ("CHUKYDONVI", text, has an element child).
    One walk of libxml2's tree in C: no element proxy, no event per element."""
    cdef tree.xmlNode* top = root._c_node
    cdef tree.xmlNode* node = top
    cdef int in_hoso = 0
    out = []
    while True:
        if node.type == HB_ELEMENT:  # entering it
            if _named(node, b"HOSO"):
                in_hoso += 1
            if node.children is not NULL:
                node = node.children
                continue
        while True:  # leaving it (and every ancestor it is the last child of)
            if node.type == HB_ELEMENT:
                if _named(node, b"HOSO"):
                    in_hoso -= 1
                    if in_hoso == 0:
                        out.append(("HOSO", _filehosos(node)))
                elif in_hoso:
                    pass
                elif _named(node, b"MACSKCB") or _named(node, b"NGAYLAP") or _named(node, b"SOLUONGHOSO"):
                    out.append(((<const char*>node.name).decode("ascii"), _text_of(node)))
                elif _named(node, b"CHUKYDONVI"):
                    out.append(("CHUKYDONVI", _text_of(node), _has_element_child(node)))
            if node is top:
                return out
            if node.next is not NULL:
                node = node.next
                break
            node = node.parent


def depth_below(cetree._Element element):
    """The number of element levels under `element` (0 for a leaf)."""
    cdef tree.xmlNode* top = element._c_node
    cdef tree.xmlNode* node = top
    cdef int depth = 0, deepest = 0
    while True:
        if node.children is not NULL and (node is top or node.type == HB_ELEMENT):
            node = node.children
            depth += 1
        else:
            while node is not top and node.next is NULL:
                node = node.parent
                depth -= 1
            if node is top:
                return deepest
            node = node.next
        if node.type == HB_ELEMENT and depth > deepest:
            deepest = depth


def depth_of(cetree._Element element):
    """The nesting level of `element` (1 for the root element)."""
    cdef tree.xmlNode* node = element._c_node
    cdef int depth = 0
    while node is not NULL and node.type == HB_ELEMENT:
        depth += 1
        node = node.parent
    return depth
