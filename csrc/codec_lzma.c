/* codec_lzma.c: .lzma ("alone", joblib's 'lzma') and .xz with liblzma.
 *
 * Writer: one liblzma encoder fed from the caller's memory with the GIL released. 'xz' always uses
 * liblzma's multithreaded encoder (lzma_stream_encoder_mt, also with one thread): independent
 * blocks inside ONE standard .xz stream, each block header carrying its compressed and
 * uncompressed sizes, which is what lets the multithreaded decoder split the work. Block size:
 * max(3 x dictionary, 1 MiB), liblzma's (and `xz -T`'s) own choice: independent blocks cost ratio
 * on compressible data (512 MiB smooth array at preset 6, against one single-threaded stream:
 * +34% with 8 MiB blocks, +11% with 24 MiB, +5% with 48 MiB), and memory per thread is about
 * 12 x dictionary + 2 x block (lzma_stream_encoder_mt_memusage: 165 MiB per thread at preset 6,
 * where joblib's single-threaded encoder needs 94 MiB). 'lzma' (FORMAT_ALONE) cannot be
 * parallel. Preset 0..9, default 6, CRC-64 check for xz, like lzma.LZMAFile.
 * Reader: .xz through lzma_stream_decoder_mt (threads = usable CPUs), .lzma through
 * lzma_alone_decoder, into the caller's buffer, continuing across concatenated streams. Every
 * decoder has a hard memory limit (FJ_LZMA_MEMLIMIT): a header asking for more (an 18-byte
 * hostile .lzma header can ask for a 4 GiB dictionary) raises LZMAError naming the limit.
 */
#include "fj.h"
#include "codec.h"

#include <lzma.h>
#include <string.h>
#include <time.h>

#define LZMA_OUTBUF (256 * 1024)
#define LZMA_FEED (4u << 20) /* input handed to lzma_code per GIL release */
/* Hard memory cap of every decoder: xz's largest dictionary (--lzma2=dict=1536MiB) plus room for
 * the decoder's own state and, for .xz, the multithreaded decoder's block buffers. */
#define FJ_LZMA_MEMLIMIT ((uint64_t)1600 << 20)
#define LZMA_MIN_BLOCK ((uint64_t)1 << 20)

typedef struct {
    fj_writer base;
    fj_writer *inner;
    lzma_stream s;
    unsigned char *out;
    int failed, closed;
} lzma_writer;

