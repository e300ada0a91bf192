/* codec_deflate.c: zlib and gzip streams with zlib.
 *
 * Writer: parallel deflate. The input is cut into 512 KiB blocks; each block is compressed as raw
 * deflate by its own z_stream WITHOUT a preset dictionary (blocks are independent: no
 * back-reference crosses a block boundary, so a reader can inflate the blocks in parallel; the
 * ratio cost is ~0.2% against one zlib.compress stream at the same level). A non-last block ends
 * with Z_SYNC_FLUSH (an empty stored block: byte-aligned, `00 00 ff ff`) followed by one more
 * empty stored block written by hand (`00 00 00 ff ff`), so every block boundary carries the
 * 9-byte marker `00 00 ff ff 00 00 00 ff ff`; the last block ends with Z_FINISH. The deflate data
 * of a multi-block stream starts with one more empty stored block (`00 00 00 ff ff`, which zlib
 * itself never writes first): the reader's cue to look for markers at all. The per-block
 * Adler-32 / CRC-32 are computed by the workers and combined in order. The concatenation, framed
 * by one zlib header + Adler-32 or one gzip header + CRC-32 + ISIZE, is ONE ordinary zlib stream /
 * gzip member that any inflater reads.
 *
 * Reader (fj_preader_new, codec_par.c): files with block markers are inflated in parallel, one
 * segment between markers per worker, every segment validated (it must end exactly at the next
 * segment's start on a block boundary, and decode without history); anything else (joblib's own
 * files, small files, false markers, cross-marker references) falls back to serial inflate with
 * identical output and errors. gzip reads concatenated members as the gzip module does; bytes after
 * the end that are not a new member are ignored.
 */
#define _GNU_SOURCE /* memmem */
#include "fj.h"
#include "codec.h"
#include "engine.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define DEFLATE_BLOCK (512 * 1024)
#define DEFLATE_DICT 32768 /* history for a serial re-decode in the parallel reader */
/* appended after the Z_SYNC_FLUSH of every non-last block: an empty, non-final stored block */
static const unsigned char deflate_extra[5] = {0x00, 0x00, 0x00, 0xff, 0xff};

/* The deflate engine for dumps: zlib unless FASTJOBLIB_DEFLATE=zlib-ng (an opt-in, also used by
 * the tests). zlib-ng's deflate at the same level is faster (level 3: 1.4-6x less CPU time) but
 * its sizes are not zlib's: at level 3 smaller on float arrays (random float64 -0.9%, a rounded
 * random walk -10%) yet 5.6% bigger on the RandomForest pickle of benchmarks/workloads.py, 5-84%
 * bigger at level 1 and up to 2.4x at levels 4-6 on repetitive text. joblib's files must stay
 * within 1% of joblib's sizes, so zlib writes by default. */
typedef struct {
    int (*init2)(void *s, int level, int method, int wbits, int mem, int strategy);
    int (*deflate)(void *s, int flush);
    int (*end)(void *s);
    uint32_t (*crc32)(uint32_t c, const unsigned char *p, size_t n);
    uint32_t (*adler32)(uint32_t c, const unsigned char *p, size_t n);
    int ng;
} deflate_engine;

static int
zd_init2(void *s, int level, int method, int wbits, int mem, int strategy)
{
    return deflateInit2((z_stream *)s, level, method, wbits, mem, strategy);
}

static int
zd_deflate(void *s, int flush)
{
    return deflate((z_stream *)s, flush);
}

static int
zd_end(void *s)
{
    return deflateEnd((z_stream *)s);
}

static uint32_t
zd_crc32(uint32_t c, const unsigned char *p, size_t n)
{
    return (uint32_t)crc32_z(c, p, n);
}

static uint32_t
zd_adler32(uint32_t c, const unsigned char *p, size_t n)
{
    return (uint32_t)adler32_z(c, p, n);
}

static const deflate_engine zlib_deflate_engine = {zd_init2, zd_deflate, zd_end, zd_crc32,
                                                    zd_adler32, 0};
/* filled once with the GIL held before the first writer that uses it; then only read */
static deflate_engine ng_deflate_engine;
static int ng_deflate_state; /* 0 not tried, 1 bound, -1 unavailable */

