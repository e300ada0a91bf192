/* codec.h: state and internal API of the codec part (codec.c, codec_*.c, workers.c).
 *
 * Two generic engines live in codec.c and each codec plugs into one of them:
 *
 *  - the block writer (fj_bwriter_new): accumulates the caller's bytes into fixed-size blocks (or,
 *    for large writes, points straight into the caller's memory until write() returns), compresses
 *    the blocks on a worker pool with the GIL released, and emits them in order to the inner
 *    writer. Memory is bounded by 2 x threads blocks in flight (1 x for zstd's 16 MiB frames).
 *    Used by zlib/gzip (pigz-style deflate), bz2 (one stream per block), lz4 (independent frame
 *    blocks) and zstd (independent frames with their content size).
 *  - the stream reader (fj_sreader_new): a bounded input buffer refilled from the inner reader and
 *    a C decoder that writes straight into the caller's buffer, GIL released. Used by lzma, and
 *    by zlib, gzip and bz2 for input without block markers (joblib's files, small files).
 *  - the parallel segment reader (fj_preader_new, codec_par.c): zlib, gzip and bz2 input that
 *    carries our block markers is cut into segments decoded on a worker pool (straight into the
 *    caller's buffer when the place is predictable), validated so that output and errors are
 *    exactly those of the serial reader for any input.
 *
 * Stand-alone fj_writer / fj_reader implementations: the lzma/xz writers (liblzma; xz through its
 * threaded encoder, blocks with sizes), the xz reader (liblzma's threaded decoder), the zstd
 * reader (libzstd from the `zstandard` package: frames with their size decoded in parallel on the
 * pool, others streamed) and the zstd writer's Python-API fallback, and the lz4 frame reader (liblz4's functions found
 * in the `lz4` package's extension with dlsym; independent blocks decoded in parallel on the pool,
 * linked blocks serially with a 64 KiB history; the package's Python API as the fallback).
 */
#ifndef FJ_CODEC_H
#define FJ_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "workers.h"

/* Codecs keep no module-level objects: the optional packages (lz4, zstandard) are imported at the
 * first use by each stream (sys.modules makes that cheap), so fj_codec_writer/reader need no state. */
typedef struct fj_codec_state {
    PyObject *reserved; /* always NULL */
} fj_codec_state;

/* ----- block writer -------------------------------------------------------------------------- */
typedef struct fj_bjob fj_bjob;
struct fj_bjob {
    fj_task task;             /* first member: the pool task */
    void *writer;             /* the owning block writer */
    const char *in;           /* input: inbuf, or the caller's memory during one write() */
    size_t in_len;
    char *inbuf;              /* owned accumulation buffer, block_size bytes */
    char *out;                /* owned output (compress() may grow it with realloc) */
    size_t out_len, out_cap;
    unsigned char *dict;      /* owned, codec->dict_size bytes: stream bytes preceding `in` */
    size_t dict_len;
    int64_t seq;
    int last;                 /* the final block of the stream */
    int flags;                /* codec-specific */
    uint32_t check;           /* codec-specific (checksum of the block) */
    int failed;               /* compress() failed: msg, or a captured Python exception */
    int nomem;
    char msg[160];
    PyObject *exc_type, *exc_value, *exc_tb; /* captured in a worker (needs the GIL to clear) */
};

typedef struct fj_bcodec {
    const char *name;
    size_t block_size;        /* input bytes per block */
    size_t dict_size;         /* 0, or bytes of preceding data handed to each block (deflate) */
    int final_job;            /* 0: no final job; 1: always end with a final (maybe empty) job;
                                 2: a final empty job only when the stream is empty */
    /* Initial output capacity for `len` input bytes. */
    size_t (*bound)(void *ctx, size_t len);
    /* Worker thread, GIL NOT held (take it with PyGILState_Ensure to call Python, and capture any
     * exception into the job). 0, or -1 with job->failed set. */
    int (*compress)(void *ctx, fj_bjob *job);
    /* GIL held: write the job's output (and framing; `first` for the stream header). 0 / -1. */
    int (*emit)(void *ctx, fj_bjob *job, fj_writer *inner, int first);
    /* GIL held: trailer. `nemitted` jobs were emitted before. 0 / -1. */
    int (*finish)(void *ctx, fj_writer *inner, int64_t nemitted, uint64_t total_in);
    void (*free_ctx)(void *ctx); /* GIL held; may be NULL */
    /* Blocks in flight per thread: 0 means 2 (one compressing, one waiting to be emitted). Big
     * blocks take 1: their buffers are most of the writer's memory. */
    int slots_per_thread;
} fj_bcodec;

