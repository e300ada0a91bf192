/* codec_zstd.c: zstd through the `zstandard` package (no system headers needed).
 *
 * Writer (libzstd bound, the default): frames of 16 MiB of input, each compressed on its own with
 * ZSTD_compress2 (content size, checksum, a window of the whole frame) on the block writer's pool
 * (codec.c): one standard stream of concatenated frames, the same bytes whatever the thread count.
 * Python-API writer (FASTJOBLIB_ZSTD=python, or no libzstd exported by the package):
 * zstandard.ZstdCompressor(level, threads, job_size, write_checksum=True).stream_writer() onto a
 * tiny sink whose write() hands the compressed bytes straight to the inner fj_writer, in pieces of
 * at most ZSTD_OUT_SIZE; the caller's memory goes in as memoryviews of at most 8 MiB per call (the
 * package releases the GIL, and with threads > 1 libzstd compresses on its own worker threads).
 * ONE frame.
 * Reader: ZstdDecompressor().stream_reader(source, read_across_frames=True).readinto(caller's
 * memory): bounded output per call and no copy. `source` is a tiny object whose read() pulls from
 * the inner fj_reader. stream_reader does not report a truncated frame, so the bytes it is fed
 * also go through a frame-structure walker (frame header, block headers, checksum: no
 * decompression) that tells whether the input ended on a frame boundary.
 * Direct reader (the default when it binds): libzstd found in the zstandard package's cffi
 * extension (engine.c), GIL released. At a frame boundary, complete frames that carry their
 * content size (64 KiB to 32 MiB, in a window that holds it all: the writer's frames) are decoded
 * one-shot (ZSTD_decompressDCtx), several
 * at once on a worker pool, straight into the caller's memory where they fit, else into scratch
 * (zf_batch); anything else (no content size, a bigger frame, a frame that fails one-shot) goes
 * through ZSTD_decompressStream, from reads of the inner reader. The same walker gives the
 * end-of-input verdict and the errors are zstandard's texts ("zstd decompress error: <libzstd's
 * name>"), so both readers behave alike (tests/test_codec_engines.py). FASTJOBLIB_ZSTD=python
 * forces the Python paths, =libzstd requires the direct ones.
 */
#include "fj.h"
#include "codec.h"
#include "engine.h"

#include <dlfcn.h>
#include <pthread.h>
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

/* The stream through zstandard's Python API: one frame (FASTJOBLIB_ZSTD=python, or no libzstd
 * exported by the package). Owns inner. `level` was checked by the caller. */
static fj_writer *
zstd_py_writer(PyObject *mod, int level, int threads, fj_writer *inner)
{
    PyObject *comp = NULL;
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
    threads = fj_codec_threads(threads);
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
    return &w->base;
error:
    Py_XDECREF(comp);
    zstd_w_free(&w->base);
    return NULL;
}

/* Bytes of a zstd frame header after its descriptor byte `fhd` (window descriptor, dictionary
 * ID, content size), from the RFC 8878 field sizes. */
static size_t
zhdr_rest(unsigned fhd)
{
    static const size_t did_size[4] = {0, 1, 2, 4};
    static const size_t fcs_size[4] = {0, 2, 4, 8};
    unsigned fcs_flag = fhd >> 6, single = (fhd >> 5) & 1;
    return (single ? 0 : 1) + did_size[fhd & 3] +
           (fcs_flag == 0 ? (single ? 1 : 0) : fcs_size[fcs_flag]);
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
            size_t rest = zhdr_rest(fhd);
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
    /* one-shot frames: the writer, and the reader's frame batches */
    size_t (*decompress_dctx)(void *, void *, size_t, const void *, size_t);
    size_t (*find_frame_csize)(const void *, size_t);
    unsigned long long (*frame_content_size)(const void *, size_t);
    void *(*create_cctx)(void);
    size_t (*free_cctx)(void *);
    size_t (*cctx_set_param)(void *, int, int);
    size_t (*compress2)(void *, void *, size_t, const void *, size_t);
    size_t (*compress_bound)(size_t);
} zstd_api;

