/* codec_zstd.c: zstd through the `zstandard` package (no system headers needed).
 *
 * Writer: zstandard.ZstdCompressor(level, threads, job_size, write_checksum=True).stream_writer()
 * onto a tiny sink whose write() hands the compressed bytes straight to the inner fj_writer, in
 * pieces of at most ZSTD_OUT_SIZE (no output accumulates in Python objects). The caller's memory
 * goes in as memoryviews of at most 8 MiB per call (the package releases the GIL, and with
 * threads > 1 libzstd compresses on its own worker threads). ONE standard zstd frame.
 * Reader: ZstdDecompressor().stream_reader(source, read_across_frames=True).readinto(caller's
 * memory): bounded output per call and no copy. `source` is a tiny object whose read() pulls from
 * the inner fj_reader. stream_reader does not report a truncated frame, so the bytes it is fed
 * also go through a frame-structure walker (frame header, block headers, checksum: no
 * decompression) that tells whether the input ended on a frame boundary.
 * Direct reader (the default when it binds): libzstd's ZSTD_decompressStream, found in the
 * zstandard package's cffi extension (engine.c), decodes straight into the caller's memory with
 * the GIL released, from 1 MiB reads of the inner reader; the same walker gives the end-of-input
 * verdict and the errors are zstandard's texts ("zstd decompress error: <libzstd's name>"), so
 * both readers behave alike (tests/test_codec_engines.py). FASTJOBLIB_ZSTD=python forces the
 * Python path, =libzstd requires the direct one.
 */
#include "fj.h"
#include "codec.h"
#include "engine.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#define ZSTD_FEED (8 << 20)
#define ZSTD_JOB (3 << 20)  /* libzstd job size with threads */
#define ZSTD_OUT_SIZE (256 * 1024) /* compressed bytes per sink write */
/* Each job reloads the full window of the data before it (libzstd's default reloads 1/8 at level
 * 3): without it 3-4 MiB jobs cost ~10% of ratio on compressible arrays; with it the output is
 * within 1% of (here: smaller than) one single-threaded stream, at the same speed. */
#define ZSTD_OVERLAP_LOG 9
#define ZSTD_READ_SIZE (256 * 1024)
#define ZSTD_IN_SIZE (1 << 20) /* direct mode: compressed bytes per read of the inner reader */

static PyObject *
import_zstandard(void)
{
    PyObject *m = PyImport_ImportModule("zstandard");
    if (m == NULL && PyErr_ExceptionMatches(PyExc_ImportError)) {
        PyObject *t, *v, *tb, *t2, *v2, *tb2;
        PyErr_Fetch(&t, &v, &tb);
        PyErr_NormalizeException(&t, &v, &tb);
        PyErr_SetString(PyExc_ImportError, "zstd compression needs the 'zstandard' package. "
                                           "Install it with pip: pip install zstandard");
        PyErr_Fetch(&t2, &v2, &tb2);
        PyErr_NormalizeException(&t2, &v2, &tb2);
        if (v != NULL && v2 != NULL) {
            PyException_SetCause(v2, Py_NewRef(v));
        }
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
        PyErr_Restore(t2, v2, tb2);
    }
    return m;
}

/* ----- writer -------------------------------------------------------------------------------- */
typedef struct {
    fj_writer base;
    fj_writer *inner;
    PyObject *capsule; /* points at this struct; self of the sink's write() builtin */
    PyObject *sink;    /* SimpleNamespace(write=<builtin>) */
    PyObject *sw;      /* ZstdCompressor(...).stream_writer(sink) */
    PyObject *flush_frame; /* zstandard.FLUSH_FRAME */
    int failed, closed;
} zstd_writer;

/* sink.write(b): the stream writer's compressed output goes straight to the inner writer */
static PyObject *
sink_write(PyObject *capsule, PyObject *arg)
{
    zstd_writer *w = PyCapsule_GetPointer(capsule, "fastjoblib.zstd_writer");
    if (w == NULL) {
        return NULL;
    }
    /* called between the compressor's GIL-released steps: the place to answer a signal */
    if (fj_check_interrupt() < 0) {
        return NULL;
    }
    Py_buffer v;
    if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    int rc = v.len > 0 ? fj_codec_put(w->inner, v.buf, (size_t)v.len) : 0;
    Py_ssize_t n = v.len;
    PyBuffer_Release(&v);
    return rc < 0 ? NULL : PyLong_FromSsize_t(n);
}