/* zlib-ng's native API has no version or size argument in its init calls, and fj_zng_stream
 * mirrors the 2.x stream layout: an extension built from another major version is not used.
 * rc of fj_engine_bind; 0 (unavailable) for a library that does not say it is 2.x. */
static int
check_zlib_ng_version(int rc, void *handle)
{
    if (rc != 1) {
        return rc;
    }
    const char *(*version)(void) = NULL;
    *(void **)&version = dlsym(handle, "zlibng_version");
    const char *v = version != NULL ? version() : NULL;
    if (v == NULL || strncmp(v, "2.", 2) != 0) {
        return 0; /* (the handle stays open: the package keeps its module loaded anyway) */
    }
    return 1;
}

/* 1: zlib-ng, 0: zlib, -1: error set. GIL held. */
static int
choose_deflate_engine(void)
{
    static const char *const names[5] = {"zng_deflateInit2", "zng_deflate", "zng_deflateEnd",
                                         "zng_crc32_z", "zng_adler32_z"};
    const char *e = getenv("FASTJOBLIB_DEFLATE");
    int forced = e != NULL && strcmp(e, "zlib-ng") == 0;
    if (!forced) {
        return 0;
    }
    if (ng_deflate_state == 0) {
        void *fns[5], *handle;
        int rc = fj_engine_bind("zlib_ng.zlib_ng", names, fns, 5, &handle);
        rc = check_zlib_ng_version(rc, handle);
        if (rc < 0) {
            return -1;
        }
        if (rc == 1) {
            *(void **)&ng_deflate_engine.init2 = fns[0];
            *(void **)&ng_deflate_engine.deflate = fns[1];
            *(void **)&ng_deflate_engine.end = fns[2];
            *(void **)&ng_deflate_engine.crc32 = fns[3];
            *(void **)&ng_deflate_engine.adler32 = fns[4];
            ng_deflate_engine.ng = 1;
        }
        ng_deflate_state = rc == 1 ? 1 : -1;
    }
    if (forced && ng_deflate_state != 1) {
        PyErr_SetString(PyExc_ImportError, "FASTJOBLIB_DEFLATE=zlib-ng needs the 'zlib-ng' "
                                           "package. Install it with pip: pip install zlib-ng");
        return -1;
    }
    return ng_deflate_state == 1;
}

typedef struct {
    int gzip;
    int level;
    uint32_t check; /* running Adler-32 (zlib) / CRC-32 (gzip) of everything emitted */
    const deflate_engine *eng;
} deflate_ctx;

static size_t
deflate_bound(void *ctx, size_t len)
{
    /* stored-block worst case (5 bytes per 16 KiB) + sync/finish marker + slack */
    return len + (len >> 12) + (len >> 14) + 64;
}

