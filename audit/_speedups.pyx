# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled fast path of ``enclave audit verify`` (see :mod:`audit._verify`).

Two functions, each the counterpart of pure-Python code in ``_verify.py``, which stays
the reference:

* :func:`check_batch` runs every per-entry check of the verify fast path over one batch
  of ``Store.verify_rows`` rows and returns the leaf hashes, or ``None`` as soon as any
  check fails or anything is unusual. It is *sound, not complete*: it accepts a batch
  only if the Python checks accept it, and on ``None`` the caller checks the batch again
  in Python, which names each bad entry. A leaf outside the common shape (a float, an
  escaped text column, a key with an escape, a time with an offset, ...) just takes the
  Python path. The checks: contiguous indexes; leaf hash equal to ``SHA-256(0x00 ||
  leaf)``; the leaf is canonical JSON (what ``orjson.dumps(orjson.loads(leaf),
  option=OPT_SORT_KEYS)`` gives back unchanged: checked by :func:`canonical_fields`
  on the bytes, without building Python objects); the time column equals the leaf's
  RFC 3339 time; the text columns equal the leaf's values; the query-index row exists
  and equals the entry's columns (compared by the store).
* :func:`tile_levels` hashes the interior nodes of one tile (RFC 9162
  ``SHA-256(0x01 || left || right)``), like ``_verify._tile_levels``.

SHA-256 is OpenSSL's (``EVP_MD_fetch``: the provider configuration, e.g. FIPS, applies):
the system's ``libcrypto``, which a Debian Python's ``hashlib`` uses too. Nothing here releases the GIL or keeps state between calls.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.bool cimport PyBool_Check
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_CheckExact
from libc.stdint cimport int64_t
from libc.string cimport memcmp

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL

cdef extern from "openssl/evp.h":
    ctypedef struct EVP_MD:
        pass
    ctypedef struct EVP_MD_CTX:
        pass
    EVP_MD *EVP_MD_fetch(void *libctx, const char *algorithm, const char *properties)
    EVP_MD_CTX *EVP_MD_CTX_new()
    void EVP_MD_CTX_free(EVP_MD_CTX *ctx)
    int EVP_DigestInit_ex(EVP_MD_CTX *ctx, const EVP_MD *type, void *impl)
    int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt)
    int EVP_DigestFinal_ex(EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s)

cdef const EVP_MD *_SHA256 = EVP_MD_fetch(NULL, b"SHA256", NULL)
if _SHA256 == NULL:
    raise ImportError("OpenSSL has no SHA-256 digest in its default provider")


cdef class _Digest:
    """One EVP digest context, for the duration of a call."""

    cdef EVP_MD_CTX *ctx

    def __cinit__(self):
        self.ctx = EVP_MD_CTX_new()
        if self.ctx == NULL:
            raise MemoryError()

    def __dealloc__(self):
        EVP_MD_CTX_free(self.ctx)

    cdef int sha(self, unsigned char prefix, const char *a, Py_ssize_t na,
                 const char *b, Py_ssize_t nb, unsigned char *out) except -1:
        """``out`` = SHA-256(prefix || a || b)."""
        cdef unsigned int n = 0
        if (EVP_DigestInit_ex(self.ctx, _SHA256, NULL) != 1
                or EVP_DigestUpdate(self.ctx, &prefix, 1) != 1
                or EVP_DigestUpdate(self.ctx, a, <size_t>na) != 1
                or (nb > 0 and EVP_DigestUpdate(self.ctx, b, <size_t>nb) != 1)
                or EVP_DigestFinal_ex(self.ctx, out, &n) != 1
                or n != 32):
            raise RuntimeError("OpenSSL SHA-256 failed")
        return 0