static PyMethodDef sink_write_def = {"write", sink_write, METH_O, NULL};

/* obj.name(arg, **kw); steals kw (NULL: an error is already set). */
static PyObject *
call_method_kw(PyObject *obj, const char *name, PyObject *arg, PyObject *kw)
{
    if (kw == NULL) {
        return NULL;
    }
    PyObject *meth = PyObject_GetAttrString(obj, name);
    PyObject *args = meth ? PyTuple_Pack(1, arg) : NULL;
    PyObject *res = args ? PyObject_Call(meth, args, kw) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(meth);
    Py_DECREF(kw);
    return res;
}

/* SimpleNamespace(name=fn): the duck-typed file object zstandard's streams talk to */
static PyObject *
make_namespace(const char *name, PyObject *fn)
{
    PyObject *types = PyImport_ImportModule("types");
    PyObject *ns = types ? PyObject_GetAttrString(types, "SimpleNamespace") : NULL;
    PyObject *kw = ns ? Py_BuildValue("{s:O}", name, fn) : NULL;
    PyObject *noargs = kw ? PyTuple_New(0) : NULL;
    PyObject *res = noargs ? PyObject_Call(ns, noargs, kw) : NULL;
    Py_XDECREF(noargs);
    Py_XDECREF(kw);
    Py_XDECREF(ns);
    Py_XDECREF(types);
    return res;
}

static int
zstd_w_write(fj_writer *self, const char *data, Py_ssize_t len)
{
    zstd_writer *w = (zstd_writer *)self;
    if (w->failed || w->closed) {
        PyErr_SetString(PyExc_ValueError, "zstd compressor: stream closed or failed earlier");
        return -1;
    }
    while (len > 0) {
        if (fj_check_interrupt() < 0) {
            goto error;
        }
        Py_ssize_t n = len > ZSTD_FEED ? ZSTD_FEED : len;
        PyObject *mv = PyMemoryView_FromMemory((char *)data, n, PyBUF_READ);
        if (mv == NULL) {
            goto error;
        }
        PyObject *res = PyObject_CallMethod(w->sw, "write", "O", mv);
        Py_DECREF(mv);
        if (res == NULL) {
            goto error;
        }
        Py_DECREF(res);
        data += n;
        len -= n;
    }
    return 0;
error:
    w->failed = 1;
    return -1;
}

static int
zstd_w_close(fj_writer *self)
{
    zstd_writer *w = (zstd_writer *)self;
    if (w->failed || w->closed) {
        PyErr_SetString(PyExc_ValueError, "zstd compressor: stream closed or failed earlier");
        return -1;
    }
    w->closed = 1;
    PyObject *res = PyObject_CallMethod(w->sw, "flush", "O", w->flush_frame);
    if (res == NULL) {
        w->failed = 1;
        return -1;
    }
    Py_DECREF(res);
    return w->inner->close(w->inner);
}

static void
zstd_w_free(fj_writer *self)
{
    zstd_writer *w = (zstd_writer *)self;
    Py_XDECREF(w->sw); /* before the sink it writes to */
    Py_XDECREF(w->sink);
    Py_XDECREF(w->capsule);
    Py_XDECREF(w->flush_frame);
    if (w->inner != NULL) {
        w->inner->free(w->inner);
    }
    PyMem_RawFree(w);
}