/* Owns ctx (freed through codec->free_ctx) and inner, also on failure. */
fj_writer *fj_bwriter_new(const fj_bcodec *codec, void *ctx, int threads, fj_writer *inner);

/* ----- stream reader ------------------------------------------------------------------------- */
enum { FJ_DEC_OK = 0, FJ_DEC_END = 1, FJ_DEC_ERR = -1, FJ_DEC_NOMEM = -2 };

typedef struct fj_sdec_ops {
    const char *name;
    size_t state_size;
    /* (Re)start a stream. FJ_DEC_OK, or an error code with msg filled. GIL not held. */
    int (*init)(void *st, char *msg, size_t msgcap);
    /* Decode: consume from in/in_len, produce into out/out_len (both advanced). GIL NOT held.
     * FJ_DEC_OK (maybe no progress when starved), FJ_DEC_END at the end of the stream, or an error
     * code with msg filled. */
    int (*run)(void *st, const unsigned char **in, size_t *in_len, unsigned char **out,
               size_t *out_len, char *msg, size_t msgcap);
    void (*end)(void *st);
    /* After the end of a stream, another one is decoded when the next bytes start with this
     * (gzip members, bz2 streams, xz streams); anything else after the end is ignored. */
    const char *magic;
    size_t magic_len;
    /* Exception class for corrupt data: module attribute, or NULL for OSError. */
    const char *err_module, *err_attr;
} fj_sdec_ops;

fj_reader *fj_sreader_new(const fj_sdec_ops *ops, fj_reader *inner);

/* ----- per-codec constructors (codec_*.c); all own `inner` ----------------------------------- */
fj_writer *fj_deflate_writer(int gzip, int level, int threads, fj_writer *inner);
fj_reader *fj_deflate_reader(int gzip, fj_reader *inner);
fj_writer *fj_bz2_writer(int level, int threads, fj_writer *inner);
fj_reader *fj_bz2_reader(fj_reader *inner);
fj_writer *fj_lzma_writer(int xz, int level, int threads, fj_writer *inner);
fj_reader *fj_lzma_reader(int xz, int threads, fj_reader *inner); /* threads 1: serial */
fj_writer *fj_lz4_writer(int level, int threads, fj_writer *inner);
fj_reader *fj_lz4_reader(fj_reader *inner);
fj_writer *fj_zstd_writer(int level, int threads, fj_writer *inner);
fj_reader *fj_zstd_reader(int threads, fj_reader *inner); /* threads <= 0: all CPUs */

/* helpers (codec.c) */
int fj_codec_threads(int threads); /* <= 0 -> usable CPUs; capped */
/* Raise the named module attribute (or OSError when mod is NULL) with a message. Returns -1. */
int fj_codec_raise(const char *mod, const char *attr, const char *fmt, ...);
/* Write all of buf to inner (GIL held). */
int fj_codec_put(fj_writer *inner, const void *buf, size_t len);
/* Truncated-stream error, same type and text as the stdlib/joblib compressed readers (EOFError). */
int fj_codec_raise_truncated(void);
/* The stream readers' error kinds, and the error each raises: corrupt data as ops' class with
 * "<name>: invalid compressed data: <msg>", MemoryError, the truncation error, or a Python error
 * kept (type, value, traceback: new references are restored). Returns -1. */
enum { FJ_ERR_NONE = 0, FJ_ERR_CORRUPT, FJ_ERR_NOMEM, FJ_ERR_TRUNCATED, FJ_ERR_PYTHON };
int fj_codec_raise_kind(const struct fj_sdec_ops *ops, int kind, const char *msg,
                        PyObject *type, PyObject *value, PyObject *tb);

/* ----- parallel segment reader (codec_par.c) ------------------------------------------------- *
 * For streams our block writers produce: independent segments separated by a findable marker.
 * The reader cuts the input at candidate markers, inflates the segments speculatively on a worker
 * pool (each from scratch, no history), and accepts a worker's result only when the true decode
 * is at a clean boundary at that segment's start AND the worker decoded it cleanly to its end
 * (or to the stream end). Anything else is decoded serially by the consumer, with the preceding
 * output as history, so output and errors are those of a serial decoder for every input. Files
 * without a marker in the first few MiB (joblib's own, small ones) go to fj_sreader_new. */
