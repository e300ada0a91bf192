/* codec_bz2.c: bzip2 with libbz2.
 *
 * Writer: the input is cut into blocks of two bzip2 blocks' worth (2 x level x 100 kB), each
 * compressed in a worker as a complete, independent .bz2 stream; the streams are concatenated.
 * Multi-stream files are standard: bzip2, bz2.decompress and bz2.BZ2File (joblib's reader) read
 * them. Reader: libbz2, continuing across concatenated streams; files with several streams are
 * decoded in parallel by codec_par.c (one or more whole streams per worker; a stream starts with
 * "BZh" + level + the block magic "1AY&SY", byte-aligned), others serially into the caller's buffer.
 */
#define _GNU_SOURCE /* memmem */
#include "fj.h"
#include "codec.h"

#include <bzlib.h>
#include <limits.h>
#include <string.h>

typedef struct {
    int level;
} bz2_ctx;

static size_t
bz2_bound(void *ctx, size_t len)
{
    return len + len / 100 + 600; /* the bound documented by bzip2 */
}

static int
bz2_block(void *vctx, fj_bjob *job)
{
    bz2_ctx *ctx = vctx;
    bz_stream s;
    memset(&s, 0, sizeof(s));
    int rc = BZ2_bzCompressInit(&s, ctx->level, 0, 0);
    if (rc != BZ_OK) {
        job->failed = 1;
        job->nomem = rc == BZ_MEM_ERROR;
        snprintf(job->msg, sizeof(job->msg), "BZ2_bzCompressInit failed (%d)", rc);
        return -1;
    }
    s.next_in = (char *)job->in;
    s.avail_in = (unsigned int)job->in_len;
    job->out_len = 0;
    for (;;) {
        if (job->out_cap - job->out_len < 1024) {
            size_t ncap = job->out_cap * 2 + 4096;
            char *p = PyMem_RawRealloc(job->out, ncap);
            if (p == NULL) {
                BZ2_bzCompressEnd(&s);
                job->failed = job->nomem = 1;
                snprintf(job->msg, sizeof(job->msg), "out of memory");
                return -1;
            }
            job->out = p;
            job->out_cap = ncap;
        }
        size_t room = job->out_cap - job->out_len;
        if (room > UINT_MAX) {
            room = UINT_MAX;
        }
        s.next_out = job->out + job->out_len;
        s.avail_out = (unsigned int)room;
        rc = BZ2_bzCompress(&s, BZ_FINISH);
        job->out_len += room - s.avail_out;
        if (rc == BZ_STREAM_END) {
            break;
        }
        if (rc != BZ_FINISH_OK) {
            BZ2_bzCompressEnd(&s);
            job->failed = 1;
            snprintf(job->msg, sizeof(job->msg), "BZ2_bzCompress error %d", rc);
            return -1;
        }
    }
    BZ2_bzCompressEnd(&s);
    return 0;
}

static int
bz2_emit(void *ctx, fj_bjob *job, fj_writer *inner, int first)
{
    return fj_codec_put(inner, job->out, job->out_len);
}

static void
bz2_free_ctx(void *ctx)
{
    PyMem_RawFree(ctx);
}

/* one codec description per level (block size depends on it) */
#define BZ2_CODEC(L) {"bz2", 2 * (L) * 100000, 0, 2, bz2_bound, bz2_block, bz2_emit, NULL, bz2_free_ctx}
static const fj_bcodec bz2_codecs[9] = {
    BZ2_CODEC(1), BZ2_CODEC(2), BZ2_CODEC(3), BZ2_CODEC(4), BZ2_CODEC(5),
    BZ2_CODEC(6), BZ2_CODEC(7), BZ2_CODEC(8), BZ2_CODEC(9),
};

fj_writer *
fj_bz2_writer(int level, int threads, fj_writer *inner)
{
    if (level < 0) {
        level = 9;
    }
    if (level < 1 || level > 9) {
        inner->free(inner);
        PyErr_SetString(PyExc_ValueError, "compresslevel must be between 1 and 9");
        return NULL;
    }
    bz2_ctx *ctx = PyMem_RawCalloc(1, sizeof(bz2_ctx));
    if (ctx == NULL) {
        inner->free(inner);
        PyErr_NoMemory();
        return NULL;
    }
    ctx->level = level;
    return fj_bwriter_new(&bz2_codecs[level - 1], ctx, threads, inner);
}

/* ----- reader -------------------------------------------------------------------------------- */
typedef struct {
    bz_stream s;
    int inited;
} bunzip_state;