fj_writer *
fj_zstd_writer(int level, int threads, fj_writer *inner)
{
    PyObject *mod = NULL, *comp = NULL;
    zstd_writer *w = PyMem_RawCalloc(1, sizeof(zstd_writer));
    if (w == NULL) {
        inner->free(inner);
        PyErr_NoMemory();
        return NULL;
    }
    w->base.write = zstd_w_write;
    w->base.close = zstd_w_close;
    w->base.free = zstd_w_free;
    w->base.pos = 0;
    w->inner = inner;
    if (level < 0) {
        level = 3;
    }
    threads = fj_codec_threads(threads);
    if ((mod = import_zstandard()) == NULL) {
        goto error;
    }
    {
        PyObject *maxl = PyObject_GetAttrString(mod, "MAX_COMPRESSION_LEVEL");
        long max_level = maxl != NULL ? PyLong_AsLong(maxl) : -1;
        Py_XDECREF(maxl);
        if (max_level == -1 && PyErr_Occurred()) {
            goto error;
        }
        if (level > max_level) { /* from_level() would clamp it silently */
            PyErr_Format(PyExc_ValueError, "level must be less than %ld", max_level + 1);
            goto error;
        }
    }
    /* threads=1: compress in the caller's thread (zstandard threads=0). With threads, libzstd's
     * multithreaded mode cuts the single frame into jobs of ZSTD_JOB bytes. libzstd's buffers grow
     * with the job size (peak extra RSS of a 512 MiB random-array dump through stream_writer, 2
     * threads: 119 MiB with 8 MiB jobs, 37.5 with 4, 25.9 with 3, 20.0 with 2); 3 MiB jobs are
     * as fast as 4 on 2 cores (0.329 vs 0.328 s for the 512 MiB smooth array, medians of 9) where
     * 2 MiB jobs are 3.5% slower. ZSTD_OVERLAP_LOG keeps the ratio of one stream. */
    {
        PyObject *cls = PyObject_GetAttrString(mod, "ZstdCompressor");
        PyObject *pcls = cls ? PyObject_GetAttrString(mod, "ZstdCompressionParameters") : NULL;
        PyObject *params = NULL;
        if (pcls != NULL) {
            PyObject *pkw = Py_BuildValue("{s:i,s:i,s:i,s:O}", "threads", threads > 1 ? threads : 0,
                                          "job_size", threads > 1 ? ZSTD_JOB : 0,
                                          "overlap_log", threads > 1 ? ZSTD_OVERLAP_LOG : 0,
                                          "write_checksum", Py_True);
            PyObject *from_level = pkw ? PyObject_GetAttrString(pcls, "from_level") : NULL;
            PyObject *pargs = from_level ? Py_BuildValue("(i)", level) : NULL;
            if (pargs != NULL) {
                params = PyObject_Call(from_level, pargs, pkw);
            }
            Py_XDECREF(pargs);
            Py_XDECREF(from_level);
            Py_XDECREF(pkw);
        }
        PyObject *kw = params ? Py_BuildValue("{s:O}", "compression_params", params) : NULL;
        PyObject *noargs = kw ? PyTuple_New(0) : NULL;
        if (noargs != NULL) {
            comp = PyObject_Call(cls, noargs, kw);
        }
        Py_XDECREF(noargs);
        Py_XDECREF(kw);
        Py_XDECREF(params);
        Py_XDECREF(pcls);
        Py_XDECREF(cls);
    }
    if (comp == NULL || (w->flush_frame = PyObject_GetAttrString(mod, "FLUSH_FRAME")) == NULL ||
        (w->capsule = PyCapsule_New(w, "fastjoblib.zstd_writer", NULL)) == NULL) {
        goto error;
    }
    {
        PyObject *fn = PyCFunction_New(&sink_write_def, w->capsule);
        w->sink = fn ? make_namespace("write", fn) : NULL;
        Py_XDECREF(fn);
    }
    if (w->sink == NULL ||
        (w->sw = call_method_kw(comp, "stream_writer", w->sink,
                                Py_BuildValue("{s:n,s:O}", "write_size", (Py_ssize_t)ZSTD_OUT_SIZE,
                                              "closefd", Py_False))) == NULL) {
        goto error;
    }
    Py_DECREF(comp);
    Py_DECREF(mod);
    return &w->base;
error:
    Py_XDECREF(comp);
    Py_XDECREF(mod);
    zstd_w_free(&w->base);
    return NULL;
}

