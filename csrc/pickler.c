/* pickler.c: the C pickler (protocols 0-5) and its entry points.
 *
 * save(): persistent_id -> atoms -> joblib array hook (_core.dump only, before the memo like
 * joblib) -> memo -> exact builtin containers / str / bytes / PickleBuffer -> reducer_override ->
 * type / function globals -> dispatch_table (per pickler, else copyreg) -> class globals ->
 * __reduce_ex__(proto) / __reduce__ -> save_reduce. Same semantics as stdlib pickle; the stream
 * is read by stdlib pickle.loads.
 *
 * Entry points added to the module: Pickler (heap type, subclassable), dumps(), dump_pickle(),
 * dump() (joblib format, array hook on). All per-call state is on the C stack or in the Pickler
 * object: nothing mutable is global.
 */
#include "pk.h"
#include "progress.h"

#include <stdarg.h>
#include <structmember.h>
#include <unistd.h>

/* opcodes */
#define OP_MARK '('
#define OP_STOP '.'
#define OP_POP '0'
#define OP_POP_MARK '1'
#define OP_FLOAT 'F'
#define OP_INT 'I'
#define OP_BININT 'J'
#define OP_BININT1 'K'
#define OP_LONG 'L'
#define OP_BININT2 'M'
#define OP_NONE 'N'
#define OP_PERSID 'P'
#define OP_BINPERSID 'Q'
#define OP_REDUCE 'R'
#define OP_UNICODE 'V'
#define OP_BINUNICODE 'X'
#define OP_APPEND 'a'
#define OP_BUILD 'b'
#define OP_GLOBAL 'c'
#define OP_DICT 'd'
#define OP_EMPTY_DICT '}'
#define OP_APPENDS 'e'
#define OP_GET 'g'
#define OP_BINGET 'h'
#define OP_LONG_BINGET 'j'
#define OP_LIST 'l'
#define OP_EMPTY_LIST ']'
#define OP_PUT 'p'
#define OP_BINPUT 'q'
#define OP_LONG_BINPUT 'r'
#define OP_SETITEM 's'
#define OP_TUPLE 't'
#define OP_EMPTY_TUPLE ')'
#define OP_SETITEMS 'u'
#define OP_BINFLOAT 'G'
#define OP_BINBYTES 'B'
#define OP_SHORT_BINBYTES 'C'
#define OP_PROTO '\x80'
#define OP_NEWOBJ '\x81'
#define OP_EXT1 '\x82'
#define OP_EXT2 '\x83'
#define OP_EXT4 '\x84'
#define OP_TUPLE1 '\x85'
#define OP_TUPLE2 '\x86'
#define OP_TUPLE3 '\x87'
#define OP_NEWTRUE '\x88'
#define OP_NEWFALSE '\x89'
#define OP_LONG1 '\x8a'
#define OP_LONG4 '\x8b'
#define OP_SHORT_BINUNICODE '\x8c'
#define OP_BINUNICODE8 '\x8d'
#define OP_BINBYTES8 '\x8e'
#define OP_EMPTY_SET '\x8f'
#define OP_ADDITEMS '\x90'
#define OP_FROZENSET '\x91'
#define OP_NEWOBJ_EX '\x92'
#define OP_STACK_GLOBAL '\x93'
#define OP_MEMOIZE '\x94'
#define OP_BYTEARRAY8 '\x96'
#define OP_NEXT_BUFFER '\x97'
#define OP_READONLY_BUFFER '\x98'

#define BATCHSIZE 1000
#define HIGHEST_PROTOCOL 5

static int save_reduce(fj_pk *p, PyObject *rv, PyObject *obj);
static int save_global(fj_pk *p, PyObject *obj, PyObject *name);

/* ------------------------------------------------------------------------------------------
 * exception notes (pyver.h FJ_PICKLE_NOTES): called only where a save already failed, so the
 * success path pays nothing. */

#if FJ_PICKLE_NOTES
/* The raised exception gets the note PyUnicode_FromFormat(fmt, ...) through
 * BaseException.add_note(exc, note): like stdlib's C pickler, an add_note overridden by the
 * exception's class is not called. If building or adding the note fails (e.g. __notes__ is not a
 * list), that error is raised instead, with the original as its __context__. */
static void
add_note(const char *fmt, ...)
{
    PyObject *exc = PyErr_GetRaisedException(); /* owned */
    PyObject *note = NULL, *r = NULL;
    va_list va;
    if (exc == NULL) {
        return;
    }
    va_start(va, fmt);
    note = PyUnicode_FromFormatV(fmt, va);
    va_end(va);
    if (note == NULL) {
        goto error;
    }
    r = PyObject_CallMethod(PyExc_BaseException, "add_note", "OO", exc, note);
    Py_DECREF(note);
    if (r == NULL) {
        goto error;
    }
    Py_DECREF(r);
    PyErr_SetRaisedException(exc); /* steals exc */
    return;
error:
    fj_set_context(exc); /* steals exc */
}
#else
/* before 3.14: no notes */
static inline void
add_note(const char *fmt, ...)
{
    (void)fmt;
}
#endif

/* ------------------------------------------------------------------------------------------
 * small writers */

static inline int
write_op(fj_pk *p, char op)
{
    char *o = fj_sink_reserve(p->sink, 1);
    if (o == NULL) {
        return -1;
    }
    o[0] = op;
    return 0;
}

static inline void
put_u32(char *o, uint32_t v)
{
    o[0] = (char)(v & 0xff);
    o[1] = (char)((v >> 8) & 0xff);
    o[2] = (char)((v >> 16) & 0xff);
    o[3] = (char)((v >> 24) & 0xff);
}

static inline void
put_u64(char *o, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        o[i] = (char)((v >> (8 * i)) & 0xff);
    }
}

static int
write_text(fj_pk *p, const char *s)
{
    return fj_sink_write(p->sink, s, (Py_ssize_t)strlen(s));
}

/* Write a memo reference: the 1-byte-index opcode, the 4-byte one, or the text form
 * ("<letter><idx>\n") for protocol 0. Shared by GET and PUT. */
static int
write_memo_ref(fj_pk *p, Py_ssize_t idx, char short_op, char long_op, char text_op)
{
    if (p->bin) {
        if (idx < 256) {
            char *o = fj_sink_reserve(p->sink, 2);
            if (o == NULL) {
                return -1;
            }
            o[0] = short_op;
            o[1] = (char)idx;
        }
        else {
            char *o = fj_sink_reserve(p->sink, 5);
            if (o == NULL) {
                return -1;
            }
            o[0] = long_op;
            put_u32(o + 1, (uint32_t)idx);
        }
        return 0;
    }
    char buf[32];
    PyOS_snprintf(buf, sizeof(buf), "%c%zd\n", text_op, idx);
    return write_text(p, buf);
}

static int
memo_get(fj_pk *p, Py_ssize_t idx)
{
    return write_memo_ref(p, idx, OP_BINGET, OP_LONG_BINGET, 'g');
}

static int
memoize(fj_pk *p, PyObject *obj)
{
    if (p->fast) {
        return 0;
    }
    Py_ssize_t idx = (Py_ssize_t)p->memo->used;
    if (fj_memo_set(p->memo, obj, idx) < 0) {
        return -1;
    }
    if (p->proto >= 4) {
        return write_op(p, OP_MEMOIZE);
    }
    return write_memo_ref(p, idx, OP_BINPUT, OP_LONG_BINPUT, 'p');
}

/* If obj is (now) in the memo: the caller throws away what it pushed and fetches it back. */
static inline Py_ssize_t *
memo_lookup(fj_pk *p, PyObject *obj)
{
    return fj_memo_get(p->memo, obj);
}

/* Get an optional attribute: 1 found (*res new ref), 0 missing, -1 error. */
static int
lookup_attr(PyObject *obj, PyObject *name, PyObject **res)
{
    *res = PyObject_GetAttr(obj, name);
    if (*res != NULL) {
        return 1;
    }
    if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------
 * atoms */

static int
save_bool(fj_pk *p, PyObject *obj)
{
    if (p->proto >= 2) {
        return write_op(p, obj == Py_True ? OP_NEWTRUE : OP_NEWFALSE);
    }
    return write_text(p, obj == Py_True ? "I01\n" : "I00\n");
}

static int
save_long(fj_pk *p, PyObject *obj)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (!overflow) {
        if (p->bin && v >= INT32_MIN && v <= INT32_MAX) {
            if (v >= 0 && v <= 0xff) {
                char *o = fj_sink_reserve(p->sink, 2);
                if (o == NULL) {
                    return -1;
                }
                o[0] = OP_BININT1;
                o[1] = (char)v;
            }
            else if (v >= 0 && v <= 0xffff) {
                char *o = fj_sink_reserve(p->sink, 3);
                if (o == NULL) {
                    return -1;
                }
                o[0] = OP_BININT2;
                o[1] = (char)(v & 0xff);
                o[2] = (char)((v >> 8) & 0xff);
            }
            else {
                char *o = fj_sink_reserve(p->sink, 5);
                if (o == NULL) {
                    return -1;
                }
                o[0] = OP_BININT;
                put_u32(o + 1, (uint32_t)(int32_t)v);
            }
            return 0;
        }
        if (p->proto >= 2) {
            /* LONG1, minimal two's complement little endian */
            int n = 1;
            while (n < 8 && !((v >> (8 * n - 1)) == 0 || (v >> (8 * n - 1)) == -1)) {
                n++;
            }
            char *o = fj_sink_reserve(p->sink, 2 + n);
            if (o == NULL) {
                return -1;
            }
            o[0] = OP_LONG1;
            o[1] = (char)n;
            uint64_t u = (uint64_t)v;
            for (int i = 0; i < n; i++) {
                o[2 + i] = (char)((u >> (8 * i)) & 0xff);
            }
            return 0;
        }
        char buf[48];
        if (v >= INT32_MIN && v <= INT32_MAX) {
            PyOS_snprintf(buf, sizeof(buf), "I%lld\n", v);
        }
        else {
            PyOS_snprintf(buf, sizeof(buf), "L%lldL\n", v);
        }
        return write_text(p, buf);
    }
    if (p->proto >= 2) {
        PyObject *bl = PyObject_CallMethod(obj, "bit_length", NULL);
        if (bl == NULL) {
            return -1;
        }
        size_t nbits = PyLong_AsSize_t(bl);
        Py_DECREF(bl);
        if (nbits == (size_t)-1 && PyErr_Occurred()) {
            return -1;
        }
        size_t nbytes = (nbits >> 3) + 1;
        if (nbytes > 0x7fffffffL) {
            PyErr_SetString(PyExc_OverflowError, "int too large to pickle");
            return -1;
        }
        char hdr[5];
        Py_ssize_t hlen;
        if (nbytes < 256) {
            hdr[0] = OP_LONG1;
            hdr[1] = (char)nbytes;
            hlen = 2;
        }
        else {
            hdr[0] = OP_LONG4;
            put_u32(hdr + 1, (uint32_t)nbytes);
            hlen = 5;
        }
        char *o = fj_sink_reserve(p->sink, hlen + (Py_ssize_t)nbytes);
        if (o == NULL) {
            return -1;
        }
        memcpy(o, hdr, hlen);
        /* two's complement, little endian: nbits + 1 sign bit fit in nbytes */
        if (fj_long_as_le_bytes(obj, (unsigned char *)o + hlen, nbytes) < 0) {
            return -1;
        }
        return 0;
    }
    PyObject *r = PyObject_Repr(obj);
    if (r == NULL) {
        return -1;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(r, &n);
    int res = -1;
    if (s != NULL && write_op(p, OP_LONG) == 0 && fj_sink_write(p->sink, s, n) == 0 &&
        write_text(p, "L\n") == 0) {
        res = 0;
    }
    Py_DECREF(r);
    return res;
}

static int
save_float(fj_pk *p, PyObject *obj)
{
    double x = PyFloat_AS_DOUBLE(obj);
    if (p->bin) {
        char *o = fj_sink_reserve(p->sink, 9);
        if (o == NULL) {
            return -1;
        }
        o[0] = OP_BINFLOAT;
        return PyFloat_Pack8(x, o + 1, 0);
    }
    char *s = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (s == NULL) {
        return -1;
    }
    int r = -1;
    if (write_op(p, OP_FLOAT) == 0 && write_text(p, s) == 0 && write_op(p, '\n') == 0) {
        r = 0;
    }
    PyMem_Free(s);
    return r;
}

/* ------------------------------------------------------------------------------------------
 * str / bytes / bytearray / PickleBuffer */

static int
write_bytes_payload(fj_pk *p, const char *data, Py_ssize_t n)
{
    char hdr[9];
    Py_ssize_t hlen;
    if (n < 256) {
        hdr[0] = OP_SHORT_BINBYTES;
        hdr[1] = (char)n;
        hlen = 2;
    }
    else if ((uint64_t)n <= 0xffffffffULL) {
        hdr[0] = OP_BINBYTES;
        put_u32(hdr + 1, (uint32_t)n);
        hlen = 5;
    }
    else if (p->proto >= 4) {
        hdr[0] = OP_BINBYTES8;
        put_u64(hdr + 1, (uint64_t)n);
        hlen = 9;
    }
    else {
        PyErr_SetString(PyExc_OverflowError, "serializing a bytes object larger than 4 GiB "
                                             "requires pickle protocol 4 or higher");
        return -1;
    }
    return fj_sink_write_big(p->sink, hdr, hlen, data, n);
}

static int
write_bytearray_payload(fj_pk *p, const char *data, Py_ssize_t n)
{
    char hdr[9];
    hdr[0] = OP_BYTEARRAY8;
    put_u64(hdr + 1, (uint64_t)n);
    return fj_sink_write_big(p->sink, hdr, 9, data, n);
}

/* save_reduce with an args tuple built here: (func, args) [+ obj memo]. Steals args. */
static int
save_reduce_args(fj_pk *p, PyObject *func, PyObject *args, PyObject *obj)
{
    if (args == NULL) {
        return -1;
    }
    PyObject *rv = PyTuple_Pack(2, func, args);
    Py_DECREF(args);
    if (rv == NULL) {
        return -1;
    }
    int r = save_reduce(p, rv, obj);
    Py_DECREF(rv);
    return r;
}

static int
save_bytes(fj_pk *p, PyObject *obj, int flags)
{
    Py_ssize_t n = PyBytes_GET_SIZE(obj);
    if (p->proto < 3) {
        /* like stdlib: bytes() or codecs.encode(str(obj, 'latin1'), 'latin1') */
        if (n == 0) {
            return save_reduce_args(p, (PyObject *)&PyBytes_Type, PyTuple_New(0), obj);
        }
        PyObject *u = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(obj), n, NULL);
        if (u == NULL) {
            return -1;
        }
        PyObject *args = PyTuple_Pack(2, u, p->st->pk.s_latin1);
        Py_DECREF(u);
        return save_reduce_args(p, p->st->pk.codecs_encode, args, obj);
    }
    if (write_bytes_payload(p, PyBytes_AS_STRING(obj), n) < 0) {
        return -1;
    }
    if (flags & FJ_SAVE_UNIQUE) {
        return 0;
    }
    return memoize(p, obj);
}