#define ZSTD_API_NFN 14
#define ZSTD_CONTENTSIZE_UNKNOWN_ (0ULL - 1)
#define ZSTD_CONTENTSIZE_ERROR_ (0ULL - 2)
/* zstd.h's ZSTD_cParameter values (part of the stable API) */
#define ZSTD_C_LEVEL 100
#define ZSTD_C_WINDOWLOG 101
#define ZSTD_C_CONTENTSIZE 200
#define ZSTD_C_CHECKSUM 201

/* 1 bound, 0 use the Python API (FASTJOBLIB_ZSTD=python, or no exported libzstd), -1 error
 * (FASTJOBLIB_ZSTD=libzstd requires the binding: ImportError without it). */
static int
zstd_api_open(zstd_api *api)
{
    static const char *const names[ZSTD_API_NFN] = {
        "ZSTD_versionNumber", "ZSTD_createDCtx", "ZSTD_freeDCtx", "ZSTD_decompressStream",
        "ZSTD_isError", "ZSTD_getErrorName", "ZSTD_decompressDCtx",
        "ZSTD_findFrameCompressedSize", "ZSTD_getFrameContentSize", "ZSTD_createCCtx",
        "ZSTD_freeCCtx", "ZSTD_CCtx_setParameter", "ZSTD_compress2", "ZSTD_compressBound"};
    void *fns[ZSTD_API_NFN];
    memset(api, 0, sizeof(*api));
    const char *force = getenv("FASTJOBLIB_ZSTD");
    if (force != NULL && strcmp(force, "python") == 0) {
        return 0;
    }
    int rc = fj_engine_bind("zstandard._cffi", names, fns, ZSTD_API_NFN, &api->handle);
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
    *(void **)&api->decompress_dctx = fns[6];
    *(void **)&api->find_frame_csize = fns[7];
    *(void **)&api->frame_content_size = fns[8];
    *(void **)&api->create_cctx = fns[9];
    *(void **)&api->free_cctx = fns[10];
    *(void **)&api->cctx_set_param = fns[11];
    *(void **)&api->compress2 = fns[12];
    *(void **)&api->compress_bound = fns[13];
    if (api->version() < 10400) { /* the contracts of ZSTD_decompressStream, ZSTD_compress2 */
        dlclose(api->handle);
        memset(api, 0, sizeof(*api));
        return 0;
    }
    return 1;
}

static void
zstd_api_close(zstd_api *api)
{
    if (api->handle != NULL) {
        dlclose(api->handle);
        api->handle = NULL;
    }
}

/* ----- frame writer (libzstd bound) ----------------------------------------------------------
 * The stream is cut into frames of ZSTD_FRAME input bytes, each compressed on its own with
 * ZSTD_compress2 (content size and checksum in the frame) on the block writer's worker pool:
 * a concatenation of standard frames, which the zstd tool, zstandard's stream_reader (the joblib
 * recipe reads across frames) and fastjoblib read. The window is the whole frame: on the smooth
 * benchmark array 16 MiB frames came out 8% smaller than one frame cut in 3 MiB jobs by libzstd's
 * own threads (window 2 MiB), on a pickled random forest 1% smaller, on a DataFrame 0.5% larger.
 * Independent frames with their sizes let loads decode them on all cores straight into the
 * array's memory (the reader's frame batches below). */
#define ZSTD_FRAME ((size_t)16 << 20)
#define ZSTD_FRAME_WLOG 24
#define ZSTD_CCTX_KEEP 64

typedef struct {
    fj_bcodec codec;      /* zframe_codec with the frame size */
    zstd_api api;
    int level;
    pthread_mutex_t lock; /* the idle contexts */
    void *idle[ZSTD_CCTX_KEEP];
    int nidle;
} zframe_ctx;

static size_t
zframe_bound(void *vctx, size_t len)
{
    zframe_ctx *ctx = vctx;
    return ctx->api.compress_bound(len);
}

