/* codec_lz4.c: LZ4 frames (LZ4 frame format 1.6.x), compressed and decoded in C with liblz4's
 * functions taken from the `lz4` package's own extension module (no system lz4 needed).
 *
 * liblz4: python-lz4 links liblz4 statically into lz4.block._block and exports its symbols. After
 * importing lz4.block we dlopen that module's file with RTLD_NOLOAD (it is already loaded: no new
 * copy) and dlsym the few functions we need; each stream keeps its own handle (dlclose on free).
 * If anything is missing (another build of the package), or FASTJOBLIB_LZ4_PYTHON is set in the
 * environment (used by the tests), the streams fall back to the package's Python API (below).
 *
 * Writer: the input is cut into 1 MiB jobs for the worker threads; a job is 8 frame blocks of
 * 128 KiB, 4 frame blocks of
 for levels 0..2, LZ4_compress_HC for
 * 3+, as lz4.frame maps compression_level), framed here as ONE standard LZ4 frame: magic,
 * FLG = version 01 | independent blocks | block checksums, BD = 256 KB max block, header checksum
 * (xxh32 >> 8); per block a 4-byte size (high bit = stored uncompressed), the data and its xxh32;
 * end mark 0. lz4.frame / LZ4FrameFile (joblib's reader) read it.
 *
 * Reader: a complete frame parser (header checksum, content size, dictionary id, block and content
 * checksums, stored blocks, skippable frames, concatenated frames; anything that is not a frame
 * after the first complete one is ignored, like before). The input sits in one bounded buffer;
 * each batch of complete blocks in it is decoded with the GIL released, straight into the
 * caller's memory when the caller's room holds a whole block (a block that does not fit goes to a
 * scratch buffer and is handed out over the following reads). Independent-block frames (ours) are
 * decoded in parallel on the worker pool, a block placed at "previous blocks full-sized" and moved
 * down afterwards if an earlier one came out shorter; linked-block frames (lz4.frame's default,
 * what joblib writes) are decoded serially with LZ4_decompress_safe_usingDict and the previous
 * 64 KiB as dictionary, on a worker too. While a batch decodes, the caller's thread reads the next
 * input into a second buffer. Memory: two input buffers of max(threads x 2 MiB, 8 MiB), one
 * scratch block, 128 KiB of history. Every length read from the input is checked before use.
 */
#include "fj.h"
#include "codec.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define LZ4_JOB (1u << 20)        /* input per worker job */
#define LZ4_SUB (256u * 1024)     /* input per frame block = the BD maximum: a reader can place blocks */
#define LZ4_BD_256KB 0x50
#define LZ4_FLG (0x40 | 0x20 | 0x10) /* version 01, block independence, block checksum */
#define LZ4_INPUT (256 * 1024)
#define LZ4_MAX_OUT (4u << 20)

#define LZ4_MAGIC 0x184D2204u
#define LZ4_SKIP_MAGIC 0x184D2A50u  /* 0x184D2A50 .. 0x184D2A5F */
#define LZ4_HIST (64u * 1024)       /* history of linked blocks */
#define LZ4_TASK_OUT (1u << 20)     /* output per decode task (consecutive blocks) */
#define LZ4_MAX_BLOCKS 1024         /* blocks per decode batch */
#define LZ4_BATCH_PER_THREAD (2u << 20) /* compressed input per batch and thread */

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

/* The tail (< 16 bytes) and the avalanche, shared by the one-shot and streaming forms. */
static uint32_t
xx_finish(uint32_t h, const unsigned char *p, size_t len)
{
    const unsigned char *end = p + len;
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
    return xx_finish(h, p, (size_t)(end - p));
}

/* Streaming xxh32 (seed 0), for the frame content checksum. */
typedef struct {
    uint32_t v[4];
    uint64_t total;
    unsigned char mem[16];
    size_t memlen;
} xxh32_state;

static void
xxs_reset(xxh32_state *s)
{
    s->v[0] = XXP1 + XXP2;
    s->v[1] = XXP2;
    s->v[2] = 0;
    s->v[3] = 0u - XXP1;
    s->total = 0;
    s->memlen = 0;
}

static inline void
xxs_stripe(xxh32_state *s, const unsigned char *p)
{
    s->v[0] = xx_round(s->v[0], load_le32(p));
    s->v[1] = xx_round(s->v[1], load_le32(p + 4));
    s->v[2] = xx_round(s->v[2], load_le32(p + 8));
    s->v[3] = xx_round(s->v[3], load_le32(p + 12));
}