static int
save_bytearray(fj_pk *p, PyObject *obj)
{
    if (p->proto < 5) {
        if (PyByteArray_GET_SIZE(obj) == 0) {
            return save_reduce_args(p, (PyObject *)&PyByteArray_Type, PyTuple_New(0), obj);
        }
        PyObject *b = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(obj),
                                                PyByteArray_GET_SIZE(obj));
        if (b == NULL) {
            return -1;
        }
        PyObject *args = PyTuple_Pack(1, b);
        Py_DECREF(b);
        return save_reduce_args(p, (PyObject *)&PyByteArray_Type, args, obj);
    }
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) { /* export lock while writing */
        return -1;
    }
    int r = write_bytearray_payload(p, view.buf, view.len);
    PyBuffer_Release(&view);
    if (r < 0) {
        return -1;
    }
    return memoize(p, obj);
}

static int
save_picklebuffer(fj_pk *p, PyObject *obj)
{
    if (p->proto < 5) {
        PyErr_SetString(p->st->PicklingError,
                        FJ_PICKLE_313_ERRORS ? "PickleBuffer can only be pickled with protocol >= 5"
                                             : "PickleBuffer can only pickled with protocol >= 5");
        return -1;
    }
    const Py_buffer *view = PyPickleBuffer_GetBuffer(obj); /* borrowed */
    if (view == NULL) {
        return -1;
    }
    if (view->suboffsets != NULL || !PyBuffer_IsContiguous(view, 'A')) {
        PyErr_SetString(p->st->PicklingError,
                        "PickleBuffer can not be pickled when pointing to a non-contiguous buffer");
        return -1;
    }
    int in_band = 1;
    if (p->buffer_callback != NULL) {
        PyObject *r = PyObject_CallOneArg(p->buffer_callback, obj);
        if (r == NULL) {
            return -1;
        }
        in_band = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (in_band < 0) {
            return -1;
        }
    }
    if (in_band) {
        int r = view->readonly ? write_bytes_payload(p, view->buf, view->len)
                               : write_bytearray_payload(p, view->buf, view->len);
        if (r < 0) {
            return -1;
        }
        return memoize(p, obj);
    }
    if (write_op(p, OP_NEXT_BUFFER) < 0) {
        return -1;
    }
    if (view->readonly && write_op(p, OP_READONLY_BUFFER) < 0) {
        return -1;
    }
    return 0;
}

static int
save_str_proto0(fj_pk *p, PyObject *obj)
{
    /* like stdlib: escape \\ \0 \n \r \x1a as \\uXXXX first, then raw-unicode-escape */
    static const Py_UCS4 special[] = {'\\', '\0', '\n', '\r', '\x1a'};
    static const char *repl[] = {"\\u005c", "\\u0000", "\\u000a", "\\u000d", "\\u001a"};
    PyObject *u = Py_NewRef(obj);
    PyObject *enc = NULL;
    int r = -1;
    for (int i = 0; i < 5; i++) {
        Py_ssize_t at = PyUnicode_FindChar(u, special[i], 0, PyUnicode_GET_LENGTH(u), 1);
        if (at == -2) {
            goto done;
        }
        if (at >= 0) {
            PyObject *from = PyUnicode_FromOrdinal((int)special[i]);
            PyObject *to = from ? PyUnicode_FromString(repl[i]) : NULL;
            PyObject *nu = to ? PyUnicode_Replace(u, from, to, -1) : NULL;
            Py_XDECREF(from);
            Py_XDECREF(to);
            if (nu == NULL) {
                goto done;
            }
            Py_SETREF(u, nu);
        }
    }
    enc = PyUnicode_AsRawUnicodeEscapeString(u);
    if (enc == NULL) {
        goto done;
    }
    if (write_op(p, OP_UNICODE) < 0 ||
        fj_sink_write(p->sink, PyBytes_AS_STRING(enc), PyBytes_GET_SIZE(enc)) < 0 ||
        write_op(p, '\n') < 0) {
        goto done;
    }
    r = 0;
done:
    Py_DECREF(u);
    Py_XDECREF(enc);
    return r;
}

static int
save_str(fj_pk *p, PyObject *obj, int flags)
{
    if (!p->bin) {
        if (save_str_proto0(p, obj) < 0) {
            return -1;
        }
    }
    else {
        PyObject *tmp = NULL;
        const char *data;
        Py_ssize_t n;
        if (PyUnicode_IS_ASCII(obj)) {
            data = (const char *)PyUnicode_DATA(obj);
            n = PyUnicode_GET_LENGTH(obj);
        }
        else {
            tmp = PyUnicode_AsEncodedString(obj, "utf-8", "surrogatepass");
            if (tmp == NULL) {
                return -1;
            }
            data = PyBytes_AS_STRING(tmp);
            n = PyBytes_GET_SIZE(tmp);
        }
        int r;
        if (n < 256 && p->proto >= 4) {
            char *o = fj_sink_reserve(p->sink, 2 + n);
            r = -1;
            if (o != NULL) {
                o[0] = OP_SHORT_BINUNICODE;
                o[1] = (char)n;
                memcpy(o + 2, data, n);
                r = 0;
            }
        }
        else {
            char hdr[9];
            Py_ssize_t hlen;
            r = 0;
            if ((uint64_t)n <= 0xffffffffULL) {
                hdr[0] = OP_BINUNICODE;
                put_u32(hdr + 1, (uint32_t)n);
                hlen = 5;
            }
            else if (p->proto >= 4) {
                hdr[0] = OP_BINUNICODE8;
                put_u64(hdr + 1, (uint64_t)n);
                hlen = 9;
            }
            else {
                PyErr_SetString(PyExc_OverflowError, "serializing a string larger than 4 GiB "
                                                     "requires pickle protocol 4 or higher");
                r = -1;
                hlen = 0;
            }
            if (r == 0) {
                r = fj_sink_write_big(p->sink, hdr, hlen, data, n);
            }
        }
        Py_XDECREF(tmp);
        if (r < 0) {
            return -1;
        }
    }
    if (flags & FJ_SAVE_UNIQUE) {
        return 0;
    }
    return memoize(p, obj);
}

/* ------------------------------------------------------------------------------------------
 * containers */

static int
save_tuple(fj_pk *p, PyObject *obj, int flags)
{
    Py_ssize_t n = PyTuple_GET_SIZE(obj);
    if (n == 0) {
        if (p->proto >= 1) {
            return write_op(p, OP_EMPTY_TUPLE);
        }
        char *o = fj_sink_reserve(p->sink, 2);
        if (o == NULL) {
            return -1;
        }
        o[0] = OP_MARK;
        o[1] = OP_TUPLE;
        return 0;
    }
    int small = p->proto >= 2 && n <= 3;
    if (!small && write_op(p, OP_MARK) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(obj, i); /* borrowed, the tuple keeps it alive */
        if (fj_pk_save(p, item, 0) < 0) {
            add_note("when serializing %T item %zd", obj, i);
            return -1;
        }
    }
    Py_ssize_t *idx = (flags & FJ_SAVE_UNIQUE) ? NULL : memo_lookup(p, obj);
    if (idx != NULL) {
        /* recursive tuple: drop what was pushed, fetch it back from the memo */
        Py_ssize_t idxv = *idx;
        if (small) {
            for (Py_ssize_t i = 0; i < n; i++) {
                if (write_op(p, OP_POP) < 0) {
                    return -1;
                }
            }
        }
        else if (p->bin) {
            if (write_op(p, OP_POP_MARK) < 0) {
                return -1;
            }
        }
        else {
            for (Py_ssize_t i = 0; i <= n; i++) {
                if (write_op(p, OP_POP) < 0) {
                    return -1;
                }
            }
        }
        return memo_get(p, idxv);
    }
    if (write_op(p, small ? (char)(OP_TUPLE1 + n - 1) : OP_TUPLE) < 0) {
        return -1;
    }
    if (flags & FJ_SAVE_UNIQUE) {
        return 0;
    }
    return memoize(p, obj);
}

/* Save a borrowed item from a mutable container: hold a reference while saving. */
static inline int
save_item(fj_pk *p, PyObject *item)
{
    int flags = Py_REFCNT(item) == 1 ? FJ_SAVE_UNIQUE : 0;
    Py_INCREF(item);
    int r = fj_pk_save(p, item, flags);
    Py_DECREF(item);
    return r;
}

static int
save_list(fj_pk *p, PyObject *obj, int flags)
{
    if (p->bin) {
        if (write_op(p, OP_EMPTY_LIST) < 0) {
            return -1;
        }
    }
    else if (write_text(p, "(l") < 0) {
        return -1;
    }
    if (!(flags & FJ_SAVE_UNIQUE) && memoize(p, obj) < 0) {
        return -1;
    }
    Py_ssize_t i = 0;
    if (!p->bin) {
        while (i < PyList_GET_SIZE(obj)) {
            if (save_item(p, PyList_GET_ITEM(obj, i)) < 0) {
                goto item_error;
            }
            if (write_op(p, OP_APPEND) < 0) {
                return -1;
            }
            i++;
        }
        return 0;
    }
    while (i < PyList_GET_SIZE(obj)) {
        Py_ssize_t left = PyList_GET_SIZE(obj) - i;
        if (left == 1) {
            if (save_item(p, PyList_GET_ITEM(obj, i)) < 0) {
                goto item_error;
            }
            if (write_op(p, OP_APPEND) < 0) {
                return -1;
            }
            i++;
            continue;
        }
        if (write_op(p, OP_MARK) < 0) {
            return -1;
        }
        for (int k = 0; k < BATCHSIZE && i < PyList_GET_SIZE(obj); k++, i++) {
            if (save_item(p, PyList_GET_ITEM(obj, i)) < 0) {
                goto item_error;
            }
        }
        if (write_op(p, OP_APPENDS) < 0) {
            return -1;
        }
    }
    return 0;
item_error:
    add_note("when serializing %T item %zd", obj, i);
    return -1;
}

/* One dict entry: key, then value (borrowed; both held while saving, the flags chosen by the
 * caller). A failure on the value gets the note naming the key, like stdlib. */
static int
save_dict_entry(fj_pk *p, PyObject *dict, PyObject *key, int kflags, PyObject *value, int vflags)
{
    Py_INCREF(key);
    Py_INCREF(value);
    int r = fj_pk_save(p, key, kflags);
    if (r == 0 && (r = fj_pk_save(p, value, vflags)) < 0) {
        add_note("when serializing %T item %R", dict, key);
    }
    Py_DECREF(key);
    Py_DECREF(value);
    return r;
}

