/* codec.c: codec dispatch by name, the two generic engines (block writer, stream reader), and the
 * in-memory test entry points _core._compress / _core._decompress.
 *
 * See codec.h for the design. Everything here is called with the GIL held unless said otherwise.
 */
#include "fj.h"
#include "codec.h"

#include <stdarg.h>
#include <string.h>

#define MAX_THREADS 256

/* ============================================================================================
 * helpers
 */
int
fj_codec_threads(int threads)
{
    if (threads <= 0) {
        threads = fj_usable_cpus();
    }
    if (threads > MAX_THREADS) {
        threads = MAX_THREADS;
    }
    return threads;
}

int
fj_codec_raise(const char *mod, const char *attr, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    PyObject *exc = NULL;
    if (mod != NULL) {
        PyObject *m = PyImport_ImportModule(mod);
        if (m == NULL) {
            return -1;
        }
        exc = PyObject_GetAttrString(m, attr);
        Py_DECREF(m);
        if (exc == NULL) {
            return -1;
        }
    }
    else {
        exc = Py_NewRef(PyExc_OSError);
    }
    PyErr_SetString(exc, msg);
    Py_DECREF(exc);
    return -1;
}

int
fj_codec_raise_truncated(void)
{
    PyErr_SetString(PyExc_EOFError,
                    "Compressed file ended before the end-of-stream marker was reached");
    return -1;
}