static int
deflate_block(void *vctx, fj_bjob *job)
{
    deflate_ctx *ctx = vctx;
    const deflate_engine *eng = ctx->eng;
    union {
        z_stream z;
        fj_zng_stream n;
    } u;
    memset(&u, 0, sizeof(u));
    int rc = eng->init2(&u, ctx->level, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    if (rc != Z_OK) {
        job->failed = 1;
        job->nomem = rc == Z_MEM_ERROR;
        snprintf(job->msg, sizeof(job->msg), "deflateInit2 failed (%d)", rc);
        return -1;
    }
    const unsigned char *in = (const unsigned char *)job->in;
    unsigned avail_in = (unsigned)job->in_len; /* blocks are far below UINT_MAX */
    int flush = job->last ? Z_FINISH : Z_SYNC_FLUSH;
    job->out_len = 0;
    for (;;) {
        if (job->out_cap - job->out_len < 64) {
            size_t ncap = job->out_cap * 2 + 4096;
            char *p = PyMem_RawRealloc(job->out, ncap);
            if (p == NULL) {
                job->nomem = 1;
                rc = Z_MEM_ERROR;
                goto fail;
            }
            job->out = p;
            job->out_cap = ncap;
        }
        size_t room = job->out_cap - job->out_len;
        if (room > UINT_MAX) {
            room = UINT_MAX;
        }
        unsigned avail_out;
        if (eng->ng) {
            u.n.next_in = in;
            u.n.avail_in = avail_in;
            u.n.next_out = (uint8_t *)job->out + job->out_len;
            u.n.avail_out = (uint32_t)room;
            rc = eng->deflate(&u, flush);
            in = u.n.next_in;
            avail_in = u.n.avail_in;
            avail_out = u.n.avail_out;
        }
        else {
            u.z.next_in = (Bytef *)in;
            u.z.avail_in = avail_in;
            u.z.next_out = (Bytef *)job->out + job->out_len;
            u.z.avail_out = (uInt)room;
            rc = eng->deflate(&u, flush);
            in = u.z.next_in;
            avail_in = u.z.avail_in;
            avail_out = u.z.avail_out;
        }
        job->out_len += room - avail_out;
        if (rc == Z_STREAM_END) {
            break;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            goto fail;
        }
        if (flush == Z_SYNC_FLUSH && avail_in == 0 && avail_out > 0) {
            break; /* flushed completely */
        }
    }
    eng->end(&u);
    if (!job->last) {
        if (job->out_cap - job->out_len < sizeof(deflate_extra)) {
            char *p = PyMem_RawRealloc(job->out, job->out_len + sizeof(deflate_extra));
            if (p == NULL) {
                job->failed = job->nomem = 1;
                snprintf(job->msg, sizeof(job->msg), "out of memory");
                return -1;
            }
            job->out = p;
            job->out_cap = job->out_len + sizeof(deflate_extra);
        }
        memcpy(job->out + job->out_len, deflate_extra, sizeof(deflate_extra));
        job->out_len += sizeof(deflate_extra);
    }
    job->check = ctx->gzip ? eng->crc32(0, (const unsigned char *)job->in, job->in_len)
                           : eng->adler32(1, (const unsigned char *)job->in, job->in_len);
    return 0;
fail:
    eng->end(&u);
    job->failed = 1;
    job->nomem = job->nomem || rc == Z_MEM_ERROR;
    snprintf(job->msg, sizeof(job->msg), "deflate error %d", rc);
    return -1;
}

static int
deflate_emit(void *vctx, fj_bjob *job, fj_writer *inner, int first)
{
    deflate_ctx *ctx = vctx;
    if (first) {
        if (ctx->gzip) {
            /* as zlib's own gzip wrapper: no name, mtime 0, XFL from the level, OS = unix */
            unsigned char h[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
            h[8] = ctx->level == 9 ? 2 : (ctx->level < 2 ? 4 : 0);
            if (fj_codec_put(inner, h, sizeof(h)) < 0) {
                return -1;
            }
            ctx->check = 0;
        }
        else {
            /* zlib header: CM 8, 32 KiB window, FLEVEL as zlib sets it, FCHECK */
            int flevel = ctx->level < 2 ? 0 : ctx->level < 6 ? 1 : ctx->level == 6 ? 2 : 3;
            unsigned int h = (0x78u << 8) | ((unsigned)flevel << 6);
            h += 31 - (h % 31);
            unsigned char hb[2] = {(unsigned char)(h >> 8), (unsigned char)(h & 0xff)};
            if (fj_codec_put(inner, hb, 2) < 0) {
                return -1;
            }
            ctx->check = 1;
        }
        /* an empty stored block first: tells our reader that this stream has block markers
         * (a single-block stream has none: read serially without looking) */
        if (!job->last && fj_codec_put(inner, deflate_extra, sizeof(deflate_extra)) < 0) {
            return -1;
        }
    }
    ctx->check = ctx->gzip ? (uint32_t)crc32_combine(ctx->check, job->check, (z_off_t)job->in_len)
                           : (uint32_t)adler32_combine(ctx->check, job->check, (z_off_t)job->in_len);
    return fj_codec_put(inner, job->out, job->out_len);
}

static int
deflate_finish(void *vctx, fj_writer *inner, int64_t nemitted, uint64_t total_in)
{
    deflate_ctx *ctx = vctx;
    unsigned char t[8];
    uint32_t c = ctx->check;
    if (ctx->gzip) {
        uint32_t isize = (uint32_t)(total_in & 0xffffffffu);
        for (int i = 0; i < 4; i++) {
            t[i] = (unsigned char)(c >> (8 * i));
            t[4 + i] = (unsigned char)(isize >> (8 * i));
        }
        return fj_codec_put(inner, t, 8);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = (unsigned char)(c >> (24 - 8 * i));
    }
    return fj_codec_put(inner, t, 4);
}

static void
deflate_free_ctx(void *ctx)
{
    PyMem_RawFree(ctx);
}

static const fj_bcodec zlib_codec = {
    "zlib", DEFLATE_BLOCK, 0, 1,
    deflate_bound, deflate_block, deflate_emit, deflate_finish, deflate_free_ctx,
};
static const fj_bcodec gzip_codec = {
    "gzip", DEFLATE_BLOCK, 0, 1,
    deflate_bound, deflate_block, deflate_emit, deflate_finish, deflate_free_ctx,
};

fj_writer *
fj_deflate_writer(int gzip, int level, int threads, fj_writer *inner)
{
    if (level < 0) {
        level = 3;
    }
    if (level > 9) {
        inner->free(inner);
        PyErr_Format(PyExc_ValueError,
                     "'compresslevel' must be an integer between 1 and 9. You provided "
                     "'compresslevel=%d'", level);
        return NULL;
    }
    deflate_ctx *ctx = PyMem_RawCalloc(1, sizeof(deflate_ctx));
    if (ctx == NULL) {
        inner->free(inner);
        PyErr_NoMemory();
        return NULL;
    }
    ctx->gzip = gzip;
    ctx->level = level;
    int ng = choose_deflate_engine();
    if (ng < 0) {
        PyMem_RawFree(ctx);
        inner->free(inner);
        return NULL;
    }
    ctx->eng = ng ? &ng_deflate_engine : &zlib_deflate_engine;
    return fj_bwriter_new(gzip ? &gzip_codec : &zlib_codec, ctx, threads, inner);
}

/* ----- reader -------------------------------------------------------------------------------- *
 * The inflate engine: zlib-ng (the zlib-ng package, engine.h) when it is installed, else zlib.
 * Both run the same inflate state machine with the same messages, so output and errors are
 * the same whichever runs (tests/test_codec_engines.py checks it). FASTJOBLIB_INFLATE=zlib
 * forces zlib, =zlib-ng requires zlib-ng (ImportError without it); read when a reader is made.
 * The memory bound is the same: one 32 KiB window per stream. */
typedef fj_inflate_fns inflate_engine;

static int
zl_init2(void *s, int wbits)
{
    return inflateInit2((z_stream *)s, wbits);
}

static int
zl_inflate(void *s, int flush)
{
    return inflate((z_stream *)s, flush);
}

static int
zl_end(void *s)
{
    return inflateEnd((z_stream *)s);
}

static int
zl_setdict(void *s, const unsigned char *d, uint32_t n)
{
    return inflateSetDictionary((z_stream *)s, d, (uInt)n);
}

static int
zl_prime(void *s, int bits, int value)
{
    return inflatePrime((z_stream *)s, bits, value);
}

static const inflate_engine zlib_engine = {zl_init2, zl_inflate,  zl_end,     zl_setdict,
                                           zl_prime, zd_adler32, zd_crc32, 0};
/* Filled once, GIL held, before the first reader that uses it is made; then only read. The
 * extension stays loaded (it is in sys.modules), so the handle is never closed. */
static inflate_engine ng_engine;
static int ng_state; /* 0 not tried, 1 bound, -1 unavailable */

static int
bind_zlib_ng(void)
{
    static const char *const names[7] = {"zng_inflateInit2", "zng_inflate", "zng_inflateEnd",
                                         "zng_inflateSetDictionary", "zng_inflatePrime",
                                         "zng_adler32_z", "zng_crc32_z"};
    void *fns[7], *handle;
    if (ng_state != 0) {
        return ng_state;
    }
    int rc = fj_engine_bind("zlib_ng.zlib_ng", names, fns, 7, &handle);
    rc = check_zlib_ng_version(rc, handle);
    if (rc < 0) {
        return -2;
    }
    if (rc == 1) {
        *(void **)&ng_engine.init2 = fns[0];
        *(void **)&ng_engine.inflate = fns[1];
        *(void **)&ng_engine.end = fns[2];
        *(void **)&ng_engine.setdict = fns[3];
        *(void **)&ng_engine.prime = fns[4];
        *(void **)&ng_engine.adler32 = fns[5];
        *(void **)&ng_engine.crc32 = fns[6];
        ng_engine.ng = 1;
    }
    ng_state = rc == 1 ? 1 : -1;
    return ng_state;
}

/* 1: use zlib-ng, 0: zlib, -1: error set. GIL held. */
static int
choose_engine(void)
{
    const char *e = getenv("FASTJOBLIB_INFLATE");
    if (e != NULL && strcmp(e, "zlib") == 0) {
        return 0;
    }
    int rc = bind_zlib_ng();
    if (rc == -2) {
        return -1;
    }
    if (e != NULL && strcmp(e, "zlib-ng") == 0 && rc != 1) {
        PyErr_SetString(PyExc_ImportError, "FASTJOBLIB_INFLATE=zlib-ng needs the 'zlib-ng' "
                                           "package. Install it with pip: pip install zlib-ng");
        return -1;
    }
    return rc == 1;
}

typedef struct {
    const inflate_engine *eng;
    union {
        z_stream z;
        fj_zng_stream n;
    } u;
    int wbits;
    int inited;
} inflate_state;

/* field access on either stream layout */
static void
st_set(inflate_state *st, const unsigned char *in, unsigned ain, unsigned char *out, unsigned aout)
{
    if (st->eng->ng) {
        st->u.n.next_in = in;
        st->u.n.avail_in = ain;
        st->u.n.next_out = out;
        st->u.n.avail_out = aout;
    }
    else {
        st->u.z.next_in = (Bytef *)in;
        st->u.z.avail_in = ain;
        st->u.z.next_out = out;
        st->u.z.avail_out = aout;
    }
}

static unsigned
st_avail_in(const inflate_state *st)
{
    return st->eng->ng ? st->u.n.avail_in : st->u.z.avail_in;
}

static unsigned
st_avail_out(const inflate_state *st)
{
    return st->eng->ng ? st->u.n.avail_out : st->u.z.avail_out;
}

static const char *
st_msg(const inflate_state *st)
{
    return st->eng->ng ? st->u.n.msg : st->u.z.msg;
}

static int
st_data_type(const inflate_state *st)
{
    return st->eng->ng ? st->u.n.data_type : st->u.z.data_type;
}

static int
inflate_init_z(void *vst, const inflate_engine *eng, int wbits, char *msg, size_t cap)
{
    inflate_state *st = vst;
    memset(&st->u, 0, sizeof(st->u));
    st->eng = eng;
    st->wbits = wbits;
    int rc = eng->init2(&st->u, wbits);
    if (rc != Z_OK) {
        snprintf(msg, cap, "inflateInit2 failed (%d)", rc);
        return rc == Z_MEM_ERROR ? FJ_DEC_NOMEM : FJ_DEC_ERR;
    }
    st->inited = 1;
    return FJ_DEC_OK;
}

static int
inflate_init_zlib(void *st, char *msg, size_t cap)
{
    return inflate_init_z(st, &zlib_engine, MAX_WBITS, msg, cap);
}

static int
inflate_init_gzip(void *st, char *msg, size_t cap)
{
    return inflate_init_z(st, &zlib_engine, 16 + MAX_WBITS, msg, cap);
}

static int
inflate_init_zlib_ng(void *st, char *msg, size_t cap)
{
    return inflate_init_z(st, &ng_engine, MAX_WBITS, msg, cap);
}

static int
inflate_init_gzip_ng(void *st, char *msg, size_t cap)
{
    return inflate_init_z(st, &ng_engine, 16 + MAX_WBITS, msg, cap);
}

static int
inflate_run_flush(void *vst, const unsigned char **in, size_t *in_len, unsigned char **out,
                  size_t *out_len, char *msg, size_t cap, int flush)
{
    inflate_state *st = vst;
    for (;;) {
        unsigned ain = *in_len > UINT_MAX ? UINT_MAX : (unsigned)*in_len;
        unsigned aout = *out_len > UINT_MAX ? UINT_MAX : (unsigned)*out_len;
        st_set(st, *in, ain, *out, aout);
        int rc = st->eng->inflate(&st->u, flush);
        size_t used = ain - st_avail_in(st), made = aout - st_avail_out(st);
        *in += used;
        *in_len -= used;
        *out += made;
        *out_len -= made;
        if (rc == Z_STREAM_END) {
            return FJ_DEC_END;
        }
        if (rc == Z_MEM_ERROR) {
            snprintf(msg, cap, "out of memory");
            return FJ_DEC_NOMEM;
        }
        if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_STREAM_ERROR) {
            const char *m = st_msg(st);
            snprintf(msg, cap, "%s", m ? m : (rc == Z_NEED_DICT ? "needs a dictionary"
                                                                : "invalid stream"));
            return FJ_DEC_ERR;
        }
        /* Z_OK or Z_BUF_ERROR: go on only while both sides have room and progress is made */
        if (*in_len == 0 || *out_len == 0 || (used == 0 && made == 0)) {
            return FJ_DEC_OK;
        }
    }
}

static int
inflate_run(void *vst, const unsigned char **in, size_t *in_len, unsigned char **out,
            size_t *out_len, char *msg, size_t cap)
{
    return inflate_run_flush(vst, in, in_len, out, out_len, msg, cap, Z_NO_FLUSH);
}

static void
inflate_end(void *vst)
{
    inflate_state *st = vst;
    if (st->inited) {
        st->eng->end(&st->u);
        st->inited = 0;
    }
}

static const fj_sdec_ops zlib_dec = {
    "zlib", sizeof(inflate_state), inflate_init_zlib, inflate_run, inflate_end,
    NULL, 0, "zlib", "error",
};
static const fj_sdec_ops gzip_dec = {
    "gzip", sizeof(inflate_state), inflate_init_gzip, inflate_run, inflate_end,
    "\x1f\x8b", 2, "zlib", "error",
};
static const fj_sdec_ops zlib_dec_ng = {
    "zlib", sizeof(inflate_state), inflate_init_zlib_ng, inflate_run, inflate_end,
    NULL, 0, "zlib", "error",
};
static const fj_sdec_ops gzip_dec_ng = {
    "gzip", sizeof(inflate_state), inflate_init_gzip_ng, inflate_run, inflate_end,
    "\x1f\x8b", 2, "zlib", "error",
};

/* ----- parallel reader hooks (codec_par.c) --------------------------------------------------- */
static const unsigned char deflate_marker[9] = {0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff};

static ptrdiff_t
deflate_find(const unsigned char *buf, size_t len, size_t from)
{
    if (from >= len) {
        return -1;
    }
    const unsigned char *p = memmem(buf + from, len - from, deflate_marker, sizeof(deflate_marker));
    return p == NULL ? -1 : (ptrdiff_t)(p - buf);
}

/* The header (zlib or gzip) is parsed by the engine itself: Z_BLOCK returns right after it. */
static int
inflate_head(void *vst, const unsigned char **in, size_t *in_len, char *msg, size_t cap)
{
    inflate_state *st = vst;
    unsigned char dummy[1];
    unsigned ain = *in_len > UINT_MAX ? UINT_MAX : (unsigned)*in_len;
    /* the header produces no output; Z_BLOCK stops right after it */
    st_set(st, *in, ain, dummy, 0);
    int rc = st->eng->inflate(&st->u, Z_BLOCK);
    size_t used = ain - st_avail_in(st);
    *in += used;
    *in_len -= used;
    if (rc == Z_MEM_ERROR) {
        snprintf(msg, cap, "out of memory");
        return FJ_DEC_NOMEM;
    }
    if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_STREAM_ERROR) {
        const char *m = st_msg(st);
        snprintf(msg, cap, "%s", m ? m : (rc == Z_NEED_DICT ? "needs a dictionary"
                                                            : "invalid stream"));
        return FJ_DEC_ERR;
    }
    if (st_data_type(st) & 128) {
        return FJ_DEC_END;
    }
    return FJ_DEC_OK;
}