static int
save_dict(fj_pk *p, PyObject *obj, int flags)
{
    if (p->bin) {
        if (write_op(p, OP_EMPTY_DICT) < 0) {
            return -1;
        }
    }
    else if (write_text(p, "(d") < 0) {
        return -1;
    }
    if (!(flags & FJ_SAVE_UNIQUE) && memoize(p, obj) < 0) {
        return -1;
    }
    Py_ssize_t size = PyDict_GET_SIZE(obj);
    Py_ssize_t pos = 0;
    PyObject *key, *value; /* borrowed */
    if (!p->bin) {
        while (PyDict_Next(obj, &pos, &key, &value)) {
            int r = save_dict_entry(p, obj, key, Py_REFCNT(key) == 1 ? FJ_SAVE_UNIQUE : 0,
                                    value, 0);
            if (r < 0 || write_op(p, OP_SETITEM) < 0) {
                return -1;
            }
            if (PyDict_GET_SIZE(obj) != size) {
                PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
                return -1;
            }
        }
        return 0;
    }
    if (size == 1) {
        if (!PyDict_Next(obj, &pos, &key, &value)) {
            return 0;
        }
        if (save_dict_entry(p, obj, key, 0, value,
                            Py_REFCNT(value) == 1 ? FJ_SAVE_UNIQUE : 0) < 0) {
            return -1;
        }
        return write_op(p, OP_SETITEM);
    }
    Py_ssize_t done = 0;
    while (done < size) {
        if (write_op(p, OP_MARK) < 0) {
            return -1;
        }
        for (int k = 0; k < BATCHSIZE; k++) {
            if (!PyDict_Next(obj, &pos, &key, &value)) {
                break;
            }
            if (save_dict_entry(p, obj, key, 0, value,
                                Py_REFCNT(value) == 1 ? FJ_SAVE_UNIQUE : 0) < 0) {
                return -1;
            }
            done++;
            if (PyDict_GET_SIZE(obj) != size) {
                PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
                return -1;
            }
        }
        if (write_op(p, OP_SETITEMS) < 0) {
            return -1;
        }
    }
    return 0;
}

/* APPENDS / SETITEMS / ADDITEMS batches over an iterator (reduce listitems/dictitems, sets):
 * like stdlib, take up to BATCHSIZE items, then save them between MARK and op_many (a batch of
 * one uses op_one without MARK unless always_mark). `kind` says what the items are, for the
 * error notes naming them: `owner` (borrowed) is the object they belong to, `index` the item's
 * position in the iteration. */
enum { ITEMS_LIST, ITEMS_DICT, ITEMS_SET };

static int
save_iter_item(fj_pk *p, PyObject *item, int kind, PyObject *owner, Py_ssize_t index)
{
    if (kind != ITEMS_DICT) {
        if (fj_pk_save(p, item, 0) < 0) {
            if (kind == ITEMS_SET) {
                add_note("when serializing %T element", owner);
            }
            else {
                add_note("when serializing %T item %zd", owner, index);
            }
            return -1;
        }
        return 0;
    }
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
        PyErr_SetString(PyExc_TypeError, "dict items iterator must return 2-tuples");
        return -1;
    }
    if (fj_pk_save(p, PyTuple_GET_ITEM(item, 0), 0) < 0) {
        return -1;
    }
    if (fj_pk_save(p, PyTuple_GET_ITEM(item, 1), 0) < 0) {
        add_note("when serializing %T item %R", owner, PyTuple_GET_ITEM(item, 0));
        return -1;
    }
    return 0;
}

static int
batch_iter(fj_pk *p, PyObject *iter, char op_one, char op_many, int kind, PyObject *owner,
           int always_mark)
{
    PyObject *item;
    Py_ssize_t index = 0;
    if (!p->bin && !always_mark) {
        while ((item = PyIter_Next(iter)) != NULL) {
            int r = save_iter_item(p, item, kind, owner, index++);
            Py_DECREF(item);
            if (r < 0 || write_op(p, op_one) < 0) {
                return -1;
            }
        }
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject **batch = PyMem_Malloc(BATCHSIZE * sizeof(PyObject *));
    if (batch == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int status = -1;
    Py_ssize_t n = 0;
    for (;;) {
        n = 0;
        while (n < BATCHSIZE) {
            item = PyIter_Next(iter);
            if (item == NULL) {
                if (PyErr_Occurred()) {
                    goto done;
                }
                break;
            }
            batch[n++] = item;
        }
        if (n == 0) {
            break;
        }
        int single = n == 1 && !always_mark;
        if (!single && write_op(p, OP_MARK) < 0) {
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            if (save_iter_item(p, batch[i], kind, owner, index++) < 0) {
                goto done;
            }
        }
        if (write_op(p, single ? op_one : op_many) < 0) {
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_DECREF(batch[i]);
        }
        if (n < BATCHSIZE) {
            n = 0;
            break;
        }
    }
    n = 0;
    status = 0;
done:
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(batch[i]);
    }
    PyMem_Free(batch);
    return status;
}

static int
save_set(fj_pk *p, PyObject *obj, int flags)
{
    if (p->proto < 4) {
        PyObject *lst = PySequence_List(obj);
        if (lst == NULL) {
            return -1;
        }
        PyObject *args = PyTuple_Pack(1, lst);
        Py_DECREF(lst);
        return save_reduce_args(p, (PyObject *)&PySet_Type, args, obj);
    }
    if (write_op(p, OP_EMPTY_SET) < 0) {
        return -1;
    }
    if (!(flags & FJ_SAVE_UNIQUE) && memoize(p, obj) < 0) {
        return -1;
    }
    if (PySet_GET_SIZE(obj) == 0) {
        return 0;
    }
    PyObject *it = PyObject_GetIter(obj);
    if (it == NULL) {
        return -1;
    }
    int r = batch_iter(p, it, OP_ADDITEMS, OP_ADDITEMS, ITEMS_SET, obj, 1);
    Py_DECREF(it);
    return r;
}

static int
save_frozenset(fj_pk *p, PyObject *obj, int flags)
{
    if (p->proto < 4) {
        PyObject *lst = PySequence_List(obj);
        if (lst == NULL) {
            return -1;
        }
        PyObject *args = PyTuple_Pack(1, lst);
        Py_DECREF(lst);
        return save_reduce_args(p, (PyObject *)&PyFrozenSet_Type, args, obj);
    }
    if (write_op(p, OP_MARK) < 0) {
        return -1;
    }
    PyObject *it = PyObject_GetIter(obj);
    if (it == NULL) {
        return -1;
    }
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        int r = fj_pk_save(p, item, 0);
        Py_DECREF(item);
        if (r < 0) {
            add_note("when serializing %T element", obj);
            Py_DECREF(it);
            return -1;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        return -1;
    }
    Py_ssize_t *idx = memo_lookup(p, obj);
    if (idx != NULL) {
        Py_ssize_t v = *idx;
        if (write_op(p, OP_POP_MARK) < 0) {
            return -1;
        }
        return memo_get(p, v);
    }
    if (write_op(p, OP_FROZENSET) < 0) {
        return -1;
    }
    if (flags & FJ_SAVE_UNIQUE) {
        return 0;
    }
    return memoize(p, obj);
}

/* ------------------------------------------------------------------------------------------
 * globals */

/* Walk a dotted name from `root`. *res: the object, *parent: its parent (new refs). Raises
 * AttributeError (also for '<locals>'). */
static int
get_deep_attribute(PyObject *root, PyObject *dotted, PyObject **res, PyObject **parent)
{
    PyObject *parts = PyUnicode_Split(dotted, NULL, -1);
    *res = *parent = NULL;
    if (parts == NULL) {
        return -1;
    }
    /* PyUnicode_Split with NULL splits on whitespace: split on '.' instead */
    Py_DECREF(parts);
    PyObject *dot = PyUnicode_FromString(".");
    if (dot == NULL) {
        return -1;
    }
    parts = PyUnicode_Split(dotted, dot, -1);
    Py_DECREF(dot);
    if (parts == NULL) {
        return -1;
    }
    PyObject *cur = Py_NewRef(root);
    PyObject *par = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(parts); i++) {
        PyObject *sub = PyList_GET_ITEM(parts, i);
        if (PyUnicode_CompareWithASCIIString(sub, "<locals>") == 0) {
            PyErr_Format(PyExc_AttributeError, "Can't get local attribute %R on %R", dotted, root);
            goto error;
        }
        PyObject *next = PyObject_GetAttr(cur, sub);
        if (next == NULL) {
            goto error;
        }
        Py_XSETREF(par, cur);
        cur = next;
    }
    Py_DECREF(parts);
    *res = cur;
    *parent = par;
    return 0;
error:
    Py_DECREF(parts);
    Py_XDECREF(par);
    Py_DECREF(cur);
    return -1;
}

/* module name of a global: __module__, else a search of sys.modules, else '__main__'. */
static PyObject *
whichmodule(fj_pk *p, PyObject *obj, PyObject *name)
{
    PyObject *mod;
    int r = lookup_attr(obj, p->st->pk.s_module, &mod);
    if (r < 0) {
        return NULL;
    }
    if (r > 0) {
        if (mod != Py_None) {
            return mod;
        }
        Py_DECREF(mod);
    }
    PyObject *modules = PySys_GetObject("modules"); /* borrowed */
    if (modules == NULL || !PyDict_Check(modules)) {
        PyErr_SetString(PyExc_RuntimeError, "unable to get sys.modules");
        return NULL;
    }
    PyObject *copy = PyDict_Copy(modules);
    if (copy == NULL) {
        return NULL;
    }
    Py_ssize_t pos = 0;
    PyObject *mname, *module; /* borrowed from copy */
    while (PyDict_Next(copy, &pos, &mname, &module)) {
        if (module == Py_None || !PyUnicode_Check(mname) ||
            PyUnicode_CompareWithASCIIString(mname, "__main__") == 0 ||
            PyUnicode_CompareWithASCIIString(mname, "__mp_main__") == 0) {
            continue;
        }
        PyObject *found, *parent;
        if (get_deep_attribute(module, name, &found, &parent) < 0) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                Py_DECREF(copy);
                return NULL;
            }
            PyErr_Clear();
            continue;
        }
        Py_XDECREF(parent);
        Py_DECREF(found);
        if (found == obj) {
            Py_INCREF(mname);
            Py_DECREF(copy);
            return mname;
        }
    }
    Py_DECREF(copy);
    return PyUnicode_FromString("__main__");
}

static int
write_global_text(fj_pk *p, PyObject *module_name, PyObject *name, const char *encoding)
{
    PyObject *m = PyUnicode_AsEncodedString(module_name, encoding, "strict");
    PyObject *n = m ? PyUnicode_AsEncodedString(name, encoding, "strict") : NULL;
    int r = -1;
    if (n == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
#if FJ_PICKLE_314_ERRORS
            /* the identifier that does not encode, chained to the UnicodeEncodeError */
            PyObject *orig = PyErr_GetRaisedException();
            PyErr_Format(p->st->PicklingError,
                         "can't pickle %s identifier %R using pickle protocol %i",
                         m == NULL ? "module" : "global", m == NULL ? module_name : name,
                         p->proto);
            fj_set_context(orig);
#else
            PyErr_Format(p->st->PicklingError,
                         "can't pickle global identifier '%S.%S' using pickle protocol %i",
                         module_name, name, p->proto);
#endif
        }
        goto done;
    }
    if (write_op(p, OP_GLOBAL) == 0 &&
        fj_sink_write(p->sink, PyBytes_AS_STRING(m), PyBytes_GET_SIZE(m)) == 0 &&
        write_op(p, '\n') == 0 &&
        fj_sink_write(p->sink, PyBytes_AS_STRING(n), PyBytes_GET_SIZE(n)) == 0 &&
        write_op(p, '\n') == 0) {
        r = 0;
    }
done:
    Py_XDECREF(m);
    Py_XDECREF(n);
    return r;
}

/* One of name's dotted components is exactly "<locals>" (stdlib's get_dotted_path test). */
static int
is_local_path(PyObject *name)
{
    PyObject *parts = NULL, *dot = NULL;
    int found = 0;
    if ((dot = PyUnicode_FromString(".")) == NULL ||
        (parts = PyUnicode_Split(name, dot, -1)) == NULL) {
        Py_XDECREF(dot);
        PyErr_Clear();
        return 1; /* "<locals>" is in the name: treat as local */
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(parts) && !found; i++) {
        found = PyUnicode_CompareWithASCIIString(PyList_GET_ITEM(parts, i), "<locals>") == 0;
    }
    Py_DECREF(parts);
    Py_DECREF(dot);
    return found;
}

/* GLOBAL module\nname\n: utf-8 from protocol 3, else ASCII after the reverse _compat_pickle
 * mappings when fix_imports. */
static int
write_toplevel_global(fj_pk *p, PyObject *module_name_arg, PyObject *name_arg)
{
    fj_pickler_state *ps = &p->st->pk;
    PyObject *module_name = Py_NewRef(module_name_arg), *name = Py_NewRef(name_arg);
    int status = -1;
    if (p->proto >= 3) {
        status = write_global_text(p, module_name, name, "utf-8");
        goto done;
    }
    if (p->fix_imports) {
        PyObject *key = PyTuple_Pack(2, module_name, name);
        if (key == NULL) {
            goto done;
        }
        PyObject *item = PyDict_GetItemWithError(ps->name_mapping_3to2, key); /* borrowed */
        Py_DECREF(key);
        if (item != NULL) {
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
                PyErr_SetString(PyExc_RuntimeError, "bad _compat_pickle name mapping");
                goto done;
            }
            Py_SETREF(module_name, Py_NewRef(PyTuple_GET_ITEM(item, 0)));
            Py_SETREF(name, Py_NewRef(PyTuple_GET_ITEM(item, 1)));
        }
        else if (PyErr_Occurred()) {
            goto done;
        }
        else {
            item = PyDict_GetItemWithError(ps->import_mapping_3to2, module_name);
            if (item != NULL) {
                Py_SETREF(module_name, Py_NewRef(item));
            }
            else if (PyErr_Occurred()) {
                goto done;
            }
        }
    }
    status = write_global_text(p, module_name, name, "ascii");