int
fj_codec_put(fj_writer *inner, const void *buf, size_t len)
{
    const char *p = (const char *)buf;
    while (len > 0) {
        Py_ssize_t n = len > (size_t)PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX : (Py_ssize_t)len;
        if (inner->write(inner, p, n) < 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ============================================================================================
 * block writer
 */
typedef struct {
    fj_writer base;
    fj_writer *inner;
    const fj_bcodec *codec;
    void *ctx;
    int threads;            /* compression threads; 1 = inline in the caller's thread */
    int nslots;
    fj_bjob *slots;
    int head;               /* oldest submitted, not yet emitted */
    int nsub;               /* submitted, not yet emitted */
    fj_bjob *cur;           /* slot being filled, or NULL */
    fj_pool *pool;          /* started lazily at the first non-final block when threads > 1 */
    int64_t seq, nemitted;
    uint64_t total_in;
    unsigned char *hist;    /* the last dict_size bytes of the stream before `cur` */
    size_t hist_len;
    int failed, closed;
} bwriter;

static void
run_bjob(fj_task *task)
{
    fj_bjob *job = (fj_bjob *)task;
    bwriter *w = (bwriter *)job->writer;
    w->codec->compress(w->ctx, job);
}

static int
bwriter_state_error(bwriter *w)
{
    PyErr_Format(PyExc_ValueError, "%s compressor: %s", w->codec->name,
                 w->closed ? "stream already closed" : "stream failed earlier");
    return -1;
}

/* Wait (GIL released) for every job in flight, dropping the queued ones; mark the writer failed. */
static void
abort_jobs(bwriter *w)
{
    w->failed = 1;
    if (w->pool != NULL) {
        Py_BEGIN_ALLOW_THREADS
        fj_pool_cancel_all(w->pool);
        Py_END_ALLOW_THREADS
    }
}

static int
raise_job_error(bwriter *w, fj_bjob *job)
{
    if (job->exc_type != NULL) {
        PyErr_Restore(job->exc_type, job->exc_value, job->exc_tb); /* steals the three */
        job->exc_type = job->exc_value = job->exc_tb = NULL;
    }
    else if (job->nomem) {
        PyErr_NoMemory();
    }
    else {
        PyErr_Format(PyExc_ValueError, "%s compression failed: %s", w->codec->name, job->msg);
    }
    return -1;
}

/* Emit submitted jobs in order. mode 0: only those already done; 1: at least the oldest (waits);
 * 2: all (waits). 0 / -1 (writer aborted). */
static int
emit_jobs(bwriter *w, int mode)
{
    int waited_one = 0;
    while (w->nsub > 0) {
        fj_bjob *job = &w->slots[w->head];
        if (w->pool != NULL && !fj_pool_is_done(w->pool, &job->task)) {
            if (mode == 0 || (mode == 1 && waited_one)) {
                break;
            }
            if (fj_wait_interruptible(w->pool, &job->task) < 0) {
                goto error;
            }
        }
        if (job->failed) {
            raise_job_error(w, job);
            goto error;
        }
        if (w->codec->emit(w->ctx, job, w->inner, w->nemitted == 0) < 0) {
            goto error;
        }
        w->nemitted++;
        w->head = (w->head + 1) % w->nslots;
        w->nsub--;
        job->task.state = FJ_TASK_IDLE;
        waited_one = 1;
    }
    return 0;
error:
    abort_jobs(w);
    return -1;
}

/* The slot to fill next (waits for and emits the oldest job when all slots are in flight). */
static fj_bjob *
acquire_slot(bwriter *w)
{
    if (w->cur != NULL) {
        return w->cur;
    }
    if (w->nsub == w->nslots && emit_jobs(w, 1) < 0) {
        return NULL;
    }
    fj_bjob *job = &w->slots[(w->head + w->nsub) % w->nslots];
    if (job->inbuf == NULL) {
        job->inbuf = PyMem_RawMalloc(w->codec->block_size);
        if (job->inbuf == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
    }
    job->in = job->inbuf;
    job->in_len = 0;
    job->out_len = 0;
    job->last = 0;
    job->flags = 0;
    job->check = 0;
    job->failed = 0;
    job->nomem = 0;
    job->msg[0] = '\0';
    job->dict_len = 0;
    w->cur = job;
    return job;
}

/* Hand the current slot (job == w->cur) to the workers, or compress it inline. */
static int
submit_job(bwriter *w, fj_bjob *job)
{
    const fj_bcodec *c = w->codec;
    size_t need = c->bound(w->ctx, job->in_len);
    if (job->out_cap < need) {
        char *p = PyMem_RawRealloc(job->out, need);
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        job->out = p;
        job->out_cap = need;
    }
    if (c->dict_size > 0) {
        if (job->dict == NULL && (job->dict = PyMem_RawMalloc(c->dict_size)) == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(job->dict, w->hist, w->hist_len);
        job->dict_len = w->hist_len;
        /* history for the next block: the last dict_size bytes of hist + in */
        if (job->in_len >= c->dict_size) {
            memcpy(w->hist, job->in + job->in_len - c->dict_size, c->dict_size);
            w->hist_len = c->dict_size;
        }
        else {
            size_t keep = c->dict_size - job->in_len;
            if (keep > w->hist_len) {
                keep = w->hist_len;
            }
            memmove(w->hist, w->hist + w->hist_len - keep, keep);
            memcpy(w->hist + keep, job->in, job->in_len);
            w->hist_len = keep + job->in_len;
        }
    }
    job->seq = w->seq++;
    w->total_in += job->in_len;
    w->cur = NULL;
    w->nsub++;
    if (w->pool == NULL && w->threads > 1 && !job->last) {
        w->pool = fj_pool_new(w->threads); /* on failure: carry on inline */
    }
    if (w->pool != NULL) {
        fj_pool_submit(w->pool, &job->task);
    }
    else {
        Py_BEGIN_ALLOW_THREADS
        c->compress(w->ctx, job);
        Py_END_ALLOW_THREADS
        job->task.state = FJ_TASK_DONE;
    }
    return 0;
}

static int
bwriter_write(fj_writer *self, const char *data, Py_ssize_t len)
{
    bwriter *w = (bwriter *)self;
    const size_t bs = w->codec->block_size;
    /* Large writes: whole blocks are compressed straight from the caller's memory; all of them
     * are finished before we return (the interface forbids keeping `data`). */
    const size_t direct_min = bs * (size_t)(w->threads > 1 ? w->nslots : 1);
    int direct = 0;
    size_t left = (size_t)len;

    if (w->failed || w->closed) {
        return bwriter_state_error(w);
    }
    if (len < 0) {
        PyErr_SetString(PyExc_ValueError, "negative write length");
        return -1;
    }
    while (left > 0) {
        fj_bjob *job;
        /* between blocks: a block is compressed inline (threads=1) or waited for interruptibly */
        if (fj_check_interrupt() < 0) {
            goto error;
        }
        if (w->cur == NULL && left >= direct_min) {
            if ((job = acquire_slot(w)) == NULL) {
                goto error;
            }
            job->in = data;
            job->in_len = bs;
            direct = 1;
            if (submit_job(w, job) < 0) {
                goto error;
            }
            data += bs;
            left -= bs;
        }
        else {
            if ((job = acquire_slot(w)) == NULL) {
                goto error;
            }
            size_t n = bs - job->in_len;
            if (n > left) {
                n = left;
            }
            memcpy(job->inbuf + job->in_len, data, n);
            job->in_len += n;
            data += n;
            left -= n;
            if (job->in_len == bs && submit_job(w, job) < 0) {
                goto error;
            }
        }
        if (emit_jobs(w, 0) < 0) {
            return -1;
        }
    }
    if (direct && emit_jobs(w, 2) < 0) {
        return -1;
    }
    return 0;
error:
    abort_jobs(w);
    return -1;
}

static int
bwriter_close(fj_writer *self)
{
    bwriter *w = (bwriter *)self;
    const fj_bcodec *c = w->codec;
    if (w->failed || w->closed) {
        return bwriter_state_error(w);
    }
    fj_bjob *job = w->cur;
    if (job == NULL && (c->final_job == 1 || (c->final_job == 2 && w->seq == 0))) {
        if ((job = acquire_slot(w)) == NULL) {
            goto error;
        }
    }
    if (job != NULL) {
        job->last = 1;
        if (submit_job(w, job) < 0) {
            goto error;
        }
    }
    if (emit_jobs(w, 2) < 0) {
        return -1;
    }
    w->closed = 1;
    if (c->finish != NULL && c->finish(w->ctx, w->inner, w->nemitted, w->total_in) < 0) {
        w->failed = 1;
        return -1;
    }
    return w->inner->close(w->inner);
error:
    abort_jobs(w);
    return -1;
}

static void
bwriter_free(fj_writer *self)
{
    bwriter *w = (bwriter *)self;
    if (w->pool != NULL) {
        Py_BEGIN_ALLOW_THREADS
        fj_pool_free(w->pool);
        Py_END_ALLOW_THREADS
        w->pool = NULL;
    }
    if (w->slots != NULL) {
        for (int i = 0; i < w->nslots; i++) {
            fj_bjob *job = &w->slots[i];
            PyMem_RawFree(job->inbuf);
            PyMem_RawFree(job->out);
            PyMem_RawFree(job->dict);
            Py_CLEAR(job->exc_type);
            Py_CLEAR(job->exc_value);
            Py_CLEAR(job->exc_tb);
        }
        PyMem_RawFree(w->slots);
    }
    PyMem_RawFree(w->hist);
    if (w->codec->free_ctx != NULL && w->ctx != NULL) {
        w->codec->free_ctx(w->ctx);
    }
    if (w->inner != NULL) {
        w->inner->free(w->inner);
    }
    PyMem_RawFree(w);
}

fj_writer *
fj_bwriter_new(const fj_bcodec *codec, void *ctx, int threads, fj_writer *inner)
{
    bwriter *w = PyMem_RawCalloc(1, sizeof(bwriter));
    if (w == NULL) {
        if (codec->free_ctx != NULL && ctx != NULL) {
            codec->free_ctx(ctx);
        }
        inner->free(inner);
        PyErr_NoMemory();
        return NULL;
    }
    w->base.write = bwriter_write;
    w->base.close = bwriter_close;
    w->base.free = bwriter_free;
    w->base.pos = 0;
    w->inner = inner;
    w->codec = codec;
    w->ctx = ctx;
    w->threads = fj_codec_threads(threads);
    w->nslots = w->threads > 1 ? (codec->slots_per_thread > 0 ? codec->slots_per_thread : 2) *
                                     w->threads
                               : 1;
    w->slots = PyMem_RawCalloc((size_t)w->nslots, sizeof(fj_bjob));
    if (w->slots == NULL) {
        goto nomem;
    }
    for (int i = 0; i < w->nslots; i++) {
        w->slots[i].task.fn = run_bjob;
        w->slots[i].writer = w;
    }
    if (codec->dict_size > 0 && (w->hist = PyMem_RawMalloc(codec->dict_size)) == NULL) {
        goto nomem;
    }
    return &w->base;
nomem:
    bwriter_free(&w->base);
    PyErr_NoMemory();
    return NULL;
}

/* ============================================================================================
 * stream reader
 */
#define SREADER_INPUT (256 * 1024)
#define SREADER_SLICE ((size_t)1 << 20) /* output per GIL release, then a signal check */

enum { PERR_NONE = FJ_ERR_NONE, PERR_CORRUPT = FJ_ERR_CORRUPT, PERR_NOMEM = FJ_ERR_NOMEM,
       PERR_TRUNCATED = FJ_ERR_TRUNCATED, PERR_PYTHON = FJ_ERR_PYTHON };

typedef struct {
    fj_reader base;
    fj_reader *inner;
    const fj_sdec_ops *ops;
    void *st;
    unsigned char *ibuf;
    size_t ipos, ilen;      /* unread input: ibuf[ipos : ipos + ilen] */
    int input_eof;
    int active;             /* ops->init done, ops->end not yet */
    int finished;
    int perr;               /* an error met after some output was returned: raised next time */
    char perr_msg[200];
    PyObject *perr_type, *perr_value, *perr_tb;
} sreader;

int
fj_codec_raise_kind(const fj_sdec_ops *ops, int kind, const char *msg, PyObject *type,
                    PyObject *value, PyObject *tb)
{
    switch (kind) {
    case FJ_ERR_NOMEM:
        PyErr_NoMemory();
        return -1;
    case FJ_ERR_TRUNCATED:
        return fj_codec_raise_truncated();
    case FJ_ERR_PYTHON:
        PyErr_Restore(Py_XNewRef(type), Py_XNewRef(value), Py_XNewRef(tb));
        return -1;
    default:
        return fj_codec_raise(ops->err_module, ops->err_attr, "%s: invalid compressed data: %s",
                              ops->name, msg);
    }
}

static int
sreader_raise(sreader *r, int kind, const char *msg)
{
    return fj_codec_raise_kind(r->ops, kind, msg, r->perr_type, r->perr_value, r->perr_tb);
}

/* Read more input after the unread part; 0 at end of input. */
static Py_ssize_t
sreader_fill(sreader *r)
{
    if (r->ilen == 0) {
        r->ipos = 0;
    }
    else if (r->ipos + r->ilen == SREADER_INPUT) {
        memmove(r->ibuf, r->ibuf + r->ipos, r->ilen);
        r->ipos = 0;
    }
    size_t off = r->ipos + r->ilen;
    Py_ssize_t n = r->inner->read(r->inner, (char *)r->ibuf + off, (Py_ssize_t)(SREADER_INPUT - off));
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
sreader_read(fj_reader *self, char *buf, Py_ssize_t len)
{
    sreader *r = (sreader *)self;
    const fj_sdec_ops *ops = r->ops;
    size_t produced = 0, want = len > 0 ? (size_t)len : 0;
    int kind = PERR_NONE;
    char msg[200] = "";
    const unsigned long mark = fj_interrupt_mark();

    if (r->perr != PERR_NONE) {
        return sreader_raise(r, r->perr, r->perr_msg);
    }
    if (r->finished || want == 0) {
        return 0;
    }
    if (!r->active) {
        int rc = ops->init(r->st, msg, sizeof(msg));
        if (rc != FJ_DEC_OK) {
            kind = rc == FJ_DEC_NOMEM ? PERR_NOMEM : PERR_CORRUPT;
            goto fail;
        }
        r->active = 1;
    }
    while (produced < want) {
        if (fj_check_interrupt() < 0) {
            /* not deferred like other errors: raised now, and again by any later read */
            PyErr_Fetch(&r->perr_type, &r->perr_value, &r->perr_tb);
            r->perr = PERR_PYTHON;
            return sreader_raise(r, PERR_PYTHON, "");
        }
        if (r->ilen == 0 && !r->input_eof) {
            Py_ssize_t n = sreader_fill(r);
            if (n < 0) {
                kind = PERR_PYTHON;
                goto fail;
            }
        }
        const unsigned char *in = r->ibuf + r->ipos;
        size_t in_len = r->ilen;
        unsigned char *out = (unsigned char *)buf + produced;
        const size_t slice = want - produced > SREADER_SLICE ? SREADER_SLICE : want - produced;
        size_t out_len = slice;
        int rc;
        if (out_len >= 16384) {
            Py_BEGIN_ALLOW_THREADS
            rc = ops->run(r->st, &in, &in_len, &out, &out_len, msg, sizeof(msg));
            Py_END_ALLOW_THREADS
        }
        else {
            rc = ops->run(r->st, &in, &in_len, &out, &out_len, msg, sizeof(msg));
        }
        size_t consumed = r->ilen - in_len;
        size_t made = slice - out_len;
        r->ipos += consumed;
        r->ilen = in_len;
        produced += made;
        if (rc == FJ_DEC_END) {
            ops->end(r->st);
            r->active = 0;
            if (ops->magic != NULL) {
                while (r->ilen < ops->magic_len && !r->input_eof) {
                    if (sreader_fill(r) < 0) {
                        kind = PERR_PYTHON;
                        r->finished = 1;
                        goto fail;
                    }
                }
                if (r->ilen >= ops->magic_len &&
                    memcmp(r->ibuf + r->ipos, ops->magic, ops->magic_len) == 0) {
                    rc = ops->init(r->st, msg, sizeof(msg));
                    if (rc != FJ_DEC_OK) {
                        kind = rc == FJ_DEC_NOMEM ? PERR_NOMEM : PERR_CORRUPT;
                        r->finished = 1;
                        goto fail;
                    }
                    r->active = 1;
                    continue;
                }
            }
            r->finished = 1; /* anything after the end is ignored */
            break;
        }
        if (rc < 0) {
            kind = rc == FJ_DEC_NOMEM ? PERR_NOMEM : PERR_CORRUPT;
            goto fail;
        }
        if (consumed == 0 && made == 0) {
            if (r->ilen == 0 && r->input_eof) {
                kind = PERR_TRUNCATED;
                goto fail;
            }
            if (r->ilen > 0) {
                /* input available, room for output, no progress: never loop on it */
                if (r->ilen < SREADER_INPUT && !r->input_eof) {
                    Py_ssize_t n = sreader_fill(r);
                    if (n < 0) {
                        kind = PERR_PYTHON;
                        goto fail;
                    }
                    if (n > 0) {
                        continue;
                    }
                }
                snprintf(msg, sizeof(msg), "decoder made no progress");
                kind = PERR_CORRUPT;
                goto fail;
            }
        }
    }
    return (Py_ssize_t)produced;
fail:
    if (kind == PERR_PYTHON) {
        if (produced == 0) {
            return -1;
        }
        const int urgent = fj_error_is_urgent(mark);
        PyErr_Fetch(&r->perr_type, &r->perr_value, &r->perr_tb);
        r->perr = PERR_PYTHON;
        if (urgent) { /* an interrupt is never deferred (it could be lost): raised now */
            return sreader_raise(r, PERR_PYTHON, "");
        }
        return (Py_ssize_t)produced;
    }
    if (produced > 0) {
        r->perr = kind;
        memcpy(r->perr_msg, msg, sizeof(msg));
        return (Py_ssize_t)produced;
    }
    r->perr = kind;
    memcpy(r->perr_msg, msg, sizeof(msg));
    return sreader_raise(r, kind, msg);
}

static void
sreader_free(fj_reader *self)
{
    sreader *r = (sreader *)self;
    if (r->active) {
        r->ops->end(r->st);
    }
    Py_CLEAR(r->perr_type);
    Py_CLEAR(r->perr_value);
    Py_CLEAR(r->perr_tb);
    PyMem_RawFree(r->st);
    PyMem_RawFree(r->ibuf);
    if (r->inner != NULL) {
        r->inner->free(r->inner);
    }
    PyMem_RawFree(r);
}

fj_reader *
fj_sreader_new(const fj_sdec_ops *ops, fj_reader *inner)
{
    sreader *r = PyMem_RawCalloc(1, sizeof(sreader));
    if (r == NULL) {
        inner->free(inner);
        PyErr_NoMemory();
        return NULL;
    }
    r->base.read = sreader_read;
    r->base.free = sreader_free;
    r->inner = inner;
    r->ops = ops;
    r->st = PyMem_RawCalloc(1, ops->state_size);
    r->ibuf = PyMem_RawMalloc(SREADER_INPUT);
    if (r->st == NULL || r->ibuf == NULL) {
        sreader_free(&r->base);
        PyErr_NoMemory();
        return NULL;
    }
    return &r->base;
}

/* ============================================================================================
 * dispatch: a table generated from the codec registry (python/fastjoblib/_compressors.py,
 * REGISTRY) by setup.py into fj_codec_table.h: FJ_CODECS(X) expands X(c_name, "name") once per
 * codec. Codec `c` provides (in its codec_*.c):
 *     fj_writer *fj_<c>_codec_writer(int level, int threads, fj_writer *inner);
 *     fj_reader *fj_<c>_codec_reader(int threads, fj_reader *inner);
 * both owning `inner` (freed on failure), level -1 = the codec's default, threads <= 0 = all
 * cores, 1 = serial. The adapters below give the original codecs that shape.
 */
#include "fj_codec_table.h"

#define FJ_DECLARE_CODEC(c, name)                                                   \
    fj_writer *fj_##c##_codec_writer(int level, int threads, fj_writer *inner);    \
    fj_reader *fj_##c##_codec_reader(int threads, fj_reader *inner);
FJ_CODECS(FJ_DECLARE_CODEC)
#undef FJ_DECLARE_CODEC

typedef struct {
    const char *name;
    fj_writer *(*writer)(int level, int threads, fj_writer *inner);
    fj_reader *(*reader)(int threads, fj_reader *inner);
} codec_entry;

#define FJ_CODEC_ROW(c, name) {name, fj_##c##_codec_writer, fj_##c##_codec_reader},
static const codec_entry codec_table[] = {FJ_CODECS(FJ_CODEC_ROW)};
#undef FJ_CODEC_ROW
#define CODEC_COUNT (sizeof(codec_table) / sizeof(codec_table[0]))

/* adapters: the built-in codecs' engines in the table's shape */
fj_writer *fj_zlib_codec_writer(int level, int threads, fj_writer *inner)
{ return fj_deflate_writer(0, level, threads, inner); }
fj_reader *fj_zlib_codec_reader(int threads, fj_reader *inner)
{ return fj_deflate_reader_threads(0, threads, inner); }
fj_writer *fj_gzip_codec_writer(int level, int threads, fj_writer *inner)
{ return fj_deflate_writer(1, level, threads, inner); }
fj_reader *fj_gzip_codec_reader(int threads, fj_reader *inner)
{ return fj_deflate_reader_threads(1, threads, inner); }
fj_writer *fj_bz2_codec_writer(int level, int threads, fj_writer *inner)
{ return fj_bz2_writer(level, threads, inner); }
fj_reader *fj_bz2_codec_reader(int threads, fj_reader *inner)
{ return fj_bz2_reader_threads(threads, inner); }
fj_writer *fj_lzma_codec_writer(int level, int threads, fj_writer *inner)
{ return fj_lzma_writer(0, level, threads, inner); }
fj_reader *fj_lzma_codec_reader(int threads, fj_reader *inner)
{ return fj_lzma_reader(0, threads, inner); }
fj_writer *fj_xz_codec_writer(int level, int threads, fj_writer *inner)
{ return fj_lzma_writer(1, level, threads, inner); }
fj_reader *fj_xz_codec_reader(int threads, fj_reader *inner)
{ return fj_lzma_reader(1, threads, inner); }
fj_writer *fj_lz4_codec_writer(int level, int threads, fj_writer *inner)
{ return fj_lz4_writer(level, threads, inner); }
fj_reader *fj_lz4_codec_reader(int threads, fj_reader *inner)
{ return fj_lz4_reader(inner); }
fj_writer *fj_zstd_codec_writer(int level, int threads, fj_writer *inner)
{ return fj_zstd_writer(level, threads, inner); }
fj_reader *fj_zstd_codec_reader(int threads, fj_reader *inner)
{ return fj_zstd_reader(threads, inner); }

static const codec_entry *
find_codec(const char *name)
{
    for (size_t i = 0; i < CODEC_COUNT; i++) {
        if (strcmp(name, codec_table[i].name) == 0) {
            return &codec_table[i];
        }
    }
    return NULL;
}

/* joblib's "Non valid compression method" text, listing the table's names */
static void
unknown_codec(const char *name)
{
    char list[512];
    size_t used = 0;
    list[0] = '\0';
    for (size_t i = 0; i < CODEC_COUNT; i++) {
        int n = PyOS_snprintf(list + used, sizeof(list) - used, "%s'%s'", i ? ", " : "",
                              codec_table[i].name);
        if (n < 0 || (size_t)n >= sizeof(list) - used) {
            break;
        }
        used += (size_t)n;
    }
    PyErr_Format(PyExc_ValueError, "Non valid compression method given: '%s'. Possible values "
                 "are [%s].", name, list);
}

fj_writer *
fj_codec_writer(const char *name, int level, int threads, fj_writer *inner)
{
    const codec_entry *c = find_codec(name);
    if (c == NULL) {
        inner->free(inner);
        unknown_codec(name);
        return NULL;
    }
    return c->writer(level, threads, inner);
}

fj_reader *
fj_codec_reader(const char *name, fj_reader *inner)
{
    return fj_codec_reader_threads(name, 0, inner);
}

fj_reader *
fj_codec_reader_threads(const char *name, int threads, fj_reader *inner)
{
    const codec_entry *c = find_codec(name);
    if (c == NULL) {
        inner->free(inner);
        unknown_codec(name);
        return NULL;
    }
    return c->reader(threads, inner);
}

/* ============================================================================================
 * in-memory writer / reader and the test entry points
 */
typedef struct {
    fj_writer base;
    PyObject *bytes;  /* grown in place with _PyBytes_Resize (large reallocs are mremap'd) */
    Py_ssize_t len;
    int closed;
} mem_writer;

static int
memw_write(fj_writer *self, const char *data, Py_ssize_t len)
{
    mem_writer *w = (mem_writer *)self;
    Py_ssize_t cap = w->bytes != NULL ? PyBytes_GET_SIZE(w->bytes) : 0;
    if (len > cap - w->len) {
        Py_ssize_t ncap = cap > 0 ? cap : 65536;
        while (ncap - w->len < len) {
            if (ncap > PY_SSIZE_T_MAX / 2) {
                PyErr_NoMemory();
                return -1;
            }
            ncap *= 2;
        }
        if (w->bytes == NULL) {
            if ((w->bytes = PyBytes_FromStringAndSize(NULL, ncap)) == NULL) {
                return -1;
            }
        }
        else if (_PyBytes_Resize(&w->bytes, ncap) < 0) { /* clears w->bytes on failure */
            return -1;
        }
    }
    memcpy(PyBytes_AS_STRING(w->bytes) + w->len, data, (size_t)len);
    w->len += len;
    return 0;
}

static int
memw_close(fj_writer *self)
{
    ((mem_writer *)self)->closed = 1;
    return 0;
}

static void
memw_free(fj_writer *self)
{
    mem_writer *w = (mem_writer *)self;
    Py_XDECREF(w->bytes);
    PyMem_RawFree(w);
}

typedef struct {
    fj_reader base;
    const char *data;
    size_t len, pos, chunk;
} mem_reader;

static Py_ssize_t
memr_read(fj_reader *self, char *buf, Py_ssize_t len)
{
    mem_reader *r = (mem_reader *)self;
    size_t n = r->len - r->pos;
    if ((size_t)len < n) {
        n = (size_t)len;
    }
    if (r->chunk > 0 && r->chunk < n) {
        n = r->chunk;
    }
    memcpy(buf, r->data + r->pos, n);
    r->pos += n;
    return (Py_ssize_t)n;
}

static void
memr_free(fj_reader *self)
{
    PyMem_RawFree(self);
}

static PyObject *
codec_compress(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"name", "data", "level", "threads", "chunk", NULL};
    const char *name;
    Py_buffer view = {0};
    int level = -1, threads = 0;
    Py_ssize_t chunk = 0;
    PyObject *res = NULL;
    fj_writer *cw = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sy*|iin:_compress", kwlist, &name, &view,
                                     &level, &threads, &chunk)) {
        return NULL;
    }
    mem_writer *mw = PyMem_RawCalloc(1, sizeof(mem_writer));
    if (mw == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    mw->base.write = memw_write;
    mw->base.close = memw_close;
    mw->base.free = memw_free;
    if ((cw = fj_codec_writer(name, level, threads, &mw->base)) == NULL) { /* owns mw */
        goto done;
    }
    const char *p = view.buf;
    Py_ssize_t left = view.len;
    while (left > 0) {
        Py_ssize_t n = (chunk > 0 && chunk < left) ? chunk : left;
        if (cw->write(cw, p, n) < 0) {
            goto done;
        }
        p += n;
        left -= n;
    }
    if (cw->close(cw) < 0) {
        goto done;
    }
    if (!mw->closed) {
        PyErr_SetString(PyExc_SystemError, "codec writer did not close its inner writer");
        goto done;
    }
    if (mw->bytes == NULL) {
        res = PyBytes_FromStringAndSize(NULL, 0);
    }
    else if (_PyBytes_Resize(&mw->bytes, mw->len) == 0) {
        res = mw->bytes; /* the reference moves to the caller */
        mw->bytes = NULL;
    }
done:
    if (cw != NULL) {
        cw->free(cw);
    }
    PyBuffer_Release(&view);
    return res;
}

static PyObject *
codec_decompress(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"name", "data", "chunk", "inner_chunk", "threads", NULL};
    const char *name;
    Py_buffer view = {0};
    Py_ssize_t chunk = 0, inner_chunk = 0;
    int threads = 0;
    PyObject *out = NULL; /* grown in place (large reallocs are mremap'd: no copy) */
    fj_reader *cr = NULL;
    Py_ssize_t len = 0, cap = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sy*|nni:_decompress", kwlist, &name,
                                     &view, &chunk, &inner_chunk, &threads)) {
        return NULL;
    }
    mem_reader *mr = PyMem_RawCalloc(1, sizeof(mem_reader));
    if (mr == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    mr->base.read = memr_read;
    mr->base.free = memr_free;
    mr->data = view.buf;
    mr->len = (size_t)view.len;
    mr->chunk = inner_chunk > 0 ? (size_t)inner_chunk : 0;
    if ((cr = fj_codec_reader_threads(name, threads, &mr->base)) == NULL) { /* owns mr */
        goto error;
    }
    cap = view.len > (1 << 20) ? view.len : (1 << 20);
    if ((out = PyBytes_FromStringAndSize(NULL, cap)) == NULL) {
        goto error;
    }
    for (;;) {
        if (cap - len < 65536) {
            if (cap > PY_SSIZE_T_MAX / 2) {
                PyErr_NoMemory();
                goto error;
            }
            cap *= 2;
            if (_PyBytes_Resize(&out, cap) < 0) {
                goto error;
            }
        }
        Py_ssize_t want = cap - len;
        if (chunk > 0 && chunk < want) {
            want = chunk;
        }
        Py_ssize_t n = cr->read(cr, PyBytes_AS_STRING(out) + len, want);
        if (n < 0) {
            goto error;
        }
        if (n == 0) {
            break;
        }
        len += n;
    }
    if (_PyBytes_Resize(&out, len) < 0) {
        goto error;
    }
    goto done;
error:
    Py_CLEAR(out);
done:
    if (cr != NULL) {
        cr->free(cr);
    }
    PyBuffer_Release(&view);
    return out;
}

/* _codec_open(name, file, threads=1) -> capsule; _codec_read(capsule, n) -> bytes (b"" at the
 * end): the load's codec reader over a Python binary file, pulled in bounded pieces (the static
 * inspector decodes through these, so inspect and load share one decoder per codec). */
#define READER_CAPSULE "fastjoblib._core.codec_reader"

static void
reader_capsule_free(PyObject *capsule)
{
    fj_reader *r = PyCapsule_GetPointer(capsule, READER_CAPSULE);
    if (r != NULL) {
        r->free(r);
    }
    else {
        PyErr_Clear();
    }
}

static PyObject *
codec_open(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"name", "file", "threads", NULL};
    const char *name;
    PyObject *file;
    int threads = 1;
    fj_reader *inner, *cr;
    PyObject *capsule;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sO|i:_codec_open", kwlist, &name, &file,
                                     &threads)) {
        return NULL;
    }
    if ((inner = fj_reader_pyfile(file)) == NULL) {
        return NULL;
    }
    if ((cr = fj_codec_reader_threads(name, threads, inner)) == NULL) { /* owns inner */
        return NULL;
    }
    if ((capsule = PyCapsule_New(cr, READER_CAPSULE, reader_capsule_free)) == NULL) {
        cr->free(cr);
        return NULL;
    }
    return capsule;
}