# --- canonical JSON, checked on the bytes -------------------------------------------
#
# Accepted: exactly what orjson.dumps(orjson.loads(x), option=OPT_SORT_KEYS) returns
# unchanged, restricted to a subset that is easy to get exactly right; anything else
# is refused (and then checked in Python). The subset:
# * no whitespace outside strings; objects, arrays, strings, integers, true/false/null;
#   at most _MAX_DEPTH levels of nesting;
# * strings are valid UTF-8 (no surrogates, nothing above U+10FFFF, shortest forms),
#   with no raw control character, and with exactly the escapes orjson writes: \" \\
#   \b \t \n \f \r and \u00XX (lowercase hex) for the other characters below U+0020;
# * object keys are strings without escapes, in strictly increasing byte order (UTF-8
#   byte order is code point order, orjson's sort order; strictly: no duplicates);
# * integers have at most 18 digits (well inside the 64 bits orjson keeps as ints), no leading
#   zero, no "-0"; floats (a fraction or an exponent) are refused.

cdef enum:
    _MAX_DEPTH = 32
    _N_FIELDS = 7

FIELD_NAMES = ("time", "id", "source", "actor", "action", "enclave", "outcome")
"""The top-level fields the columns hold, in this order: time, then the order of
``Store.VERIFY_COLUMNS``."""


cdef tuple _NAME_BYTES = tuple(name.encode() for name in FIELD_NAMES)  # C-level: not rebindable
cdef const char *_NAME_PTR[_N_FIELDS]
cdef Py_ssize_t _NAME_LEN[_N_FIELDS]
for _i in range(_N_FIELDS):
    _NAME_PTR[_i] = PyBytes_AS_STRING(_NAME_BYTES[_i])
    _NAME_LEN[_i] = PyBytes_GET_SIZE(_NAME_BYTES[_i])


cdef inline int _field_index(const unsigned char *k, Py_ssize_t n) noexcept:
    """The position in FIELD_NAMES of the key ``k[:n]``, or -1."""
    cdef int f
    for f in range(_N_FIELDS):
        if n == _NAME_LEN[f] and memcmp(k, _NAME_PTR[f], n) == 0:
            return f
    return -1


cdef enum:  # the kinds of a field's value
    _ABSENT = 0
    _PLAIN = 1    # a string without escapes: its bytes are its UTF-8
    _ESCAPED = 2  # a string with an escape
    _NULL = 3
    _OTHER = 4


cdef struct _Field:
    Py_ssize_t start  # of a string's content (after the quote)
    Py_ssize_t length
    int kind


cdef struct _Scan:
    const unsigned char *p
    Py_ssize_t n
    Py_ssize_t pos
    _Field *fields  # filled for the top-level object's keys (depth 1) in FIELD_NAMES


cdef inline bint _cont(const unsigned char *p, Py_ssize_t i, Py_ssize_t n) noexcept:
    return i < n and (p[i] & 0xC0) == 0x80


cdef int _string(_Scan *s, bint is_key, int *kind) noexcept:
    """A string at ``s.pos`` (its opening quote); on success ``s.pos`` is past its
    closing quote and ``kind`` is _PLAIN or _ESCAPED. Returns 1, or 0 to refuse."""
    cdef const unsigned char *p = s.p
    cdef Py_ssize_t n = s.n
    cdef Py_ssize_t i = s.pos + 1
    cdef unsigned char c, e, h1, h2
    kind[0] = _PLAIN
    while i < n:
        c = p[i]
        if c == 34:  # '"'
            s.pos = i + 1
            return 1
        if c < 0x20:
            return 0
        if c == 92:  # '\\'
            if is_key or i + 1 >= n:
                return 0
            e = p[i + 1]
            kind[0] = _ESCAPED
            if e == 34 or e == 92 or e == 98 or e == 116 or e == 110 or e == 102 or e == 114:
                i += 2  # \" \\ \b \t \n \f \r
                continue
            if e != 117 or i + 5 >= n:  # 'u'
                return 0
            # \u00XX, lowercase hex, for a control character without a short escape
            if p[i + 2] != 48 or p[i + 3] != 48:
                return 0
            h1 = p[i + 4]
            h2 = p[i + 5]
            if h1 != 48 and h1 != 49:
                return 0
            if not (48 <= h2 <= 57 or 97 <= h2 <= 102):
                return 0
            if h1 == 48 and (h2 == 56 or h2 == 57 or h2 == 97 or h2 == 99 or h2 == 100):
                return 0  # 08 09 0a 0c 0d have short escapes
            i += 6
            continue
        if c < 0x80:
            i += 1
        elif 0xC2 <= c <= 0xDF:
            if not _cont(p, i + 1, n):
                return 0
            i += 2
        elif 0xE0 <= c <= 0xEF:
            if i + 2 >= n or not _cont(p, i + 1, n) or not _cont(p, i + 2, n):
                return 0
            if c == 0xE0 and p[i + 1] < 0xA0:  # overlong
                return 0
            if c == 0xED and p[i + 1] > 0x9F:  # a surrogate
                return 0
            i += 3
        elif 0xF0 <= c <= 0xF4:
            if (i + 3 >= n or not _cont(p, i + 1, n) or not _cont(p, i + 2, n)
                    or not _cont(p, i + 3, n)):
                return 0
            if c == 0xF0 and p[i + 1] < 0x90:  # overlong
                return 0
            if c == 0xF4 and p[i + 1] > 0x8F:  # above U+10FFFF
                return 0
            i += 4
        else:
            return 0
    return 0