done:
    Py_DECREF(module_name);
    Py_DECREF(name);
    return status;
}

#if FJ_PICKLE_NESTED_BY_PATH
/* Protocol < 4, dotted name: getattr(getattr(<module>.first, a1), a2)... with the first component
 * written by name (not saved as an object: a class whose __qualname__ leads back to itself must
 * not recurse), as stdlib 3.13+. */
static int
write_global_by_path(fj_pk *p, PyObject *module_name, PyObject *name)
{
    fj_pickler_state *ps = &p->st->pk;
    PyObject *dot = PyUnicode_FromString(".");
    PyObject *parts = dot != NULL ? PyUnicode_Split(name, dot, -1) : NULL;
    int status = -1;
    Py_XDECREF(dot);
    if (parts == NULL) {
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(parts);
    for (Py_ssize_t i = 1; i < n; i++) {
        if (fj_pk_save(p, ps->getattr, 0) < 0 || (p->proto < 2 && write_op(p, OP_MARK) < 0)) {
            goto done;
        }
    }
    if (write_toplevel_global(p, module_name, PyList_GET_ITEM(parts, 0)) < 0) {
        goto done;
    }
    for (Py_ssize_t i = 1; i < n; i++) {
        if (fj_pk_save(p, PyList_GET_ITEM(parts, i), 0) < 0 ||
            write_op(p, p->proto < 2 ? OP_TUPLE : OP_TUPLE2) < 0 || write_op(p, OP_REDUCE) < 0) {
            goto done;
        }
    }
    status = 0;
done:
    Py_DECREF(parts);
    return status;
}
#endif

/* A local object (a '<locals>' component in its qualified name): the running stdlib's error. */
static void
raise_local_object(fj_pk *p, PyObject *obj, PyObject *name)
{
#if FJ_PICKLE_314_ERRORS
    (void)name;
    PyErr_Format(p->st->PicklingError, "Can't pickle local object %R", obj);
#elif FJ_PICKLE_313_ERRORS
    (void)obj;
    PyErr_Format(PyExc_AttributeError, "Can't get local object %R", name);
#else
    (void)obj;
    PyErr_Format(PyExc_AttributeError, "Can't pickle local object %R", name);
#endif
}

/* module_arg: NULL = found by whichmodule(); else the module to look the name up in (the lookup
 * must still give obj back) */
static int
save_global_in(fj_pk *p, PyObject *obj, PyObject *name_arg, PyObject *module_arg)
{
    fj_pickler_state *ps = &p->st->pk;
    PyObject *name = NULL, *module_name = NULL, *module = NULL, *obj2 = NULL, *parent = NULL;
    PyObject *lastname = NULL;
    int status = -1;

    if (name_arg != NULL) {
        name = Py_NewRef(name_arg);
    }
    else {
        int r = lookup_attr(obj, ps->s_qualname, &name);
        if (r < 0) {
            goto error;
        }
        if (r == 0 || name == Py_None) {
            Py_XDECREF(name);
            name = PyObject_GetAttr(obj, ps->s_name);
            if (name == NULL) {
                goto error;
            }
        }
    }
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "__qualname__ / __name__ of %R is not a string", obj);
        goto error;
    }
    /* a local object fails before any module is searched, as in stdlib's C pickler (whichmodule's
     * scan would otherwise reach modules whose getattr raises, e.g. torch.classes) */
    Py_ssize_t loc = PyUnicode_Find(name, p->st->pk.s_locals, 0, PyUnicode_GET_LENGTH(name), 1);
    if (loc == -2) {
        goto error;
    }
    if (loc >= 0 && is_local_path(name)) {
        raise_local_object(p, obj, name);
        goto error;
    }
    module_name = module_arg != NULL ? Py_NewRef(module_arg) : whichmodule(p, obj, name);
    if (module_name == NULL) {
        goto error;
    }
    module = PyImport_ImportModuleLevelObject(module_name, NULL, NULL, NULL, 0);
    if (module != NULL) {
        Py_DECREF(module);
        module = PyImport_GetModule(module_name);
        if (module == NULL && !PyErr_Occurred()) {
            PyErr_SetObject(PyExc_KeyError, module_name);
        }
    }
    if (module == NULL) {
        /* the running stdlib's error (pyver.h) */
#if FJ_PICKLE_314_ERRORS
        if (PyErr_ExceptionMatches(PyExc_ImportError) || PyErr_ExceptionMatches(PyExc_KeyError) ||
            PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyObject *orig = PyErr_GetRaisedException();
            PyErr_Format(p->st->PicklingError, "Can't pickle %R: %S", obj, orig);
            fj_set_context(orig);
        }
#else
        PyErr_Format(p->st->PicklingError, "Can't pickle %R: import of module %R failed", obj,
                     module_name);
#endif
        goto error;
    }
    if (get_deep_attribute(module, name, &obj2, &parent) < 0) {
#if FJ_PICKLE_314_ERRORS
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyObject *orig = PyErr_GetRaisedException();
            PyErr_Format(p->st->PicklingError, "Can't pickle %R: it's not found as %S.%S", obj,
                         module_name, name);
            fj_set_context(orig);
        }
#else
        PyErr_Format(p->st->PicklingError, "Can't pickle %R: attribute lookup %S on %S failed", obj,
                     name, module_name);
#endif
        goto error;
    }
    if (obj2 != obj) {
        PyErr_Format(p->st->PicklingError, "Can't pickle %R: it's not the same object as %S.%S",
                     obj, module_name, name);
        goto error;
    }
    if (p->globals_seen != NULL && PySet_Add(p->globals_seen, module_name) < 0) { /* provenance */
        goto error;
    }
    if (p->proto >= 2) {
        PyObject *key = PyTuple_Pack(2, module_name, name);
        if (key == NULL) {
            goto error;
        }
        PyObject *code = PyDict_GetItemWithError(ps->extension_registry, key); /* borrowed */
        Py_DECREF(key);
        if (code == NULL && PyErr_Occurred()) {
            goto error;
        }
        if (code != NULL) {
            /* a bad registry entry (copyreg.add_extension refuses them): the running stdlib's error */
#if !FJ_PICKLE_313_ERRORS
            if (!PyLong_Check(code)) {
                PyErr_Format(p->st->PicklingError, "Can't pickle %R: extension code %R isn't an integer",
                             obj, code);
                goto error;
            }
#endif
            long c = PyLong_AsLong(code);
            if (c == -1 && PyErr_Occurred()) {
                goto error;
            }
            if (c <= 0 || c > 0x7fffffffL) {
#if FJ_PICKLE_313_ERRORS
                PyErr_Format(PyExc_RuntimeError, "extension code %ld is out of range", c);
#else
                PyErr_Format(p->st->PicklingError, "Can't pickle %R: extension code %ld is out of range",
                             obj, c);
#endif
                goto error;
            }
            {
                char *o;
                if (c <= 0xff) {
                    if ((o = fj_sink_reserve(p->sink, 2)) == NULL) {
                        goto error;
                    }
                    o[0] = OP_EXT1;
                    o[1] = (char)c;
                }
                else if (c <= 0xffff) {
                    if ((o = fj_sink_reserve(p->sink, 3)) == NULL) {
                        goto error;
                    }
                    o[0] = OP_EXT2;
                    o[1] = (char)(c & 0xff);
                    o[2] = (char)((c >> 8) & 0xff);
                }
                else {
                    if ((o = fj_sink_reserve(p->sink, 5)) == NULL) {
                        goto error;
                    }
                    o[0] = OP_EXT4;
                    put_u32(o + 1, (uint32_t)c);
                }
                status = 0;
                goto done;
            }
        }
    }
    /* lastname = name.rpartition('.')[2] */
    Py_ssize_t dot = PyUnicode_FindChar(name, '.', 0, PyUnicode_GET_LENGTH(name), -1);
    if (dot == -2) {
        goto error;
    }
    lastname = dot < 0 ? Py_NewRef(name)
                       : PyUnicode_Substring(name, dot + 1, PyUnicode_GET_LENGTH(name));
    if (lastname == NULL) {
        goto error;
    }
    if (parent == module) {
        Py_SETREF(name, Py_NewRef(lastname));
    }
    if (p->proto >= 4) {
        if (fj_pk_save(p, module_name, 0) < 0 || fj_pk_save(p, name, 0) < 0 ||
            write_op(p, OP_STACK_GLOBAL) < 0) {
            goto error;
        }
    }
#if FJ_PICKLE_NESTED_BY_PATH
    else if (parent != module) {
        if (write_global_by_path(p, module_name, name) < 0) {
            goto error;
        }
    }
#else
    else if (parent != module) {
        PyObject *args = PyTuple_Pack(2, parent, lastname);
        PyObject *rv = args ? PyTuple_Pack(2, ps->getattr, args) : NULL;
        Py_XDECREF(args);
        if (rv == NULL) {
            goto error;
        }
        int r = save_reduce(p, rv, NULL);
        Py_DECREF(rv);
        if (r < 0) {
            goto error;
        }
    }
#endif
    else if (write_toplevel_global(p, module_name, name) < 0) {
        goto error;
    }
    if (memoize(p, obj) < 0) {
        goto error;
    }
    status = 0;
    goto done;
error:
    status = -1;
done:
    Py_XDECREF(name);
    Py_XDECREF(module_name);
    Py_XDECREF(module);
    Py_XDECREF(obj2);
    Py_XDECREF(parent);
    Py_XDECREF(lastname);
    return status;
}

static int
save_global(fj_pk *p, PyObject *obj, PyObject *name_arg)
{
    return save_global_in(p, obj, name_arg, NULL);
}

static int
save_type(fj_pk *p, PyObject *obj)
{
    PyObject *single = NULL;
    if (obj == (PyObject *)Py_TYPE(Py_None)) {
        single = Py_None;
    }
    else if (obj == (PyObject *)Py_TYPE(Py_NotImplemented)) {
        single = Py_NotImplemented;
    }
    else if (obj == (PyObject *)Py_TYPE(Py_Ellipsis)) {
        single = Py_Ellipsis;
    }
    if (single != NULL) {
        return save_reduce_args(p, (PyObject *)&PyType_Type, PyTuple_Pack(1, single), obj);
    }
    return save_global(p, obj, NULL);
}

/* ------------------------------------------------------------------------------------------
 * reduce */