static int
lzma_error(lzma_ret rc, const char *what)
{
    if (rc == LZMA_MEM_ERROR) {
        PyErr_NoMemory();
        return -1;
    }
    const char *msg = rc == LZMA_OPTIONS_ERROR ? "Invalid or unsupported options"
                    : rc == LZMA_UNSUPPORTED_CHECK ? "Unsupported integrity check"
                    : rc == LZMA_DATA_ERROR ? "Corrupt input data"
                    : rc == LZMA_FORMAT_ERROR ? "Input format not supported by decoder"
                    : rc == LZMA_MEMLIMIT_ERROR ? "Memory usage limit exceeded"
                    : "Internal error";
    return fj_codec_raise("lzma", "LZMAError", "%s: %s", what, msg);
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Run the encoder over data (NULL/0 with LZMA_FINISH); write output to inner as it fills. The GIL
 * is released for at most ~FJ_WAIT_TICK_MS at a time (the threaded encoder returns after its
 * timeout when it waits for a worker), then pending signals are checked. */
static int
lzma_pump(lzma_writer *w, const char *data, size_t len, lzma_action action)
{
    lzma_stream *s = &w->s;
    for (;;) {
        if (fj_check_interrupt() < 0) {
            return -1;
        }
        size_t feed = len > LZMA_FEED ? LZMA_FEED : len;
        s->next_in = (const uint8_t *)data;
        s->avail_in = feed;
        lzma_ret rc;
        Py_BEGIN_ALLOW_THREADS
        const int64_t until = now_ms() + FJ_WAIT_TICK_MS;
        do {
            rc = lzma_code(s, feed == len ? action : LZMA_RUN);
        } while (rc == LZMA_OK && s->avail_out > 0 && (s->avail_in > 0 || action == LZMA_FINISH) &&
                 now_ms() < until);
        Py_END_ALLOW_THREADS
        size_t used = feed - s->avail_in;
        data += used;
        len -= used;
        if (rc != LZMA_OK && rc != LZMA_STREAM_END) {
            return lzma_error(rc, "xz/lzma compression failed");
        }
        if (s->avail_out == 0 || rc == LZMA_STREAM_END) {
            size_t n = LZMA_OUTBUF - s->avail_out;
            if (fj_codec_put(w->inner, w->out, n) < 0) {
                return -1;
            }
            s->next_out = w->out;
            s->avail_out = LZMA_OUTBUF;
        }
        if (rc == LZMA_STREAM_END) {
            return 0;
        }
        if (len == 0 && action == LZMA_RUN && s->avail_in == 0) {
            return 0;
        }
    }
}

static int
lzma_w_write(fj_writer *self, const char *data, Py_ssize_t len)
{
    lzma_writer *w = (lzma_writer *)self;
    if (w->failed || w->closed) {
        PyErr_SetString(PyExc_ValueError, "lzma compressor: stream closed or failed earlier");
        return -1;
    }
    if (len <= 0) {
        return 0;
    }
    if (lzma_pump(w, data, (size_t)len, LZMA_RUN) < 0) {
        w->failed = 1;
        return -1;
    }
    return 0;
}

static int
lzma_w_close(fj_writer *self)
{
    lzma_writer *w = (lzma_writer *)self;
    if (w->failed || w->closed) {
        PyErr_SetString(PyExc_ValueError, "lzma compressor: stream closed or failed earlier");
        return -1;
    }
    w->closed = 1;
    if (lzma_pump(w, NULL, 0, LZMA_FINISH) < 0) {
        w->failed = 1;
        return -1;
    }
    return w->inner->close(w->inner);
}

static void
lzma_w_free(fj_writer *self)
{
    lzma_writer *w = (lzma_writer *)self;
    Py_BEGIN_ALLOW_THREADS
    lzma_end(&w->s); /* joins the encoder's threads */
    Py_END_ALLOW_THREADS
    PyMem_RawFree(w->out);
    if (w->inner != NULL) {
        w->inner->free(w->inner);
    }
    PyMem_RawFree(w);
}

fj_writer *
fj_lzma_writer(int xz, int level, int threads, fj_writer *inner)
{
    lzma_writer *w = NULL;
    if (level < 0) {
        level = 6;
    }
    if (level > 9) {
        inner->free(inner);
        PyErr_Format(PyExc_ValueError, "Invalid compression preset: %d", level);
        return NULL;
    }
    w = PyMem_RawCalloc(1, sizeof(lzma_writer));
    if (w == NULL) {
        inner->free(inner);
        PyErr_NoMemory();
        return NULL;
    }
    w->base.write = lzma_w_write;
    w->base.close = lzma_w_close;
    w->base.free = lzma_w_free;
    w->base.pos = 0;
    w->inner = inner;
    lzma_stream init = LZMA_STREAM_INIT;
    w->s = init;
    if ((w->out = PyMem_RawMalloc(LZMA_OUTBUF)) == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    lzma_ret rc;
    threads = fj_codec_threads(threads);
    if (!xz) {
        lzma_options_lzma opt;
        if (lzma_lzma_preset(&opt, (uint32_t)level)) {
            PyErr_Format(PyExc_ValueError, "Invalid compression preset: %d", level);
            goto error;
        }
        rc = lzma_alone_encoder(&w->s, &opt);
    }
    else {
        lzma_options_lzma opt;
        lzma_mt mt;
        if (lzma_lzma_preset(&opt, (uint32_t)level)) {
            PyErr_Format(PyExc_ValueError, "Invalid compression preset: %d", level);
            goto error;
        }
        memset(&mt, 0, sizeof(mt));
        mt.threads = (uint32_t)threads;
        mt.preset = (uint32_t)level;
        mt.check = LZMA_CHECK_CRC64;
        mt.timeout = FJ_WAIT_TICK_MS; /* lzma_code returns to check for signals */
        mt.block_size = 3 * (uint64_t)opt.dict_size > LZMA_MIN_BLOCK ? 3 * (uint64_t)opt.dict_size
                                                                      : LZMA_MIN_BLOCK;
        rc = lzma_stream_encoder_mt(&w->s, &mt);
    }
    if (rc != LZMA_OK) {
        lzma_error(rc, "cannot start the xz/lzma encoder");
        goto error;
    }
    w->s.next_out = w->out;
    w->s.avail_out = LZMA_OUTBUF;
    return &w->base;
error:
    lzma_w_free(&w->base);
    return NULL;
}

/* ----- reader -------------------------------------------------------------------------------- */
typedef struct {
    lzma_stream s;
    int inited;
} unxz_state;

static lzma_ret
start_decoder(unxz_state *st, int xz, int serial)
{
    if (!xz) {
        return lzma_alone_decoder(&st->s, FJ_LZMA_MEMLIMIT);
    }
    /* serial: one thread, streaming into the caller's buffer (the multithreaded decoder first
     * decodes a whole block, whose size the block header declares, into its own buffer) */
    int threads = serial ? 1 : fj_codec_threads(0);
    if (threads > 64) {
        threads = 64;
    }
    if (threads == 1) {
        return lzma_stream_decoder(&st->s, FJ_LZMA_MEMLIMIT, 0);
    }
    /* Above memlimit_threading the decoder goes on in one thread; above memlimit_stop it fails. */
    uint64_t threading = lzma_physmem() / 4;
    if (threading == 0 || threading > FJ_LZMA_MEMLIMIT) {
        threading = threading == 0 ? (uint64_t)256 << 20 : FJ_LZMA_MEMLIMIT;
    }
    lzma_mt mt;
    memset(&mt, 0, sizeof(mt));
    mt.threads = (uint32_t)threads;
    mt.timeout = 0;
    mt.memlimit_threading = threading;
    mt.memlimit_stop = FJ_LZMA_MEMLIMIT;
    return lzma_stream_decoder_mt(&st->s, &mt);
}

static int
unxz_init_any(void *vst, char *msg, size_t cap, int xz, int serial)
{
    unxz_state *st = vst;
    lzma_stream init = LZMA_STREAM_INIT;
    st->s = init;
    lzma_ret rc = start_decoder(st, xz, serial);
    if (rc != LZMA_OK) {
        snprintf(msg, cap, "cannot start the decoder (%d)", (int)rc);
        return rc == LZMA_MEM_ERROR ? FJ_DEC_NOMEM : FJ_DEC_ERR;
    }
    st->inited = 1;
    return FJ_DEC_OK;
}

static int
unxz_init(void *vst, char *msg, size_t cap)
{
    return unxz_init_any(vst, msg, cap, 1, 0);
}

static int
unxz_serial_init(void *vst, char *msg, size_t cap)
{
    return unxz_init_any(vst, msg, cap, 1, 1);
}

static int
unlzma_init(void *vst, char *msg, size_t cap)
{
    return unxz_init_any(vst, msg, cap, 0, 1);
}

static int
unxz_run(void *vst, const unsigned char **in, size_t *in_len, unsigned char **out,
         size_t *out_len, char *msg, size_t cap)
{
    unxz_state *st = vst;
    lzma_stream *s = &st->s;
    s->next_in = *in;
    s->avail_in = *in_len;
    s->next_out = *out;
    s->avail_out = *out_len;
    lzma_ret rc;
    do {
        rc = lzma_code(s, LZMA_RUN);
    } while (rc == LZMA_OK && s->avail_in > 0 && s->avail_out > 0);
    *in += *in_len - s->avail_in;
    *in_len = s->avail_in;
    *out += *out_len - s->avail_out;
    *out_len = s->avail_out;
    switch (rc) {
    case LZMA_OK:
    case LZMA_BUF_ERROR: /* no progress possible now: starved */
        return FJ_DEC_OK;
    case LZMA_STREAM_END:
        return FJ_DEC_END;
    case LZMA_MEM_ERROR:
        snprintf(msg, cap, "out of memory");
        return FJ_DEC_NOMEM;
    case LZMA_FORMAT_ERROR:
        snprintf(msg, cap, "Input format not supported by decoder");
        return FJ_DEC_ERR;
    case LZMA_OPTIONS_ERROR:
        snprintf(msg, cap, "Invalid or unsupported options");
        return FJ_DEC_ERR;
    case LZMA_DATA_ERROR:
        snprintf(msg, cap, "Corrupt input data");
        return FJ_DEC_ERR;
    case LZMA_MEMLIMIT_ERROR:
        snprintf(msg, cap, "Memory usage limit exceeded: decoding this stream needs %llu MiB, "
                 "more than fastjoblib's limit of %llu MiB for lzma/xz decoders",
                 (unsigned long long)((lzma_memusage(s) + (1u << 20) - 1) >> 20),
                 (unsigned long long)(FJ_LZMA_MEMLIMIT >> 20));
        return FJ_DEC_ERR;
    default:
        snprintf(msg, cap, "decoder error %d", (int)rc);
        return FJ_DEC_ERR;
    }
}

static void
unxz_end(void *vst)
{
    unxz_state *st = vst;
    if (st->inited) {
        lzma_end(&st->s);
        st->inited = 0;
    }
}

static const fj_sdec_ops xz_dec = {
    "xz", sizeof(unxz_state), unxz_init, unxz_run, unxz_end,
    "\xfd" "7zXZ\0", 6, "lzma", "LZMAError",
};
static const fj_sdec_ops xz_serial_dec = {
    "xz", sizeof(unxz_state), unxz_serial_init, unxz_run, unxz_end,
    "\xfd" "7zXZ\0", 6, "lzma", "LZMAError",
};
static const fj_sdec_ops lzma_dec = {
    "lzma", sizeof(unxz_state), unlzma_init, unxz_run, unxz_end,
    "\x5d\0", 2, "lzma", "LZMAError",
};

fj_reader *
fj_lzma_reader(int xz, int threads, fj_reader *inner)
{
    return fj_sreader_new(!xz ? &lzma_dec : threads == 1 ? &xz_serial_dec : &xz_dec, inner);
}
