/* sink.c: output buffer + framing + offset (see sink.h), and the two base writers of fj.h:
 * fj_writer_fd (write(2)) and fj_writer_pyfile (file.write(memoryview)). */
#include "sink.h"
#include "workers.h"

#include <errno.h>
#include <unistd.h>

#define SINK_INITIAL 4096
#define FJ_OP_FRAME '\x95'
#define FD_WRITE_MAX ((Py_ssize_t)16 << 20) /* per write(2), then a signal check (workers.h) */
#define PYWRITE_BYTES_MAX ((Py_ssize_t)256 * 1024)

/* fj_sink_boundary's threshold: a frame reaching the target size, or, with a writer, a buffer
 * holding the target size (frames may be cut short by array records: flush anyway). */
static void
update_limit(fj_sink *s)
{
    Py_ssize_t lim = PY_SSIZE_T_MAX;
    if (s->frame_start >= 0) {
        lim = s->frame_start + FJ_FRAME_TARGET;
    }
    if (s->w != NULL && lim > FJ_FRAME_TARGET) {
        lim = FJ_FRAME_TARGET;
    }
    s->limit = lim;
}

int
fj_sink_init(fj_sink *s, fj_writer *w)
{
    s->bytes = PyBytes_FromStringAndSize(NULL, SINK_INITIAL);
    if (s->bytes == NULL) {
        return -1;
    }
    s->buf = PyBytes_AS_STRING(s->bytes);
    s->len = 0;
    s->cap = SINK_INITIAL;
    s->frame_start = -1;
    s->framing = 0;
    s->w = w;
    s->flushed = 0;
    update_limit(s);
    return 0;
}

void
fj_sink_free(fj_sink *s)
{
    Py_CLEAR(s->bytes);
    s->buf = NULL;
    s->len = s->cap = 0;
}

