/* codec_lz4.c: LZ4 frames through the `lz4` package (no system headers needed).
 *
 * Writer: the input is cut into 1 MiB jobs for the worker threads; a job is 8 frame blocks of
 * 128 KiB, each compressed independently by lz4.block.compress (the job takes the GIL for its calls;
 * the package releases it while compressing), framed here as ONE standard LZ4 frame (LZ4 frame
 * format 1.6.x): magic, FLG = version 01 | independent blocks | block checksums, BD = 256 KB max
 * block, header checksum (xxh32 >> 8); per block a 4-byte size (high bit = stored uncompressed),
 * the data and its xxh32 (computed without the GIL); end mark 0. lz4.frame /
 * LZ4FrameFile (joblib's reader) read it.
 * Reader: lz4.frame's low-level decompression context, bounded output per call, input from our
 * bounded buffer; concatenated frames are read, anything else after the end is ignored.
 */
#include "fj.h"
#include "codec.h"

#include <string.h>

#define LZ4_JOB (1u << 20)        /* input per worker job */
#define LZ4_SUB (128u * 1024)     /* input per frame block (fast on incompressible data) */
#define LZ4_BD_256KB 0x50
#define LZ4_FLG (0x40 | 0x20 | 0x10) /* version 01, block independence, block checksum */
#define LZ4_INPUT (256 * 1024)
#define LZ4_MAX_OUT (4u << 20)

static const char LZ4_NOT_INSTALLED_ERROR[] =
    "LZ4 is not installed. Install it with pip: https://python-lz4.readthedocs.io/";

/* ----- xxHash32, from the xxHash specification ----------------------------------------------- */
#define XXP1 2654435761u
#define XXP2 2246822519u
#define XXP3 3266489917u
#define XXP4 668265263u
#define XXP5 374761393u

static inline uint32_t
rotl32(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}

static inline uint32_t
load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint32_t
xx_round(uint32_t acc, uint32_t lane)
{
    acc += lane * XXP2;
    acc = rotl32(acc, 13);
    return acc * XXP1;
}

static uint32_t
xxh32(const void *data, size_t len, uint32_t seed)
{
    const unsigned char *p = data, *end = p + len;
    uint32_t h;
    if (len >= 16) {
        uint32_t v1 = seed + XXP1 + XXP2, v2 = seed + XXP2, v3 = seed, v4 = seed - XXP1;
        const unsigned char *limit = end - 16;
        do {
            v1 = xx_round(v1, load_le32(p));
            v2 = xx_round(v2, load_le32(p + 4));
            v3 = xx_round(v3, load_le32(p + 8));
            v4 = xx_round(v4, load_le32(p + 12));
            p += 16;
        } while (p <= limit);
        h = rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) + rotl32(v4, 18);
    }
    else {
        h = seed + XXP5;
    }
    h += (uint32_t)len;
    while (end - p >= 4) {
        h += load_le32(p) * XXP3;
        h = rotl32(h, 17) * XXP4;
        p += 4;
    }
    while (p < end) {
        h += (uint32_t)(*p) * XXP5;
        h = rotl32(h, 11) * XXP1;
        p++;
    }
    h ^= h >> 15;
    h *= XXP2;
    h ^= h >> 13;
    h *= XXP3;
    h ^= h >> 16;
    return h;
}