static int
body_init_engine(void *vst, const inflate_engine *eng, const unsigned char *hist, size_t hist_len,
                 char *msg, size_t cap)
{
    inflate_state *st = vst;
    int rc = inflate_init_z(vst, eng, -MAX_WBITS, msg, cap);
    if (rc != FJ_DEC_OK || hist_len == 0) {
        return rc;
    }
    if (eng->setdict(&st->u, hist, (uint32_t)hist_len) != Z_OK) {
        snprintf(msg, cap, "inflateSetDictionary failed");
        return FJ_DEC_ERR;
    }
    return FJ_DEC_OK;
}

static int
inflate_body_init(void *vst, const unsigned char *hist, size_t hist_len, char *msg, size_t cap)
{
    return body_init_engine(vst, &zlib_engine, hist, hist_len, msg, cap);
}

static int
inflate_body_init_ng(void *vst, const unsigned char *hist, size_t hist_len, char *msg, size_t cap)
{
    return body_init_engine(vst, &ng_engine, hist, hist_len, msg, cap);
}

static int
inflate_body_run(void *vst, const unsigned char **in, size_t *in_len, unsigned char **out,
                 size_t *out_len, char *msg, size_t cap)
{
    return inflate_run_flush(vst, in, in_len, out, out_len, msg, cap, Z_BLOCK);
}