cdef int _integer(_Scan *s) noexcept:
    cdef const unsigned char *p = s.p
    cdef Py_ssize_t i = s.pos
    cdef Py_ssize_t start
    if p[i] == 45:  # '-'
        i += 1
    start = i
    if i >= s.n or not (48 <= p[i] <= 57):
        return 0
    if p[i] == 48:
        i += 1
        if start != s.pos:  # "-0"
            return 0
    else:
        while i < s.n and 48 <= p[i] <= 57:
            i += 1
    if i - start > 18:
        return 0
    if i < s.n and (p[i] == 46 or p[i] == 101 or p[i] == 69 or 48 <= p[i] <= 57):
        return 0  # a float (refused), or a digit after a leading zero
    s.pos = i
    return 1


cdef int _literal(_Scan *s, const char *word, Py_ssize_t n) noexcept:
    if s.pos + n > s.n or memcmp(s.p + s.pos, word, n) != 0:
        return 0
    s.pos += n
    return 1


cdef int _value(_Scan *s, int depth, _Field *field) noexcept:
    """A value at ``s.pos``; ``field`` (or NULL) records where it is and its kind."""
    cdef unsigned char c
    cdef int kind
    cdef Py_ssize_t start
    if s.pos >= s.n:
        return 0
    c = s.p[s.pos]
    if c == 34:
        start = s.pos + 1
        if not _string(s, False, &kind):
            return 0
        if field != NULL:
            field.start = start
            field.length = s.pos - 1 - start
            field.kind = kind
        return 1
    if field != NULL:
        field.kind = _NULL if c == 110 else _OTHER
    if c == 123:
        return _object(s, depth + 1)
    if c == 91:
        return _array(s, depth + 1)
    if c == 110:
        return _literal(s, b"null", 4)
    if c == 116:
        return _literal(s, b"true", 4)
    if c == 102:
        return _literal(s, b"false", 5)
    if c == 45 or 48 <= c <= 57:
        return _integer(s)
    return 0


cdef int _open(_Scan *s, int depth, unsigned char close) noexcept:
    """Past a container's opening bracket: 0 to refuse (nested too deep), 1 if it is
    empty (``close`` follows; consumed), 2 if values follow."""
    if depth > _MAX_DEPTH:
        return 0
    s.pos += 1
    if s.pos < s.n and s.p[s.pos] == close:
        s.pos += 1
        return 1
    return 2


cdef int _after(_Scan *s, unsigned char close) noexcept:
    """After a value in a container: 0 to refuse, 1 if ``close`` ended it, 2 after a
    comma (another value follows)."""
    if s.pos >= s.n:
        return 0
    if s.p[s.pos] == close:
        s.pos += 1
        return 1
    if s.p[s.pos] != 44:  # ','
        return 0
    s.pos += 1
    return 2


cdef int _array(_Scan *s, int depth) noexcept:
    cdef int r = _open(s, depth, 93)  # ']'
    while r == 2:
        if not _value(s, depth, NULL):
            return 0
        r = _after(s, 93)
    return r