static int
save_reduce(fj_pk *p, PyObject *rv, PyObject *obj)
{
    fj_state *st = p->st;
    Py_ssize_t size = PyTuple_GET_SIZE(rv);
    if (size < 2 || size > 6) {
        PyErr_SetString(st->PicklingError,
                        "tuple returned by __reduce__ must contain 2 through 6 elements");
        return -1;
    }
    PyObject *callable = PyTuple_GET_ITEM(rv, 0); /* all borrowed from rv */
    PyObject *argtup = PyTuple_GET_ITEM(rv, 1);
    PyObject *state = size > 2 ? PyTuple_GET_ITEM(rv, 2) : NULL;
    PyObject *listitems = size > 3 ? PyTuple_GET_ITEM(rv, 3) : NULL;
    PyObject *dictitems = size > 4 ? PyTuple_GET_ITEM(rv, 4) : NULL;
    PyObject *state_setter = size > 5 ? PyTuple_GET_ITEM(rv, 5) : NULL;
    if (state == Py_None) {
        state = NULL;
    }
    if (listitems == Py_None) {
        listitems = NULL;
    }
    if (dictitems == Py_None) {
        dictitems = NULL;
    }
    if (state_setter == Py_None) {
        state_setter = NULL;
    }
    /* the object the notes name (NULL only for the pre-3.13 nested-global reduce) */
    PyObject *owner = obj != NULL ? obj : Py_None;
#if FJ_PICKLE_314_ERRORS
    if (!PyCallable_Check(callable)) {
        PyErr_Format(st->PicklingError, "first item of the tuple returned by __reduce__ "
                                        "must be callable, not %T", callable);
        return -1;
    }
    if (!PyTuple_Check(argtup)) {
        PyErr_Format(st->PicklingError, "second item of the tuple returned by __reduce__ "
                                        "must be a tuple, not %T", argtup);
        return -1;
    }
    if (listitems != NULL && !PyIter_Check(listitems)) {
        PyErr_Format(st->PicklingError, "fourth item of the tuple returned by __reduce__ "
                                        "must be an iterator, not %T", listitems);
        return -1;
    }
    if (dictitems != NULL && !PyIter_Check(dictitems)) {
        PyErr_Format(st->PicklingError, "fifth item of the tuple returned by __reduce__ "
                                        "must be an iterator, not %T", dictitems);
        return -1;
    }
    if (state_setter != NULL && !PyCallable_Check(state_setter)) {
        PyErr_Format(st->PicklingError, "sixth item of the tuple returned by __reduce__ "
                                        "must be callable, not %T", state_setter);
        return -1;
    }
#else
    if (!PyCallable_Check(callable)) {
        PyErr_SetString(st->PicklingError, "first item of the tuple returned by __reduce__ "
                                           "must be callable");
        return -1;
    }
    if (!PyTuple_Check(argtup)) {
        PyErr_SetString(st->PicklingError, "second item of the tuple returned by __reduce__ "
                                           "must be a tuple");
        return -1;
    }
    if (listitems != NULL && !PyIter_Check(listitems)) {
        PyErr_Format(st->PicklingError, "fourth element of the tuple returned by __reduce__ "
                                        "must be an iterator, not %s",
                     Py_TYPE(listitems)->tp_name);
        return -1;
    }
    if (dictitems != NULL && !PyIter_Check(dictitems)) {
        PyErr_Format(st->PicklingError, "fifth element of the tuple returned by __reduce__ "
                                        "must be an iterator, not %s",
                     Py_TYPE(dictitems)->tp_name);
        return -1;
    }
    if (state_setter != NULL && !PyCallable_Check(state_setter)) {
        PyErr_Format(st->PicklingError, "sixth element of the tuple returned by __reduce__ "
                                        "must be a function, not %s",
                     Py_TYPE(state_setter)->tp_name);
        return -1;
    }
#endif

    int use_newobj = 0, use_newobj_ex = 0;
    if (p->proto >= 2) {
        PyObject *fname;
        int r = lookup_attr(callable, st->pk.s_name, &fname);
        if (r < 0) {
            return -1;
        }
        if (r > 0) {
            if (PyUnicode_Check(fname)) {
                use_newobj = PyUnicode_CompareWithASCIIString(fname, "__newobj__") == 0;
                use_newobj_ex = PyUnicode_CompareWithASCIIString(fname, "__newobj_ex__") == 0;
            }
            Py_DECREF(fname);
        }
    }

    if (use_newobj_ex) {
#if FJ_PICKLE_314_ERRORS
        if (PyTuple_GET_SIZE(argtup) != 3) {
            PyErr_Format(st->PicklingError, "__newobj_ex__ expected 3 arguments, got %zd",
                         PyTuple_GET_SIZE(argtup));
            return -1;
        }
        PyObject *cls = PyTuple_GET_ITEM(argtup, 0);
        PyObject *args = PyTuple_GET_ITEM(argtup, 1);
        PyObject *kwargs = PyTuple_GET_ITEM(argtup, 2);
        if (!PyType_Check(cls)) {
            PyErr_Format(st->PicklingError,
                         "first argument to __newobj_ex__() must be a class, not %T", cls);
            return -1;
        }
        if (!PyTuple_Check(args)) {
            PyErr_Format(st->PicklingError,
                         "second argument to __newobj_ex__() must be a tuple, not %T", args);
            return -1;
        }
        if (!PyDict_Check(kwargs)) {
            PyErr_Format(st->PicklingError,
                         "third argument to __newobj_ex__() must be a dict, not %T", kwargs);
            return -1;
        }
        /* 3.14 no longer compares cls with the object's class here */
#else
        if (PyTuple_GET_SIZE(argtup) != 3) {
            PyErr_Format(st->PicklingError,
                         "length of the NEWOBJ_EX argument tuple must be exactly 3, not %zd",
                         PyTuple_GET_SIZE(argtup));
            return -1;
        }
        PyObject *cls = PyTuple_GET_ITEM(argtup, 0);
        PyObject *args = PyTuple_GET_ITEM(argtup, 1);
        PyObject *kwargs = PyTuple_GET_ITEM(argtup, 2);
        if (!PyType_Check(cls)) {
            PyErr_Format(st->PicklingError, "first item from NEWOBJ_EX argument tuple must be "
                                            "a class, not %.200s", Py_TYPE(cls)->tp_name);
            return -1;
        }
        if (!PyTuple_Check(args)) {
            PyErr_Format(st->PicklingError, "second item from NEWOBJ_EX argument tuple must be "
                                            "a tuple, not %.200s", Py_TYPE(args)->tp_name);
            return -1;
        }
        if (!PyDict_Check(kwargs)) {
            PyErr_Format(st->PicklingError, "third item from NEWOBJ_EX argument tuple must be "
                                            "a dict, not %.200s", Py_TYPE(kwargs)->tp_name);
            return -1;
        }
        if (obj != NULL) {
            PyObject *oc = PyObject_GetAttr(obj, st->pk.s_class);
            if (oc == NULL) {
                return -1;
            }
            Py_DECREF(oc);
            if (oc != cls) {
                PyErr_SetString(st->PicklingError,
                                "args[0] from __newobj_ex__ args has the wrong class");
                return -1;
            }
        }
#endif
        if (p->proto >= 4) {
            if (fj_pk_save(p, cls, 0) < 0) {
                add_note("when serializing %T class", owner);
                return -1;
            }
            if (fj_pk_save(p, args, 0) < 0 || fj_pk_save(p, kwargs, 0) < 0) {
                add_note("when serializing %T __new__ arguments", owner);
                return -1;
            }
            if (write_op(p, OP_NEWOBJ_EX) < 0) {
                return -1;
            }
        }
        else {
            /* partial(cls.__new__, cls, *args, **kwargs) + () + REDUCE */
            PyObject *newf = PyObject_GetAttr(cls, st->pk.s_new);
            if (newf == NULL) {
                return -1;
            }
            Py_ssize_t n = PyTuple_GET_SIZE(args);
            PyObject *pargs = PyTuple_New(n + 2);
            if (pargs == NULL) {
                Py_DECREF(newf);
                return -1;
            }
            PyTuple_SET_ITEM(pargs, 0, newf);
            PyTuple_SET_ITEM(pargs, 1, Py_NewRef(cls));
            for (Py_ssize_t i = 0; i < n; i++) {
                PyTuple_SET_ITEM(pargs, i + 2, Py_NewRef(PyTuple_GET_ITEM(args, i)));
            }
            PyObject *part = PyObject_Call(st->pk.partial, pargs, kwargs);
            Py_DECREF(pargs);
            if (part == NULL) {
                return -1;
            }
            int r = fj_pk_save(p, part, 0);
            Py_DECREF(part);
            if (r < 0) {
                add_note("when serializing %T reconstructor", owner);
                return -1;
            }
            if (fj_pk_save(p, st->pk.empty_tuple, 0) < 0 || write_op(p, OP_REDUCE) < 0) {
                return -1;
            }
        }
    }
    else if (use_newobj) {
#if FJ_PICKLE_314_ERRORS
        if (PyTuple_GET_SIZE(argtup) < 1) {
            PyErr_Format(st->PicklingError, "__newobj__ expected at least 1 argument, got %zd",
                         PyTuple_GET_SIZE(argtup));
            return -1;
        }
        PyObject *cls = PyTuple_GET_ITEM(argtup, 0);
        if (!PyType_Check(cls)) {
            PyErr_Format(st->PicklingError,
                         "first argument to __newobj__() must be a class, not %T", cls);
            return -1;
        }
#else
        if (PyTuple_GET_SIZE(argtup) < 1) {
            PyErr_SetString(st->PicklingError, "__newobj__ arglist is empty");
            return -1;
        }
        PyObject *cls = PyTuple_GET_ITEM(argtup, 0);
        if (!PyType_Check(cls)) {
            PyErr_SetString(st->PicklingError, "args[0] from __newobj__ args is not a type");
            return -1;
        }
#endif
        if (obj != NULL) {
            PyObject *oc = PyObject_GetAttr(obj, st->pk.s_class);
            if (oc == NULL) {
                return -1;
            }
            if (oc != cls) {
#if FJ_PICKLE_314_ERRORS
                PyErr_Format(st->PicklingError,
                             "first argument to __newobj__() must be %R, not %R", oc, cls);
#else
                PyErr_SetString(st->PicklingError,
                                "args[0] from __newobj__ args has the wrong class");
#endif
                Py_DECREF(oc);
                return -1;
            }
            Py_DECREF(oc);
        }
        if (fj_pk_save(p, cls, 0) < 0) {
            add_note("when serializing %T class", owner);
            return -1;
        }
        PyObject *newargs = PyTuple_GetSlice(argtup, 1, PyTuple_GET_SIZE(argtup));
        if (newargs == NULL) {
            return -1;
        }
        int r = fj_pk_save(p, newargs, Py_REFCNT(newargs) == 1 ? FJ_SAVE_UNIQUE : 0);
        Py_DECREF(newargs);
        if (r < 0) {
            add_note("when serializing %T __new__ arguments", owner);
            return -1;
        }
        if (write_op(p, OP_NEWOBJ) < 0) {
            return -1;
        }
    }
    else {
        if (fj_pk_save(p, callable, 0) < 0) {
            add_note("when serializing %T reconstructor", owner);
            return -1;
        }
        if (fj_pk_save(p, argtup, 0) < 0) {
            add_note("when serializing %T reconstructor arguments", owner);
            return -1;
        }
        if (write_op(p, OP_REDUCE) < 0) {
            return -1;
        }
    }

    if (obj != NULL) {
        Py_ssize_t *idx = memo_lookup(p, obj);
        if (idx != NULL) {
            Py_ssize_t v = *idx;
            if (write_op(p, OP_POP) < 0 || memo_get(p, v) < 0) {
                return -1;
            }
        }
        else if (memoize(p, obj) < 0) {
            return -1;
        }
    }
    if (listitems != NULL &&
        batch_iter(p, listitems, OP_APPEND, OP_APPENDS, ITEMS_LIST, owner, 0) < 0) {
        return -1;
    }
    if (dictitems != NULL &&
        batch_iter(p, dictitems, OP_SETITEM, OP_SETITEMS, ITEMS_DICT, owner, 0) < 0) {
        return -1;
    }
    if (state != NULL) {
        if (state_setter != NULL) {
            if (fj_pk_save(p, state_setter, 0) < 0) {
                add_note("when serializing %T state setter", owner);
                return -1;
            }
            if (fj_pk_save(p, obj, 0) < 0) {
                return -1;
            }
        }
        if (fj_pk_save(p, state, 0) < 0) {
            add_note("when serializing %T state", owner);
            return -1;
        }
        if (state_setter == NULL) {
            if (write_op(p, OP_BUILD) < 0) {
                return -1;
            }
        }
        else if (write_op(p, OP_TUPLE2) < 0 || write_op(p, OP_REDUCE) < 0 ||
                 write_op(p, OP_POP) < 0) {
            return -1;
        }
    }
    return 0;
}

/* result of a reducer (str -> global, tuple -> save_reduce). Consumes nothing. */
static int
save_reduce_value(fj_pk *p, PyObject *obj, PyObject *rv)
{
    if (PyUnicode_Check(rv)) {
        return save_global(p, obj, rv);
    }
    if (!PyTuple_Check(rv)) {
#if FJ_PICKLE_314_ERRORS
        PyErr_Format(p->st->PicklingError, "__reduce__ must return a string or tuple, not %T",
                     rv);
#else
        PyErr_SetString(p->st->PicklingError, "__reduce__ must return a string or tuple");
#endif
        goto error;
    }
    if (save_reduce(p, rv, obj) < 0) {
        goto error;
    }
    return 0;
error:
    add_note("when serializing %T object", obj);
    return -1;
}

static int
save_persistent(fj_pk *p, PyObject *obj)
{
    PyObject *pid = PyObject_CallOneArg(p->pers_func, obj);
    if (pid == NULL) {
        return -1;
    }
    if (pid == Py_None) {
        Py_DECREF(pid);
        return 0;
    }
    int r = -1;
    if (p->bin) {
        if (fj_pk_save(p, pid, FJ_SAVE_NOPERS) == 0 && write_op(p, OP_BINPERSID) == 0) {
            r = 1;
        }
    }
    else {
        Py_ssize_t n;
        const char *s = NULL;
        if (PyUnicode_Check(pid) && PyUnicode_IS_ASCII(pid)) {
            s = PyUnicode_AsUTF8AndSize(pid, &n);
        }
        if (s == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(p->st->PicklingError,
                                "persistent IDs in protocol 0 must be ASCII strings");
            }
        }
        else if (write_op(p, OP_PERSID) == 0 && fj_sink_write(p->sink, s, n) == 0 &&
                 write_op(p, '\n') == 0) {
            r = 1;
        }
    }
    Py_DECREF(pid);
    return r;
}