/* All input consumed, on a block boundary (TYPE state), no bits pending, not after a final
 * block: an independent segment may start at the next byte. */
static int
inflate_at_boundary(void *vst)
{
    inflate_state *st = vst;
    return st->inited && st_avail_in(st) == 0 && st_data_type(st) == 128;
}

static uint32_t
adler_update(uint32_t c, const unsigned char *p, size_t n)
{
    return (uint32_t)adler32_z(c, p, n);
}

static uint32_t
adler_combine(uint32_t a, uint32_t b, uint64_t len_b)
{
    return (uint32_t)adler32_combine(a, b, (z_off_t)len_b);
}

static uint32_t
crc_update(uint32_t c, const unsigned char *p, size_t n)
{
    return (uint32_t)crc32_z(c, p, n);
}

static uint32_t
crc_combine(uint32_t a, uint32_t b, uint64_t len_b)
{
    return (uint32_t)crc32_combine(a, b, (z_off_t)len_b);
}

/* zlib's own messages for the same failures */
static int
zlib_tail(const unsigned char *t, uint32_t check, uint64_t total, char *msg, size_t cap)
{
    uint32_t want = ((uint32_t)t[0] << 24) | ((uint32_t)t[1] << 16) | ((uint32_t)t[2] << 8) | t[3];
    if (want != check) {
        snprintf(msg, cap, "incorrect data check");
        return -1;
    }
    return 0;
}

