# cython: boundscheck=False, wraparound=False, cdivision=True
"""A purpose-built scanner for flat JSON lines whose values are numbers and one list of integers.

Mooncake-like traces (``{"timestamp": 0, "input_length": 6758, ..., "hash_ids": [0, 1, ...]}``) are read
here at memory speed, one pass over the bytes, no Python object per line or per id. The scanner is
deliberately strict: anything it does not fully understand (a string where a number is wanted, a float
where an integer is wanted, a missing key, a nested object, an escape it would have to decode) makes it
stop and report the line, and the caller re-reads that chunk with the exact, slow orjson path, which
either accepts the line or raises the located error. So the fast path never decides what is valid.
"""

import numpy as np
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport strtod
from libc.math cimport NAN, isinf
from libc.string cimport memchr, memcmp


cdef enum:
    KIND_NUMBER = 0      # any JSON number, required
    KIND_UINT = 1        # a non-negative integer, required
    KIND_UINT_OPT = 2    # a non-negative integer, optional (NaN when absent)
    MAX_KEYS = 8

cdef uint64_t UINT64_MAX_DIV10 = 1844674407370955161ULL

# the kinds, for callers
NUMBER, UINT, UINT_OPT = KIND_NUMBER, KIND_UINT, KIND_UINT_OPT