static int
bunzip_init(void *vst, char *msg, size_t cap)
{
    bunzip_state *st = vst;
    memset(&st->s, 0, sizeof(st->s));
    int rc = BZ2_bzDecompressInit(&st->s, 0, 0);
    if (rc != BZ_OK) {
        snprintf(msg, cap, "BZ2_bzDecompressInit failed (%d)", rc);
        return rc == BZ_MEM_ERROR ? FJ_DEC_NOMEM : FJ_DEC_ERR;
    }
    st->inited = 1;
    return FJ_DEC_OK;
}

static int
bunzip_run(void *vst, const unsigned char **in, size_t *in_len, unsigned char **out,
           size_t *out_len, char *msg, size_t cap)
{
    bunzip_state *st = vst;
    bz_stream *s = &st->s;
    for (;;) {
        unsigned int ain = *in_len > UINT_MAX ? UINT_MAX : (unsigned int)*in_len;
        unsigned int aout = *out_len > UINT_MAX ? UINT_MAX : (unsigned int)*out_len;
        s->next_in = (char *)*in;
        s->avail_in = ain;
        s->next_out = (char *)*out;
        s->avail_out = aout;
        int rc = BZ2_bzDecompress(s);
        size_t used = ain - s->avail_in, made = aout - s->avail_out;
        *in += used;
        *in_len -= used;
        *out += made;
        *out_len -= made;
        if (rc == BZ_STREAM_END) {
            return FJ_DEC_END;
        }
        if (rc == BZ_MEM_ERROR) {
            snprintf(msg, cap, "out of memory");
            return FJ_DEC_NOMEM;
        }
        if (rc != BZ_OK) {
            snprintf(msg, cap, "Invalid data stream");
            return FJ_DEC_ERR;
        }
        if (*in_len == 0 || *out_len == 0 || (used == 0 && made == 0)) {
            return FJ_DEC_OK;
        }
    }
}

static void
bunzip_end(void *vst)
{
    bunzip_state *st = vst;
    if (st->inited) {
        BZ2_bzDecompressEnd(&st->s);
        st->inited = 0;
    }
}

static const fj_sdec_ops bz2_dec = {
    "bz2", sizeof(bunzip_state), bunzip_init, bunzip_run, bunzip_end,
    "BZh", 3, NULL, NULL,
};

/* ----- parallel reader hooks (codec_par.c): segments start at "BZh" level "1AY&SY" ------------ */
static ptrdiff_t
bz2_find(const unsigned char *buf, size_t len, size_t from)
{
    while (from + 10 <= len) {
        const unsigned char *p = memmem(buf + from + 4, len - from - 4, "1AY&SY", 6);
        if (p == NULL) {
            return -1;
        }
        size_t m = (size_t)(p - buf) - 4;
        if (buf[m] == 'B' && buf[m + 1] == 'Z' && buf[m + 2] == 'h' && buf[m + 3] >= '1' &&
            buf[m + 3] <= '9') {
            return (ptrdiff_t)m;
        }
        from = m + 1;
    }
    return -1;
}

static int
bunzip_body_init(void *st, const unsigned char *hist, size_t hist_len, char *msg, size_t cap)
{
    return bunzip_init(st, msg, cap); /* streams need no history */
}

/* As bunzip_run, going on with the next stream when one starts right after the end (as the
 * serial reader does); FJ_DEC_END when the bytes after an end are not (all there as) a stream. */
static int
bunzip_body_run(void *vst, const unsigned char **in, size_t *in_len, unsigned char **out,
                size_t *out_len, char *msg, size_t cap)
{
    for (;;) {
        int rc = bunzip_run(vst, in, in_len, out, out_len, msg, cap);
        if (rc != FJ_DEC_END) {
            return rc;
        }
        if (*in_len < 3 || memcmp(*in, "BZh", 3) != 0) {
            return FJ_DEC_END;
        }
        bunzip_end(vst);
        if ((rc = bunzip_init(vst, msg, cap)) != FJ_DEC_OK) {
            return rc;
        }
    }
}

static int
bunzip_at_boundary(void *st)
{
    return 0; /* boundaries are stream ends (FJ_DEC_END) */
}

static const fj_pdec_ops bz2_pdec = {
    &bz2_dec, sizeof(bunzip_state), bz2_find, 10, 0, 1, 2 * 900000, 0,
    NULL, NULL, bunzip_body_init, bunzip_body_run, bunzip_at_boundary, bunzip_end,
    0, NULL, NULL, 0, NULL, 1, NULL,
};

fj_reader *
fj_bz2_reader_threads(int threads, fj_reader *inner)
{
    return fj_preader_new(&bz2_pdec, threads, inner);
}

fj_reader *
fj_bz2_reader(fj_reader *inner)
{
    return fj_bz2_reader_threads(0, inner);
}