int
fj_sink_grow(fj_sink *s, Py_ssize_t n)
{
    if (n > PY_SSIZE_T_MAX - s->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t need = s->len + n;
    Py_ssize_t cap = s->cap;
    while (cap < need) {
        if (cap > PY_SSIZE_T_MAX / 3 * 2) {
            cap = need;
            break;
        }
        cap = cap + cap / 2;
    }
    if (_PyBytes_Resize(&s->bytes, cap) < 0) {
        s->buf = NULL;
        s->cap = s->len = 0;
        return -1;
    }
    s->buf = PyBytes_AS_STRING(s->bytes);
    s->cap = cap;
    return 0;
}

void
fj_sink_set_framing(fj_sink *s, int on)
{
    s->framing = on;
    update_limit(s);
}

int
fj_sink_open_frame(fj_sink *s)
{
    if (s->cap - s->len < FJ_FRAME_HEADER && fj_sink_grow(s, FJ_FRAME_HEADER) < 0) {
        return -1;
    }
    s->frame_start = s->len;
    s->len += FJ_FRAME_HEADER;
    update_limit(s);
    return 0;
}

void
fj_sink_commit_frame(fj_sink *s)
{
    if (s->frame_start < 0) {
        return;
    }
    char *hdr = s->buf + s->frame_start;
    Py_ssize_t flen = s->len - s->frame_start - FJ_FRAME_HEADER;
    if (flen >= 4) {
        uint64_t v = (uint64_t)flen;
        hdr[0] = FJ_OP_FRAME;
        for (int i = 0; i < 8; i++) {
            hdr[1 + i] = (char)((v >> (8 * i)) & 0xff);
        }
    }
    else {
        /* tiny frame: drop the header */
        memmove(hdr, hdr + FJ_FRAME_HEADER, flen);
        s->len -= FJ_FRAME_HEADER;
    }
    s->frame_start = -1;
    update_limit(s);
}

int
fj_sink_flush(fj_sink *s)
{
    if (s->w == NULL || s->len == 0) {
        return 0;
    }
    Py_ssize_t n = s->len;
    s->len = 0;
    if (s->w->write(s->w, s->buf, n) < 0) {
        return -1;
    }
    s->flushed += n;
    update_limit(s);
    return 0;
}

int
fj_sink_boundary_slow(fj_sink *s)
{
    if (s->w != NULL) {
        if (s->len >= FJ_FRAME_TARGET) {
            fj_sink_commit_frame(s);
            if (fj_sink_flush(s) < 0) {
                return -1;
            }
        }
    }
    else if (s->frame_start >= 0 && s->len - s->frame_start >= FJ_FRAME_TARGET) {
        fj_sink_commit_frame(s);
    }
    update_limit(s);
    return 0;
}

int
fj_sink_write_direct(fj_sink *s, const char *data, Py_ssize_t n)
{
    if (s->w == NULL) {
        char *p = fj_sink_reserve(s, n);
        if (p == NULL) {
            return -1;
        }
        memcpy(p, data, n);
        return 0;
    }
    if (fj_sink_flush(s) < 0) {
        return -1;
    }
    if (n > 0 && s->w->write(s->w, data, n) < 0) {
        return -1;
    }
    s->flushed += n;
    return 0;
}

int
fj_sink_write_big(fj_sink *s, const char *hdr, Py_ssize_t hlen, const char *data, Py_ssize_t n)
{
    if (n < FJ_FRAME_TARGET || (s->w == NULL && !s->framing)) {
        char *p = fj_sink_reserve(s, hlen + n);
        if (p == NULL) {
            return -1;
        }
        memcpy(p, hdr, hlen);
        memcpy(p + hlen, data, n);
        return 0;
    }
    /* header and payload outside any frame (like stdlib: big items are never framed, also in
     * memory); later writes open a new frame */
    fj_sink_commit_frame(s);
    int framing = s->framing;
    s->framing = 0;
    int r;
    if (s->w == NULL) {
        char *p = fj_sink_reserve(s, hlen + n);
        r = p == NULL ? -1 : 0;
        if (p != NULL) {
            memcpy(p, hdr, hlen);
            memcpy(p + hlen, data, n);
        }
    }
    else {
        r = fj_sink_write(s, hdr, hlen);
        if (r == 0) {
            r = fj_sink_write_direct(s, data, n);
        }
    }
    s->framing = framing;
    update_limit(s);
    return r;
}

int
fj_sink_finish(fj_sink *s)
{
    fj_sink_commit_frame(s);
    s->framing = 0;
    update_limit(s);
    return fj_sink_flush(s);
}

PyObject *
fj_sink_take_bytes(fj_sink *s)
{
    if (_PyBytes_Resize(&s->bytes, s->len) < 0) {
        s->buf = NULL;
        s->len = s->cap = 0;
        return NULL;
    }
    PyObject *res = s->bytes;
    s->bytes = NULL;
    s->buf = NULL;
    s->len = s->cap = 0;
    return res;
}

/* ------------------------------------------------------------------------------------------
 * fd writer */

typedef struct {
    fj_writer base;
    int fd;
} fd_writer;

static int
fd_write(fj_writer *self, const char *data, Py_ssize_t len)
{
    int fd = ((fd_writer *)self)->fd;
    int first = 1;
    while (len > 0) {
        if (!first && fj_check_interrupt() < 0) {
            return -1;
        }
        first = 0;
        Py_ssize_t chunk = len > FD_WRITE_MAX ? FD_WRITE_MAX : len;
        Py_ssize_t n;
        int err = 0;
        Py_BEGIN_ALLOW_THREADS
        n = write(fd, data, (size_t)chunk);
        if (n < 0) {
            err = errno;
        }
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (err == EINTR) {
                if (fj_check_interrupt() < 0) {
                    return -1;
                }
                continue;
            }
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (n == 0) {
            PyErr_SetString(PyExc_OSError, "write() returned 0 bytes");
            return -1;
        }
        data += n;
        len -= n;
    }
    return 0;
}

static int
fd_close(fj_writer *self)
{
    return 0;
}

static void
fd_free(fj_writer *self)
{
    PyMem_Free(self);
}

fj_writer *
fj_writer_fd(int fd, int64_t start_pos)
{
    fd_writer *w = PyMem_Calloc(1, sizeof(fd_writer));
    if (w == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    w->base.write = fd_write;
    w->base.close = fd_close;
    w->base.free = fd_free;
    w->base.pos = start_pos;
    w->fd = fd;
    return &w->base;
}

/* ------------------------------------------------------------------------------------------
 * Python file writer */

typedef struct {
    fj_writer base;
    PyObject *write; /* bound file.write, owned */
    int as_bytes;
} py_writer;

static int
py_write(fj_writer *self, const char *data, Py_ssize_t len)
{
    py_writer *w = (py_writer *)self;
    /* pickle-compatible API: small chunks (buffer flushes) go as bytes objects the callee may
     * keep; large payloads as a memoryview over the caller's memory, released after the call
     * (no copy, like stdlib handing over the original object). */
    int as_bytes = w->as_bytes && len < PYWRITE_BYTES_MAX;
    while (len > 0) {
        PyObject *arg;
        if (as_bytes) {
            arg = PyBytes_FromStringAndSize(data, len);
        }
        else {
            arg = PyMemoryView_FromMemory((char *)data, len, PyBUF_READ);
        }
        if (arg == NULL) {
            return -1;
        }
        PyObject *res = PyObject_CallOneArg(w->write, arg);
        if (!as_bytes) {
            /* release the view so a file object that kept it cannot read freed memory */
            PyObject *et, *ev, *etb;
            PyErr_Fetch(&et, &ev, &etb);
            PyObject *r2 = PyObject_CallMethod(arg, "release", NULL);
            if (r2 == NULL) {
                if (et != NULL) {
                    PyErr_Clear(); /* keep the write error */
                }
                else {
                    Py_XDECREF(res);
                    Py_DECREF(arg);
                    return -1;
                }
            }
            Py_XDECREF(r2);
            if (et != NULL) {
                PyErr_Restore(et, ev, etb);
            }
        }
        Py_DECREF(arg);
        if (res == NULL) {
            return -1;
        }
        Py_ssize_t n = len;
        if (res != Py_None) {
            n = PyLong_AsSsize_t(res);
            if (n == -1 && PyErr_Occurred()) {
                Py_DECREF(res);
                return -1;
            }
            if (n < 0 || n > len) {
                Py_DECREF(res);
                PyErr_Format(PyExc_OSError, "write() returned an invalid count (%zd of %zd)", n,
                             len);
                return -1;
            }
            if (n == 0) {
                Py_DECREF(res);
                PyErr_SetString(PyExc_OSError, "write() returned 0 bytes");
                return -1;
            }
        }
        Py_DECREF(res);
        data += n;
        len -= n;
    }
    return 0;
}

static int
py_close(fj_writer *self)
{
    return 0;
}

static void
py_free(fj_writer *self)
{
    Py_XDECREF(((py_writer *)self)->write);
    PyMem_Free(self);
}

fj_writer *
fj_writer_pyfile_ex(PyObject *file, int as_bytes, int want_pos)
{
    py_writer *w = PyMem_Calloc(1, sizeof(py_writer));
    if (w == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    w->base.write = py_write;
    w->base.close = py_close;
    w->base.free = py_free;
    w->base.pos = -1;
    w->as_bytes = as_bytes;
    w->write = PyObject_GetAttrString(file, "write");
    if (w->write == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_SetString(PyExc_TypeError, "file must have a 'write' attribute");
        }
        goto error;
    }
    if (want_pos) {
        /* joblib: alignment is off when tell() raises io.UnsupportedOperation. A file object
         * with no tell() at all is treated the same way (joblib would crash). */
        PyObject *tell = PyObject_GetAttrString(file, "tell");
        if (tell == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                goto error;
            }
            PyErr_Clear();
        }
        else {
            PyObject *r = PyObject_CallNoArgs(tell);
            Py_DECREF(tell);
            if (r == NULL) {
                PyObject *etype, *evalue, *etb;
                PyErr_Fetch(&etype, &evalue, &etb);
                PyObject *io = PyImport_ImportModule("io");
                PyObject *unsup = io ? PyObject_GetAttrString(io, "UnsupportedOperation") : NULL;
                Py_XDECREF(io);
                if (unsup == NULL) {
                    Py_XDECREF(etype);
                    Py_XDECREF(evalue);
                    Py_XDECREF(etb);
                    goto error;
                }
                int m = PyErr_GivenExceptionMatches(etype, unsup);
                Py_DECREF(unsup);
                if (!m) {
                    PyErr_Restore(etype, evalue, etb);
                    goto error;
                }
                Py_XDECREF(etype);
                Py_XDECREF(evalue);
                Py_XDECREF(etb);
            }
            else {
                long long pos = PyLong_AsLongLong(r);
                Py_DECREF(r);
                if (pos == -1 && PyErr_Occurred()) {
                    goto error;
                }
                w->base.pos = pos < 0 ? -1 : (int64_t)pos;
            }
        }
    }
    return &w->base;
error:
    py_free(&w->base);
    return NULL;
}

fj_writer *
fj_writer_pyfile(PyObject *file)
{
    return fj_writer_pyfile_ex(file, 0, 1);
}