static void
xxs_update(xxh32_state *s, const unsigned char *p, size_t n)
{
    s->total += n;
    if (s->memlen + n < 16) {
        memcpy(s->mem + s->memlen, p, n);
        s->memlen += n;
        return;
    }
    if (s->memlen > 0) {
        size_t k = 16 - s->memlen;
        memcpy(s->mem + s->memlen, p, k);
        xxs_stripe(s, s->mem);
        p += k;
        n -= k;
        s->memlen = 0;
    }
    uint32_t v1 = s->v[0], v2 = s->v[1], v3 = s->v[2], v4 = s->v[3];
    while (n >= 16) {
        v1 = xx_round(v1, load_le32(p));
        v2 = xx_round(v2, load_le32(p + 4));
        v3 = xx_round(v3, load_le32(p + 8));
        v4 = xx_round(v4, load_le32(p + 12));
        p += 16;
        n -= 16;
    }
    s->v[0] = v1;
    s->v[1] = v2;
    s->v[2] = v3;
    s->v[3] = v4;
    memcpy(s->mem, p, n);
    s->memlen = n;
}

static uint32_t
xxs_digest(const xxh32_state *s)
{
    uint32_t h;
    if (s->total >= 16) {
        h = rotl32(s->v[0], 1) + rotl32(s->v[1], 7) + rotl32(s->v[2], 12) + rotl32(s->v[3], 18);
    }
    else {
        h = XXP5;
    }
    h += (uint32_t)s->total;
    return xx_finish(h, s->mem, s->memlen);
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

/* ----- liblz4 from the lz4 package ----------------------------------------------------------- */
typedef struct {
    void *handle; /* dlopen handle of lz4.block._block, or NULL: use the Python API */
    int (*compress_fast)(const char *src, char *dst, int srcSize, int dstCap, int accel);
    int (*compress_hc)(const char *src, char *dst, int srcSize, int dstCap, int level);
    int (*decompress_safe)(const char *src, char *dst, int srcSize, int dstCap);
    int (*decompress_dict)(const char *src, char *dst, int srcSize, int dstCap,
                           const char *dict, int dictSize);
} lz4_api;

static void
api_close(lz4_api *api)
{
    if (api->handle != NULL) {
        dlclose(api->handle);
    }
    memset(api, 0, sizeof(*api));
}

/* Import lz4.block (ImportError with joblib's text when missing: -1) and try to bind liblz4.
 * 0 with api->handle set, or 0 with api->handle NULL (use the Python API). */
static int
api_open(lz4_api *api)
{
    PyObject *mod = NULL, *ext = NULL, *file = NULL, *path = NULL;
    void *h = NULL;
    int rc = -1;
    memset(api, 0, sizeof(*api));
    if ((mod = import_lz4("lz4.block")) == NULL) {
        goto done;
    }
    rc = 0;
    const char *force = getenv("FASTJOBLIB_LZ4_PYTHON");
    if (force != NULL && force[0] != '\0' && strcmp(force, "0") != 0) {
        goto done;
    }
    if ((ext = PyImport_ImportModule("lz4.block._block")) == NULL ||
        (file = PyObject_GetAttrString(ext, "__file__")) == NULL || !PyUnicode_Check(file) ||
        (path = PyUnicode_EncodeFSDefault(file)) == NULL) {
        PyErr_Clear();
        goto done;
    }
    h = dlopen(PyBytes_AS_STRING(path), RTLD_NOW | RTLD_NOLOAD);
    if (h == NULL) {
        h = dlopen(PyBytes_AS_STRING(path), RTLD_NOW | RTLD_LOCAL);
    }
    if (h == NULL) {
        goto done;
    }
    int (*version)(void);
    *(void **)&version = dlsym(h, "LZ4_versionNumber");
    *(void **)&api->compress_fast = dlsym(h, "LZ4_compress_fast");
    *(void **)&api->compress_hc = dlsym(h, "LZ4_compress_HC");
    *(void **)&api->decompress_safe = dlsym(h, "LZ4_decompress_safe");
    *(void **)&api->decompress_dict = dlsym(h, "LZ4_decompress_safe_usingDict");
    if (version == NULL || version() < 10800 || api->compress_fast == NULL ||
        api->compress_hc == NULL || api->decompress_safe == NULL || api->decompress_dict == NULL) {
        dlclose(h);
        memset(api, 0, sizeof(*api));
        goto done;
    }
    api->handle = h;
done:
    Py_XDECREF(path);
    Py_XDECREF(file);
    Py_XDECREF(ext);
    Py_XDECREF(mod);
    return rc;
}

/* ----- writer -------------------------------------------------------------------------------- */
typedef struct {
    lz4_api api;          /* api.handle NULL: the Python API below */
    int level;            /* lz4.frame compression_level (0..16) */
    PyObject *compress;   /* lz4.block.compress (Python path only) */
    PyObject *kwargs;
} lz4_ctx;

static size_t
lz4_bound(void *ctx, size_t len)
{
    /* blocks that do not shrink are stored: 8 bytes of framing per block at most */
    return len + 8 * (len / LZ4_SUB + 1) + 16;
}

/* Compress through the Python API (takes the GIL). Block data only; checksums by the caller. */
static int
lz4_block_py(lz4_ctx *ctx, fj_bjob *job, size_t *out_pos)
{
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
        pos += 4 + m + 4; /* the checksum is filled in by the caller, without the GIL */
    }
    if (!ok) {
        PyErr_Fetch(&job->exc_type, &job->exc_value, &job->exc_tb);
        job->failed = 1;
    }
    PyGILState_Release(g);
    *out_pos = pos;
    return ok ? 0 : -1;
}