/* the slow path: reducer_override, globals, dispatch tables, __reduce_ex__ */
static int
save_other(fj_pk *p, PyObject *obj, PyTypeObject *type)
{
    fj_state *st = p->st;
    PyObject *rv = NULL, *func = NULL;
    int status = -1;

    if (p->n_reducers > 0 || p->n_names > 0) {
        /* array-likes of other libraries (e.g. torch tensors): exact types only */
        for (int i = 0; i < p->n_reducers; i++) {
            if ((PyObject *)type == p->reducer_types[i]) {
                rv = PyObject_CallOneArg(p->reducer_funcs[i], obj);
                if (rv == NULL) {
                    return -1;
                }
                if (rv != Py_NotImplemented) {
                    goto reduce;
                }
                Py_CLEAR(rv);
                break;
            }
        }
        for (int i = 0; i < p->n_names; i++) {
            if (obj == p->name_objs[i]) {
                return save_global_in(p, obj, p->name_quals[i], p->name_modules[i]);
            }
        }
    }
    if (p->reducer_override != NULL) {
        rv = PyObject_CallOneArg(p->reducer_override, obj);
        if (rv == NULL) {
            return -1;
        }
        if (rv != Py_NotImplemented) {
            goto reduce;
        }
        Py_CLEAR(rv);
    }
    if (type == &PyType_Type) {
        return save_type(p, obj);
    }
    if (type == &PyFunction_Type) {
        return save_global(p, obj, NULL);
    }
    if (p->dispatch_table != NULL) {
        func = PyObject_GetItem(p->dispatch_table, (PyObject *)type);
        if (func == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
                return -1;
            }
            PyErr_Clear();
        }
    }
    else {
        func = PyDict_GetItemWithError(st->pk.copyreg_dispatch_table, (PyObject *)type);
        if (func == NULL && PyErr_Occurred()) {
            return -1;
        }
        Py_XINCREF(func);
    }
    if (func != NULL) {
        rv = PyObject_CallOneArg(func, obj);
        Py_CLEAR(func);
    }
    else if (PyType_IsSubtype(type, &PyType_Type)) {
        return save_global(p, obj, NULL);
    }
    else {
        int r = lookup_attr(obj, st->pk.s_reduce_ex, &func);
        if (r < 0) {
            return -1;
        }
        if (r > 0) {
            PyObject *proto = PyLong_FromLong(p->proto);
            if (proto == NULL) {
                Py_DECREF(func);
                return -1;
            }
            rv = PyObject_CallOneArg(func, proto);
            Py_DECREF(proto);
            Py_CLEAR(func);
        }
        else {
            r = lookup_attr(obj, st->pk.s_reduce, &func);
            if (r < 0) {
                return -1;
            }
            if (r == 0) {
                PyErr_Format(st->PicklingError, "Can't pickle '%.200s' object: %R",
                             type->tp_name, obj);
                return -1;
            }
            rv = PyObject_CallNoArgs(func);
            Py_CLEAR(func);
        }
    }
    if (rv == NULL) {
        return -1;
    }
reduce:
    status = save_reduce_value(p, obj, rv);
    Py_DECREF(rv);
    return status;
}

/* fast mode (no memo): detect cycles like stdlib once the nesting gets deep. As stdlib, only
 * dicts and lists count (they are what a cycle runs through) and the check starts at the 50th
 * nested one, so a cycle raises at the same depth (3.14's notes show the depth). */
#define FAST_NESTING_LIMIT 50

static int
fast_enter(fj_pk *p, PyObject *obj)
{
    if (++p->fast_nesting < FAST_NESTING_LIMIT) {
        return 0;
    }
    if (p->fast_memo == NULL && (p->fast_memo = PyDict_New()) == NULL) {
        return -1;
    }
    PyObject *key = PyLong_FromVoidPtr(obj);
    if (key == NULL) {
        return -1;
    }
    int r = PyDict_Contains(p->fast_memo, key);
    if (r > 0) {
        PyErr_Format(PyExc_ValueError,
                     "fast mode: can't pickle cyclic objects including object type %.200s at %p",
                     Py_TYPE(obj)->tp_name, (void *)obj);
        r = -1;
    }
    else if (r == 0) {
        r = PyDict_SetItem(p->fast_memo, key, Py_None);
    }
    Py_DECREF(key);
    return r;
}

static int
fast_leave(fj_pk *p, PyObject *obj)
{
    if (p->fast_nesting-- < FAST_NESTING_LIMIT || p->fast_memo == NULL) {
        return 0;
    }
    PyObject *key = PyLong_FromVoidPtr(obj);
    if (key == NULL) {
        return -1;
    }
    int r = PyDict_DelItem(p->fast_memo, key);
    Py_DECREF(key);
    return r;
}

int
fj_pk_save(fj_pk *p, PyObject *obj, int flags)
{
    PyTypeObject *type = Py_TYPE(obj);
    int r;

    if (fj_sink_boundary(p->sink) < 0) {
        return -1;
    }
    if (p->pers_func != NULL && !(flags & FJ_SAVE_NOPERS)) {
        r = save_persistent(p, obj);
        if (r != 0) {
            return r < 0 ? -1 : 0;
        }
    }
    if (obj == Py_None) {
        return write_op(p, OP_NONE);
    }
    if (type == &PyLong_Type) {
        return save_long(p, obj);
    }
    if (type == &PyFloat_Type) {
        return save_float(p, obj);
    }
    if (type == &PyBool_Type) {
        return save_bool(p, obj);
    }
    if (p->array_hook &&
        ((PyObject *)type == p->st->np_ndarray || (PyObject *)type == p->st->np_matrix ||
         (PyObject *)type == p->st->np_memmap)) {
        if (Py_EnterRecursiveCall(" while pickling an object")) {
            return -1;
        }
        r = fj_ndarray_save(p, obj);
        Py_LeaveRecursiveCall();
        return r;
    }
    if (p->memo->used && !p->fast) {
        Py_ssize_t *idx = fj_memo_get(p->memo, obj);
        if (idx != NULL) {
            return memo_get(p, *idx);
        }
    }
    if (type == &PyUnicode_Type) {
        return save_str(p, obj, flags);
    }
    if (type == &PyBytes_Type) {
        return save_bytes(p, obj, flags);
    }
    if (Py_EnterRecursiveCall(" while pickling an object")) {
        return -1;
    }
    int fast_tracked = p->fast && (type == &PyDict_Type || type == &PyList_Type);
    if (fast_tracked && fast_enter(p, obj) < 0) {
        p->fast_nesting--;
        Py_LeaveRecursiveCall();
        return -1;
    }
    if (type == &PyDict_Type) {
        r = save_dict(p, obj, flags);
    }
    else if (type == &PyList_Type) {
        r = save_list(p, obj, flags);
    }
    else if (type == &PyTuple_Type) {
        r = save_tuple(p, obj, flags);
    }
    else if (type == &PySet_Type) {
        r = save_set(p, obj, flags);
    }
    else if (type == &PyFrozenSet_Type) {
        r = save_frozenset(p, obj, flags);
    }
    else if (type == &PyByteArray_Type) {
        r = save_bytearray(p, obj);
    }
    else if (type == &PyPickleBuffer_Type) {
        r = save_picklebuffer(p, obj);
    }
    else {
        r = save_other(p, obj, type);
    }
    if (fast_tracked) {
        if (r < 0) {
            p->fast_nesting--; /* unwinding: the path set is dropped with the call */
        }
        else if (fast_leave(p, obj) < 0) {
            r = -1;
        }
    }
    Py_LeaveRecursiveCall();
    return r;
}

/* ---- provenance trailer (begin) ------------------------------------------------------------
 * _core.dump(..., trailer=f): after the object, f(frozenset of the top-level module names of every
 * global written) returns a dict of str -> str that is saved and popped before STOP (readers that
 * do not look for it never see it). */

/* frozenset({name.partition('.')[0] for name in seen}). New reference or NULL. */
static PyObject *
top_level_modules(PyObject *seen)
{
    PyObject *tops = PySet_New(NULL), *it = NULL, *name, *top;
    if (tops == NULL || (it = PyObject_GetIter(seen)) == NULL) {
        goto error;
    }
    while ((name = PyIter_Next(it)) != NULL) {
        Py_ssize_t dot = PyUnicode_FindChar(name, '.', 0, PyUnicode_GET_LENGTH(name), 1);
        top = dot == -2 ? NULL : dot < 0 ? Py_NewRef(name) : PyUnicode_Substring(name, 0, dot);
        Py_DECREF(name);
        if (top == NULL || PySet_Add(tops, top) < 0) {
            Py_XDECREF(top);
            goto error;
        }
        Py_DECREF(top);
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    Py_DECREF(it);
    Py_SETREF(tops, PyFrozenSet_New(tops));
    return tops;
error:
    Py_XDECREF(it);
    Py_XDECREF(tops);
    return NULL;
}

static int
save_trailer(fj_pk *p)
{
    PyObject *mods = NULL, *rec = NULL, *k, *v; /* k, v borrowed */
    Py_ssize_t pos = 0;
    int status = -1;
    if ((mods = top_level_modules(p->globals_seen)) == NULL ||
        (rec = PyObject_CallOneArg(p->trailer, mods)) == NULL) {
        goto done;
    }
    if (!PyDict_CheckExact(rec)) {
        PyErr_Format(PyExc_TypeError, "trailer must return a dict of str -> str, not %.200s",
                     Py_TYPE(rec)->tp_name);
        goto done;
    }
    while (PyDict_Next(rec, &pos, &k, &v)) {
        if (!PyUnicode_CheckExact(k) || !PyUnicode_CheckExact(v)) {
            PyErr_Format(PyExc_TypeError, "trailer must return a dict of str -> str, got an item "
                         "%.200s -> %.200s", Py_TYPE(k)->tp_name, Py_TYPE(v)->tp_name);
            goto done;
        }
    }
    /* fast mode for the record: no memo entries and no references into the object's memo (the
     * record's bytes stand alone, whatever strings it shares with the object) */
    int fast = p->fast;
    p->fast = 1;
    int r = fj_pk_save(p, rec, FJ_SAVE_UNIQUE);
    p->fast = fast;
    if (r == 0 && write_op(p, OP_POP) == 0) {
        status = 0;
    }
done:
    Py_XDECREF(mods);
    Py_XDECREF(rec);
    return status;
}
/* ---- provenance trailer (end) -------------------------------------------------------------- */

int
fj_pk_dump_stream(fj_pk *p, PyObject *obj)
{
    if (p->proto >= 2) {
        char *o = fj_sink_reserve(p->sink, 2);
        if (o == NULL) {
            return -1;
        }
        o[0] = OP_PROTO;
        o[1] = (char)p->proto;
    }
    if (p->proto >= 4) {
        fj_sink_set_framing(p->sink, 1);
    }
    if (fj_pk_save(p, obj, 0) < 0 || (p->trailer != NULL && save_trailer(p) < 0) ||
        write_op(p, OP_STOP) < 0) {
        fj_sink_commit_frame(p->sink);
        fj_sink_set_framing(p->sink, 0);
        return -1;
    }
    fj_sink_commit_frame(p->sink);
    fj_sink_set_framing(p->sink, 0);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * argument helpers */

static int
resolve_protocol(fj_state *st, PyObject *o, int *proto)
{
    if (o == NULL || o == Py_None) {
        *proto = st->pk.default_protocol;
        return 0;
    }
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < 0) {
        v = HIGHEST_PROTOCOL;
    }
    else if (v > HIGHEST_PROTOCOL) {
        PyErr_Format(PyExc_ValueError, "pickle protocol must be <= %d", HIGHEST_PROTOCOL);
        return -1;
    }
    *proto = (int)v;
    return 0;
}

static int
check_buffer_callback(PyObject *cb, int proto)
{
    if (cb != NULL && cb != Py_None && proto < 5) {
        PyErr_SetString(PyExc_ValueError, "buffer_callback needs protocol >= 5");
        return -1;
    }
    return 0;
}

static void
pk_init(fj_pk *p, fj_state *st, fj_sink *sink, fj_memo *memo, int proto, int fix_imports)
{
    memset(p, 0, sizeof(*p));
    p->st = st;
    p->sink = sink;
    p->memo = memo;
    p->proto = proto;
    p->bin = proto >= 1;
    p->fix_imports = fix_imports && proto < 3;
}

/* Write obj as one complete stream to w (or to memory when w is NULL; *out gets the bytes). */
static int
run_dump(fj_pk *p, fj_writer *w, PyObject *obj, PyObject **out)
{
    fj_sink sink;
    if (fj_sink_init(&sink, w) < 0) {
        return -1;
    }
    p->sink = &sink;
    int r = fj_pk_dump_stream(p, obj);
    if (r == 0) {
        r = fj_sink_finish(&sink);
    }
    if (r == 0 && out != NULL) {
        *out = fj_sink_take_bytes(&sink);
        if (*out == NULL) {
            r = -1;
        }
    }
    fj_sink_free(&sink);
    p->sink = NULL;
    Py_CLEAR(p->fast_memo);
    p->fast_nesting = 0;
    return r;
}

/* ------------------------------------------------------------------------------------------
 * Pickler type */

typedef struct {
    PyObject_HEAD
    PyObject *file;
    PyObject *persistent_id;
    PyObject *dispatch_table;
    PyObject *buffer_callback;
    PyObject *dict;         /* instance __dict__ (e.g. p.reducer_override = f) */
    fj_memo memo;
    int proto;
    int bin;
    int fast;
    int fix_imports;
} PicklerObject;

static int
Pickler_traverse(PicklerObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->file);
    Py_VISIT(self->persistent_id);
    Py_VISIT(self->dispatch_table);
    Py_VISIT(self->buffer_callback);
    Py_VISIT(self->dict);
    if (self->memo.table != NULL) {
        for (size_t i = 0; i <= self->memo.mask; i++) {
            Py_VISIT(self->memo.table[i].key);
        }
    }
    return 0;
}

static int
Pickler_clear(PicklerObject *self)
{
    Py_CLEAR(self->file);
    Py_CLEAR(self->persistent_id);
    Py_CLEAR(self->dispatch_table);
    Py_CLEAR(self->buffer_callback);
    Py_CLEAR(self->dict);
    fj_memo_clear(&self->memo);
    return 0;
}