/* A compression context with the stream's parameters (worker thread, no GIL). NULL: no memory
 * (or a parameter refused: *err). */
static void *
zframe_cctx(zframe_ctx *ctx, size_t *err)
{
    void *c = NULL;
    pthread_mutex_lock(&ctx->lock);
    if (ctx->nidle > 0) {
        c = ctx->idle[--ctx->nidle];
    }
    pthread_mutex_unlock(&ctx->lock);
    if (c != NULL) {
        return c;
    }
    if ((c = ctx->api.create_cctx()) == NULL) {
        return NULL;
    }
    static const int params[4] = {ZSTD_C_LEVEL, ZSTD_C_WINDOWLOG, ZSTD_C_CHECKSUM,
                                  ZSTD_C_CONTENTSIZE};
    const int values[4] = {ctx->level, ZSTD_FRAME_WLOG, 1, 1};
    for (int i = 0; i < 4; i++) {
        size_t rc = ctx->api.cctx_set_param(c, params[i], values[i]);
        if (ctx->api.is_error(rc)) {
            *err = rc;
            ctx->api.free_cctx(c);
            return NULL;
        }
    }
    return c;
}

/* A frame of stored (raw) and RLE blocks only (incompressible data) references no window, but
 * as a single-segment frame it declares one of its whole size, and streaming decoders (the
 * recipe's, the zstd tool's, ours) then copy it through a 16 MiB buffer, out of the cache: 20-25%
 * slower on 512 MiB of random bytes. Such a frame gets a 1 MiB window descriptor instead (the
 * frame grows by that one byte; blocks and checksum unchanged). */
static void
zframe_narrow_window(unsigned char *f, size_t *n, size_t cap)
{
    if (*n < 5 || *n + 1 > cap) {
        return;
    }
    unsigned fhd = f[4];
    /* single-segment, no dictionary, a 4- or 8-byte content size (>= 64 KiB + 256) */
    if (!((fhd >> 5) & 1) || (fhd & 3) != 0 || (fhd >> 6) < 2) {
        return;
    }
    size_t pos = 5 + zhdr_rest(fhd);
    uint64_t fcs = 0;
    if (pos > *n) {
        return;
    }
    for (size_t i = pos; i > 5; i--) {
        fcs = (fcs << 8) | f[i - 1];
    }
    if (fcs <= ((uint64_t)1 << 20)) {
        return;
    }
    for (;;) {
        if (pos + 3 > *n) {
            return;
        }
        uint32_t b = (uint32_t)f[pos] | ((uint32_t)f[pos + 1] << 8) | ((uint32_t)f[pos + 2] << 16);
        unsigned type = (b >> 1) & 3;
        if (type > 1) {
            return; /* a compressed block: it may reference its window */
        }
        pos += 3 + (type == 0 ? (size_t)(b >> 3) : 1);
        if (b & 1) {
            break;
        }
    }
    memmove(f + 6, f + 5, *n - 5);
    f[4] = (unsigned char)(fhd & ~0x20u);
    f[5] = (20 - 10) << 3; /* window descriptor: 2^20 */
    *n += 1;
}