static int
lz4_block(void *vctx, fj_bjob *job)
{
    lz4_ctx *ctx = vctx;
    size_t pos = 0;
    if (ctx->api.handle == NULL) {
        if (lz4_block_py(ctx, job, &pos) < 0) {
            return -1;
        }
        for (size_t p = 0; p < pos;) {
            const unsigned char *hdr = (const unsigned char *)job->out + p;
            size_t m = load_le32(hdr) & 0x7fffffffu;
            store_le32((unsigned char *)job->out + p + 4 + m, xxh32(hdr + 4, m, 0));
            p += 4 + m + 4;
        }
        job->out_len = pos;
        return 0;
    }
    for (size_t off = 0; off < job->in_len; off += LZ4_SUB) {
        int n = (int)(job->in_len - off < LZ4_SUB ? job->in_len - off : LZ4_SUB);
        const char *src = job->in + off;
        unsigned char *hdr = (unsigned char *)job->out + pos;
        /* at most n - 1 bytes: a block that does not shrink is stored */
        int m = ctx->level < 3
                    ? ctx->api.compress_fast(src, (char *)hdr + 4, n, n - 1, 1)
                    : ctx->api.compress_hc(src, (char *)hdr + 4, n, n - 1,
                                           ctx->level > 12 ? 12 : ctx->level);
        if (m > 0 && m < n) {
            store_le32(hdr, (uint32_t)m);
        }
        else {
            memcpy(hdr + 4, src, (size_t)n);
            store_le32(hdr, (uint32_t)n | 0x80000000u);
            m = n;
        }
        store_le32(hdr + 4 + m, xxh32(hdr + 4, (size_t)m, 0));
        pos += 4 + (size_t)m + 4;
    }
    job->out_len = pos;
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
    api_close(&ctx->api);
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
    if ((ctx = PyMem_RawCalloc(1, sizeof(lz4_ctx))) == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    ctx->level = level;
    if (api_open(&ctx->api) < 0) {
        goto error;
    }
    if (ctx->api.handle == NULL) {
        if ((mod = import_lz4("lz4.block")) == NULL ||
            (ctx->compress = PyObject_GetAttrString(mod, "compress")) == NULL) {
            goto error;
        }
        /* lz4.frame semantics: levels 0..2 are the fast compressor, 3+ the HC one (max 12) */
        if (level < 3) {
            ctx->kwargs = Py_BuildValue("{s:O}", "store_size", Py_False);
        }
        else {
            ctx->kwargs = Py_BuildValue("{s:s,s:i,s:O}", "mode", "high_compression",
                                        "compression", level > 12 ? 12 : level, "store_size",
                                        Py_False);
        }
        if (ctx->kwargs == NULL) {
            goto error;
        }
        Py_CLEAR(mod);
    }
    return fj_bwriter_new(&lz4_codec, ctx, threads, inner);
error:
    Py_XDECREF(mod);
    if (ctx != NULL) {
        lz4_free_ctx(ctx);
    }
    inner->free(inner);
    return NULL;
}

/* ----- reader in C ----------------------------------------------------------------------------- */
enum { ST_MAGIC = 0, ST_BLOCKS, ST_DONE };
enum { RE_NONE = 0, RE_CORRUPT, RE_TRUNCATED, RE_NOMEM, RE_PYTHON };

typedef struct {
    const unsigned char *src; /* block data in the input buffer */
    size_t csize;
    int stored;
    unsigned char *dst;       /* caller's memory (planned place) or the scratch buffer */
    size_t cap;
    size_t out;               /* decoded size */
    const char *err;          /* static message, or NULL */
} lz4_blk;

typedef struct lz4c_reader lz4c_reader;

typedef struct {
    fj_task task;             /* first member: the pool task */
    lz4c_reader *r;
    int first, count;         /* blocks[first : first + count] */
    unsigned char *dst;       /* linked task: where the batch goes */
    int done;                 /* linked task: blocks decoded */
} lz4_dtask;

struct lz4c_reader {
    fj_reader base;
    fj_reader *inner;
    lz4_api api;
    int threads;
    fj_pool *pool;            /* started at the first batch worth it */
    unsigned char *ibuf;      /* unread input: ibuf[ipos : ipos + ilen] */
    unsigned char *ibuf2;     /* the other input buffer (read ahead while a batch decodes) */
    size_t icap, ipos, ilen;
    int input_eof;
    int state;
    int64_t nframes;          /* complete frames (skippable ones included) */
    /* current frame */
    int linked, bcheck, ccheck, has_size;
    uint64_t content_size, frame_out;
    size_t bsmax;
    xxh32_state xs;
    /* linked blocks: the last <= 64 KiB of decoded output of the frame */
    unsigned char *hist, *tmpdict;
    size_t hist_len;
    /* a block decoded into scratch, not handed out yet: scratch[spos : spos + slen] */
    unsigned char *scratch;
    size_t scratch_cap, spos, slen;
    lz4_blk *blks;
    lz4_dtask *tasks;
    /* error met after some output was returned: raised at the next read */
    int err_kind;
    char err_msg[160];
    PyObject *err_type, *err_value, *err_tb;
};

static int
lz4c_raise(lz4c_reader *r)
{
    switch (r->err_kind) {
    case RE_TRUNCATED:
        return fj_codec_raise_truncated();
    case RE_NOMEM:
        PyErr_NoMemory();
        return -1;
    case RE_PYTHON:
        PyErr_Restore(Py_XNewRef(r->err_type), Py_XNewRef(r->err_value), Py_XNewRef(r->err_tb));
        return -1;
    default:
        /* lz4.frame raises RuntimeError for corrupt frames */
        PyErr_Format(PyExc_RuntimeError, "lz4: invalid compressed data: %s", r->err_msg);
        return -1;
    }
}

static int
set_err(lz4c_reader *r, int kind, const char *msg)
{
    r->err_kind = kind;
    snprintf(r->err_msg, sizeof(r->err_msg), "%s", msg != NULL ? msg : "");
    return -1;
}

/* Make at least `need` (<= icap) unread bytes available. 1: yes; 0: the input ended first;
 * -1: error (r->err_kind set). GIL held. */
static int
ensure_input(lz4c_reader *r, size_t need)
{
    while (r->ilen < need) {
        if (r->input_eof) {
            return 0;
        }
        if (r->ilen == 0) {
            r->ipos = 0;
        }
        else if (r->ipos + need > r->icap) {
            memmove(r->ibuf, r->ibuf + r->ipos, r->ilen);
            r->ipos = 0;
        }
        size_t off = r->ipos + r->ilen;
        Py_ssize_t n = r->inner->read(r->inner, (char *)r->ibuf + off, (Py_ssize_t)(r->icap - off));
        if (n < 0) {
            PyErr_Fetch(&r->err_type, &r->err_value, &r->err_tb);
            return set_err(r, RE_PYTHON, NULL);
        }
        if (n == 0) {
            r->input_eof = 1;
        }
        r->ilen += (size_t)n;
    }
    return 1;
}

/* Before a batch: when less than half the buffer is unread, move it to the front and fill the
 * rest (the move is then at most half the bytes consumed since the last one). 0 / -1. */
static int
top_up(lz4c_reader *r)
{
    if (r->input_eof || r->ilen >= r->icap / 2) {
        return 0;
    }
    return ensure_input(r, r->icap) < 0 ? -1 : 0;
}

static void
consume(lz4c_reader *r, size_t n)
{
    r->ipos += n;
    r->ilen -= n;
}

/* At a frame boundary: start the next frame, skip a skippable frame, or finish. 0 / -1. */
static int
next_frame(lz4c_reader *r)
{
    int rc = ensure_input(r, 4);
    if (rc < 0) {
        return -1;
    }
    if (rc == 0) {
        if (r->nframes == 0) {
            return set_err(r, RE_TRUNCATED, NULL); /* empty input, or a cut magic number */
        }
        r->state = ST_DONE; /* fewer than 4 bytes after the last frame: ignored */
        return 0;
    }
    uint32_t magic = load_le32(r->ibuf + r->ipos);
    if ((magic & 0xFFFFFFF0u) == LZ4_SKIP_MAGIC) {
        if ((rc = ensure_input(r, 8)) <= 0) {
            return rc < 0 ? -1 : set_err(r, RE_TRUNCATED, NULL);
        }
        uint64_t skip = load_le32(r->ibuf + r->ipos + 4);
        consume(r, 8);
        while (skip > 0) {
            if (r->ilen == 0 && (rc = ensure_input(r, 1)) <= 0) {
                return rc < 0 ? -1 : set_err(r, RE_TRUNCATED, NULL);
            }
            size_t k = r->ilen < skip ? r->ilen : (size_t)skip;
            consume(r, k);
            skip -= k;
        }
        r->nframes++;
        return 0;
    }
    if (magic != LZ4_MAGIC) {
        if (r->nframes == 0) {
            return set_err(r, RE_CORRUPT, "not an LZ4 frame (bad magic number)");
        }
        r->state = ST_DONE; /* anything else after the last frame is ignored */
        return 0;
    }
    if ((rc = ensure_input(r, 7)) <= 0) {
        return rc < 0 ? -1 : set_err(r, RE_TRUNCATED, NULL);
    }
    const unsigned char *h = r->ibuf + r->ipos;
    unsigned flg = h[4], bd = h[5];
    if ((flg >> 6) != 1) {
        return set_err(r, RE_CORRUPT, "unsupported frame version");
    }
    if ((flg & 0x02) || (bd & 0x8F)) {
        return set_err(r, RE_CORRUPT, "reserved bits set in the frame descriptor");
    }
    unsigned bsid = (bd >> 4) & 7;
    if (bsid < 4) {
        return set_err(r, RE_CORRUPT, "invalid maximum block size");
    }
    size_t hlen = 7 + ((flg & 0x08) ? 8 : 0) + ((flg & 0x01) ? 4 : 0);
    if ((rc = ensure_input(r, hlen)) <= 0) {
        return rc < 0 ? -1 : set_err(r, RE_TRUNCATED, NULL);
    }
    h = r->ibuf + r->ipos;
    if (((xxh32(h + 4, hlen - 5, 0) >> 8) & 0xFF) != h[hlen - 1]) {
        return set_err(r, RE_CORRUPT, "frame header checksum mismatch");
    }
    r->linked = !(flg & 0x20);
    r->bcheck = (flg & 0x10) != 0;
    r->ccheck = (flg & 0x04) != 0;
    r->has_size = (flg & 0x08) != 0;
    r->content_size = r->has_size ? ((uint64_t)load_le32(h + 6) |
                                     ((uint64_t)load_le32(h + 10) << 32)) : 0;
    r->bsmax = (size_t)1 << (8 + 2 * bsid); /* 64 KiB, 256 KiB, 1 MiB, 4 MiB */
    r->frame_out = 0;
    r->hist_len = 0;
    xxs_reset(&r->xs);
    consume(r, hlen);
    r->state = ST_BLOCKS;
    return 0;
}

/* End mark (and content checksum) of the current frame: ibuf has them. 0 / -1. */
static int
end_frame(lz4c_reader *r)
{
    size_t need = 4 + (r->ccheck ? 4 : 0);
    int rc = ensure_input(r, need);
    if (rc <= 0) {
        return rc < 0 ? -1 : set_err(r, RE_TRUNCATED, NULL);
    }
    if (r->ccheck && load_le32(r->ibuf + r->ipos + 4) != xxs_digest(&r->xs)) {
        return set_err(r, RE_CORRUPT, "content checksum mismatch");
    }
    if (r->has_size && r->frame_out != r->content_size) {
        return set_err(r, RE_CORRUPT, "content size differs from the frame header");
    }
    consume(r, need);
    r->nframes++;
    r->state = ST_MAGIC;
    return 0;
}

/* Decode one block (any thread, no GIL). */
static void
decode_block(const lz4c_reader *r, lz4_blk *b, const char *dict, size_t dict_len)
{
    b->err = NULL;
    b->out = 0;
    if (r->bcheck && xxh32(b->src, b->csize, 0) != load_le32(b->src + b->csize)) {
        b->err = "block checksum mismatch";
        return;
    }
    if (b->stored) {
        memcpy(b->dst, b->src, b->csize); /* csize <= cap: checked when planned */
        b->out = b->csize;
        return;
    }
    int n = dict_len > 0
                ? r->api.decompress_dict((const char *)b->src, (char *)b->dst, (int)b->csize,
                                         (int)b->cap, dict, (int)dict_len)
                : r->api.decompress_safe((const char *)b->src, (char *)b->dst, (int)b->csize,
                                         (int)b->cap);
    if (n < 0) {
        b->err = "corrupt block";
        return;
    }
    b->out = (size_t)n;
}

/* Prefault [p, p + n) for writing without changing its contents (MADV_POPULATE_WRITE, Linux
 * 5.14+): one call instead of a page fault per 4 KiB page of the caller's fresh memory. Only an
 * optimisation: any error is ignored. */
static void
populate_write(unsigned char *p, size_t n)
{
#ifdef MADV_POPULATE_WRITE
    uintptr_t a = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
    uintptr_t e = ((uintptr_t)p + n) & ~(uintptr_t)4095;
    if (e > a + 65536) {
        (void)madvise((void *)a, (size_t)(e - a), MADV_POPULATE_WRITE);
    }
#endif
}

static void
run_dtask(fj_task *task)
{
    lz4_dtask *t = (lz4_dtask *)task;
    lz4_blk *last = &t->r->blks[t->first + t->count - 1];
    if (t->r->blks[t->first].dst != t->r->scratch && last->dst != t->r->scratch) {
        populate_write(t->r->blks[t->first].dst,
                       (size_t)(last->dst + last->cap - t->r->blks[t->first].dst));
    }
    for (int i = t->first; i < t->first + t->count; i++) {
        decode_block(t->r, &t->r->blks[i], NULL, 0);
        if (t->r->blks[i].err != NULL) {
            break;
        }
    }
}

static void
hist_append(lz4c_reader *r, const unsigned char *p, size_t n)
{
    if (n >= LZ4_HIST) {
        memcpy(r->hist, p + n - LZ4_HIST, LZ4_HIST);
        r->hist_len = LZ4_HIST;
        return;
    }
    size_t keep = LZ4_HIST - n < r->hist_len ? LZ4_HIST - n : r->hist_len;
    memmove(r->hist, r->hist + r->hist_len - keep, keep);
    memcpy(r->hist + keep, p, n);
    r->hist_len = keep + n;
}

/* Linked blocks, serially: each direct block goes at the true cursor of `base`; the dictionary
 * is the preceding 64 KiB (the output of this batch, with r->hist before it). No GIL. Returns the
 * number of blocks done (stops at the first error). */
static int
decode_linked(lz4c_reader *r, int nb, unsigned char *base)
{
    size_t cur = 0;
    int flushed = 0;
    for (int i = 0; i < nb; i++) {
        lz4_blk *b = &r->blks[i];
        if (b->dst != r->scratch) {
            b->dst = base + cur;
            const unsigned char *dict;
            size_t dlen;
            if (cur >= LZ4_HIST || r->hist_len == 0) {
                dlen = cur < LZ4_HIST ? cur : LZ4_HIST;
                dict = base + cur - dlen; /* the prefix right before dst */
            }
            else {
                size_t from_hist = LZ4_HIST - cur < r->hist_len ? LZ4_HIST - cur : r->hist_len;
                memcpy(r->tmpdict, r->hist + r->hist_len - from_hist, from_hist);
                memcpy(r->tmpdict + from_hist, base, cur);
                dict = r->tmpdict;
                dlen = from_hist + cur;
            }
            decode_block(r, b, (const char *)dict, dlen);
            if (b->err != NULL) {
                return i;
            }
            cur += b->out;
        }
        else { /* the last block of the batch */
            hist_append(r, base, cur);
            flushed = 1;
            decode_block(r, b, (const char *)r->hist, r->hist_len);
            if (b->err != NULL) {
                return i;
            }
            hist_append(r, b->dst, b->out);
        }
    }
    if (!flushed) {
        hist_append(r, base, cur);
    }
    return nb;
}

static void
run_linked_task(fj_task *task)
{
    lz4_dtask *t = (lz4_dtask *)task;
    t->done = decode_linked(t->r, t->count, t->dst);
}

/* Decode the complete blocks in the input buffer into dst (room bytes). *made: bytes placed in
 * dst (more may wait in scratch). 0 / -1 (r->err_kind set; *made still valid). GIL held. */
static int
decode_batch(lz4c_reader *r, unsigned char *dst, size_t room, size_t *made)
{
    *made = 0;
    const size_t ck = r->bcheck ? 4 : 0;
    size_t off = 0, avail = r->ilen, planned = 0;
    const unsigned char *in = r->ibuf + r->ipos;
    int nb = 0, endmark = 0;
    while (nb < LZ4_MAX_BLOCKS) {
        if (avail - off < 4) {
            break;
        }
        uint32_t v = load_le32(in + off);
        if (v == 0) {
            endmark = 1;
            break;
        }
        size_t cs = v & 0x7FFFFFFFu;
        int stored = (v >> 31) != 0;
        if (cs > r->bsmax) {
            if (nb == 0) {
                return set_err(r, RE_CORRUPT, "block larger than the frame's maximum block size");
            }
            break;
        }
        if (avail - off - 4 < cs + ck) {
            break;
        }
        size_t ocap = stored ? cs : r->bsmax;
        lz4_blk *b = &r->blks[nb];
        b->src = in + off + 4;
        b->csize = cs;
        b->stored = stored;
        b->cap = ocap;
        if (room - planned >= ocap) {
            b->dst = dst + planned;
            planned += ocap;
        }
        else if (nb == 0) {
            if (r->scratch_cap < r->bsmax) {
                PyMem_RawFree(r->scratch);
                r->scratch_cap = 0;
                if ((r->scratch = PyMem_RawMalloc(r->bsmax)) == NULL) {
                    return set_err(r, RE_NOMEM, NULL);
                }
                r->scratch_cap = r->bsmax;
            }
            b->dst = r->scratch;
            off += 4 + cs + ck;
            nb++;
            break;
        }
        else {
            break;
        }
        off += 4 + cs + ck;
        nb++;
    }
    if (nb == 0) {
        if (endmark) {
            return end_frame(r);
        }
        if (r->input_eof) {
            return set_err(r, RE_TRUNCATED, NULL);
        }
        /* a block is not complete in the buffer: more input (the buffer holds 2 blocks) */
        if (r->ilen >= r->icap) {
            return set_err(r, RE_CORRUPT, "block does not fit the input buffer");
        }
        int rc = ensure_input(r, r->ilen + 1);
        return rc < 0 ? -1 : 0;
    }

    /* Overlap: when the unplanned rest of the input is small (the usual case for big reads), it
     * moves to the other input buffer and the workers decode this batch while we read ahead. */
    size_t rest = r->ilen - off;
    unsigned char *batch_buf = r->ibuf;
    int use_pool = r->threads > 1 && (planned >= (512u << 10) || (r->linked && nb > 1));
    int swapped = 0;
    if (use_pool && r->pool == NULL && (r->pool = fj_pool_new(r->threads)) == NULL) {
        use_pool = 0; /* decode inline */
    }
    if (use_pool && !r->input_eof && rest <= r->icap / 4) {
        if (r->ibuf2 == NULL) {
            r->ibuf2 = PyMem_RawMalloc(r->icap);
        }
        if (r->ibuf2 != NULL) {
            memcpy(r->ibuf2, in + off, rest);
            r->ibuf = r->ibuf2;
            r->ibuf2 = NULL;
            r->ipos = 0;
            r->ilen = rest;
            swapped = 1;
        }
    }
    int ntasks = 0;
    if (use_pool) {
        if (r->linked) {
            lz4_dtask *t = &r->tasks[ntasks++];
            t->task.fn = run_linked_task;
            t->task.state = FJ_TASK_IDLE;
            t->r = r;
            t->first = 0;
            t->count = nb;
            t->dst = dst;
        }
        else {
            size_t acc = 0;
            for (int i = 0; i < nb; i++) {
                if (acc == 0) {
                    lz4_dtask *t = &r->tasks[ntasks++];
                    t->task.fn = run_dtask;
                    t->task.state = FJ_TASK_IDLE;
                    t->r = r;
                    t->first = i;
                    t->count = 0;
                }
                r->tasks[ntasks - 1].count++;
                acc += r->blks[i].cap;
                if (acc >= LZ4_TASK_OUT) {
                    acc = 0;
                }
            }
        }
        for (int t = 0; t < ntasks; t++) {
            fj_pool_submit(r->pool, &r->tasks[t].task);
        }
    }
    int read_failed = 0;
    if (swapped && ensure_input(r, r->icap) < 0) {
        read_failed = 1; /* r->err_kind set; the batch still completes first */
    }

    int ndone = nb;
    size_t total = 0;
    Py_BEGIN_ALLOW_THREADS
    if (use_pool) {
        if (r->linked) {
            populate_write(dst, planned); /* while the worker decodes */
        }
        for (int t = 0; t < ntasks; t++) {
            fj_pool_wait(r->pool, &r->tasks[t].task);
        }
        if (r->linked) {
            ndone = r->tasks[0].done;
        }
    }
    else if (r->linked) {
        ndone = decode_linked(r, nb, dst);
    }
    else {
        for (int i = 0; i < nb; i++) {
            decode_block(r, &r->blks[i], NULL, 0);
            if (r->blks[i].err != NULL) {
                break;
            }
        }
    }
    if (!r->linked) {
        /* move each block down to its true place (an earlier block may have come out short) */
        size_t cur = 0;
        for (int i = 0; i < nb; i++) {
            lz4_blk *b = &r->blks[i];
            if (b->err != NULL) {
                ndone = i;
                break;
            }
            if (b->dst != r->scratch) {
                if (b->dst != dst + cur) {
                    memmove(dst + cur, b->dst, b->out);
                    b->dst = dst + cur;
                }
                cur += b->out;
            }
        }
    }
    /* account, checksum, hand out */
    for (int i = 0; i < ndone; i++) {
        lz4_blk *b = &r->blks[i];
        if (r->ccheck) {
            xxs_update(&r->xs, b->dst, b->out);
        }
        r->frame_out += b->out;
        if (b->dst == r->scratch) {
            size_t k = room - total < b->out ? room - total : b->out;
            memcpy(dst + total, b->dst, k);
            r->spos = k;
            r->slen = b->out - k;
            total += k;
        }
        else {
            total += b->out;
        }
    }
    Py_END_ALLOW_THREADS
    *made = total;
    if (swapped) {
        r->ibuf2 = batch_buf; /* free again: the next swap fills it */
    }
    else {
        consume(r, off); /* on an error below the stream is dead anyway */
    }
    if (read_failed) {
        return -1;
    }
    if (ndone < nb) {
        return set_err(r, RE_CORRUPT, r->blks[ndone].err);
    }
    if (r->has_size && r->frame_out > r->content_size) {
        return set_err(r, RE_CORRUPT, "more data than the content size of the frame header");
    }
    return 0;
}

static Py_ssize_t
lz4c_read(fj_reader *self, char *buf, Py_ssize_t len)
{
    lz4c_reader *r = (lz4c_reader *)self;
    size_t produced = 0, want = len > 0 ? (size_t)len : 0;
    const unsigned long mark = fj_interrupt_mark();
    if (r->err_kind != RE_NONE) {
        return lz4c_raise(r);
    }
    while (produced < want) {
        /* a batch is a few MiB decoded in milliseconds: a signal check per batch suffices */
        if (fj_check_interrupt() < 0) {
            PyErr_Fetch(&r->err_type, &r->err_value, &r->err_tb);
            set_err(r, RE_PYTHON, NULL);
            return lz4c_raise(r);
        }
        if (r->slen > 0) {
            size_t k = r->slen < want - produced ? r->slen : want - produced;
            memcpy(buf + produced, r->scratch + r->spos, k);
            r->spos += k;
            r->slen -= k;
            produced += k;
            continue;
        }
        if (r->state == ST_DONE) {
            break;
        }
        if (r->state == ST_MAGIC) {
            if (next_frame(r) < 0) {
                goto fail;
            }
            continue;
        }
        if (top_up(r) < 0) {
            goto fail;
        }
        size_t made = 0;
        int rc = decode_batch(r, (unsigned char *)buf + produced, want - produced, &made);
        produced += made;
        if (rc < 0) {
            goto fail;
        }
    }
    return (Py_ssize_t)produced;
fail:
    /* the error is raised at the next read, unless it is an interrupt (never deferred) */
    if (produced > 0 && !(r->err_kind == RE_PYTHON && fj_exc_is_urgent(r->err_type, mark))) {
        return (Py_ssize_t)produced;
    }
    return lz4c_raise(r);
}

static void
lz4c_free(fj_reader *self)
{
    lz4c_reader *r = (lz4c_reader *)self;
    if (r->pool != NULL) {
        Py_BEGIN_ALLOW_THREADS
        fj_pool_free(r->pool);
        Py_END_ALLOW_THREADS
    }
    Py_CLEAR(r->err_type);
    Py_CLEAR(r->err_value);
    Py_CLEAR(r->err_tb);
    PyMem_RawFree(r->ibuf);
    PyMem_RawFree(r->ibuf2);
    PyMem_RawFree(r->hist);
    PyMem_RawFree(r->tmpdict);
    PyMem_RawFree(r->scratch);
    PyMem_RawFree(r->blks);
    PyMem_RawFree(r->tasks);
    api_close(&r->api);
    if (r->inner != NULL) {
        r->inner->free(r->inner);
    }
    PyMem_RawFree(r);
}

/* Owns inner and api (also on failure). */
static fj_reader *
lz4c_reader_new(fj_reader *inner, lz4_api *api)
{
    lz4c_reader *r = PyMem_RawCalloc(1, sizeof(lz4c_reader));
    if (r == NULL) {
        api_close(api);
        inner->free(inner);
        PyErr_NoMemory();
        return NULL;
    }
    r->base.read = lz4c_read;
    r->base.free = lz4c_free;
    r->inner = inner;
    r->api = *api;
    memset(api, 0, sizeof(*api));
    r->threads = fj_codec_threads(0);
    if (r->threads > 32) {
        r->threads = 32;
    }
    /* a batch: everything complete in the buffer; threads x 2 MiB, at least two blocks of the
     * largest size */
    r->icap = (size_t)r->threads * LZ4_BATCH_PER_THREAD;
    if (r->icap < 2 * (LZ4_MAX_OUT + 8) + 64) {
        r->icap = 2 * (LZ4_MAX_OUT + 8) + 64;
    }
    r->ibuf = PyMem_RawMalloc(r->icap);
    r->hist = PyMem_RawMalloc(LZ4_HIST);
    r->tmpdict = PyMem_RawMalloc(LZ4_HIST);
    r->blks = PyMem_RawCalloc(LZ4_MAX_BLOCKS, sizeof(lz4_blk));
    r->tasks = PyMem_RawCalloc(LZ4_MAX_BLOCKS, sizeof(lz4_dtask));
    if (r->ibuf == NULL || r->hist == NULL || r->tmpdict == NULL || r->blks == NULL ||
        r->tasks == NULL) {
        lz4c_free(&r->base);
        PyErr_NoMemory();
        return NULL;
    }
    r->state = ST_MAGIC;
    return &r->base;
}

/* ----- reader through the Python API (fallback) -------------------------------------------------------------------------------- */
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

static fj_reader *
lz4py_reader_new(fj_reader *inner)
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

fj_reader *
fj_lz4_reader(fj_reader *inner)
{
    lz4_api api;
    if (api_open(&api) < 0) {
        inner->free(inner);
        return NULL;
    }
    if (api.handle != NULL) {
        return lz4c_reader_new(inner, &api);
    }
    return lz4py_reader_new(inner);
}