/* ----- frame walker -------------------------------------------------------------------------- */
enum { ZW_MAGIC, ZW_FHD, ZW_HEADER_REST, ZW_BLOCK_HDR, ZW_SKIP, ZW_SKIPPABLE_SIZE, ZW_BAD };

typedef struct {
    int state;
    unsigned char hdr[8];
    size_t have, need;     /* header bytes collected / wanted in the current state */
    uint64_t skip;         /* bytes still to skip */
    int after_skip;        /* state after the skip */
    int checksum;          /* current frame has a content checksum */
    int last;              /* current block is the last of its frame */
    int nframes;
} zwalker;

static void
zw_start(zwalker *z)
{
    memset(z, 0, sizeof(*z));
    z->state = ZW_MAGIC;
    z->need = 4;
}

static void
zw_feed(zwalker *z, const unsigned char *p, size_t n)
{
    while (n > 0 && z->state != ZW_BAD) {
        if (z->state == ZW_SKIP) {
            uint64_t k = z->skip < n ? z->skip : n;
            z->skip -= k;
            p += k;
            n -= (size_t)k;
            if (z->skip == 0) {
                z->state = z->after_skip;
                z->have = 0;
                z->need = z->state == ZW_MAGIC ? 4 : 3;
            }
            continue;
        }
        size_t k = z->need - z->have;
        if (k > n) {
            k = n;
        }
        memcpy(z->hdr + z->have, p, k);
        z->have += k;
        p += k;
        n -= k;
        if (z->have < z->need) {
            break;
        }
        const unsigned char *h = z->hdr;
        switch (z->state) {
        case ZW_MAGIC: {
            uint32_t m = (uint32_t)h[0] | ((uint32_t)h[1] << 8) | ((uint32_t)h[2] << 16) |
                         ((uint32_t)h[3] << 24);
            z->have = 0;
            if (m == 0xFD2FB528u) {
                z->state = ZW_FHD;
                z->need = 1;
            }
            else if ((m & 0xFFFFFFF0u) == 0x184D2A50u) {
                z->state = ZW_SKIPPABLE_SIZE;
                z->need = 4;
            }
            else {
                z->state = ZW_BAD;
            }
            break;
        }
        case ZW_FHD: {
            unsigned fhd = h[0];
            unsigned fcs_flag = fhd >> 6, single = (fhd >> 5) & 1, did = fhd & 3;
            static const size_t did_size[4] = {0, 1, 2, 4};
            static const size_t fcs_size[4] = {0, 2, 4, 8};
            size_t rest = (single ? 0 : 1) + did_size[did] +
                          (fcs_flag == 0 ? (single ? 1 : 0) : fcs_size[fcs_flag]);
            z->checksum = (fhd >> 2) & 1;
            if (fhd & 0x08) { /* reserved bit */
                z->state = ZW_BAD;
                break;
            }
            z->have = 0;
            if (rest > 0) {
                z->state = ZW_SKIP;
                z->skip = rest;
                z->after_skip = ZW_BLOCK_HDR;
            }
            else {
                z->state = ZW_BLOCK_HDR;
                z->need = 3;
            }
            break;
        }
        case ZW_BLOCK_HDR: {
            uint32_t b = (uint32_t)h[0] | ((uint32_t)h[1] << 8) | ((uint32_t)h[2] << 16);
            unsigned type = (b >> 1) & 3;
            uint32_t size = b >> 3;
            z->last = b & 1;
            z->have = 0;
            if (type == 3) {
                z->state = ZW_BAD;
                break;
            }
            uint64_t skip = type == 1 ? 1 : size;
            if (z->last) {
                skip += z->checksum ? 4 : 0;
                z->nframes++;
            }
            z->after_skip = z->last ? ZW_MAGIC : ZW_BLOCK_HDR;
            if (skip > 0) {
                z->state = ZW_SKIP;
                z->skip = skip;
            }
            else {
                z->state = z->after_skip;
                z->need = z->state == ZW_MAGIC ? 4 : 3;
            }
            break;
        }
        case ZW_SKIPPABLE_SIZE: {
            uint32_t s = (uint32_t)h[0] | ((uint32_t)h[1] << 8) | ((uint32_t)h[2] << 16) |
                         ((uint32_t)h[3] << 24);
            z->have = 0;
            z->nframes++;
            z->after_skip = ZW_MAGIC;
            if (s > 0) {
                z->state = ZW_SKIP;
                z->skip = s;
            }
            else {
                z->state = ZW_MAGIC;
                z->need = 4;
            }
            break;
        }
        default:
            z->state = ZW_BAD;
        }
    }
}