static void
Pickler_dealloc(PicklerObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Pickler_clear(self);
    fj_memo_free(&self->memo);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
Pickler_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PicklerObject *self = (PicklerObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    fj_memo_init(&self->memo);
    return (PyObject *)self;
}

static int
Pickler_init(PicklerObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"file", "protocol", "fix_imports", "buffer_callback", NULL};
    PyObject *file, *protocol = Py_None, *cb = Py_None;
    int fix_imports = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O$pO:Pickler", kwlist, &file, &protocol,
                                     &fix_imports, &cb)) {
        return -1;
    }
    fj_state *st = fj_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        return -1;
    }
    int proto;
    if (resolve_protocol(st, protocol, &proto) < 0 || check_buffer_callback(cb, proto) < 0) {
        return -1;
    }
    PyObject *w = PyObject_GetAttrString(file, "write");
    if (w == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_SetString(PyExc_TypeError, "file must have a 'write' attribute");
        }
        return -1;
    }
    Py_DECREF(w);
    Py_XSETREF(self->file, Py_NewRef(file));
    Py_XSETREF(self->buffer_callback, cb == Py_None ? NULL : Py_NewRef(cb));
    self->proto = proto;
    self->bin = proto >= 1;
    self->fix_imports = fix_imports;
    fj_memo_clear(&self->memo);
    return 0;
}

/* optional attribute of the instance (a subclass method, or one assigned on the instance) */
static int
instance_hook(PyObject *self, PyObject *name, PyObject **res)
{
    return lookup_attr(self, name, res);
}

static PyObject *
Pickler_dump(PicklerObject *self, PyObject *obj)
{
    fj_state *st = fj_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        return NULL;
    }
    if (self->file == NULL) {
        PyErr_Format(st->PicklingError, "Pickler.__init__() was not called by %s.__init__()",
                     Py_TYPE(self)->tp_name);
        return NULL;
    }
    PyObject *pers = NULL, *ro = NULL, *dt = NULL, *res = NULL;
    fj_writer *w = NULL;
    if (instance_hook((PyObject *)self, st->pk.s_persistent_id, &pers) < 0 ||
        instance_hook((PyObject *)self, st->pk.s_reducer_override, &ro) < 0 ||
        instance_hook((PyObject *)self, st->pk.s_dispatch_table, &dt) < 0) {
        goto done;
    }
    w = fj_writer_pyfile_ex(self->file, 1, 0);
    if (w == NULL) {
        goto done;
    }
    fj_pk p;
    pk_init(&p, st, NULL, &self->memo, self->proto, self->fix_imports);
    p.fast = self->fast;
    p.pers_func = pers == Py_None ? NULL : pers;
    p.reducer_override = ro; /* as stdlib: an assigned None is called (TypeError), not ignored */
    p.dispatch_table = dt == Py_None ? NULL : dt;
    p.buffer_callback = self->buffer_callback;
    if (run_dump(&p, w, obj, NULL) < 0) {
        goto done;
    }
    res = Py_NewRef(Py_None);
done:
    if (w != NULL) {
        w->free(w);
    }
    Py_XDECREF(pers);
    Py_XDECREF(ro);
    Py_XDECREF(dt);
    return res;
}

static PyObject *
Pickler_clear_memo(PicklerObject *self, PyObject *unused)
{
    fj_memo_clear(&self->memo);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------
 * Pickler.memo: a live proxy like _pickle.c's PicklerMemoProxy. copy() gives
 * {id(obj): (memo index, obj)}; assigning a proxy or such a dict replaces the memo. */

typedef struct {
    PyObject_HEAD
    PicklerObject *pickler; /* strong */
} PicklerMemoProxy;

static int
memoproxy_traverse(PicklerMemoProxy *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->pickler);
    return 0;
}

static int
memoproxy_clear_refs(PicklerMemoProxy *self)
{
    Py_CLEAR(self->pickler);
    return 0;
}

static void
memoproxy_dealloc(PicklerMemoProxy *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    memoproxy_clear_refs(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* {id(obj): (index, obj)} of a memo table. New reference. */
static PyObject *
memo_as_dict(fj_memo *m)
{
    PyObject *d = PyDict_New();
    if (d == NULL || m->table == NULL) {
        return d;
    }
    for (size_t i = 0; i <= m->mask; i++) {
        fj_memo_entry *e = &m->table[i];
        if (e->key == NULL) {
            continue;
        }
        PyObject *k = PyLong_FromVoidPtr(e->key);
        PyObject *v = k == NULL ? NULL : Py_BuildValue("(nO)", e->value, e->key);
        int r = v == NULL ? -1 : PyDict_SetItem(d, k, v);
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (r < 0) {
            Py_DECREF(d);
            return NULL;
        }
        if (m->table == NULL) { /* cleared by a key's __eq__/__hash__? (ints: cannot happen) */
            break;
        }
    }
    return d;
}

static PyObject *
memoproxy_copy(PicklerMemoProxy *self, PyObject *Py_UNUSED(ignored))
{
    return self->pickler == NULL ? PyDict_New() : memo_as_dict(&self->pickler->memo);
}

static PyObject *
memoproxy_clear(PicklerMemoProxy *self, PyObject *Py_UNUSED(ignored))
{
    if (self->pickler != NULL) {
        fj_memo_clear(&self->pickler->memo);
    }
    Py_RETURN_NONE;
}

static PyObject *
memoproxy_reduce(PicklerMemoProxy *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *copy = memoproxy_copy(self, NULL);
    if (copy == NULL) {
        return NULL;
    }
    return Py_BuildValue("(O(N))", (PyObject *)&PyDict_Type, copy);
}

static PyMethodDef memoproxy_methods[] = {
    {"clear", (PyCFunction)memoproxy_clear, METH_NOARGS, "Remove all items from memo."},
    {"copy", (PyCFunction)memoproxy_copy, METH_NOARGS, "Copy the memo to a new object."},
    {"__reduce__", (PyCFunction)memoproxy_reduce, METH_NOARGS, "Implement pickle support."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot memoproxy_slots[] = {
    {Py_tp_dealloc, memoproxy_dealloc},
    {Py_tp_traverse, memoproxy_traverse},
    {Py_tp_clear, memoproxy_clear_refs},
    {Py_tp_methods, memoproxy_methods},
    {Py_tp_hash, PyObject_HashNotImplemented},
    {Py_tp_doc, "PicklerMemoProxy: the live memo of a Pickler"},
    {0, NULL},
};

static PyType_Spec memoproxy_spec = {
    .name = "fastjoblib._core.PicklerMemoProxy",
    .basicsize = sizeof(PicklerMemoProxy),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = memoproxy_slots,
};

static PyObject *
Pickler_get_memo(PicklerObject *self, void *closure)
{
    fj_state *st = fj_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        return NULL;
    }
    PicklerMemoProxy *proxy = PyObject_GC_New(PicklerMemoProxy, st->pk.MemoProxyType);
    if (proxy == NULL) {
        return NULL;
    }
    proxy->pickler = (PicklerObject *)Py_NewRef(self);
    PyObject_GC_Track(proxy);
    return (PyObject *)proxy;
}

static int
Pickler_set_memo(PicklerObject *self, PyObject *value, void *closure)
{
    fj_state *st = fj_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        return -1;
    }
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "attribute deletion is not supported");
        return -1;
    }
    fj_memo fresh;
    fj_memo_init(&fresh);
    if (Py_IS_TYPE(value, st->pk.MemoProxyType)) {
        PicklerObject *other = ((PicklerMemoProxy *)value)->pickler;
        if (other == self) {
            return 0;
        }
        fj_memo empty;
        fj_memo_init(&empty);
        fj_memo *src = other != NULL ? &other->memo : &empty;
        /* no Python code runs while copying (keys are only incref'd) */
        for (size_t i = 0; src->table != NULL && i <= src->mask; i++) {
            fj_memo_entry *e = &src->table[i];
            if (e->key != NULL && fj_memo_set(&fresh, e->key, e->value) < 0) {
                goto error;
            }
        }
    }
    else if (PyDict_Check(value)) {
        PyObject *items = PyDict_Items(value); /* a snapshot: values may run code below */
        if (items == NULL) {
            goto error;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
            PyObject *v = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1); /* borrowed */
            if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) != 2) {
                PyErr_SetString(PyExc_TypeError, "'memo' values must be 2-item tuples");
                Py_DECREF(items);
                goto error;
            }
            Py_ssize_t idx = PyLong_AsSsize_t(PyTuple_GET_ITEM(v, 0));
            if (idx == -1 && PyErr_Occurred()) {
                Py_DECREF(items);
                goto error;
            }
            if (idx < 0) {
                PyErr_SetString(PyExc_ValueError, "'memo' indices must be non-negative");
                Py_DECREF(items);
                goto error;
            }
            if (fj_memo_set(&fresh, PyTuple_GET_ITEM(v, 1), idx) < 0) {
                Py_DECREF(items);
                goto error;
            }
        }
        Py_DECREF(items);
    }
    else {
        PyErr_Format(PyExc_TypeError, "'memo' attribute must be a PicklerMemoProxy object or dict, not %.200s",
                     Py_TYPE(value)->tp_name);
        goto error;
    }
    /* swap in place: a running dump holds a pointer to self->memo */
    fj_memo old = self->memo;
    self->memo = fresh;
    fj_memo_free(&old);
    return 0;
error:
    fj_memo_free(&fresh);
    return -1;
}