static PyObject *
codec_read(PyObject *module, PyObject *args)
{
    PyObject *capsule, *out;
    Py_ssize_t n, got;
    if (!PyArg_ParseTuple(args, "On:_codec_read", &capsule, &n)) {
        return NULL;
    }
    fj_reader *r = PyCapsule_GetPointer(capsule, READER_CAPSULE);
    if (r == NULL) {
        return NULL;
    }
    if (n < 0 || n > (64 << 20)) {
        PyErr_SetString(PyExc_ValueError, "_codec_read: n must be between 0 and 64 MiB");
        return NULL;
    }
    if ((out = PyBytes_FromStringAndSize(NULL, n)) == NULL) {
        return NULL;
    }
    got = n > 0 ? r->read(r, PyBytes_AS_STRING(out), n) : 0;
    if (got < 0) {
        Py_DECREF(out);
        return NULL;
    }
    if (got < n && _PyBytes_Resize(&out, got) < 0) { /* clears out on failure */
        return NULL;
    }
    return out;
}

static PyObject *
codec_ispec_stats(PyObject *module, PyObject *unused)
{
    uint64_t v[4];
    fj_ispec_stats(v);
    return Py_BuildValue("{sKsKsKsK}", "taken", (unsigned long long)v[0], "failed",
                         (unsigned long long)v[1], "passed", (unsigned long long)v[2], "joined",
                         (unsigned long long)v[3]);
}