/* The input so far ends exactly after one or more complete frames. */
static int
zw_complete(const zwalker *z)
{
    return z->state == ZW_MAGIC && z->have == 0 && z->nframes > 0;
}

/* ----- libzstd from the zstandard package (engine.h) ----------------------------------------- */
typedef struct {
    const void *src;
    size_t size, pos;
} zstd_in_buffer; /* ZSTD_inBuffer */
typedef struct {
    void *dst;
    size_t size, pos;
} zstd_out_buffer; /* ZSTD_outBuffer */

typedef struct {
    void *handle; /* NULL: the zstandard Python API */
    unsigned (*version)(void);
    void *(*create_dctx)(void);
    size_t (*free_dctx)(void *);
    size_t (*decompress_stream)(void *, zstd_out_buffer *, zstd_in_buffer *);
    unsigned (*is_error)(size_t);
    const char *(*error_name)(size_t);
} zstd_api;

/* 1 bound, 0 use the Python API (FASTJOBLIB_ZSTD=python, or no exported libzstd), -1 error
 * (FASTJOBLIB_ZSTD=libzstd requires the binding: ImportError without it). */
static int
zstd_api_open(zstd_api *api)
{
    static const char *const names[6] = {"ZSTD_versionNumber", "ZSTD_createDCtx",
                                         "ZSTD_freeDCtx", "ZSTD_decompressStream",
                                         "ZSTD_isError", "ZSTD_getErrorName"};
    void *fns[6];
    memset(api, 0, sizeof(*api));
    const char *force = getenv("FASTJOBLIB_ZSTD");
    if (force != NULL && strcmp(force, "python") == 0) {
        return 0;
    }
    int rc = fj_engine_bind("zstandard._cffi", names, fns, 6, &api->handle);
    int required = force != NULL && strcmp(force, "libzstd") == 0;
    if (rc == 0 && required) {
        PyErr_SetString(PyExc_ImportError, "FASTJOBLIB_ZSTD=libzstd: libzstd was not found in "
                                           "the zstandard package's cffi extension");
        return -1;
    }
    if (rc != 1) {
        return rc;
    }
    *(void **)&api->version = fns[0];
    *(void **)&api->create_dctx = fns[1];
    *(void **)&api->free_dctx = fns[2];
    *(void **)&api->decompress_stream = fns[3];
    *(void **)&api->is_error = fns[4];
    *(void **)&api->error_name = fns[5];
    if (api->version() < 10400) { /* ZSTD_decompressStream's contract as used here */
        dlclose(api->handle);
        memset(api, 0, sizeof(*api));
        return 0;
    }
    return 1;
}

/* ----- reader -------------------------------------------------------------------------------- */
typedef struct {
    fj_reader base;
    fj_reader *inner;
    PyObject *capsule;    /* points at this struct; self of the read() builtin */
    PyObject *source;     /* SimpleNamespace(read=<builtin>) */
    PyObject *sreader;    /* ZstdDecompressor().stream_reader(source, ...) */
    zwalker walk;
    int finished, failed;
    PyObject *exc_type, *exc_value, *exc_tb; /* error met after output was delivered */
    /* direct mode (api.handle != NULL): libzstd's streaming decoder straight into the caller's
     * memory, GIL released; `sreader` etc. stay NULL */
    zstd_api api;
    void *dctx;
    unsigned char *in;
    size_t in_len, in_pos;
    int eof;
} zstd_reader;