static int
gzip_tail(const unsigned char *t, uint32_t check, uint64_t total, char *msg, size_t cap)
{
    uint32_t crc = (uint32_t)t[0] | ((uint32_t)t[1] << 8) | ((uint32_t)t[2] << 16) |
                   ((uint32_t)t[3] << 24);
    uint32_t isize = (uint32_t)t[4] | ((uint32_t)t[5] << 8) | ((uint32_t)t[6] << 16) |
                     ((uint32_t)t[7] << 24);
    if (crc != check) {
        snprintf(msg, cap, "incorrect data check");
        return -1;
    }
    if (isize != (uint32_t)(total & 0xffffffffu)) {
        snprintf(msg, cap, "incorrect length check");
        return -1;
    }
    return 0;
}

/* Our writer starts the deflate data with an empty stored block (zlib.compress never does): files
 * without it (joblib's) go to the serial reader without reading ahead. */
static int
zlib_sniff(const unsigned char *b, size_t len)
{
    if (len < 2 + sizeof(deflate_extra)) {
        return -1;
    }
    return (b[0] & 0x0f) == 8 && ((unsigned)b[0] * 256 + b[1]) % 31 == 0 && !(b[1] & 0x20) &&
           memcmp(b + 2, deflate_extra, sizeof(deflate_extra)) == 0;
}