static void
store_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* Import lz4.<sub>; a missing package becomes ImportError(joblib's text) caused by the original. */
static PyObject *
import_lz4(const char *sub)
{
    PyObject *m = PyImport_ImportModule(sub);
    if (m == NULL && PyErr_ExceptionMatches(PyExc_ImportError)) {
        PyObject *t, *v, *tb, *t2, *v2, *tb2;
        PyErr_Fetch(&t, &v, &tb);
        PyErr_NormalizeException(&t, &v, &tb);
        PyErr_SetString(PyExc_ImportError, LZ4_NOT_INSTALLED_ERROR);
        PyErr_Fetch(&t2, &v2, &tb2);
        PyErr_NormalizeException(&t2, &v2, &tb2);
        if (v != NULL && v2 != NULL) {
            PyException_SetCause(v2, Py_NewRef(v)); /* steals the new reference */
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
    PyObject *compress;   /* lz4.block.compress */
    PyObject *kwargs;
} lz4_ctx;

static size_t
lz4_bound(void *ctx, size_t len)
{
    /* blocks that do not shrink are stored: 8 bytes of framing per block at most */
    return len + 8 * (len / LZ4_SUB + 1) + 16;
}

static int
lz4_block(void *vctx, fj_bjob *job)
{
    lz4_ctx *ctx = vctx;
    int ok = 1;
    size_t pos = 0;
    PyGILState_STATE g = PyGILState_Ensure();
    for (size_t off = 0; off < job->in_len; off += LZ4_SUB) {
        size_t n = job->in_len - off < LZ4_SUB ? job->in_len - off : LZ4_SUB;
        const char *src = job->in + off;
        unsigned char *hdr = (unsigned char *)job->out + pos;
        PyObject *res = NULL;
        PyObject *mv = PyMemoryView_FromMemory((char *)src, (Py_ssize_t)n, PyBUF_READ);
        if (mv != NULL) {
            PyObject *args = PyTuple_Pack(1, mv);
            if (args != NULL) {
                res = PyObject_Call(ctx->compress, args, ctx->kwargs);
                Py_DECREF(args);
            }
            Py_DECREF(mv);
        }
        if (res != NULL && !PyBytes_Check(res)) {
            PyErr_SetString(PyExc_TypeError, "lz4.block.compress did not return bytes");
            Py_CLEAR(res);
        }
        if (res == NULL) {
            ok = 0;
            break;
        }
        size_t m = (size_t)PyBytes_GET_SIZE(res);
        if (m > 0 && m < n) {
            memcpy(hdr + 4, PyBytes_AS_STRING(res), m);
            store_le32(hdr, (uint32_t)m);
        }
        else {
            memcpy(hdr + 4, src, n);
            store_le32(hdr, (uint32_t)n | 0x80000000u); /* stored */
            m = n;
        }
        Py_DECREF(res);
        pos += 4 + m + 4; /* the checksum is filled in below, without the GIL */
    }
    if (!ok) {
        PyErr_Fetch(&job->exc_type, &job->exc_value, &job->exc_tb);
        job->failed = 1;
    }
    PyGILState_Release(g);
    if (!ok) {
        return -1;
    }
    job->out_len = pos;
    for (size_t p = 0; p < pos;) {
        const unsigned char *hdr = (const unsigned char *)job->out + p;
        size_t m = load_le32(hdr) & 0x7fffffffu;
        store_le32((unsigned char *)job->out + p + 4 + m, xxh32(hdr + 4, m, 0));
        p += 4 + m + 4;
    }
    return 0;
}

static int
lz4_header(fj_writer *inner)
{
    unsigned char h[7] = {0x04, 0x22, 0x4d, 0x18, LZ4_FLG, LZ4_BD_256KB, 0};
    h[6] = (unsigned char)((xxh32(h + 4, 2, 0) >> 8) & 0xff);
    return fj_codec_put(inner, h, sizeof(h));
}

static int
lz4_emit(void *ctx, fj_bjob *job, fj_writer *inner, int first)
{
    if (first && lz4_header(inner) < 0) {
        return -1;
    }
    return fj_codec_put(inner, job->out, job->out_len);
}

static int
lz4_finish(void *ctx, fj_writer *inner, int64_t nemitted, uint64_t total_in)
{
    unsigned char end[4] = {0, 0, 0, 0};
    if (nemitted == 0 && lz4_header(inner) < 0) {
        return -1;
    }
    return fj_codec_put(inner, end, 4);
}

static void
lz4_free_ctx(void *vctx)
{
    lz4_ctx *ctx = vctx;
    Py_XDECREF(ctx->compress);
    Py_XDECREF(ctx->kwargs);
    PyMem_RawFree(ctx);
}

static const fj_bcodec lz4_codec = {
    "lz4", LZ4_JOB, 0, 0, lz4_bound, lz4_block, lz4_emit, lz4_finish, lz4_free_ctx,
};

fj_writer *
fj_lz4_writer(int level, int threads, fj_writer *inner)
{
    lz4_ctx *ctx = NULL;
    PyObject *mod = NULL;
    if (level < 0) {
        level = 0;
    }
    if (level > 16) {
        PyErr_Format(PyExc_ValueError, "lz4 compression level must be between 0 and 16, got %d",
                     level);
        goto error;
    }
    if ((mod = import_lz4("lz4.block")) == NULL) {
        goto error;
    }
    if ((ctx = PyMem_RawCalloc(1, sizeof(lz4_ctx))) == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    if ((ctx->compress = PyObject_GetAttrString(mod, "compress")) == NULL) {
        goto error;
    }
    /* lz4.frame semantics: levels 0..2 are the fast compressor, 3+ the HC one (clamped to 12) */
    if (level < 3) {
        ctx->kwargs = Py_BuildValue("{s:O}", "store_size", Py_False);
    }
    else {
        ctx->kwargs = Py_BuildValue("{s:s,s:i,s:O}", "mode", "high_compression", "compression",
                                    level > 12 ? 12 : level, "store_size", Py_False);
    }
    if (ctx->kwargs == NULL) {
        goto error;
    }
    Py_DECREF(mod);
    return fj_bwriter_new(&lz4_codec, ctx, threads, inner);
error:
    Py_XDECREF(mod);
    if (ctx != NULL) {
        lz4_free_ctx(ctx);
    }
    inner->free(inner);
    return NULL;
}

/* ----- reader -------------------------------------------------------------------------------- */
typedef struct {
    fj_reader base;
    fj_reader *inner;
    PyObject *dctx;           /* lz4.frame decompression context */
    PyObject *decompress;     /* lz4.frame.decompress_chunk */
    PyObject *reset;          /* lz4.frame.reset_decompression_context */
    PyObject *kwargs;         /* {"max_length": ...} rebuilt per call */
    unsigned char *ibuf;
    size_t ipos, ilen;
    int input_eof, in_frame, finished, failed;
} lz4_reader;

static Py_ssize_t
lz4r_fill(lz4_reader *r)
{
    if (r->ilen == 0) {
        r->ipos = 0;
    }
    else if (r->ipos > 0) {
        memmove(r->ibuf, r->ibuf + r->ipos, r->ilen);
        r->ipos = 0;
    }
    Py_ssize_t n = r->inner->read(r->inner, (char *)r->ibuf + r->ilen,
                                  (Py_ssize_t)(LZ4_INPUT - r->ilen));
    if (n < 0) {
        return -1;
    }
    if (n == 0) {
        r->input_eof = 1;
    }
    r->ilen += (size_t)n;
    return n;
}

static Py_ssize_t
lz4r_read(fj_reader *self, char *buf, Py_ssize_t len)
{
    lz4_reader *r = (lz4_reader *)self;
    size_t produced = 0;
    if (r->failed) {
        PyErr_SetString(PyExc_ValueError, "lz4: stream failed earlier");
        return -1;
    }
    while (!r->finished && produced < (size_t)len) {
        if (r->ilen == 0 && !r->input_eof && lz4r_fill(r) < 0) {
            goto error;
        }
        size_t want = (size_t)len - produced;
        if (want > LZ4_MAX_OUT) {
            want = LZ4_MAX_OUT;
        }
        PyObject *mv = PyMemoryView_FromMemory((char *)r->ibuf + r->ipos, (Py_ssize_t)r->ilen,
                                               PyBUF_READ);
        if (mv == NULL) {
            goto error;
        }
        PyObject *res = NULL, *ml = PyLong_FromSize_t(want);
        if (ml != NULL && PyDict_SetItemString(r->kwargs, "max_length", ml) == 0) {
            PyObject *args = PyTuple_Pack(2, r->dctx, mv);
            if (args != NULL) {
                res = PyObject_Call(r->decompress, args, r->kwargs);
                Py_DECREF(args);
            }
        }
        Py_XDECREF(ml);
        Py_DECREF(mv);
        if (res == NULL) {
            goto error;
        }
        PyObject *out, *nread, *eof;
        if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 3 ||
            !PyBytes_Check(out = PyTuple_GET_ITEM(res, 0))) { /* borrowed */
            Py_DECREF(res);
            PyErr_SetString(PyExc_TypeError, "unexpected result from lz4.frame.decompress_chunk");
            goto error;
        }
        nread = PyTuple_GET_ITEM(res, 1); /* borrowed */
        eof = PyTuple_GET_ITEM(res, 2);   /* borrowed */
        size_t used = PyLong_AsSize_t(nread);
        int is_eof = PyObject_IsTrue(eof);
        size_t made = (size_t)PyBytes_GET_SIZE(out);
        if ((used == (size_t)-1 && PyErr_Occurred()) || is_eof < 0 || used > r->ilen ||
            made > want) {
            Py_DECREF(res);
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "lz4: inconsistent decompressor result");
            }
            goto error;
        }
        memcpy(buf + produced, PyBytes_AS_STRING(out), made);
        Py_DECREF(res);
        produced += made;
        r->ipos += used;
        r->ilen -= used;
        if (used > 0) {
            r->in_frame = 1;
        }
        if (is_eof) {
            r->in_frame = 0;
            /* another frame follows? */
            while (r->ilen < 4 && !r->input_eof) {
                if (lz4r_fill(r) < 0) {
                    goto error;
                }
            }
            if (r->ilen >= 4 && memcmp(r->ibuf + r->ipos, "\x04\x22\x4d\x18", 4) == 0) {
                PyObject *t = PyObject_CallOneArg(r->reset, r->dctx);
                if (t == NULL) {
                    goto error;
                }
                Py_DECREF(t);
                continue;
            }
            r->finished = 1; /* anything else after the end is ignored */
            break;
        }
        if (used == 0 && made == 0) {
            if (r->ilen == 0 && r->input_eof) {
                fj_codec_raise_truncated();
                goto error;
            }
            if (r->ilen > 0) {
                Py_ssize_t n = r->ilen < LZ4_INPUT && !r->input_eof ? lz4r_fill(r) : 0;
                if (n < 0) {
                    goto error;
                }
                if (n == 0) {
                    PyErr_SetString(PyExc_ValueError,
                                    "lz4: invalid compressed data: decoder made no progress");
                    goto error;
                }
            }
        }
    }
    return (Py_ssize_t)produced;
error:
    r->failed = 1;
    return -1;
}

static void
lz4r_free(fj_reader *self)
{
    lz4_reader *r = (lz4_reader *)self;
    Py_XDECREF(r->dctx);
    Py_XDECREF(r->decompress);
    Py_XDECREF(r->reset);
    Py_XDECREF(r->kwargs);
    PyMem_RawFree(r->ibuf);
    if (r->inner != NULL) {
        r->inner->free(r->inner);
    }
    PyMem_RawFree(r);
}

fj_reader *
fj_lz4_reader(fj_reader *inner)
{
    PyObject *mod = NULL;
    lz4_reader *r = PyMem_RawCalloc(1, sizeof(lz4_reader));
    if (r == NULL) {
        inner->free(inner);
        PyErr_NoMemory();
        return NULL;
    }
    r->base.read = lz4r_read;
    r->base.free = lz4r_free;
    r->inner = inner;
    r->in_frame = 1; /* an empty input is a truncated frame */
    if ((r->ibuf = PyMem_RawMalloc(LZ4_INPUT)) == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    if ((mod = import_lz4("lz4.frame")) == NULL ||
        (r->decompress = PyObject_GetAttrString(mod, "decompress_chunk")) == NULL ||
        (r->reset = PyObject_GetAttrString(mod, "reset_decompression_context")) == NULL ||
        (r->kwargs = PyDict_New()) == NULL) {
        goto error;
    }
    if ((r->dctx = PyObject_CallMethod(mod, "create_decompression_context", NULL)) == NULL) {
        goto error;
    }
    Py_DECREF(mod);
    return &r->base;
error:
    Py_XDECREF(mod);
    lz4r_free(&r->base);
    return NULL;
}
