/* source.c: bytes in. The fd and Python-file fj_reader backends, and the unpickler's window
 * (fj_source) over memory, a reader or a Python file object. See source.h. */
#include "source.h"
#include "workers.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK ((Py_ssize_t)256 * 1024)     /* greedy refill size */
#define PREFETCH ((Py_ssize_t)64 * 1024)   /* peek size for Python files */
#define READAHEAD ((Py_ssize_t)16 * 1024) /* reader refill outside a frame */
#define NOGIL_MIN ((Py_ssize_t)64 * 1024)  /* release the GIL for reads at least this big */
#define FD_READ_MAX ((Py_ssize_t)16 << 20) /* per read(2): the caller loops, signals checked */

/* ---------------------------------------------------------------------------------------------
 * fd reader */

typedef struct {
    fj_reader base;
    int fd;
    int blocking; /* not a regular file (pipe, socket, tty): any read may block, so it always
                     releases the GIL (a Python thread may be the one feeding it) */
} fd_reader;

static Py_ssize_t
fd_reader_read(fj_reader *self, char *buf, Py_ssize_t len)
{
    int fd = ((fd_reader *)self)->fd;
    int blocking = ((fd_reader *)self)->blocking;
    if (len >= NOGIL_MIN && fj_check_interrupt() < 0) { /* big reads come in FD_READ_MAX slices */
        return -1;
    }
    for (;;) {
        ssize_t n;
        int err;
        if (blocking || len >= NOGIL_MIN) {
            Py_BEGIN_ALLOW_THREADS
            n = read(fd, buf, (size_t)(len > FD_READ_MAX ? FD_READ_MAX : len));
            err = errno;
            Py_END_ALLOW_THREADS
        }
        else {
            n = read(fd, buf, (size_t)len);
            err = errno;
        }
        if (n >= 0) {
            return (Py_ssize_t)n;
        }
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
}

static void
fd_reader_free(fj_reader *self)
{
    PyMem_Free(self);
}

fj_reader *
fj_reader_fd(int fd)
{
    fd_reader *r = PyMem_Calloc(1, sizeof(fd_reader));
    if (r == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    r->base.read = fd_reader_read;
    r->base.free = fd_reader_free;
    r->fd = fd;
    struct stat sb;
    r->blocking = !(fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode));
    return &r->base;
}

/* ---------------------------------------------------------------------------------------------
 * Python file reader (greedy; used under codecs). readinto(memoryview) when available. */

typedef struct {
    fj_reader base;
    PyObject *file;
    PyObject *readinto; /* bound method or NULL */
    PyObject *read;
} pyfile_reader;

/* read up to len bytes from a Python file into buf with readinto or read. -1 on error. */
static Py_ssize_t
pyfile_read_into(PyObject *m_readinto, PyObject *m_read, char *buf, Py_ssize_t len)
{
    Py_ssize_t got = -1;
    if (len == 0) {
        return 0;
    }
    if (m_readinto != NULL) {
        PyObject *mv = PyMemoryView_FromMemory(buf, len, PyBUF_WRITE);
        if (mv == NULL) {
            return -1;
        }
        PyObject *r = PyObject_CallOneArg(m_readinto, mv);
        Py_DECREF(mv);
        if (r == NULL) {
            return -1;
        }
        if (r == Py_None) { /* non-blocking stream with no data: treat as no progress */
            Py_DECREF(r);
            return 0;
        }
        got = PyLong_AsSsize_t(r);
        Py_DECREF(r);
        if (got == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (got < 0 || got > len) {
            PyErr_Format(PyExc_ValueError, "readinto() returned %zd for a buffer of %zd bytes", got, len);
            return -1;
        }
        return got;
    }
    PyObject *r = PyObject_CallFunction(m_read, "n", len);
    if (r == NULL) {
        return -1;
    }
    if (r == Py_None) {
        Py_DECREF(r);
        return 0;
    }
    Py_buffer v;
    if (PyObject_GetBuffer(r, &v, PyBUF_SIMPLE) < 0) {
        Py_DECREF(r);
        return -1;
    }
    if (v.len > len) {
        PyErr_Format(PyExc_ValueError, "read(%zd) returned %zd bytes", len, v.len);
        PyBuffer_Release(&v);
        Py_DECREF(r);
        return -1;
    }
    memcpy(buf, v.buf, (size_t)v.len);
    got = v.len;
    PyBuffer_Release(&v);
    Py_DECREF(r);
    return got;
}

static Py_ssize_t
pyfile_reader_read(fj_reader *self, char *buf, Py_ssize_t len)
{
    pyfile_reader *r = (pyfile_reader *)self;
    return pyfile_read_into(r->readinto, r->read, buf, len);
}

static void
pyfile_reader_free(fj_reader *self)
{
    pyfile_reader *r = (pyfile_reader *)self;
    Py_XDECREF(r->file);
    Py_XDECREF(r->readinto);
    Py_XDECREF(r->read);
    PyMem_Free(r);
}

/* Look up an optional method: new ref, NULL without exception when missing. -1 on other errors. */
static int
lookup_method(PyObject *obj, const char *name, PyObject **out)
{
    *out = NULL;
    PyObject *m = PyObject_GetAttrString(obj, name);
    if (m == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    *out = m;
    return 0;
}

fj_reader *
fj_reader_pyfile(PyObject *file)
{
    pyfile_reader *r = PyMem_Calloc(1, sizeof(pyfile_reader));
    if (r == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    r->base.read = pyfile_reader_read;
    r->base.free = pyfile_reader_free;
    r->file = Py_NewRef(file);
    if (lookup_method(file, "readinto", &r->readinto) < 0 || lookup_method(file, "read", &r->read) < 0) {
        pyfile_reader_free(&r->base);
        return NULL;
    }
    if (r->read == NULL && r->readinto == NULL) {
        PyErr_SetString(PyExc_TypeError, "file must have a 'read' attribute");
        pyfile_reader_free(&r->base);
        return NULL;
    }
    return &r->base;
}

/* Weak fallback so the module links before the codec part provides the real function. */
__attribute__((weak)) fj_reader *
fj_codec_reader(const char *name, fj_reader *inner)
{
    if (inner != NULL) {
        inner->free(inner);
    }
    PyErr_Format(PyExc_NotImplementedError, "codec %s is not available in this build", name);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * fj_source */

static void
source_zero(fj_source *s)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    s->total = -1;
    s->trunc_exc = PyExc_EOFError;
}

/* Underlying position: where the fd / file is (bytes taken from it), or the consumed offset. */
static int64_t
underlying_pos(const fj_source *s)
{
    switch (s->kind) {
    case FJ_SRC_READER:
        return s->base + s->end;
    case FJ_SRC_PYFILE:
        return s->base + s->real_end;
    default:
        return s->base + s->pos;
    }
}

void
fj_source_set_progress(fj_source *s, fj_progress *p)
{
    s->prog = p;
    s->prog_base = underlying_pos(s);
}

int64_t
fj_source_progress_count(const fj_source *s)
{
    return underlying_pos(s) - s->prog_base;
}

/* After bytes were taken from the underlying stream. 0 / -1 (the callback raised). */
static inline int
source_progress(fj_source *s)
{
    if (s->prog == NULL) {
        return 0;
    }
    return fj_progress_update(s->prog, fj_source_progress_count(s));
}

/* Largest single read from the underlying stream: bounded while reporting progress. */
static inline Py_ssize_t
read_cap(const fj_source *s, Py_ssize_t n)
{
    if (s->prog != NULL && n > (Py_ssize_t)FJ_PROGRESS_STEP) {
        return (Py_ssize_t)FJ_PROGRESS_STEP;
    }
    return n;
}

int
fj_source_init_mem(fj_source *s, PyObject *obj)
{
    source_zero(s);
    s->kind = FJ_SRC_MEM;
    if (PyObject_GetBuffer(obj, &s->view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    s->has_view = 1;
    s->buf = s->view.buf;
    s->end = s->view.len;
    s->total = s->view.len;
    s->eof = 1;
    return 0;
}

int
fj_source_init_reader(fj_source *s, fj_reader *r)
{
    source_zero(s);
    s->kind = FJ_SRC_READER;
    s->reader = r;
    return 0;
}

int
fj_source_init_fd(fj_source *s, int fd)
{
    source_zero(s);
    s->kind = FJ_SRC_READER;
    s->reader = fj_reader_fd(fd);
    if (s->reader == NULL) {
        return -1;
    }
    s->fd = fd;
    off_t cur = lseek(fd, 0, SEEK_CUR);
    struct stat stt;
    if (cur >= 0) {
        s->base = (int64_t)cur;
        if (fstat(fd, &stt) == 0 && S_ISREG(stt.st_mode)) {
            s->total = stt.st_size > cur ? (int64_t)stt.st_size : (int64_t)cur;
        }
    }
    return 0;
}

int
fj_source_init_pyfile(fj_source *s, PyObject *file)
{
    source_zero(s);
    s->kind = FJ_SRC_PYFILE;
    s->file = Py_NewRef(file);
    if (lookup_method(file, "read", &s->m_read) < 0 || lookup_method(file, "readinto", &s->m_readinto) < 0 ||
        lookup_method(file, "peek", &s->m_peek) < 0 || lookup_method(file, "readline", &s->m_readline) < 0) {
        return -1;
    }
    if (s->m_read == NULL) {
        PyErr_SetString(PyExc_TypeError, "file must have a 'read' attribute");
        return -1;
    }
    /* Absolute position (mmap offsets) and total size when the file is a real file (both
     * optional: a failure means unknown, except an interrupt). */
    const unsigned long mark = fj_interrupt_mark();
    PyObject *r = PyObject_CallMethod(file, "tell", NULL);
    if (r != NULL) {
        long long t = PyLong_AsLongLong(r);
        Py_DECREF(r);
        if (t >= 0) {
            s->base = t;
        }
    }
    if (fj_clear_unless_urgent(mark) < 0) {
        return -1;
    }
    r = PyObject_CallMethod(file, "fileno", NULL);
    if (r != NULL) {
        int fd = PyLong_AsLong(r);
        Py_DECREF(r);
        struct stat stt;
        if (fd >= 0 && fstat(fd, &stt) == 0 && S_ISREG(stt.st_mode) && stt.st_size >= s->base) {
            s->total = stt.st_size;
        }
    }
    if (fj_clear_unless_urgent(mark) < 0) {
        return -1;
    }
    return 0;
}

void
fj_source_release(fj_source *s)
{
    if (s->has_view) {
        PyBuffer_Release(&s->view);
        s->has_view = 0;
    }
    if (s->reader != NULL) {
        s->reader->free(s->reader);
        s->reader = NULL;
    }
    PyMem_Free(s->own);
    s->own = NULL;
    Py_CLEAR(s->file);
    Py_CLEAR(s->m_read);
    Py_CLEAR(s->m_readinto);
    Py_CLEAR(s->m_peek);
    Py_CLEAR(s->m_readline);
    s->buf = NULL;
    s->pos = s->end = 0;
}

/* Python file: read and drop `n` bytes (the consumed part of what was peeked). */
static int
pyfile_discard(fj_source *s, Py_ssize_t n)
{
    while (n > 0) {
        PyObject *r = PyObject_CallFunction(s->m_read, "n", n);
        if (r == NULL) {
            return -1;
        }
        Py_ssize_t got = PyBytes_Check(r) ? PyBytes_GET_SIZE(r) : PyObject_Length(r);
        Py_DECREF(r);
        if (got < 0) {
            return -1;
        }
        if (got == 0) {
            PyErr_SetString(PyExc_OSError, "file shrank while reading peeked bytes");
            return -1;
        }
        n -= got;
    }
    return 0;
}

/* Python file: make the file position equal to the logical position; the window keeps only the
 * consumed-from-file bytes not yet used ([pos, real_end)). */
static int
pyfile_sync(fj_source *s)
{
    if (s->pos >= s->real_end) {
        Py_ssize_t consumed_peeked = s->pos - s->real_end;
        if (consumed_peeked > 0 && pyfile_discard(s, consumed_peeked) < 0) {
            return -1;
        }
        s->base += s->pos;
        s->pos = s->end = s->real_end = 0;
    }
    else {
        Py_ssize_t keep = s->real_end - s->pos;
        memmove(s->own, s->own + s->pos, (size_t)keep);
        s->base += s->pos;
        s->pos = 0;
        s->end = s->real_end = keep;
    }
    s->buf = s->own;
    return 0;
}

static int
ensure_cap(fj_source *s, Py_ssize_t need)
{
    if (need <= s->cap) {
        return 0;
    }
    Py_ssize_t ncap = s->cap ? s->cap : CHUNK;
    while (ncap < need) {
        ncap *= 2;
    }
    char *p = PyMem_Realloc(s->own, (size_t)ncap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->own = p;
    s->buf = p;
    s->cap = ncap;
    return 0;
}

/* Make at least n bytes available at buf[pos]. Returns 1 if available, 0 if the stream ended
 * first (whatever arrived stays in the window), -1 on error. */
static int
source_fill(fj_source *s, Py_ssize_t n)
{
    if (s->end - s->pos >= n) {
        return 1;
    }
    if (s->kind == FJ_SRC_MEM) {
        return 0;
    }
    if (s->kind == FJ_SRC_READER) {
        /* compact */
        Py_ssize_t keep = s->end - s->pos;
        if (s->pos > 0) {
            memmove(s->own, s->own + s->pos, (size_t)keep);
            s->base += s->pos;
            s->pos = 0;
            s->end = keep;
        }
        if (ensure_cap(s, n > CHUNK ? n : CHUNK) < 0) {
            return -1;
        }
        /* How far to read ahead: inside a frame, to its end plus the next FRAME header (the
         * pickler closes a frame before raw array bytes, which are better read straight into the
         * array or not read at all under mmap_mode); outside frames, a modest READAHEAD. A greedy
         * CHUNK here used to pull (and copy) up to 256 KiB of every following array payload. */
        Py_ssize_t ahead = READAHEAD;
        int64_t abs_end = s->base + s->end;
        if (s->safe_until > abs_end) {
            int64_t rest = s->safe_until - abs_end + 9;
            ahead = rest > CHUNK ? CHUNK : (Py_ssize_t)rest;
        }
        Py_ssize_t target = s->end + ahead;
        if (target < n) {
            target = n;
        }
        if (target > s->cap) {
            target = s->cap;
        }
        while (s->end < n && !s->eof) {
            Py_ssize_t got = s->reader->read(s->reader, s->own + s->end, read_cap(s, target - s->end));
            if (got < 0) {
                return -1;
            }
            if (got == 0) {
                s->eof = 1;
                break;
            }
            s->end += got;
            if (source_progress(s) < 0) {
                return -1;
            }
        }
        return s->end >= n;
    }
    /* PYFILE */
    if (pyfile_sync(s) < 0) {
        return -1;
    }
    Py_ssize_t need = n - s->end;
    if (need <= 0) {
        return 1;
    }
    Py_ssize_t want = need;
    int64_t abs_end = s->base + s->end;
    if (s->safe_until > abs_end) {
        int64_t ahead = s->safe_until - abs_end;
        if (ahead > CHUNK) {
            ahead = CHUNK;
        }
        if (ahead > want) {
            want = (Py_ssize_t)ahead;
        }
    }
    if (ensure_cap(s, s->end + (want > PREFETCH ? want : PREFETCH)) < 0) {
        return -1;
    }
    while (s->end < n) {
        Py_ssize_t got = pyfile_read_into(s->m_readinto, s->m_read, s->own + s->end, read_cap(s, want));
        if (got < 0) {
            return -1;
        }
        if (got == 0) {
            s->eof = 1;
            break;
        }
        s->end += got;
        s->real_end = s->end;
        want -= got;
        if (want <= 0) {
            want = n - s->end;
        }
        if (source_progress(s) < 0) {
            return -1;
        }
    }
    if (s->end < n) {
        return 0;
    }
    if (s->m_peek != NULL && !s->eof) {
        const unsigned long mark = fj_interrupt_mark();
        PyObject *r = PyObject_CallFunction(s->m_peek, "n", PREFETCH);
        if (r == NULL) {
            /* peek may be unsupported on this particular object: do without it */
            if (fj_clear_unless_urgent(mark) < 0) {
                return -1;
            }
            Py_CLEAR(s->m_peek);
            return 1;
        }
        if (PyBytes_Check(r)) {
            Py_ssize_t len = PyBytes_GET_SIZE(r);
            if (len > s->cap - s->end) {
                len = s->cap - s->end;
            }
            memcpy(s->own + s->end, PyBytes_AS_STRING(r), (size_t)len);
            s->end += len;
        }
        Py_DECREF(r);
    }
    return 1;
}

static void
raise_truncated(fj_source *s, Py_ssize_t n)
{
    PyErr_Format(s->trunc_exc, "pickle data was truncated: needed %zd bytes at offset %lld, %zd available", n,
                 (long long)fj_source_tell(s), s->end - s->pos);
}

const char *
fj_source_take_slow(fj_source *s, Py_ssize_t n)
{
    if (n < 0) {
        PyErr_SetString(PyExc_SystemError, "negative read");
        return NULL;
    }
    if (s->kind != FJ_SRC_MEM && n > FJ_SOURCE_TAKE_MAX && n > fj_source_remaining(s)) {
        raise_truncated(s, n);
        return NULL;
    }
    int r = source_fill(s, n);
    if (r < 0) {
        return NULL;
    }
    if (r == 0) {
        raise_truncated(s, n);
        return NULL;
    }
    const char *p = s->buf + s->pos;
    s->pos += n;
    return p;
}

int
fj_source_getc_slow(fj_source *s)
{
    int r = source_fill(s, 1);
    if (r < 0) {
        return -2;
    }
    if (r == 0) {
        return -1;
    }
    return (unsigned char)s->buf[s->pos++];
}

/* Python file: append file.readline() (exact: stops after the newline) to the window. 1 if a
 * line was appended, 0 at end of file, -1 on error. */
static int
pyfile_append_line(fj_source *s)
{
    if (pyfile_sync(s) < 0) {
        return -1;
    }
    PyObject *line = PyObject_CallNoArgs(s->m_readline);
    if (line == NULL) {
        return -1;
    }
    if (!PyBytes_Check(line)) {
        Py_DECREF(line);
        PyErr_SetString(PyExc_TypeError, "file.readline() must return bytes");
        return -1;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(line);
    if (n == 0) {
        Py_DECREF(line);
        s->eof = 1;
        return 0;
    }
    if (ensure_cap(s, s->end + n) < 0) {
        Py_DECREF(line);
        return -1;
    }
    memcpy(s->own + s->end, PyBytes_AS_STRING(line), (size_t)n);
    s->end += n;
    s->real_end = s->end;
    Py_DECREF(line);
    if (source_progress(s) < 0) {
        return -1;
    }
    return 1;
}

const char *
fj_source_readline(fj_source *s, Py_ssize_t *len)
{
    Py_ssize_t scanned = 0;
    for (;;) {
        const char *start = s->buf + s->pos;
        Py_ssize_t avail = s->end - s->pos;
        const char *nl = avail > scanned ? memchr(start + scanned, '\n', (size_t)(avail - scanned)) : NULL;
        if (nl != NULL) {
            *len = nl - start + 1;
            s->pos += *len;
            return start;
        }
        scanned = avail;
        if (s->kind == FJ_SRC_MEM || s->eof) {
            break;
        }
        int r;
        if (s->kind == FJ_SRC_PYFILE && s->m_readline != NULL) {
            r = pyfile_append_line(s);
            scanned = 0; /* the window moved: rescan */
        }
        else if (s->kind == FJ_SRC_PYFILE) {
            /* neither readline nor peek (only _core.load accepts such objects): exact reading
             * would cost one call per byte, so short lines are read exactly and long ones
             * greedily (the position after load is then past STOP). */
            Py_ssize_t more = avail < 256 ? 1 : avail;
            int64_t saved = s->safe_until;
            if (more > 1) {
                s->safe_until = s->base + s->end + more;
            }
            r = source_fill(s, avail + 1);
            s->safe_until = saved;
        }
        else {
            r = source_fill(s, avail + (avail < CHUNK ? CHUNK : avail));
            if (r == 0 && s->end - s->pos > avail) {
                r = 1; /* partial progress: scan it */
            }
        }
        if (r < 0) {
            return NULL;
        }
        if (r == 0) {
            break;
        }
    }
    PyErr_Format(s->trunc_exc, "pickle data was truncated: no newline found at offset %lld",
                 (long long)fj_source_tell(s));
    return NULL;
}

Py_ssize_t
fj_source_readinto(fj_source *s, char *dst, Py_ssize_t n)
{
    Py_ssize_t got = s->end - s->pos;
    if (got > n) {
        got = n;
    }
    memcpy(dst, s->buf + s->pos, (size_t)got);
    s->pos += got;
    if (got == n || s->kind == FJ_SRC_MEM) {
        if (s->kind == FJ_SRC_MEM && source_progress(s) < 0) {
            return -1;
        }
        return got;
    }
    if (s->kind == FJ_SRC_PYFILE) {
        if (pyfile_sync(s) < 0) {
            return -1;
        }
        /* window now empty (pos == end) since we consumed all of it */
        while (got < n) {
            Py_ssize_t r = pyfile_read_into(s->m_readinto, s->m_read, dst + got, read_cap(s, n - got));
            if (r < 0) {
                return -1;
            }
            if (r == 0) {
                s->eof = 1;
                break;
            }
            got += r;
            s->base += r;
            if (source_progress(s) < 0) {
                return -1;
            }
        }
        return got;
    }
    /* READER: window empty; read straight into dst */
    s->base += s->pos;
    s->pos = s->end = 0;
    while (got < n && !s->eof) {
        Py_ssize_t r = s->reader->read(s->reader, dst + got, read_cap(s, n - got));
        if (r < 0) {
            return -1;
        }
        if (r == 0) {
            s->eof = 1;
            break;
        }
        got += r;
        s->base += r;
        if (source_progress(s) < 0) {
            return -1;
        }
    }
    return got;
}

int64_t
fj_source_skip(fj_source *s, int64_t n)
{
    int64_t done = s->end - s->pos;
    if (done > n) {
        done = n;
    }
    s->pos += (Py_ssize_t)done;
    if (done == n || s->kind == FJ_SRC_MEM) {
        if (s->kind == FJ_SRC_MEM && source_progress(s) < 0) {
            return -1;
        }
        return done;
    }
    int64_t left = n - done;
    int64_t rem = fj_source_remaining(s);
    if (s->kind == FJ_SRC_READER && s->fd >= 0 && rem >= 0) {
        /* window empty; the fd position is at base + end == tell */
        int64_t step = left < rem ? left : rem;
        s->base += s->pos;
        s->pos = s->end = 0;
        if (lseek(s->fd, (off_t)step, SEEK_CUR) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        s->base += step;
        if (source_progress(s) < 0) {
            return -1;
        }
        return done + step;
    }
    if (s->kind == FJ_SRC_PYFILE && rem >= 0) {
        if (pyfile_sync(s) < 0) {
            return -1;
        }
        int64_t step = left < rem ? left : rem;
        const unsigned long mark = fj_interrupt_mark();
        PyObject *r = PyObject_CallMethod(s->file, "seek", "Li", (long long)step, 1);
        if (r != NULL) {
            Py_DECREF(r);
            s->base += step;
            if (source_progress(s) < 0) {
                return -1;
            }
            return done + step;
        }
        if (fj_clear_unless_urgent(mark) < 0) { /* else fall back to reading */
            return -1;
        }
    }
    char tmp[16384];
    while (left > 0) {
        Py_ssize_t want = left > (int64_t)sizeof(tmp) ? (Py_ssize_t)sizeof(tmp) : (Py_ssize_t)left;
        Py_ssize_t r = fj_source_readinto(s, tmp, want);
        if (r < 0) {
            return -1;
        }
        done += r;
        left -= r;
        if (r < want) {
            break;
        }
    }
    return done;
}

void
fj_source_frame(fj_source *s, int64_t n)
{
    int64_t t = fj_source_tell(s);
    if (n > 0 && n <= INT64_MAX - t) {
        s->safe_until = t + n;
    }
}

int
fj_source_finish(fj_source *s)
{
    if (s->kind == FJ_SRC_PYFILE) {
        return pyfile_sync(s);
    }
    if (s->kind == FJ_SRC_READER && s->fd >= 0 && s->end > s->pos) {
        off_t back = (off_t)(s->end - s->pos);
        if (lseek(s->fd, -back, SEEK_CUR) >= 0) {
            s->base += s->pos;
            s->pos = s->end = 0;
        }
    }
    return 0;
}

/* Read n bytes into a growing buffer object. `kind` 0: bytes, 1: bytearray. */
static PyObject *
read_object(fj_source *s, Py_ssize_t n, int kind)
{
    PyObject *obj = NULL;
    int64_t rem = fj_source_remaining(s);
    if (rem >= 0 && n > rem) {
        PyErr_Format(s->trunc_exc, "pickle data was truncated: a %zd-byte item at offset %lld, only %lld bytes left",
                     n, (long long)fj_source_tell(s), (long long)rem);
        return NULL;
    }
    if (kind == 0 && n <= s->end - s->pos) {
        obj = PyBytes_FromStringAndSize(s->buf + s->pos, n);
        if (obj != NULL) {
            s->pos += n;
        }
        return obj;
    }
    /* Allocate the claimed size only when the stream is known to hold it, otherwise grow. */
    Py_ssize_t alloc = (rem >= 0 || n <= FJ_SOURCE_TAKE_MAX) ? n : FJ_SOURCE_TAKE_MAX;
    obj = kind == 0 ? PyBytes_FromStringAndSize(NULL, alloc) : PyByteArray_FromStringAndSize(NULL, alloc);
    if (obj == NULL) {
        return NULL;
    }
    Py_ssize_t got = 0;
    for (;;) {
        char *data = kind == 0 ? PyBytes_AS_STRING(obj) : PyByteArray_AS_STRING(obj);
        Py_ssize_t r = fj_source_readinto(s, data + got, alloc - got);
        if (r < 0) {
            goto error;
        }
        got += r;
        if (got < alloc) {
            PyErr_Format(s->trunc_exc, "pickle data was truncated: a %zd-byte item, only %zd bytes left", n, got);
            goto error;
        }
        if (alloc == n) {
            break;
        }
        alloc = (alloc > n / 2) ? n : alloc * 2;
        if (kind == 0) {
            if (_PyBytes_Resize(&obj, alloc) < 0) {
                return NULL;
            }
        }
        else if (PyByteArray_Resize(obj, alloc) < 0) {
            goto error;
        }
    }
    return obj;
error:
    Py_XDECREF(obj);
    return NULL;
}

PyObject *
fj_source_read_bytes(fj_source *s, Py_ssize_t n)
{
    return read_object(s, n, 0);
}

PyObject *
fj_source_read_bytearray(fj_source *s, Py_ssize_t n)
{
    return read_object(s, n, 1);
}