static PyObject *
source_read(PyObject *capsule, PyObject *arg)
{
    zstd_reader *r = PyCapsule_GetPointer(capsule, "fastjoblib.zstd_reader");
    if (r == NULL) {
        return NULL;
    }
    /* called between the decompressor's GIL-released steps: the place to answer a signal */
    if (fj_check_interrupt() < 0) {
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0 || n > ZSTD_READ_SIZE * 4) {
        n = ZSTD_READ_SIZE;
    }
    PyObject *b = PyBytes_FromStringAndSize(NULL, n);
    if (b == NULL) {
        return NULL;
    }
    Py_ssize_t got = 0;
    while (got < n) {
        Py_ssize_t k = r->inner->read(r->inner, PyBytes_AS_STRING(b) + got, n - got);
        if (k < 0) {
            Py_DECREF(b);
            return NULL;
        }
        if (k == 0) {
            break;
        }
        got += k;
    }
    zw_feed(&r->walk, (const unsigned char *)PyBytes_AS_STRING(b), (size_t)got);
    if (got < n && _PyBytes_Resize(&b, got) < 0) {
        return NULL;
    }
    return b;
}

static PyMethodDef source_read_def = {"read", source_read, METH_O, NULL};

/* Direct mode. The end-of-input verdict is the walker's, as in the Python path (same texts). */
static Py_ssize_t
zstd_r_read_direct(zstd_reader *r, char *buf, Py_ssize_t len)
{
    Py_ssize_t produced = 0;
    const unsigned long mark = fj_interrupt_mark();
    while (!r->finished && produced < len) {
        zstd_out_buffer out = {buf + produced, (size_t)(len - produced), 0};
        zstd_in_buffer in = {r->in, r->in_len, r->in_pos};
        size_t ret;
        Py_BEGIN_ALLOW_THREADS
        ret = r->api.decompress_stream(r->dctx, &out, &in);
        Py_END_ALLOW_THREADS
        r->in_pos = in.pos;
        produced += (Py_ssize_t)out.pos;
        if (r->api.is_error(ret)) {
            fj_codec_raise("zstandard", "ZstdError", "zstd decompress error: %s",
                           r->api.error_name(ret));
            goto error;
        }
        if (produced == len || r->in_pos < r->in_len) {
            continue;
        }
        if (out.pos == out.size) {
            continue; /* output full: more may be buffered */
        }
        /* all input consumed and all output it allows delivered */
        if (!r->eof) {
            Py_ssize_t n = r->inner->read(r->inner, (char *)r->in, ZSTD_IN_SIZE);
            if (n < 0) {
                goto error;
            }
            r->in_len = (size_t)n;
            r->in_pos = 0;
            if (n == 0) {
                r->eof = 1;
            }
            else {
                zw_feed(&r->walk, r->in, (size_t)n);
            }
            continue;
        }
        if (!zw_complete(&r->walk)) {
            if (r->walk.state == ZW_BAD) {
                fj_codec_raise("zstandard", "ZstdError",
                               "zstd: invalid compressed data: bad frame structure");
            }
            else {
                fj_codec_raise_truncated();
            }
            goto error;
        }
        r->finished = 1;
    }
    return produced;
error:
    r->failed = 1;
    if (produced > 0 && !fj_error_is_urgent(mark)) { /* an interrupt is never deferred */
        /* deliver what we have; the error comes back on the next call */
        PyErr_Fetch(&r->exc_type, &r->exc_value, &r->exc_tb);
        return produced;
    }
    return -1;
}