typedef struct fj_pdec_ops {
    const fj_sdec_ops *serial; /* the plain decoder: name, magic, error class, files w/o markers */
    size_t state_size;         /* decoder state (one per worker + one for the consumer) */
    /* Position of the first candidate marker in buf[from:len) (only whole markers), or -1. */
    ptrdiff_t (*find)(const unsigned char *buf, size_t len, size_t from);
    size_t marker_len;
    size_t cut;                /* a segment boundary is at marker position + cut */
    int end_continues;         /* a stream end exactly at a marker boundary goes on with the next
                                  segment (bz2: the next stream starts there) */
    size_t out_hint;           /* expected output of one segment */
    size_t hist_size;          /* history handed to the serial body decoder (0: none) */
    /* Stream header (may be NULL): head_init, then head consumes from in; FJ_DEC_END once the
     * header is complete (the body starts at *in), FJ_DEC_OK for more input, or an error. */
    int (*head_init)(void *st, char *msg, size_t cap);
    int (*head)(void *st, const unsigned char **in, size_t *in_len, char *msg, size_t cap);
    /* Body decoder, started at a boundary with the preceding output (hist, may be empty); run as
     * fj_sdec_ops.run; at_boundary: after all input was consumed, the decoder stands exactly on a
     * boundary where an independent segment may start. end releases (safe on a fresh state). */
    int (*body_init)(void *st, const unsigned char *hist, size_t hist_len, char *msg, size_t cap);
    int (*body_run)(void *st, const unsigned char **in, size_t *in_len, unsigned char **out,
                    size_t *out_len, char *msg, size_t msgcap);
    int (*at_boundary)(void *st);
    void (*end)(void *st);
    /* Checksum over a stream's output (check_update NULL: none) and its trailer. */
    uint32_t check_init;
    uint32_t (*check_update)(uint32_t c, const unsigned char *p, size_t n);
    uint32_t (*check_combine)(uint32_t a, uint32_t b, uint64_t len_b);
    size_t tail_len;
    /* 0, or -1 with msg: verify tail[0:tail_len] against the check and the output length. */
    int (*tail)(const unsigned char *tail, uint32_t check, uint64_t total, char *msg, size_t cap);
    /* Go parallel only with at least this many candidate markers in the first few MiB (smaller
     * inputs do not repay the threads and buffers). */
    int min_markers;
    /* May be NULL. Does the input start like our writer's output? 1 yes, 0 no (the serial reader
     * at once, no probe), -1 more bytes needed. Only speed depends on the answer. */
    int (*sniff)(const unsigned char *buf, size_t len);
    /* May be NULL (fj_sreader_new). Makes the reader of an input without markers (the bytes
     * read so far are replayed by `inner`); threads as given to fj_preader_new. */
    fj_reader *(*serial_new)(const struct fj_pdec_ops *ops, int threads, fj_reader *inner);
} fj_pdec_ops;

/* ----- inflate engines (codec_deflate.c) and the speculative inflate reader (codec_ispec.c) -- */
/* zlib's or zlib-ng's inflate (ng: the stream is an fj_zng_stream, engine.h), with the checksums
 * of the same library. */
typedef struct fj_inflate_fns {
    int (*init2)(void *s, int wbits);
    int (*inflate)(void *s, int flush);
    int (*end)(void *s);
    int (*setdict)(void *s, const unsigned char *d, uint32_t n);
    int (*prime)(void *s, int bits, int value);
    uint32_t (*adler32)(uint32_t c, const unsigned char *p, size_t n);
    uint32_t (*crc32)(uint32_t c, const unsigned char *p, size_t n);
    int ng;
} fj_inflate_fns;

/* One serial zlib (gzip = 0) or gzip stream (joblib's files), decoded on `threads` (>= 2) cores:
 * workers decode regions ahead from guessed block boundaries (see codec_ispec.c); output and
 * errors are those of `ops->serial`. Owns inner. */
fj_reader *fj_ispec_new(const fj_pdec_ops *ops, const fj_inflate_fns *f, int gzip, int threads,
                        fj_reader *inner);
/* Process-wide counters: regions taken, failed (no start found, or given up), passed (the
 * consumer went past their start without standing on it), joined (taken from the point the
 * consumer had reached inside them). GIL held. */
void fj_ispec_stats(uint64_t out[4]);

/* threads: <= 0 all usable CPUs; 1: the serial reader (fj_sreader_new). Owns inner. */
fj_reader *fj_preader_new(const fj_pdec_ops *ops, int threads, fj_reader *inner);
/* fj_codec_reader with a thread count (0: all cores; 1: serial); used by _core._decompress. */
fj_reader *fj_codec_reader_threads(const char *name, int threads, fj_reader *inner);
fj_reader *fj_deflate_reader_threads(int gzip, int threads, fj_reader *inner);
fj_reader *fj_bz2_reader_threads(int threads, fj_reader *inner);

#endif