static int
gzip_sniff(const unsigned char *b, size_t len)
{
    if (len < 10 + sizeof(deflate_extra)) {
        return -1;
    }
    return b[0] == 0x1f && b[1] == 0x8b && b[2] == 8 && b[3] == 0 &&
           memcmp(b + 10, deflate_extra, sizeof(deflate_extra)) == 0;
}

/* Files without our markers (joblib's): the speculative two-or-more-core reader, unless
 * FASTJOBLIB_INFLATE_SPEC=0 (the plain serial reader; tests compare the two). */
static fj_reader *
spec_new(const fj_pdec_ops *ops, const inflate_engine *eng, int gzip, int threads,
         fj_reader *inner)
{
    const char *e = getenv("FASTJOBLIB_INFLATE_SPEC");
    if (threads < 2 || (e != NULL && strcmp(e, "0") == 0)) {
        return fj_sreader_new(ops->serial, inner);
    }
    return fj_ispec_new(ops, eng, gzip, threads, inner);
}

static fj_reader *
zlib_spec_new(const fj_pdec_ops *ops, int threads, fj_reader *inner)
{
    return spec_new(ops, &zlib_engine, 0, threads, inner);
}

static fj_reader *
gzip_spec_new(const fj_pdec_ops *ops, int threads, fj_reader *inner)
{
    return spec_new(ops, &zlib_engine, 1, threads, inner);
}