cdef int _object(_Scan *s, int depth) noexcept:
    cdef Py_ssize_t key, key_len, prev = -1, prev_len = 0, common
    cdef int kind, cmp, f
    cdef _Field *field
    cdef int r = _open(s, depth, 125)  # '}'
    while r == 2:
        if s.pos >= s.n or s.p[s.pos] != 34:
            return 0
        key = s.pos + 1
        if not _string(s, True, &kind):
            return 0
        key_len = s.pos - 1 - key
        if prev >= 0:  # strictly increasing: sorted, no duplicates
            common = key_len if key_len < prev_len else prev_len
            cmp = memcmp(s.p + prev, s.p + key, common)
            if cmp > 0 or (cmp == 0 and prev_len >= key_len):
                return 0
        prev = key
        prev_len = key_len
        if s.pos >= s.n or s.p[s.pos] != 58:  # ':'
            return 0
        s.pos += 1
        field = NULL
        if depth == 1:
            f = _field_index(s.p + key, key_len)
            if f >= 0:
                field = &s.fields[f]
        if not _value(s, depth, field):
            return 0
        r = _after(s, 125)
    return r


cdef int _scan_leaf(const unsigned char *p, Py_ssize_t n, _Field *fields) noexcept:
    """Whether ``p[:n]`` is one canonical JSON object (nothing after it); fills
    ``fields`` for its top-level keys named in FIELD_NAMES."""
    cdef _Scan s
    cdef int f
    for f in range(_N_FIELDS):
        fields[f].kind = _ABSENT
    if n < 2 or p[0] != 123:
        return 0
    s.p = p
    s.n = n
    s.pos = 0
    s.fields = fields
    return _object(&s, 1) and s.pos == n


def canonical_fields(bytes leaf not None):
    """``None`` if the canonical-JSON check refuses ``leaf``, else a dict of the
    top-level fields in FIELD_NAMES that it has: name -> (kind, raw bytes of a string's
    content, else b""). Exposed for the tests that compare it with orjson."""
    cdef _Field fields[_N_FIELDS]
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(leaf)
    cdef int f
    if not _scan_leaf(p, PyBytes_GET_SIZE(leaf), fields):
        return None
    out = {}
    for f in range(_N_FIELDS):
        if fields[f].kind != _ABSENT:
            raw = b""
            if fields[f].kind == _PLAIN or fields[f].kind == _ESCAPED:
                raw = PyBytes_FromStringAndSize(<const char *>p + fields[f].start, fields[f].length)
            out[FIELD_NAMES[f]] = (
                {_PLAIN: "plain", _ESCAPED: "escaped", _NULL: "null", _OTHER: "other"}[fields[f].kind],
                raw,
            )
    return out


# --- time ------------------------------------------------------------------------------

cdef inline int _digits(const unsigned char *s, int n) noexcept:
    """The value of ``n`` ASCII digits at ``s``, or -1 if one is not a digit."""
    cdef int v = 0
    cdef int i
    for i in range(n):
        if s[i] < 48 or s[i] > 57:
            return -1
        v = v * 10 + (s[i] - 48)
    return v


cdef inline int _month_days(int y, int m) noexcept:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    return 30 if (m == 4 or m == 6 or m == 9 or m == 11) else 31


cdef int _time_ns(const unsigned char *s, Py_ssize_t n, int64_t *out) noexcept:
    """``out`` = ``_events.time_ns(t)`` for ``t`` = ``s[:n]`` of the shape
    ``YYYY-MM-DDTHH:MM:SS[.f]Z`` (ASCII digits, 1 to 9 fraction digits, years 1678..2261
    so that nanoseconds fit 64 bits); returns 1 then, else 0 (other strings: Python)."""
    cdef int y, mo, d, hh, mi, ss, i, frac, digits
    cdef int64_t yy, era, yoe, doy, doe, days
    if n < 20 or n > 30 or n == 21 or s[n - 1] != 90:  # 'Z'
        return 0
    if s[4] != 45 or s[7] != 45 or s[10] != 84 or s[13] != 58 or s[16] != 58:  # - - T : :
        return 0
    y = _digits(s, 4)
    mo = _digits(s + 5, 2)
    d = _digits(s + 8, 2)
    hh = _digits(s + 11, 2)
    mi = _digits(s + 14, 2)
    ss = _digits(s + 17, 2)
    if y < 1678 or y > 2261 or mo < 1 or mo > 12 or d < 1 or hh < 0 or mi < 0 or ss < 0:
        return 0
    if d > _month_days(y, mo) or hh > 23 or mi > 59 or ss > 59:
        return 0
    frac = 0
    if n > 20:
        if s[19] != 46:  # '.'
            return 0
        digits = <int>n - 21
        frac = _digits(s + 20, digits)
        if frac < 0:
            return 0
        for i in range(9 - digits):
            frac *= 10
    # H. Hinnant's days_from_civil, as _events._days_from_civil (y >= 1678: no negatives)
    yy = y - (1 if mo <= 2 else 0)
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    out[0] = (((days * 24 + hh) * 60 + mi) * 60 + ss) * <int64_t>1_000_000_000 + frac
    return 1