static PyMethodDef codec_methods[] = {
    {"_codec_open", (PyCFunction)(void (*)(void))codec_open, METH_VARARGS | METH_KEYWORDS,
     "_codec_open(name, file, threads=1) -> reader\n\n"
     "The load's codec reader for `name` over the binary file object `file` (read from its "
     "current position); pull it with _codec_read."},
    {"_codec_read", (PyCFunction)codec_read, METH_VARARGS,
     "_codec_read(reader, n) -> bytes\n\nUp to n (<= 64 MiB) decoded bytes; b'' at the end."},
    {"_compress", (PyCFunction)(void (*)(void))codec_compress, METH_VARARGS | METH_KEYWORDS,
     "_compress(name, data, level=-1, threads=0, chunk=0) -> bytes\n\n"
     "Compress `data` with the codec writer (test entry point). chunk > 0 splits the input into "
     "writes of that size."},
    {"_decompress", (PyCFunction)(void (*)(void))codec_decompress, METH_VARARGS | METH_KEYWORDS,
     "_decompress(name, data, chunk=0, inner_chunk=0, threads=0) -> bytes\n\n"
     "Decompress `data` with the codec reader (test entry point). chunk / inner_chunk > 0 cap the "
     "size of each read from the codec / of each read the codec makes from its input. threads: "
     "decoding threads of the zlib/gzip/bz2 readers (0: all cores, 1: serial)."},
    {"_ispec_stats", codec_ispec_stats, METH_NOARGS,
     "_ispec_stats() -> dict\n\nProcess-wide counters of the speculative inflate reader (joblib's "
     "serial zlib/gzip streams on several cores): regions taken, failed, passed, and joined "
     "(taken from where the in-order decode had got to inside them)."},
    {NULL, NULL, 0, NULL},
};

int
fj_codec_exec(PyObject *module, fj_state *st)
{
    st->cd.reserved = NULL;
    return PyModule_AddFunctions(module, codec_methods);
}

int
fj_codec_traverse(fj_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->cd.reserved);
    return 0;
}

void
fj_codec_clear(fj_state *st)
{
    Py_CLEAR(st->cd.reserved);
}