static int
zframe_compress(void *vctx, fj_bjob *job)
{
    zframe_ctx *ctx = vctx;
    size_t err = 0;
    void *c = zframe_cctx(ctx, &err);
    if (c == NULL) {
        job->failed = 1;
        if (err == 0) {
            job->nomem = 1;
        }
        else {
            snprintf(job->msg, sizeof(job->msg), "%s", ctx->api.error_name(err));
        }
        return -1;
    }
    size_t n = ctx->api.compress2(c, job->out, job->out_cap, job->in, job->in_len);
    int bad = ctx->api.is_error(n) != 0;
    if (bad) {
        job->failed = 1;
        snprintf(job->msg, sizeof(job->msg), "%s", ctx->api.error_name(n));
    }
    else {
        zframe_narrow_window((unsigned char *)job->out, &n, job->out_cap);
        job->out_len = n;
    }
    pthread_mutex_lock(&ctx->lock);
    if (!bad && ctx->nidle < ZSTD_CCTX_KEEP) {
        ctx->idle[ctx->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&ctx->lock);
    if (c != NULL) {
        ctx->api.free_cctx(c);
    }
    return bad ? -1 : 0;
}

static int
zframe_emit(void *ctx, fj_bjob *job, fj_writer *inner, int first)
{
    return fj_codec_put(inner, job->out, job->out_len);
}

static void
zframe_free_ctx(void *vctx)
{
    zframe_ctx *ctx = vctx;
    for (int i = 0; i < ctx->nidle; i++) {
        ctx->api.free_cctx(ctx->idle[i]);
    }
    pthread_mutex_destroy(&ctx->lock);
    zstd_api_close(&ctx->api);
    PyMem_RawFree(ctx);
}

/* final_job 2: an empty stream is one empty frame, as zstandard's stream_writer writes it */
static const fj_bcodec zframe_codec = {
    "zstd", ZSTD_FRAME, 0, 2, zframe_bound, zframe_compress, zframe_emit, NULL, zframe_free_ctx, 1,
};

fj_writer *
fj_zstd_writer(int level, int threads, fj_writer *inner)
{
    PyObject *mod = import_zstandard();
    if (mod == NULL) {
        inner->free(inner);
        return NULL;
    }
    if (level < 0) {
        level = 3;
    }
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
    zframe_ctx *ctx = PyMem_RawCalloc(1, sizeof(zframe_ctx));
    if (ctx == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    int bound = zstd_api_open(&ctx->api);
    if (bound != 1) {
        PyMem_RawFree(ctx);
        if (bound < 0) {
            goto error;
        }
        fj_writer *w = zstd_py_writer(mod, level, threads, inner);
        Py_DECREF(mod);
        return w;
    }
    Py_DECREF(mod);
    ctx->level = level;
    pthread_mutex_init(&ctx->lock, NULL);
    ctx->codec = zframe_codec;
    /* FASTJOBLIB_ZSTD_FRAME=<bytes>: another frame size, for the tests (many frames from little
     * data). Not a user setting. */
    const char *fs = getenv("FASTJOBLIB_ZSTD_FRAME");
    if (fs != NULL) {
        long long v = atoll(fs);
        if (v >= 1024 && v <= ((long long)1 << 30)) {
            ctx->codec.block_size = (size_t)v;
        }
    }
    return fj_bwriter_new(&ctx->codec, ctx, threads, inner); /* owns ctx and inner */
error:
    Py_DECREF(mod);
    inner->free(inner);
    return NULL;
}

/* ----- reader -------------------------------------------------------------------------------- */
/* Frame batches: a frame decoded one-shot has its content size in the header, at most ZF_MAX
 * (the writer's frames are 16 MiB); the input buffer grows to ZF_IN_CAP to hold whole frames. */
#define ZF_BATCH 8
#define ZF_MIN ((size_t)64 << 10) /* smaller frames: a pool round trip would cost more */
#define ZF_MAX ((size_t)32 << 20)
#define ZF_SCRATCH_MAX ((size_t)64 << 20) /* decoded ahead of the reads, at most */
#define ZF_IN_CAP (((size_t)33 << 20)) /* one 32 MiB frame, or two of ours, and more */
#define ZF_READ_HINT ((Py_ssize_t)64 << 20)

typedef struct {
    fj_task task; /* first member: the pool task */
    const zstd_api *api;
    void *dctx;
    const unsigned char *src;
    size_t csize, fcs, in_off;
    unsigned char *dst; /* NULL: scratch at scr_off (placed after the batch is planned) */
    size_t scr_off;
    int direct;
    int ok;
} zf_task;

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
    size_t in_len, in_pos, in_cap;
    int eof;
    int mid;              /* the streaming decoder is inside a frame */
    /* frame batches (zf_batch): whole frames with their content size decoded one-shot, several
     * at once on the pool, into the caller's memory or into scratch */
    int threads;
    int nofast;           /* a frame failed one-shot: the streaming decoder takes over */
    fj_pool *pool;
    void *fdctx[ZF_BATCH];
    zf_task tasks[ZF_BATCH];
    unsigned char *scratch;   /* decoded, not handed out yet: scratch[spos : spos + slen] */
    size_t scratch_cap, spos, slen;
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

/* ----- frame batches ------------------------------------------------------------------------ */
/* Bring more input: the unread bytes move to the front of a buffer grown up to ZF_IN_CAP. 1 when
 * bytes came, 0 when none can (end of input, or the buffer is full), -1 on error. */
static int
zf_more(zstd_reader *r)
{
    if (r->eof) {
        return 0;
    }
    if (r->in_pos > 0) {
        memmove(r->in, r->in + r->in_pos, r->in_len - r->in_pos);
        r->in_len -= r->in_pos;
        r->in_pos = 0;
    }
    if (r->in_len == r->in_cap) {
        if (r->in_cap >= ZF_IN_CAP) {
            return 0;
        }
        size_t ncap = r->in_cap * 2 < ZF_IN_CAP ? r->in_cap * 2 : ZF_IN_CAP;
        unsigned char *p = PyMem_RawRealloc(r->in, ncap);
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        r->in = p;
        r->in_cap = ncap;
    }
    Py_ssize_t n = r->inner->read(r->inner, (char *)r->in + r->in_len,
                                  (Py_ssize_t)(r->in_cap - r->in_len));
    if (n < 0) {
        return -1;
    }
    if (n == 0) {
        r->eof = 1;
        return 0;
    }
    zw_feed(&r->walk, r->in + r->in_len, (size_t)n); /* the walker sees every byte read */
    r->in_len += (size_t)n;
    return 1;
}

/* The frame at p[0:avail): 1 complete and one-shot-able (*csize, *fcs), 0 more input needed
 * (`more`: more may come), -1 for the streaming decoder (not a zstd frame, no content size, too
 * big, or corrupt: the streaming decoder gives the output and the error a serial read gives). */
static int
zf_probe(const zstd_api *a, const unsigned char *p, size_t avail, int more, size_t *csize,
         size_t *fcs)
{
    static const unsigned char magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
    if (avail < 4) {
        return more ? 0 : -1;
    }
    if (memcmp(p, magic, 4) != 0) {
        return -1;
    }
    unsigned long long c = a->frame_content_size(p, avail);
    if (c == ZSTD_CONTENTSIZE_ERROR_) {
        return more && avail < 18 ? 0 : -1; /* 18: the largest frame header */
    }
    if (c == ZSTD_CONTENTSIZE_UNKNOWN_ || c > ZF_MAX || c < ZF_MIN) {
        return -1;
    }
    /* Only frames whose window holds all of their content (single-segment frames, or a window
     * at least the content size, as ours): in others a block or a match distance may exceed the
     * window, which one-shot decoding would accept and the streaming decoder rejects. A window
     * above the streaming decoder's limit (2^27) also goes to it, for its verdict. */
    if (!(p[4] & 0x20)) {
        unsigned wd = p[5], wlog = 10 + (wd >> 3);
        if (wlog > 27 || (wlog == 27 && (wd & 7) != 0)) {
            return -1;
        }
        uint64_t wsize = ((uint64_t)1 << wlog) + (((uint64_t)1 << wlog) >> 3) * (wd & 7);
        if (wsize < c) {
            return -1;
        }
    }
    /* A frame that starts with a stored (raw) block holds incompressible data: decoding it is a
     * copy, which the streaming decoder does from 1 MiB reads still in the cache (2.9 GB/s on 512
     * MiB of random bytes here) where whole frames read ahead and copied on two cores were slower
     * (2.0 GB/s). */
    size_t hlen = 5 + zhdr_rest(p[4]);
    if (avail < hlen + 3) {
        return more ? 0 : -1;
    }
    if (((p[hlen] >> 1) & 3) == 0 && c > 0) {
        return -1;
    }
    size_t n = a->find_frame_csize(p, avail);
    if (a->is_error(n)) {
        /* incomplete, or corrupt: a valid frame of c bytes is at most its blocks (raw ones at
         * worst, 3 header bytes per 128 KiB) plus header and checksum */
        size_t limit = (size_t)c + 3 * ((size_t)c / (128 << 10) + 1) + 64;
        return more && avail < limit ? 0 : -1;
    }
    *csize = n;
    *fcs = (size_t)c;
    return 1;
}

static void
zf_run(fj_task *task)
{
    zf_task *t = (zf_task *)task;
    size_t n = t->api->decompress_dctx(t->dctx, t->dst, t->fcs, t->src, t->csize);
    t->ok = !t->api->is_error(n) && n == t->fcs;
}

/* At a frame boundary of the streaming decoder (and nothing in scratch): plan the complete
 * frames ahead (those that fit go to dst[0:room) in order, then up to `threads` frames, or one
 * after direct ones, to scratch, at most ZF_SCRATCH_MAX unless one frame is more), decode them
 * (pool or inline, GIL released), keep the good ones in order. 1: progress (*made bytes in dst, maybe scratch filled); 0: nothing done, the
 * streaming decoder goes on from here (a failed frame is left for it, so output and errors are
 * those of a serial read); -1: error (exception set; no worker runs any more). */
static int
zf_batch(zstd_reader *r, unsigned char *dst, size_t room, size_t *made)
{
    *made = 0;
    int nb = 0, ndirect = 0, nscr = 0;
    size_t off = 0, planned = 0, scr = 0;
    while (nb < ZF_BATCH) {
        size_t csize = 0, fcs = 0;
        int rc = zf_probe(&r->api, r->in + r->in_pos + off, r->in_len - r->in_pos - off,
                          !r->eof && (r->in_pos > 0 || r->in_len < ZF_IN_CAP), &csize, &fcs);
        if (rc == 0) {
            int m = zf_more(r);
            if (m < 0) {
                return -1;
            }
            continue; /* the probe is asked again: at the end of input it answers -1 */
        }
        if (rc < 0) {
            break;
        }
        zf_task *t = &r->tasks[nb];
        t->csize = csize;
        t->fcs = fcs;
        t->in_off = off;
        if (nscr == 0 && room - planned >= fcs) {
            t->dst = dst + planned;
            t->direct = 1;
            planned += fcs;
            ndirect++;
        }
        else {
            if (nscr >= (ndirect == 0 ? r->threads : 1) || (nscr > 0 && scr + fcs > ZF_SCRATCH_MAX)) {
                break;
            }
            t->dst = NULL;
            t->direct = 0;
            t->scr_off = scr;
            scr += fcs;
            nscr++;
        }
        off += csize;
        nb++;
    }
    if (nb == 0 || (nb == 1 && ndirect == 0)) {
        return 0; /* one frame into scratch gains nothing over the streaming decoder */
    }
    if (scr > r->scratch_cap) {
        PyMem_RawFree(r->scratch);
        r->scratch_cap = 0;
        if ((r->scratch = PyMem_RawMalloc(scr)) == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        r->scratch_cap = scr;
    }
    for (int i = 0; i < nb; i++) {
        zf_task *t = &r->tasks[i];
        if (r->fdctx[i] == NULL && (r->fdctx[i] = r->api.create_dctx()) == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->task.fn = zf_run;
        t->task.state = FJ_TASK_IDLE;
        t->api = &r->api;
        t->dctx = r->fdctx[i];
        t->src = r->in + r->in_pos + t->in_off;
        if (t->dst == NULL) {
            t->dst = r->scratch + t->scr_off;
        }
        t->ok = 0;
    }
    int use_pool = r->threads > 1 && nb > 1;
    if (use_pool && r->pool == NULL && (r->pool = fj_pool_new(r->threads)) == NULL) {
        use_pool = 0; /* decode inline */
    }
    if (use_pool) {
        for (int i = 0; i < nb; i++) {
            fj_pool_submit(r->pool, &r->tasks[i].task);
        }
        for (int i = 0; i < nb; i++) {
            if (fj_wait_interruptible(r->pool, &r->tasks[i].task) < 0) {
                return -1; /* the pool was cancelled: no task runs */
            }
        }
    }
    else {
        for (int i = 0; i < nb; i++) {
            Py_BEGIN_ALLOW_THREADS
            zf_run(&r->tasks[i].task);
            Py_END_ALLOW_THREADS
            if (!r->tasks[i].ok) {
                break;
            }
            if (i + 1 < nb && fj_check_interrupt() < 0) {
                return -1;
            }
        }
    }
    int good = 0;
    size_t used = 0;
    for (; good < nb && r->tasks[good].ok; good++) {
        zf_task *t = &r->tasks[good];
        used = t->in_off + t->csize;
        if (t->direct) {
            *made += t->fcs;
        }
        else {
            r->slen += t->fcs;
        }
    }
    r->spos = 0;
    r->in_pos += used;
    if (good < nb) {
        r->nofast = 1;
    }
    r->base.read_hint = ZF_READ_HINT;
    return good > 0 ? 1 : 0;
}

/* Direct mode. The end-of-input verdict is the walker's, as in the Python path (same texts). */
static Py_ssize_t
zstd_r_read_direct(zstd_reader *r, char *buf, Py_ssize_t len)
{
    Py_ssize_t produced = 0;
    const unsigned long mark = fj_interrupt_mark();
    while (!r->finished && produced < len) {
        /* (a batch waits interruptibly, but short ones, and streamed frames, come back here) */
        if (fj_check_interrupt() < 0) {
            goto error;
        }
        if (r->slen > 0) {
            size_t k = r->slen < (size_t)(len - produced) ? r->slen : (size_t)(len - produced);
            memcpy(buf + produced, r->scratch + r->spos, k);
            r->spos += k;
            r->slen -= k;
            produced += (Py_ssize_t)k;
            continue;
        }
        if (!r->mid && !r->nofast) {
            size_t made = 0;
            int rc = zf_batch(r, (unsigned char *)buf + produced, (size_t)(len - produced), &made);
            produced += (Py_ssize_t)made;
            if (rc < 0) {
                goto error;
            }
            if (rc > 0) {
                continue;
            }
        }
        zstd_out_buffer out = {buf + produced, (size_t)(len - produced), 0};
        zstd_in_buffer in = {r->in, r->in_len, r->in_pos};
        size_t ret;
        Py_BEGIN_ALLOW_THREADS
        ret = r->api.decompress_stream(r->dctx, &out, &in);
        Py_END_ALLOW_THREADS
        if (in.pos != r->in_pos || out.pos != 0) { /* (a call on no input leaves it where it was) */
            r->mid = ret != 0; /* 0: a frame ended and was flushed */
        }
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
            Py_ssize_t n = r->inner->read(r->inner, (char *)r->in, ZSTD_IN_SIZE); /* <= in_cap */
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
    if (r->pool != NULL) {
        Py_BEGIN_ALLOW_THREADS
        fj_pool_free(r->pool);
        Py_END_ALLOW_THREADS
    }
    if (r->dctx != NULL) {
        r->api.free_dctx(r->dctx);
    }
    for (int i = 0; i < ZF_BATCH; i++) {
        if (r->fdctx[i] != NULL) {
            r->api.free_dctx(r->fdctx[i]);
        }
    }
    zstd_api_close(&r->api);
    PyMem_RawFree(r->scratch);
    PyMem_RawFree(r->in);
    if (r->inner != NULL) {
        r->inner->free(r->inner);
    }
    PyMem_RawFree(r);
}

fj_reader *
fj_zstd_reader(int threads, fj_reader *inner)
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
        r->in_cap = ZSTD_IN_SIZE;
        r->threads = fj_codec_threads(threads);
        if (r->threads > ZF_BATCH) {
            r->threads = ZF_BATCH; /* a batch has at most ZF_BATCH frames */
        }
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