def time_ns(bytes t not None):
    """``_events.time_ns(t.decode())`` if ``t`` has the shape the fast path handles,
    else None (exposed for the tests that compare it with the strict parser)."""
    cdef int64_t v
    if _time_ns(<const unsigned char *>PyBytes_AS_STRING(t), PyBytes_GET_SIZE(t), &v):
        return v
    return None


# --- columns ---------------------------------------------------------------------------

cdef bint _packed_equal(bytes column, const unsigned char *leaf, _Field *fields) noexcept:
    """Whether ``column`` is exactly ``["id","source","actor","action","enclave",
    "outcome"]`` of the leaf's values written without escapes (``null`` where the leaf
    has null): each other value must be a string without escapes, whose bytes then
    appear as they are. So the array decodes to exactly the leaf's values."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(column)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(column)
    cdef Py_ssize_t pos = 1, ln
    cdef int f
    cdef _Field *fd
    if n < 2 or p[0] != 91:  # '['
        return False
    for f in range(1, _N_FIELDS):
        fd = &fields[f]
        if f > 1:
            if pos >= n or p[pos] != 44:  # ','
                return False
            pos += 1
        if fd.kind == _NULL:
            if pos + 4 > n or memcmp(p + pos, b"null", 4) != 0:
                return False
            pos += 4
            continue
        if fd.kind != _PLAIN:
            return False
        ln = fd.length
        if pos + ln + 2 > n or p[pos] != 34 or p[pos + ln + 1] != 34:  # '"'
            return False
        if memcmp(p + pos + 1, leaf + fd.start, ln) != 0:
            return False
        pos += ln + 2
    return pos + 1 == n and p[pos] == 93  # ']'


cdef bint _unit_equal(object column, const unsigned char *leaf, _Field *fields) except -1:
    """Whether ``column`` (a str) is exactly the UNIT_PACKING form of the leaf's values
    (``audit._store.UNIT_PACKING``): each a string without escapes, hence without any
    control character, so the str holds five U+001F, no value holds one, and it reads
    back to exactly the leaf's values."""
    cdef Py_ssize_t n, pos = 0, ln
    cdef const unsigned char *p
    cdef int f
    cdef _Field *fd
    if not PyUnicode_CheckExact(column):
        return False
    try:
        p = <const unsigned char *>PyUnicode_AsUTF8AndSize(column, &n)
    except UnicodeEncodeError:  # a lone surrogate: not what the leaf holds
        return False
    for f in range(1, _N_FIELDS):
        fd = &fields[f]
        if f > 1:
            if pos >= n or p[pos] != 0x1F:
                return False
            pos += 1
        if f == 5:  # enclave: empty for NULL, else U+001E and the value
            if fd.kind == _NULL:
                continue
            if pos >= n or p[pos] != 0x1E:
                return False
            pos += 1
        if fd.kind != _PLAIN:
            return False
        ln = fd.length
        if pos + ln > n or memcmp(p + pos, leaf + fd.start, ln) != 0:
            return False
        pos += ln
    return pos == n


# --- the batch -------------------------------------------------------------------------