cdef inline Py_ssize_t _ws(const unsigned char* p, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    while i < end and (p[i] == 32 or p[i] == 9 or p[i] == 13):
        i += 1
    return i


cdef inline Py_ssize_t _uint(const unsigned char* p, Py_ssize_t i, Py_ssize_t end, uint64_t* out) noexcept nogil:
    """A JSON non-negative integer (no sign, fraction or exponent) at p[i]; -1 if not one or it overflows."""
    cdef uint64_t v = 0
    cdef Py_ssize_t stop
    cdef unsigned int d
    if i >= end or p[i] < 48 or p[i] > 57:
        return -1
    if p[i] == 48 and i + 1 < end and 48 <= p[i + 1] <= 57:
        return -1  # leading zero is not JSON
    # up to 19 digits cannot overflow 64 bits: no check inside the hot loop
    stop = i + 19 if end - i > 19 else end
    while i < stop:
        d = p[i] - 48
        if d > 9:
            break
        v = v * 10 + d
        i += 1
    if i < end and 48 <= p[i] <= 57:  # a 20th digit: the only one that can overflow
        d = p[i] - 48
        if v > UINT64_MAX_DIV10 or (v == UINT64_MAX_DIV10 and d > 5):
            return -1
        v = v * 10 + d
        i += 1
        if i < end and 48 <= p[i] <= 57:
            return -1
    if i < end and (p[i] == 46 or p[i] == 101 or p[i] == 69):
        return -1  # a fraction or exponent: not an integer
    out[0] = v
    return i


cdef inline Py_ssize_t _number(const unsigned char* p, Py_ssize_t i, Py_ssize_t end, double* out,
                               bint* is_uint) noexcept nogil:
    """Any JSON number at p[i] as a double; is_uint tells whether it was a plain non-negative integer."""
    cdef uint64_t u
    cdef Py_ssize_t j = _uint(p, i, end, &u)
    cdef char buf[64]
    cdef Py_ssize_t k, n
    cdef char* stop
    if j >= 0:
        out[0] = <double>u
        is_uint[0] = u < (<uint64_t>1 << 53)
        return j
    is_uint[0] = False
    # the JSON number grammar, strictly: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    k = i
    if k < end and p[k] == 45:
        k += 1
    if k >= end or p[k] < 48 or p[k] > 57:
        return -1
    if p[k] == 48:
        k += 1
        if k < end and 48 <= p[k] <= 57:
            return -1
    else:
        while k < end and 48 <= p[k] <= 57:
            k += 1
    if k < end and p[k] == 46:
        k += 1
        if k >= end or p[k] < 48 or p[k] > 57:
            return -1
        while k < end and 48 <= p[k] <= 57:
            k += 1
    if k < end and (p[k] == 101 or p[k] == 69):
        k += 1
        if k < end and (p[k] == 43 or p[k] == 45):
            k += 1
        if k >= end or p[k] < 48 or p[k] > 57:
            return -1
        while k < end and 48 <= p[k] <= 57:
            k += 1
    n = k - i
    if n >= 63:
        return -1
    for j in range(n):
        buf[j] = <char>p[i + j]
    buf[n] = 0
    out[0] = strtod(buf, &stop)
    if stop != buf + n or isinf(out[0]):  # orjson refuses numbers beyond a double too
        return -1
    return k


cdef inline Py_ssize_t _skip_value(const unsigned char* p, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    """Skip a value of a key nobody asked for: a number, a plain string, a literal, or a list of numbers."""
    cdef double d
    cdef bint u
    if i >= end:
        return -1
    if p[i] == 34:  # a plain ASCII string (escapes and other bytes: the careful path checks them)
        i += 1
        while i < end and p[i] != 34:
            if p[i] == 92 or p[i] < 32 or p[i] >= 128:
                return -1
            i += 1
        return i + 1 if i < end else -1
    if end - i >= 4 and (memcmp(p + i, b"null", 4) == 0 or memcmp(p + i, b"true", 4) == 0):
        return i + 4
    if end - i >= 5 and memcmp(p + i, b"false", 5) == 0:
        return i + 5
    if p[i] == 91:
        i = _ws(p, i + 1, end)
        if i < end and p[i] == 93:
            return i + 1
        while True:
            i = _number(p, _ws(p, i, end), end, &d, &u)
            if i < 0:
                return -1
            i = _ws(p, i, end)
            if i < end and p[i] == 44:
                i += 1
            elif i < end and p[i] == 93:
                return i + 1
            else:
                return -1
    return _number(p, i, end, &d, &u)


def scan_lines(const unsigned char[::1] buf, tuple keys, tuple kinds, bytes list_key, int64_t first_line,
               tuple label_keys=(), bint strict=False):
    """Scan newline-separated flat JSON objects in ``buf``.

    Returns ``(scalars float64[n, k], ids uint64[m], offsets int64[n+1], lines int64[n], failed_line)``:
    one row per non-blank line, ``scalars`` in the order of ``keys`` (NaN where an optional key is absent),
    the list under ``list_key`` flattened CSR-style. ``failed_line`` is -1 when every line was understood,
    else the file line where the scanner gave up (the caller then re-reads the chunk the slow way).

    With ``label_keys`` a sixth item follows: ``labels int64[n, j, 3]``, for each label key its value's
    ``(kind, start, end)`` in ``buf``: kind 0 absent, 1 a string (without escapes; the bytes between the quotes),
    2 an integer. With ``strict`` a key that is none of these fails the line instead of being skipped.
    """
    cdef Py_ssize_t n_bytes = buf.shape[0]
    cdef Py_ssize_t n_keys = len(keys)
    cdef Py_ssize_t n_labels = len(label_keys)
    if n_keys > MAX_KEYS or n_labels > MAX_KEYS:
        raise ValueError(f"at most {MAX_KEYS} scalar and {MAX_KEYS} label keys")
    cdef const unsigned char* p = &buf[0] if n_bytes else NULL
    # upper bounds without a counting pass: every row and every id takes at least two bytes
    # (np.empty only reserves; untouched pages cost no memory)
    cdef Py_ssize_t i, max_rows = n_bytes // 2 + 1, max_ids = n_bytes // 2 + 1
    scalars_arr = np.empty((max_rows, max(n_keys, 1)), dtype=np.float64)
    ids_arr = np.empty(max_ids, dtype=np.uint64)
    offsets_arr = np.zeros(max_rows + 1, dtype=np.int64)
    lines_arr = np.empty(max_rows, dtype=np.int64)
    cdef double[:, ::1] scalars = scalars_arr
    cdef uint64_t[::1] ids = ids_arr
    cdef int64_t[::1] offsets = offsets_arr
    cdef int64_t[::1] lines = lines_arr
    labels_arr = np.zeros((max_rows if n_labels else 1, max(n_labels, 1), 3), dtype=np.int64)
    cdef int64_t[:, :, ::1] labels = labels_arr
    cdef const unsigned char* label_ptr[MAX_KEYS]
    cdef Py_ssize_t label_len[MAX_KEYS]
    cdef Py_ssize_t lk, vs
    for lk in range(n_labels):
        label_ptr[lk] = <const unsigned char*>(<bytes>label_keys[lk])
        label_len[lk] = len(<bytes>label_keys[lk])

    cdef const unsigned char* key_ptr[MAX_KEYS]
    cdef Py_ssize_t key_len[MAX_KEYS]
    cdef int key_kind[MAX_KEYS]
    cdef bint seen[MAX_KEYS]
    cdef bint seen_list
    cdef Py_ssize_t k
    for k in range(n_keys):
        key_ptr[k] = <const unsigned char*>(<bytes>keys[k])
        key_len[k] = len(<bytes>keys[k])
        key_kind[k] = kinds[k]
    cdef const unsigned char* list_ptr = list_key
    cdef Py_ssize_t list_len = len(list_key)

    cdef Py_ssize_t row = 0, n_ids = 0, line_end, ks, kl
    cdef int64_t line_no = first_line - 1
    cdef int64_t failed = -1
    cdef double d
    cdef bint is_u
    cdef uint64_t u
    cdef Py_ssize_t pos = 0
    cdef const unsigned char* nl
    with nogil:
        while pos < n_bytes:
            line_no += 1
            nl = <const unsigned char*>memchr(p + pos, 10, n_bytes - pos)
            line_end = n_bytes if nl == NULL else nl - p
            i = _ws(p, pos, line_end)
            if i == line_end:
                pos = line_end + 1
                continue
            if p[i] != 123:
                failed = line_no
                break
            for k in range(n_keys):
                seen[k] = False
            seen_list = False
            for lk in range(n_labels):
                labels[row, lk, 0] = 0
            offsets[row] = n_ids
            i = _ws(p, i + 1, line_end)
            if i < line_end and p[i] == 125:
                failed = line_no  # an empty object lacks the required keys
                break
            while True:
                # a key: a plain string
                if i >= line_end or p[i] != 34:
                    i = -1
                    break
                ks = i + 1
                i = ks
                while i < line_end and p[i] != 34:
                    if p[i] == 92 or p[i] < 32 or p[i] >= 128:  # keys we know are plain ASCII
                        break
                    i += 1
                if i >= line_end or p[i] != 34:
                    i = -1
                    break
                kl = i - ks
                i = _ws(p, i + 1, line_end)
                if i >= line_end or p[i] != 58:
                    i = -1
                    break
                i = _ws(p, i + 1, line_end)
                # which key is it?
                for k in range(n_keys):
                    if kl == key_len[k] and memcmp(p + ks, key_ptr[k], kl) == 0:
                        break
                else:
                    k = -1
                if k >= 0:
                    if seen[k]:
                        i = -1
                        break
                    seen[k] = True
                    i = _number(p, i, line_end, &d, &is_u)
                    if i < 0 or (key_kind[k] != KIND_NUMBER and not is_u):
                        i = -1
                        break
                    scalars[row, k] = d
                elif kl == list_len and memcmp(p + ks, list_ptr, kl) == 0:
                    if seen_list or p[i] != 91:
                        i = -1
                        break
                    seen_list = True
                    i = _ws(p, i + 1, line_end)
                    if i < line_end and p[i] == 93:
                        i += 1
                    else:
                        while True:
                            i = _uint(p, _ws(p, i, line_end), line_end, &u)
                            if i < 0:
                                break
                            ids[n_ids] = u
                            n_ids += 1
                            i = _ws(p, i, line_end)
                            if i < line_end and p[i] == 44:
                                i += 1
                            elif i < line_end and p[i] == 93:
                                i += 1
                                break
                            else:
                                i = -1
                                break
                        if i < 0:
                            break
                else:
                    for lk in range(n_labels):
                        if kl == label_len[lk] and memcmp(p + ks, label_ptr[lk], kl) == 0:
                            break
                    else:
                        lk = -1
                    if lk >= 0:
                        if labels[row, lk, 0] != 0:
                            i = -1
                            break
                        vs = i
                        if i < line_end and p[i] == 34:  # a string without escapes or control characters
                            i += 1
                            while i < line_end and p[i] != 34 and p[i] != 92 and p[i] >= 32:
                                i += 1
                            if i >= line_end or p[i] != 34:
                                i = -1
                                break
                            labels[row, lk, 0] = 1
                            labels[row, lk, 1] = vs + 1
                            labels[row, lk, 2] = i
                            i += 1
                        else:  # an integer (a sign allowed, no fraction or exponent)
                            if i < line_end and p[i] == 45:
                                i += 1
                            i = _uint(p, i, line_end, &u)
                            if i < 0 or i - vs > 19:
                                i = -1
                                break
                            labels[row, lk, 0] = 2
                            labels[row, lk, 1] = vs
                            labels[row, lk, 2] = i
                    elif strict:
                        i = -1
                        break
                    else:
                        i = _skip_value(p, i, line_end)
                        if i < 0:
                            break
                i = _ws(p, i, line_end)
                if i < line_end and p[i] == 44:
                    i = _ws(p, i + 1, line_end)
                    continue
                if i < line_end and p[i] == 125:
                    i = _ws(p, i + 1, line_end)
                    if i != line_end:
                        i = -1
                    break
                i = -1
                break
            if i < 0 or not seen_list:
                failed = line_no
                break
            for k in range(n_keys):
                if not seen[k]:
                    if key_kind[k] == KIND_UINT_OPT:
                        scalars[row, k] = NAN
                    else:
                        failed = line_no
                if failed >= 0:
                    break
            if failed >= 0:
                break
            lines[row] = line_no
            row += 1
            pos = line_end + 1
    offsets[row] = n_ids
    # copies, so the over-sized scratch arrays are freed at once
    out = (scalars_arr[:row, :n_keys].copy(), ids_arr[:n_ids].copy(), offsets_arr[:row + 1].copy(),
           lines_arr[:row].copy(), failed)
    if n_labels:
        out += (labels_arr[:row, :n_labels].copy(),)
    return out