static fj_reader *
zlib_spec_new_ng(const fj_pdec_ops *ops, int threads, fj_reader *inner)
{
    return spec_new(ops, &ng_engine, 0, threads, inner);
}

static fj_reader *
gzip_spec_new_ng(const fj_pdec_ops *ops, int threads, fj_reader *inner)
{
    return spec_new(ops, &ng_engine, 1, threads, inner);
}

static const fj_pdec_ops zlib_pdec = {
    &zlib_dec, sizeof(inflate_state), deflate_find, sizeof(deflate_marker), sizeof(deflate_marker),
    0, DEFLATE_BLOCK, DEFLATE_DICT,
    inflate_init_zlib, inflate_head, inflate_body_init, inflate_body_run, inflate_at_boundary,
    inflate_end, 1, adler_update, adler_combine, 4, zlib_tail, 1, zlib_sniff, zlib_spec_new,
};
static const fj_pdec_ops gzip_pdec = {
    &gzip_dec, sizeof(inflate_state), deflate_find, sizeof(deflate_marker), sizeof(deflate_marker),
    0, DEFLATE_BLOCK, DEFLATE_DICT,
    inflate_init_gzip, inflate_head, inflate_body_init, inflate_body_run, inflate_at_boundary,
    inflate_end, 0, crc_update, crc_combine, 8, gzip_tail, 1, gzip_sniff, gzip_spec_new,
};
static const fj_pdec_ops zlib_pdec_ng = {
    &zlib_dec_ng, sizeof(inflate_state), deflate_find, sizeof(deflate_marker),
    sizeof(deflate_marker), 0, DEFLATE_BLOCK, DEFLATE_DICT,
    inflate_init_zlib_ng, inflate_head, inflate_body_init_ng, inflate_body_run,
    inflate_at_boundary, inflate_end, 1, adler_update, adler_combine, 4, zlib_tail, 1, zlib_sniff,
    zlib_spec_new_ng,
};
static const fj_pdec_ops gzip_pdec_ng = {
    &gzip_dec_ng, sizeof(inflate_state), deflate_find, sizeof(deflate_marker),
    sizeof(deflate_marker), 0, DEFLATE_BLOCK, DEFLATE_DICT,
    inflate_init_gzip_ng, inflate_head, inflate_body_init_ng, inflate_body_run,
    inflate_at_boundary, inflate_end, 0, crc_update, crc_combine, 8, gzip_tail, 1, gzip_sniff,
    gzip_spec_new_ng,
};

fj_reader *
fj_deflate_reader_threads(int gzip, int threads, fj_reader *inner)
{
    int ng = choose_engine();
    if (ng < 0) {
        inner->free(inner);
        return NULL;
    }
    const fj_pdec_ops *ops = ng ? (gzip ? &gzip_pdec_ng : &zlib_pdec_ng)
                                : (gzip ? &gzip_pdec : &zlib_pdec);
    return fj_preader_new(ops, threads, inner);
}

fj_reader *
fj_deflate_reader(int gzip, fj_reader *inner)
{
    return fj_deflate_reader_threads(gzip, 0, inner);
}