def check_batch(list rows not None, Py_ssize_t first, Py_ssize_t integrated_size):
    """The leaf hashes of ``rows`` (``Store.verify_rows`` rows for indexes ``first``,
    ``first + 1``, ...) if every check of the verify fast path passes, else None.
    A row's text columns come packed in one value: a JSON array (bytes, SQLite) or
    the UNIT_PACKING form (str, PostgreSQL)."""
    cdef tuple rs = tuple(rows)  # a snapshot: nothing run meanwhile can shrink it
    cdef Py_ssize_t n = PyTuple_GET_SIZE(rs)
    cdef Py_ssize_t i, idx
    cdef int overflow
    cdef long long col_ns
    cdef int64_t leaf_ns
    cdef unsigned char h[32]
    cdef _Field fields[_N_FIELDS]
    cdef object row, leaf, stored, value
    cdef const unsigned char *lp
    cdef list hashes = []
    cdef _Digest dg = _Digest()
    if n and first > PY_SSIZE_T_MAX - n:  # first + i must not overflow
        return None
    for i in range(n):
        row = <object>PyTuple_GET_ITEM(rs, i)
        if not PyTuple_CheckExact(row) or PyTuple_GET_SIZE(row) != 6:
            return None
        # the index is the next one expected
        value = <object>PyTuple_GET_ITEM(row, 0)
        if not PyLong_CheckExact(value):
            return None
        idx = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow or idx != first + i:
            return None
        # the stored leaf hash is SHA-256(0x00 || leaf)
        leaf = <object>PyTuple_GET_ITEM(row, 2)
        stored = <object>PyTuple_GET_ITEM(row, 1)
        if not PyBytes_CheckExact(leaf) or not PyBytes_CheckExact(stored):
            return None
        if PyBytes_GET_SIZE(stored) != 32:
            return None
        dg.sha(0, PyBytes_AS_STRING(leaf), PyBytes_GET_SIZE(leaf), NULL, 0, h)
        if memcmp(h, PyBytes_AS_STRING(stored), 32) != 0:
            return None
        # the query-index row exists and equals the entry's columns (compared by the store)
        value = <object>PyTuple_GET_ITEM(row, 4)
        if not PyLong_CheckExact(value) and not PyBool_Check(value):  # what drivers give
            return None
        if idx < integrated_size and not value:
            return None
        # the leaf is canonical JSON
        lp = <const unsigned char *>PyBytes_AS_STRING(leaf)
        if not _scan_leaf(lp, PyBytes_GET_SIZE(leaf), fields):
            return None
        # the time column equals the leaf's time
        if fields[0].kind != _PLAIN:
            return None
        if not _time_ns(lp + fields[0].start, fields[0].length, &leaf_ns):
            return None
        value = <object>PyTuple_GET_ITEM(row, 3)
        if not PyLong_CheckExact(value):
            return None
        col_ns = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow or col_ns != leaf_ns:
            return None
        # the text columns equal the leaf's values
        value = <object>PyTuple_GET_ITEM(row, 5)
        if PyBytes_CheckExact(value):
            if not _packed_equal(value, lp, fields):
                return None
        elif not _unit_equal(value, lp, fields):
            return None
        hashes.append(PyBytes_FromStringAndSize(<char *>h, 32))
    return hashes


def tile_levels(list items not None):
    """``[items, parents, ...]``: ``_verify._tile_levels`` for items that are 32-byte
    ``bytes`` (ValueError otherwise; the Python one hashes any bytes-like items)."""
    cdef list out = [items]
    cdef tuple level = tuple(items)  # a snapshot: nothing run meanwhile can shrink it
    cdef list nxt
    cdef Py_ssize_t i, n
    cdef object a, b
    cdef unsigned char h[32]
    cdef _Digest dg = _Digest()
    for _ in range(8):
        n = PyTuple_GET_SIZE(level)
        nxt = []
        for i in range(0, n - 1, 2):
            a = <object>PyTuple_GET_ITEM(level, i)
            b = <object>PyTuple_GET_ITEM(level, i + 1)
            if (not PyBytes_CheckExact(a) or not PyBytes_CheckExact(b)
                    or PyBytes_GET_SIZE(a) != 32 or PyBytes_GET_SIZE(b) != 32):
                raise ValueError("tile nodes must be 32-byte hashes")
            dg.sha(1, PyBytes_AS_STRING(a), 32, PyBytes_AS_STRING(b), 32, h)
            nxt.append(PyBytes_FromStringAndSize(<char *>h, 32))
        out.append(nxt)
        level = tuple(nxt)
    return out