static Py_ssize_t
zstd_r_read(fj_reader *self, char *buf, Py_ssize_t len)
{
    zstd_reader *r = (zstd_reader *)self;
    Py_ssize_t produced = 0;
    const unsigned long mark = fj_interrupt_mark();
    if (r->exc_type != NULL) {
        PyErr_Restore(Py_NewRef(r->exc_type), Py_XNewRef(r->exc_value), Py_XNewRef(r->exc_tb));
        return -1;
    }
    if (r->failed) {
        PyErr_SetString(PyExc_ValueError, "zstd: stream failed earlier");
        return -1;
    }
    if (r->dctx != NULL) {
        return zstd_r_read_direct(r, buf, len);
    }
    while (!r->finished && produced < len) {
        PyObject *mv = PyMemoryView_FromMemory(buf + produced, len - produced, PyBUF_WRITE);
        if (mv == NULL) {
            goto error;
        }
        PyObject *res = PyObject_CallMethod(r->sreader, "readinto", "O", mv);
        Py_DECREF(mv);
        if (res == NULL) {
            if (produced > 0 && !fj_error_is_urgent(mark)) { /* an interrupt is never deferred */
                /* deliver what we have; the error comes back on the next call */
                PyErr_Fetch(&r->exc_type, &r->exc_value, &r->exc_tb);
                r->failed = 1;
                return produced;
            }
            goto error;
        }
        Py_ssize_t n = PyLong_AsSsize_t(res);
        Py_DECREF(res);
        if (n < 0 || n > len - produced) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "zstd: inconsistent readinto result");
            }
            goto error;
        }
        if (n == 0) {
            if (!zw_complete(&r->walk)) {
                if (r->walk.state == ZW_BAD) {
                    fj_codec_raise("zstandard", "ZstdError",
                                   "zstd: invalid compressed data: bad frame structure");
                }
                else {
                    fj_codec_raise_truncated();
                }
                goto error;
            }
            r->finished = 1;
            break;
        }
        produced += n;
    }
    return produced;
error:
    r->failed = 1;
    return -1;
}

static void
zstd_r_free(fj_reader *self)
{
    zstd_reader *r = (zstd_reader *)self;
    Py_XDECREF(r->sreader);
    Py_XDECREF(r->source);
    Py_XDECREF(r->capsule);
    Py_XDECREF(r->exc_type);
    Py_XDECREF(r->exc_value);
    Py_XDECREF(r->exc_tb);
    if (r->dctx != NULL) {
        r->api.free_dctx(r->dctx);
    }
    if (r->api.handle != NULL) {
        dlclose(r->api.handle);
    }
    PyMem_RawFree(r->in);
    if (r->inner != NULL) {
        r->inner->free(r->inner);
    }
    PyMem_RawFree(r);
}

fj_reader *
fj_zstd_reader(fj_reader *inner)
{
    PyObject *mod = NULL, *fn = NULL, *dec = NULL;
    zstd_reader *r = PyMem_RawCalloc(1, sizeof(zstd_reader));
    if (r == NULL) {
        inner->free(inner);
        PyErr_NoMemory();
        return NULL;
    }
    r->base.read = zstd_r_read;
    r->base.free = zstd_r_free;
    r->inner = inner;
    zw_start(&r->walk);
    if ((mod = import_zstandard()) == NULL) {
        goto error;
    }
    int bound = zstd_api_open(&r->api);
    if (bound < 0) {
        goto error;
    }
    if (bound == 1) {
        if ((r->in = PyMem_RawMalloc(ZSTD_IN_SIZE)) == NULL) {
            PyErr_NoMemory();
            goto error;
        }
        if ((r->dctx = r->api.create_dctx()) == NULL) {
            PyErr_NoMemory();
            goto error;
        }
        Py_DECREF(mod);
        return &r->base;
    }
    if ((r->capsule = PyCapsule_New(r, "fastjoblib.zstd_reader", NULL)) == NULL ||
        (fn = PyCFunction_New(&source_read_def, r->capsule)) == NULL) {
        goto error;
    }
    if ((r->source = make_namespace("read", fn)) == NULL) {
        goto error;
    }
    if ((dec = PyObject_CallMethod(mod, "ZstdDecompressor", NULL)) == NULL) {
        goto error;
    }
    r->sreader = call_method_kw(dec, "stream_reader", r->source,
                                Py_BuildValue("{s:n,s:O,s:O}", "read_size",
                                              (Py_ssize_t)ZSTD_READ_SIZE, "read_across_frames",
                                              Py_True, "closefd", Py_False));
    if (r->sreader == NULL) {
        goto error;
    }
    Py_DECREF(dec);
    Py_DECREF(fn);
    Py_DECREF(mod);
    return &r->base;
error:
    Py_XDECREF(dec);
    Py_XDECREF(fn);
    Py_XDECREF(mod);
    zstd_r_free(&r->base);
    return NULL;
}