static PyGetSetDef Pickler_getset[] = {
    {"memo", (getter)Pickler_get_memo, (setter)Pickler_set_memo, "the pickler's memo (a live proxy)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef Pickler_methods[] = {
    {"dump", (PyCFunction)Pickler_dump, METH_O, "Write a pickled representation of obj."},
    {"clear_memo", (PyCFunction)Pickler_clear_memo, METH_NOARGS, "Clear the memo."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Pickler_members[] = {
    {"persistent_id", T_OBJECT_EX, offsetof(PicklerObject, persistent_id), 0, NULL},
    {"dispatch_table", T_OBJECT_EX, offsetof(PicklerObject, dispatch_table), 0, NULL},
    {"fast", T_INT, offsetof(PicklerObject, fast), 0, NULL},
    {"bin", T_INT, offsetof(PicklerObject, bin), READONLY, NULL},
    {"protocol", T_INT, offsetof(PicklerObject, proto), READONLY, NULL},
    /* an instance __dict__: reducer_override is looked up as an ordinary attribute (a subclass
     * method, a mixin's method after Pickler in the MRO, or one assigned on the instance), so no
     * descriptor of that name may live on this type */
    {"__dictoffset__", T_PYSSIZET, offsetof(PicklerObject, dict), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Pickler_slots[] = {
    {Py_tp_new, Pickler_new},
    {Py_tp_init, Pickler_init},
    {Py_tp_dealloc, Pickler_dealloc},
    {Py_tp_traverse, Pickler_traverse},
    {Py_tp_clear, Pickler_clear},
    {Py_tp_methods, Pickler_methods},
    {Py_tp_members, Pickler_members},
    {Py_tp_getset, Pickler_getset},
    {Py_tp_doc, "Pickler(file, protocol=None, *, fix_imports=True, buffer_callback=None)\n"
                "A C pickler writing stdlib-compatible pickle streams to file."},
    {0, NULL},
};

static PyType_Spec Pickler_spec = {
    .name = "fastjoblib._core.Pickler",
    .basicsize = sizeof(PicklerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Pickler_slots,
};

/* ------------------------------------------------------------------------------------------
 * module functions */

static PyObject *
fj_dumps(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"obj", "protocol", "fix_imports", "buffer_callback", NULL};
    PyObject *obj, *protocol = Py_None, *cb = Py_None;
    int fix_imports = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O$pO:dumps", kwlist, &obj, &protocol,
                                     &fix_imports, &cb)) {
        return NULL;
    }
    fj_state *st = fj_state_from_module(module);
    int proto;
    if (resolve_protocol(st, protocol, &proto) < 0 || check_buffer_callback(cb, proto) < 0) {
        return NULL;
    }
    fj_memo memo;
    fj_memo_init(&memo);
    fj_pk p;
    pk_init(&p, st, NULL, &memo, proto, fix_imports);
    p.buffer_callback = cb == Py_None ? NULL : cb;
    PyObject *out = NULL;
    int r = run_dump(&p, NULL, obj, &out);
    fj_memo_free(&memo);
    return r < 0 ? NULL : out;
}

static fj_writer *
writer_for(PyObject *file, int as_bytes)
{
    if (PyLong_Check(file)) {
        long fdl = PyLong_AsLong(file);
        if (fdl == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (fdl < 0 || fdl > INT_MAX) {
            PyErr_SetString(PyExc_ValueError, "invalid file descriptor");
            return NULL;
        }
        int fd = (int)fdl;
        off_t pos = lseek(fd, 0, SEEK_CUR);
        return fj_writer_fd(fd, pos < 0 ? -1 : (int64_t)pos);
    }
    return fj_writer_pyfile_ex(file, as_bytes, !as_bytes);
}

static PyObject *
fj_dump_pickle(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"obj", "file", "protocol", "fix_imports", "buffer_callback", NULL};
    PyObject *obj, *file, *protocol = Py_None, *cb = Py_None;
    int fix_imports = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O$pO:dump_pickle", kwlist, &obj, &file,
                                     &protocol, &fix_imports, &cb)) {
        return NULL;
    }
    fj_state *st = fj_state_from_module(module);
    int proto;
    if (resolve_protocol(st, protocol, &proto) < 0 || check_buffer_callback(cb, proto) < 0) {
        return NULL;
    }
    fj_writer *w = writer_for(file, 1);
    if (w == NULL) {
        return NULL;
    }
    fj_memo memo;
    fj_memo_init(&memo);
    fj_pk p;
    pk_init(&p, st, NULL, &memo, proto, fix_imports);
    p.buffer_callback = cb == Py_None ? NULL : cb;
    int r = run_dump(&p, w, obj, NULL);
    fj_memo_free(&memo);
    w->free(w);
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

#pragma weak fj_codec_writer

/* _core.dump(reducers=, global_names=): copy the two dicts' items into p (borrowed from the
 * returned tuple, which the caller keeps until the dump ends, so a reducer that mutates the dicts
 * changes nothing). Returns a new reference, or NULL with an exception set. */
static PyObject *
set_hooks(fj_pk *p, PyObject *reducers, PyObject *global_names)
{
    PyObject *ri = NULL, *ni = NULL, *item;
    if (reducers != Py_None) {
        if (!PyDict_Check(reducers)) {
            PyErr_SetString(PyExc_TypeError, "reducers must be None or a dict {type: callable}");
            return NULL;
        }
        if ((ri = PyDict_Items(reducers)) == NULL) {
            return NULL;
        }
        if (PyList_GET_SIZE(ri) > FJ_MAX_REDUCERS) {
            PyErr_Format(PyExc_ValueError, "at most %d reducers", FJ_MAX_REDUCERS);
            goto error;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(ri); i++) {
            item = PyList_GET_ITEM(ri, i); /* borrowed (key, value) tuple */
            PyObject *k = PyTuple_GET_ITEM(item, 0), *v = PyTuple_GET_ITEM(item, 1);
            if (!PyType_Check(k) || !PyCallable_Check(v)) {
                PyErr_SetString(PyExc_TypeError, "reducers must be a dict {type: callable}");
                goto error;
            }
            p->reducer_types[i] = k;
            p->reducer_funcs[i] = v;
        }
        p->n_reducers = (int)PyList_GET_SIZE(ri);
    }
    if (global_names != Py_None) {
        if (!PyDict_Check(global_names)) {
            PyErr_SetString(PyExc_TypeError,
                            "global_names must be None or a dict {object: (module, qualname)}");
            goto error;
        }
        if ((ni = PyDict_Items(global_names)) == NULL) {
            goto error;
        }
        if (PyList_GET_SIZE(ni) > FJ_MAX_NAMES) {
            PyErr_Format(PyExc_ValueError, "at most %d global_names", FJ_MAX_NAMES);
            goto error;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(ni); i++) {
            item = PyList_GET_ITEM(ni, i);
            PyObject *k = PyTuple_GET_ITEM(item, 0), *v = PyTuple_GET_ITEM(item, 1);
            if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) != 2 ||
                !PyUnicode_Check(PyTuple_GET_ITEM(v, 0)) ||
                !PyUnicode_Check(PyTuple_GET_ITEM(v, 1))) {
                PyErr_SetString(PyExc_TypeError,
                                "global_names must be a dict {object: (module, qualname)}");
                goto error;
            }
            p->name_objs[i] = k;
            p->name_modules[i] = PyTuple_GET_ITEM(v, 0);
            p->name_quals[i] = PyTuple_GET_ITEM(v, 1);
        }
        p->n_names = (int)PyList_GET_SIZE(ni);
    }
    PyObject *keep = PyTuple_Pack(2, ri ? ri : Py_None, ni ? ni : Py_None);
    Py_XDECREF(ri);
    Py_XDECREF(ni);
    if (keep == NULL) {
        p->n_reducers = p->n_names = 0;
    }
    return keep;
error:
    p->n_reducers = p->n_names = 0;
    Py_XDECREF(ri);
    Py_XDECREF(ni);
    return NULL;
}

static PyObject *
fj_dump(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"obj", "file", "protocol", "codec", "level", "threads", "progress",
                             "trailer", "reducers", "global_names", NULL};
    PyObject *obj, *file, *protocol = Py_None, *progress = Py_None, *trailer = Py_None;
    PyObject *reducers = Py_None, *global_names = Py_None;
    const char *codec = NULL;
    int level = -1, threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O$ziiOOOO:dump", kwlist, &obj, &file,
                                     &protocol, &codec, &level, &threads, &progress, &trailer,
                                     &reducers, &global_names)) {
        return NULL;
    }
    if (trailer != Py_None && !PyCallable_Check(trailer)) {
        PyErr_SetString(PyExc_TypeError, "trailer must be None or a callable");
        return NULL;
    }
    fj_state *st = fj_state_from_module(module);
    int proto;
    if (resolve_protocol(st, protocol, &proto) < 0) {
        return NULL;
    }
    if (progress != Py_None && !PyCallable_Check(progress)) {
        PyErr_SetString(PyExc_TypeError, "progress must be None or a callable");
        return NULL;
    }
    fj_progress prog = {0};
    if (progress != Py_None && fj_progress_init(&prog, progress, -1) < 0) {
        return NULL;
    }
    fj_writer *w = writer_for(file, 0);
    if (w == NULL) {
        fj_progress_clear(&prog);
        return NULL;
    }
    /* progress counts what reaches the target: below the codec */
    if (prog.cb != NULL && (w = fj_progress_writer(w, &prog)) == NULL) { /* owns the inner writer */
        fj_progress_clear(&prog);
        return NULL;
    }
    if (codec != NULL) {
        if (fj_codec_writer == NULL) {
            w->free(w);
            fj_progress_clear(&prog);
            PyErr_SetString(PyExc_NotImplementedError, "codecs are not built in");
            return NULL;
        }
        w = fj_codec_writer(codec, level, threads, w); /* owns the inner writer */
        if (w == NULL) {
            fj_progress_clear(&prog);
            return NULL;
        }
    }
    fj_memo memo;
    fj_memo_init(&memo);
    fj_pk p;
    pk_init(&p, st, NULL, &memo, proto, 1);
    p.array_hook = 1;
    PyObject *seen = NULL; /* provenance: module names of the globals written */
    PyObject *hooks = NULL; /* owns what p.reducer_* / p.name_* borrow */
    if ((trailer != Py_None && (seen = PySet_New(NULL)) == NULL) ||
        (hooks = set_hooks(&p, reducers, global_names)) == NULL) {
        Py_XDECREF(seen);
        fj_memo_free(&memo);
        w->free(w);
        fj_progress_clear(&prog);
        return NULL;
    }
    p.globals_seen = seen;
    p.trailer = seen != NULL ? trailer : NULL;
    int r = run_dump(&p, w, obj, NULL);
    Py_XDECREF(seen);
    Py_DECREF(hooks);
    fj_memo_free(&memo);
    if (r == 0) {
        r = w->close(w); /* the progress writer's close makes the final call */
    }
    w->free(w);
    fj_progress_clear(&prog);
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef pickler_functions[] = {
    {"dumps", (PyCFunction)(void (*)(void))fj_dumps, METH_VARARGS | METH_KEYWORDS,
     "dumps(obj, protocol=None, *, fix_imports=True, buffer_callback=None) -> bytes"},
    {"dump_pickle", (PyCFunction)(void (*)(void))fj_dump_pickle, METH_VARARGS | METH_KEYWORDS,
     "dump_pickle(obj, file, protocol=None, *, fix_imports=True, buffer_callback=None)"},
    {"dump", (PyCFunction)(void (*)(void))fj_dump, METH_VARARGS | METH_KEYWORDS,
     "dump(obj, file, protocol, *, codec=None, level=-1, threads=0, progress=None, trailer=None):\n"
     "joblib format.\n"
     "progress: None or callable(done_bytes, None), called every ~4 MiB written and at the end.\n"
     "trailer: None or callable(frozenset of the top-level modules of the globals written) ->\n"
     "dict of str -> str, saved and popped before STOP (provenance).\n"
     "reducers: None or {exact type: callable(obj) -> reduce value or NotImplemented} (at most 8),\n"
     "tried first for objects of exactly that type (array-likes of other libraries).\n"
     "global_names: None or {object: (module, qualname)} (at most 32): those objects are written\n"
     "as that global (checked to resolve to the same object)."},
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------------------------------------
 * module hooks */

static PyObject *
attr_of(const char *module, const char *name)
{
    PyObject *m = PyImport_ImportModule(module);
    if (m == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_GetAttrString(m, name);
    Py_DECREF(m);
    return r;
}

int
fj_pickler_exec(PyObject *module, fj_state *st)
{
    fj_pickler_state *ps = &st->pk;
    PyObject *dp = attr_of("pickle", "DEFAULT_PROTOCOL");
    if (dp == NULL) {
        return -1;
    }
    ps->default_protocol = (int)PyLong_AsLong(dp);
    Py_DECREF(dp);
    if (PyErr_Occurred()) {
        return -1;
    }
    if ((ps->copyreg_dispatch_table = attr_of("copyreg", "dispatch_table")) == NULL ||
        (ps->extension_registry = attr_of("copyreg", "_extension_registry")) == NULL ||
        (ps->reconstructor = attr_of("copyreg", "_reconstructor")) == NULL ||
        (ps->name_mapping_3to2 = attr_of("_compat_pickle", "REVERSE_NAME_MAPPING")) == NULL ||
        (ps->import_mapping_3to2 = attr_of("_compat_pickle", "REVERSE_IMPORT_MAPPING")) == NULL ||
        (ps->codecs_encode = attr_of("codecs", "encode")) == NULL ||
        (ps->partial = attr_of("functools", "partial")) == NULL ||
        (ps->getattr = attr_of("builtins", "getattr")) == NULL ||
        (ps->empty_tuple = PyTuple_New(0)) == NULL) {
        return -1;
    }
    if (!PyDict_Check(ps->copyreg_dispatch_table) || !PyDict_Check(ps->extension_registry) ||
        !PyDict_Check(ps->name_mapping_3to2) || !PyDict_Check(ps->import_mapping_3to2)) {
        PyErr_SetString(PyExc_RuntimeError, "copyreg / _compat_pickle tables are not dicts");
        return -1;
    }
#define INTERN(field, text)                                          \
    if ((ps->field = PyUnicode_InternFromString(text)) == NULL) {   \
        return -1;                                                   \
    }
    INTERN(s_reduce_ex, "__reduce_ex__");
    INTERN(s_reduce, "__reduce__");
    INTERN(s_module, "__module__");
    INTERN(s_qualname, "__qualname__");
    INTERN(s_name, "__name__");
    INTERN(s_new, "__new__");
    INTERN(s_class, "__class__");
    INTERN(s_latin1, "latin1");
    INTERN(s_persistent_id, "persistent_id");
    INTERN(s_reducer_override, "reducer_override");
    INTERN(s_dispatch_table, "dispatch_table");
    INTERN(s_locals, "<locals>");
    INTERN(k_subclass, "subclass");
    INTERN(k_shape, "shape");
    INTERN(k_order, "order");
    INTERN(k_dtype, "dtype");
    INTERN(k_allow_mmap, "allow_mmap");
    INTERN(k_alignment, "numpy_array_alignment_bytes");
    INTERN(s_C, "C");
    INTERN(s_F, "F");
#undef INTERN
    ps->PicklerType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Pickler_spec, NULL);
    if (ps->PicklerType == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "Pickler", (PyObject *)ps->PicklerType) < 0) {
        return -1;
    }
    ps->MemoProxyType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &memoproxy_spec, NULL);
    if (ps->MemoProxyType == NULL) {
        return -1;
    }
    return PyModule_AddFunctions(module, pickler_functions);
}

#define PK_FIELDS(X)                                                                        \
    X(PicklerType) X(MemoProxyType) X(copyreg_dispatch_table) X(extension_registry) X(reconstructor)         \
    X(name_mapping_3to2) X(import_mapping_3to2) X(codecs_encode) X(partial) X(getattr)      \
    X(empty_tuple) X(s_reduce_ex) X(s_reduce) X(s_module) X(s_qualname) X(s_name) X(s_new)  \
    X(s_class) X(s_latin1) X(s_persistent_id) X(s_reducer_override) X(s_dispatch_table)     \
    X(k_subclass) X(k_shape) X(k_order) X(k_dtype) X(k_allow_mmap) X(k_alignment) X(s_C)    \
    X(s_F) X(s_locals)

int
fj_pickler_traverse(fj_state *st, visitproc visit, void *arg)
{
#define VISIT(f) Py_VISIT(st->pk.f);
    PK_FIELDS(VISIT)
#undef VISIT
    return 0;
}

void
fj_pickler_clear(fj_state *st)
{
#define CLEAR(f) Py_CLEAR(st->pk.f);
    PK_FIELDS(CLEAR)
#undef CLEAR
}
