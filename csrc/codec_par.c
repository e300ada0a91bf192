/* codec_par.c: the parallel segment reader (see codec.h, fj_pdec_ops).
 *
 * Input is read ahead in bounded chunks into `pend` (bytes not yet given to a segment); the codec's
 * marker cuts it into segments; a segment that starts at a candidate boundary is decoded by a
 * worker from scratch into its own output buffer. The consumer (the caller of read(), GIL held
 * except around waits and decoding) walks the segments in order:
 *
 *  - PAR: the true decode is at a clean boundary at the segment's start and the worker ended the
 *    segment cleanly (exactly at its end, on a boundary) or at the stream end: its output is
 *    exactly what a serial decoder would produce there (a decode from scratch that succeeds used no
 *    history), so it is served by copying.
 *  - otherwise SER: the consumer decodes the segment itself, primed with the last hist_size bytes
 *    of output, continuing into the following segments until it stands on a clean boundary at a
 *    segment end, where PAR may resume. Its errors are the serial decoder's errors.
 *
 * At a stream end the rest of the input (in flight or pending) goes back to `pend`, the trailer is
 * checked, and a following stream (gzip member, bz2 stream) starts over. Memory: 2 x threads
 * segments in flight, each at most SEG_MAX input and OUT_MAX output (a worker gives up beyond that
 * and the consumer decodes that segment serially, streaming).
 *
 * Direct placement: while a read() is in progress, segments not yet started are given a place in
 * the caller's buffer (predicting that each decodes to as much as the last full one did) and the
 * worker inflates straight there. A segment found elsewhere than where the output continues, or
 * failing, is decoded again into its own buffer (drain_direct); no worker writes into the caller's
 * buffer after read() returns or while anyone else writes there.
 *
 * Which inputs go parallel: the first read is checked by ops->sniff (deflate: our writer starts
 * the data with an empty stored block; anything else, e.g. joblib's files, goes to the serial
 * reader at once), then at least ops->min_markers markers must show up in the first PR_PROBE
 * bytes; otherwise the bytes read so far are replayed into the plain fj_sreader.
 */
#define _GNU_SOURCE
#include "fj.h"
#include "codec.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#define PR_CHUNK (256 * 1024)         /* input read size */
#define PR_FIRST (64 * 1024)          /* the first read */
#define PR_PROBE (4 * 1024 * 1024)    /* no marker in this much input: serial reader */
#define PR_SEG_MAX (4 * 1024 * 1024)  /* a segment is cut without a marker past this */
#define PR_OUT_MAX (16 * 1024 * 1024) /* a worker gives up on a segment producing more */
#define PR_MAX_THREADS 64

enum { SEG_FAIL = 0, SEG_CLEAN, SEG_END };
enum { PH_HEAD = 0, PH_BODY, PH_TAIL, PH_MAGIC, PH_DONE };
#define PAR_SLICE ((size_t)1 << 20) /* serial output per GIL release */

enum { PE_NONE = FJ_ERR_NONE, PE_CORRUPT = FJ_ERR_CORRUPT, PE_NOMEM = FJ_ERR_NOMEM,
       PE_TRUNCATED = FJ_ERR_TRUNCATED, PE_PYTHON = FJ_ERR_PYTHON };

typedef struct preader preader;

typedef struct {
    fj_task task;             /* first member */
    preader *r;
    unsigned char *in;        /* owned input */
    size_t in_len, in_cap;
    int spec;                 /* starts at a candidate boundary: decoded by a worker */
    int at_marker;            /* ends at a candidate boundary */
    unsigned char *out;       /* owned worker output */
    size_t out_len, out_cap;
    int res;                  /* SEG_*, set by the worker */
    size_t used;              /* SEG_END: input consumed up to the stream end */
    uint32_t check;
    void *st;                 /* worker decoder state */
    size_t pos;               /* consumer: input consumed (SER) */
    size_t opos;              /* consumer: output served (PAR) */
    int accepted;
    /* direct mode: the worker decodes into the caller's buffer at the predicted place. dest is
     * set by the consumer and read by the worker when it starts, both under r->lock; a worker
     * that started with dest == NULL uses `out`. */
    unsigned char *dest;
    size_t dest_cap;
    int started;
    int nodirect;             /* decoded again after a direct attempt: never direct again */
    int unsubmitted;          /* spec, not yet handed to the pool (assign_direct first) */
} pseg;

struct preader {
    fj_reader base;
    fj_reader *inner;
    const fj_pdec_ops *ops;
    int threads, nslots;
    int started;
    fj_reader *serial;        /* delegate when the input has no markers */
    fj_pool *pool;
    pseg *slots;
    int head, count;          /* ring of segments in order */
    unsigned char *pend;
    size_t pend_len, pend_cap, scan;
    int next_spec;            /* the next segment cut from pend starts at a candidate boundary */
    int input_eof;
    int phase;
    void *st;                 /* consumer decoder (head / serial body) */
    int st_active;
    int ser;                  /* serial body decode in progress (st is the body decoder) */
    int at_boundary;          /* the decode stands on a clean boundary at the head segment */
    unsigned char *hist;
    size_t hist_len;
    uint32_t check;
    uint64_t total;
    int perr;
    char perr_msg[200];
    PyObject *perr_type, *perr_value, *perr_tb;
    size_t bs;                /* predicted output of a segment: the last full one's, at first
                                 the codec's out_hint */
    pthread_mutex_t lock;     /* seg->dest / seg->started */
    int lock_inited;
    pid_t pid;                /* the pool's threads live in this process only */
};

/* ----- prefix reader: bytes already read, then the inner reader ------------------------------ */
typedef struct {
    fj_reader base;
    fj_reader *inner;
    unsigned char *buf;
    size_t len, pos;
} prefix_reader;

static Py_ssize_t
prefix_read(fj_reader *self, char *buf, Py_ssize_t len)
{
    prefix_reader *p = (prefix_reader *)self;
    if (p->pos < p->len) {
        size_t n = p->len - p->pos;
        if ((size_t)len < n) {
            n = (size_t)len;
        }
        memcpy(buf, p->buf + p->pos, n);
        p->pos += n;
        if (p->pos == p->len) {
            PyMem_RawFree(p->buf);
            p->buf = NULL;
            p->len = p->pos = 0;
        }
        return (Py_ssize_t)n;
    }
    return p->inner->read(p->inner, buf, len);
}

static void
prefix_free(fj_reader *self)
{
    prefix_reader *p = (prefix_reader *)self;
    PyMem_RawFree(p->buf);
    if (p->inner != NULL) {
        p->inner->free(p->inner);
    }
    PyMem_RawFree(p);
}

/* ----- workers ------------------------------------------------------------------------------- */
static void
run_pseg(fj_task *task)
{
    pseg *seg = (pseg *)task;
    preader *r = seg->r;
    const fj_pdec_ops *ops = r->ops;
    char msg[200];
    int res = SEG_FAIL;
    pthread_mutex_lock(&r->lock);
    seg->started = 1;
    unsigned char *dest = seg->dest;
    size_t dest_cap = seg->dest_cap;
    pthread_mutex_unlock(&r->lock);
    seg->out_len = 0;
    seg->used = 0;
    if (ops->body_init(seg->st, NULL, 0, msg, sizeof(msg)) != FJ_DEC_OK) {
        ops->end(seg->st);
        seg->res = SEG_FAIL;
        return;
    }
    const unsigned char *in = seg->in;
    size_t in_len = seg->in_len;
    for (;;) {
        if (dest == NULL && seg->out_cap - seg->out_len < 4096) {
            size_t ncap = seg->out_cap < ops->out_hint ? ops->out_hint + 65536 : seg->out_cap * 2;
            if (ncap > PR_OUT_MAX) {
                break; /* leave it to the serial decoder */
            }
            unsigned char *p = PyMem_RawRealloc(seg->out, ncap);
            if (p == NULL) {
                break;
            }
            seg->out = p;
            seg->out_cap = ncap;
        }
        unsigned char *base = dest != NULL ? dest : seg->out;
        size_t cap = dest != NULL ? dest_cap : seg->out_cap;
        unsigned char *out = base + seg->out_len;
        size_t room = cap - seg->out_len, out_len = room;
        size_t before = in_len;
        int rc = ops->body_run(seg->st, &in, &in_len, &out, &out_len, msg, sizeof(msg));
        size_t made = room - out_len;
        seg->out_len += made;
        if (rc == FJ_DEC_END) {
            seg->used = (size_t)(in - seg->in);
            res = (ops->end_continues && in_len == 0) ? SEG_CLEAN : SEG_END;
            break;
        }
        if (rc != FJ_DEC_OK) {
            break;
        }
        if (in_len == 0) {
            if (ops->at_boundary(seg->st)) {
                res = SEG_CLEAN;
                break;
            }
            if (made == 0) {
                break; /* input ended inside a block: not a boundary */
            }
        }
        else if (made == 0 && before == in_len) {
            break; /* no progress: an error, or (direct) more output than predicted */
        }
    }
    ops->end(seg->st);
    if (res != SEG_FAIL && ops->check_update != NULL) {
        seg->check = ops->check_update(ops->check_init, dest != NULL ? dest : seg->out,
                                       seg->out_len);
    }
    seg->res = res;
}

/* ----- helpers (GIL held) -------------------------------------------------------------------- */
/* In a child forked while this reader was in use (by its file object's read, say) the workers
 * are not there: every segment not yet taken is decoded serially, and the pool is left alone
 * (waiting for its absent threads would hang). Called on entry and after every input read. */
static void
fork_check(preader *r)
{
    if (r->pool == NULL || r->pid == getpid()) {
        return;
    }
    r->pool = NULL;
    for (int i = 0; i < r->count; i++) {
        pseg *seg = &r->slots[(r->head + i) % r->nslots];
        if (!seg->accepted) {
            seg->spec = seg->unsubmitted = seg->started = 0;
            seg->dest = NULL;
            seg->res = SEG_FAIL;
            seg->task.state = FJ_TASK_IDLE;
        }
    }
}

static int
pend_reserve(preader *r, size_t need)
{
    if (r->pend_cap - r->pend_len >= need) {
        return 0;
    }
    size_t ncap = r->pend_cap > 0 ? r->pend_cap : need;
    while (ncap - r->pend_len < need) {
        ncap *= 2;
    }
    unsigned char *p = PyMem_RawRealloc(r->pend, ncap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    r->pend = p;
    r->pend_cap = ncap;
    return 0;
}

/* Read one chunk of input after pend; returns bytes read (0: end of input), -1 on error. */
static Py_ssize_t
pend_fill(preader *r)
{
    if (r->input_eof) {
        return 0;
    }
    /* the first read is small: small (serial) inputs pay for no big buffer */
    size_t chunk = r->pend_cap == 0 ? PR_FIRST : PR_CHUNK;
    if (pend_reserve(r, chunk) < 0) {
        return -1;
    }
    Py_ssize_t n = r->inner->read(r->inner, (char *)r->pend + r->pend_len, (Py_ssize_t)chunk);
    fork_check(r);
    if (n < 0) {
        return -1;
    }
    if (n == 0) {
        r->input_eof = 1;
    }
    r->pend_len += (size_t)n;
    return n;
}

static void
pend_drop(preader *r, size_t n)
{
    memmove(r->pend, r->pend + n, r->pend_len - n);
    r->pend_len -= n;
    r->scan = 0;
}

/* A candidate marker cutting pend into a non-empty segment, searching from `from`. */
static ptrdiff_t
find_cut(preader *r, size_t from)
{
    const fj_pdec_ops *ops = r->ops;
    for (;;) {
        ptrdiff_t m = ops->find(r->pend, r->pend_len, from);
        if (m < 0) {
            return -1;
        }
        if ((size_t)m + ops->cut > 0) {
            return (ptrdiff_t)((size_t)m + ops->cut);
        }
        from = (size_t)m + 1;
    }
}

static void
hist_push(preader *r, const unsigned char *p, size_t n)
{
    size_t hs = r->ops->hist_size;
    if (hs == 0 || n == 0) {
        return;
    }
    if (n >= hs) {
        memcpy(r->hist, p + n - hs, hs);
        r->hist_len = hs;
        return;
    }
    size_t keep = hs - n;
    if (keep > r->hist_len) {
        keep = r->hist_len;
    }
    memmove(r->hist, r->hist + r->hist_len - keep, keep);
    memcpy(r->hist + keep, p, n);
    r->hist_len = keep + n;
}

static void
account_output(preader *r, const unsigned char *p, size_t n)
{
    if (r->ops->check_update != NULL) {
        r->check = r->ops->check_update(r->check, p, n);
    }
    r->total += n;
    hist_push(r, p, n);
}

static pseg *
head_seg(preader *r)
{
    return &r->slots[r->head];
}

/* Wait (GIL released) until no worker uses the segment. */
static void
wait_seg(preader *r, pseg *seg)
{
    if (r->pool != NULL && seg->spec && !fj_pool_is_done(r->pool, &seg->task)) {
        Py_BEGIN_ALLOW_THREADS
        fj_pool_wait(r->pool, &seg->task);
        Py_END_ALLOW_THREADS
    }
}

static void
pop_seg(preader *r)
{
    pseg *seg = head_seg(r);
    wait_seg(r, seg);
    seg->task.state = FJ_TASK_IDLE;
    seg->in_len = 0;
    seg->dest = NULL;
    seg->started = 0;
    r->head = (r->head + 1) % r->nslots;
    r->count--;
}

/* Cut the next segment from pend (reading input as needed) and hand it to a worker when it starts
 * at a candidate. 1: a segment was queued; 0: no input left; -1: Python error. */
static int
cut_segment(preader *r)
{
    const fj_pdec_ops *ops = r->ops;
    for (;;) {
        ptrdiff_t c = find_cut(r, r->scan);
        size_t cut;
        int at_marker = 0;
        if (c >= 0) {
            cut = (size_t)c;
            at_marker = 1;
        }
        else if (r->pend_len >= PR_SEG_MAX || (r->input_eof && r->pend_len > 0)) {
            cut = r->pend_len;
        }
        else if (r->input_eof) {
            return 0;
        }
        else {
            r->scan = r->pend_len >= ops->marker_len ? r->pend_len - ops->marker_len + 1 : 0;
            if (pend_fill(r) < 0) {
                return -1;
            }
            continue;
        }
        pseg *seg = &r->slots[(r->head + r->count) % r->nslots];
        size_t rest = r->pend_len - cut;
        /* the segment takes pend's buffer; pend gets the segment's old one with the rest */
        unsigned char *old = seg->in;
        size_t old_cap = seg->in_cap;
        size_t need = rest + PR_CHUNK;
        if (old_cap < need) {
            unsigned char *p = PyMem_RawRealloc(old, need);
            if (p == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            old = p;
            old_cap = need;
            seg->in = old;
            seg->in_cap = old_cap;
        }
        memcpy(old, r->pend + cut, rest);
        seg->in = r->pend;
        seg->in_cap = r->pend_cap;
        seg->in_len = cut;
        r->pend = old;
        r->pend_cap = old_cap;
        r->pend_len = rest;
        r->scan = 0;
        seg->spec = r->next_spec && r->pool != NULL;
        seg->at_marker = at_marker;
        seg->res = SEG_FAIL;
        seg->used = 0;
        seg->pos = seg->opos = 0;
        seg->accepted = 0;
        seg->out_len = 0;
        seg->dest = NULL;
        seg->started = 0;
        seg->nodirect = 0;
        r->next_spec = at_marker;
        r->count++;
        seg->unsubmitted = seg->spec; /* submitted by submit_segments, after assign_direct */
        return 1;
    }
}

/* Direct mode: place the output of queued segments straight into the caller's buffer
 * buf[produced:want], predicting that every segment decodes to r->bs bytes. A prediction that
 * turns out wrong is caught when the segment is reached (its dest is not where the output
 * continues) and undone by drain_direct. */
static void
assign_direct(preader *r, unsigned char *buf, size_t produced, size_t want)
{
    size_t bs = r->bs, off = produced;
    if (bs == 0 || r->pool == NULL || want - produced < 2 * bs) {
        return;
    }
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->count; i++) {
        pseg *seg = &r->slots[(r->head + i) % r->nslots];
        if (!seg->spec) {
            break; /* no prediction past a segment that is not decoded in parallel */
        }
        if (seg->accepted) {
            off += seg->out_len - seg->opos;
            continue;
        }
        if (off > want || want - off < bs) {
            break;
        }
        if (seg->dest == NULL && !seg->started && !seg->nodirect) {
            seg->dest = buf + off;
            seg->dest_cap = bs;
        }
        off += bs;
    }
    pthread_mutex_unlock(&r->lock);
}

/* Before the caller's buffer is written by anyone else (serial decode, a misplaced segment) or
 * handed back: no worker may write into it any more. Unstarted segments go back to their own
 * buffers; started ones are waited for and decoded again into their own buffers. */
static void
drain_direct(preader *r)
{
    int any = 0;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->count; i++) {
        pseg *seg = &r->slots[(r->head + i) % r->nslots];
        if (seg->dest != NULL) {
            if (!seg->started) {
                seg->dest = NULL;
            }
            else {
                any = 1;
            }
        }
    }
    pthread_mutex_unlock(&r->lock);
    if (!any) {
        return;
    }
    for (int i = 0; i < r->count; i++) {
        pseg *seg = &r->slots[(r->head + i) % r->nslots];
        if (seg->dest != NULL) {
            wait_seg(r, seg);
            seg->dest = NULL;
            seg->started = 0;
            seg->nodirect = 1;
            fj_pool_submit(r->pool, &seg->task);
        }
    }
}

static void
submit_segments(preader *r)
{
    for (int i = 0; i < r->count; i++) {
        pseg *seg = &r->slots[(r->head + i) % r->nslots];
        if (seg->unsubmitted) {
            seg->unsubmitted = 0;
            fj_pool_submit(r->pool, &seg->task);
        }
    }
}

/* Does any segment other than `self` own a direct region overlapping [lo, hi)? */
static int
direct_conflict(preader *r, const pseg *self, const unsigned char *lo, const unsigned char *hi)
{
    for (int i = 0; i < r->count; i++) {
        const pseg *seg = &r->slots[(r->head + i) % r->nslots];
        if (seg != self && seg->dest != NULL && seg->dest < hi && lo < seg->dest + seg->dest_cap) {
            return 1;
        }
    }
    return 0;
}

/* Drop every task, wait for running ones (GIL released). */
static void
cancel_segments(preader *r)
{
    if (r->pool != NULL) {
        Py_BEGIN_ALLOW_THREADS
        fj_pool_cancel_all(r->pool);
        Py_END_ALLOW_THREADS
    }
}

/* The stream ended at head_seg()->in[used]: everything after goes back to pend, in order. */
static int
end_stream(preader *r, size_t used)
{
    cancel_segments(r);
    size_t total = r->pend_len;
    for (int i = 0; i < r->count; i++) {
        pseg *s = &r->slots[(r->head + i) % r->nslots];
        total += i == 0 ? s->in_len - used : s->in_len;
    }
    unsigned char *buf = PyMem_RawMalloc(total + PR_CHUNK);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    size_t off = 0;
    for (int i = 0; i < r->count; i++) {
        pseg *s = &r->slots[(r->head + i) % r->nslots];
        size_t from = i == 0 ? used : 0;
        memcpy(buf + off, s->in + from, s->in_len - from);
        off += s->in_len - from;
    }
    memcpy(buf + off, r->pend, r->pend_len);
    PyMem_RawFree(r->pend);
    r->pend = buf;
    r->pend_len = total;
    r->pend_cap = total + PR_CHUNK;
    r->scan = 0;
    while (r->count > 0) {
        pop_seg(r);
    }
    r->phase = PH_TAIL;
    return 0;
}

static void
start_body(preader *r)
{
    r->phase = PH_BODY;
    r->at_boundary = 1;
    r->next_spec = 1;
    r->check = r->ops->check_init;
    r->total = 0;
    r->hist_len = 0;
    r->scan = 0;
}

static int
raise_kind(preader *r, int kind, const char *msg)
{
    return fj_codec_raise_kind(r->ops->serial, kind, msg, r->perr_type, r->perr_value, r->perr_tb);
}

/* First read: look for a marker in the first PR_PROBE bytes. 1: parallel, 0: serial, -1. */
static int
probe_input(preader *r)
{
    int found = 0;
    if (r->ops->sniff != NULL) {
        int ours;
        while ((ours = r->ops->sniff(r->pend, r->pend_len)) < 0 && !r->input_eof) {
            if (pend_fill(r) < 0) {
                return -1;
            }
        }
        if (ours != 1) {
            return 0;
        }
    }
    for (;;) {
        ptrdiff_t c;
        while (found < r->ops->min_markers && (c = find_cut(r, r->scan)) >= 0) {
            found++;
            r->scan = (size_t)c - r->ops->cut + 1; /* past this marker's first byte */
        }
        if (found >= r->ops->min_markers) {
            break;
        }
        if (r->input_eof || r->pend_len >= PR_PROBE) {
            return 0;
        }
        size_t tail = r->pend_len >= r->ops->marker_len ? r->pend_len - r->ops->marker_len + 1 : 0;
        if (tail > r->scan) {
            r->scan = tail;
        }
        if (pend_fill(r) < 0) {
            return -1;
        }
    }
    r->scan = 0;
    r->pid = getpid();
    r->pool = fj_pool_new(r->threads);
    if (r->pool == NULL) {
        return 0;
    }
    return 1;
}

static int
start_serial(preader *r)
{
    prefix_reader *p = PyMem_RawCalloc(1, sizeof(prefix_reader));
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    p->base.read = prefix_read;
    p->base.free = prefix_free;
    p->inner = r->inner;
    p->buf = r->pend;
    p->len = r->pend_len;
    r->inner = NULL;
    r->pend = NULL;
    r->pend_len = r->pend_cap = 0;
    r->serial = r->ops->serial_new != NULL ? r->ops->serial_new(r->ops, r->threads, &p->base)
                                           : fj_sreader_new(r->ops->serial, &p->base); /* own p */
    if (r->serial == NULL) {
        return -1;
    }
    r->base.read_hint = r->serial->read_hint; /* the delegate's preferred read size */
    return 0;
}

static Py_ssize_t
preader_read(fj_reader *self, char *buf, Py_ssize_t len)
{
    preader *r = (preader *)self;
    const fj_pdec_ops *ops = r->ops;
    size_t produced = 0, want = len > 0 ? (size_t)len : 0;
    int kind = PE_NONE;
    char msg[200] = "";

    if (r->serial != NULL) {
        return r->serial->read(r->serial, buf, len);
    }
    const unsigned long mark = fj_interrupt_mark();
    if (r->perr != PE_NONE) {
        return raise_kind(r, r->perr, r->perr_msg);
    }
    if (want == 0) {
        return 0;
    }
    fork_check(r);
    if (!r->started) {
        r->started = 1;
        int rc = probe_input(r);
        if (rc < 0) {
            kind = PE_PYTHON;
            goto fail;
        }
        if (rc == 0) {
            if (start_serial(r) < 0) {
                return -1;
            }
            return r->serial->read(r->serial, buf, len);
        }
        r->phase = PH_HEAD;
    }
    while (produced < want) {
        if (fj_check_interrupt() < 0) {
            cancel_segments(r);
            kind = PE_PYTHON;
            goto fail;
        }
        if (r->phase == PH_DONE) {
            break;
        }
        if (r->phase == PH_HEAD) {
            if (ops->head == NULL) {
                start_body(r);
                continue;
            }
            if (!r->st_active) {
                int rc = ops->head_init(r->st, msg, sizeof(msg));
                if (rc != FJ_DEC_OK) {
                    kind = rc == FJ_DEC_NOMEM ? PE_NOMEM : PE_CORRUPT;
                    goto fail;
                }
                r->st_active = 1;
            }
            const unsigned char *in = r->pend;
            size_t in_len = r->pend_len;
            int rc = ops->head(r->st, &in, &in_len, msg, sizeof(msg));
            pend_drop(r, r->pend_len - in_len);
            if (rc == FJ_DEC_END) {
                ops->end(r->st);
                r->st_active = 0;
                start_body(r);
                continue;
            }
            if (rc != FJ_DEC_OK) {
                kind = rc == FJ_DEC_NOMEM ? PE_NOMEM : PE_CORRUPT;
                goto fail;
            }
            if (r->pend_len == 0) {
                Py_ssize_t n = pend_fill(r);
                if (n < 0) {
                    kind = PE_PYTHON;
                    goto fail;
                }
                if (n == 0) {
                    kind = PE_TRUNCATED;
                    goto fail;
                }
            }
            else {
                snprintf(msg, sizeof(msg), "decoder made no progress");
                kind = PE_CORRUPT;
                goto fail;
            }
            continue;
        }
        if (r->phase == PH_TAIL) {
            while (r->pend_len < ops->tail_len && !r->input_eof) {
                if (pend_fill(r) < 0) {
                    kind = PE_PYTHON;
                    goto fail;
                }
            }
            if (r->pend_len < ops->tail_len) {
                kind = PE_TRUNCATED;
                goto fail;
            }
            if (ops->tail != NULL &&
                ops->tail(r->pend, r->check, r->total, msg, sizeof(msg)) < 0) {
                kind = PE_CORRUPT;
                goto fail;
            }
            pend_drop(r, ops->tail_len);
            r->phase = PH_MAGIC;
            continue;
        }
        if (r->phase == PH_MAGIC) {
            const fj_sdec_ops *s = ops->serial;
            if (s->magic == NULL) {
                r->phase = PH_DONE;
                continue;
            }
            while (r->pend_len < s->magic_len && !r->input_eof) {
                if (pend_fill(r) < 0) {
                    kind = PE_PYTHON;
                    goto fail;
                }
            }
            if (r->pend_len >= s->magic_len && memcmp(r->pend, s->magic, s->magic_len) == 0) {
                r->phase = PH_HEAD;
            }
            else {
                r->phase = PH_DONE; /* anything after the end is ignored */
            }
            continue;
        }
        /* PH_BODY */
        while (r->count < r->nslots) {
            int rc = cut_segment(r);
            if (rc < 0) {
                kind = PE_PYTHON;
                goto fail;
            }
            if (rc == 0) {
                break;
            }
        }
        if (r->count > 0 && r->pool != NULL) {
            if (!r->ser && r->at_boundary) {
                assign_direct(r, (unsigned char *)buf, produced, want);
            }
            submit_segments(r);
        }
        if (r->count == 0) {
            if (ops->end_continues && r->at_boundary && !r->ser) {
                r->phase = PH_DONE; /* the last stream ended exactly at the end of input */
                continue;
            }
            kind = PE_TRUNCATED;
            goto fail;
        }
        pseg *seg = head_seg(r);
        if (!r->ser) {
            if (r->at_boundary && seg->spec) {
                /* the one long wait of the reader: a worker decoding the head segment */
                if (r->pool != NULL && fj_wait_interruptible(r->pool, &seg->task) < 0) {
                    kind = PE_PYTHON;
                    goto fail;
                }
                wait_seg(r, seg);
                if (seg->res == SEG_CLEAN && ops->end_continues && !seg->at_marker) {
                    /* a stream ended where the input was cut for length (or ended): what
                     * follows is checked for a new stream as after any end */
                    seg->res = SEG_END;
                    seg->used = seg->in_len;
                }
                if (seg->dest != NULL &&
                    (seg->dest != (unsigned char *)buf + produced || seg->res == SEG_FAIL)) {
                    /* mispredicted place or size: decoded again into its own buffer */
                    drain_direct(r);
                    continue;
                }
                if (seg->res != SEG_FAIL) {
                    const unsigned char *src = seg->dest != NULL ? seg->dest : seg->out;
                    if (!seg->accepted) {
                        seg->accepted = 1;
                        if (ops->check_combine != NULL) {
                            r->check = ops->check_combine(r->check, seg->check, seg->out_len);
                        }
                        r->total += seg->out_len;
                        hist_push(r, src, seg->out_len);
                        if (seg->res == SEG_CLEAN && seg->at_marker && seg->out_len > 0) {
                            r->bs = seg->out_len;
                        }
                    }
                    size_t n = seg->out_len - seg->opos;
                    if (n > want - produced) {
                        n = want - produced;
                    }
                    if (seg->dest == NULL) {
                        unsigned char *to = (unsigned char *)buf + produced;
                        if (direct_conflict(r, seg, to, to + n)) {
                            drain_direct(r); /* longer than predicted: the next ones move */
                        }
                        memcpy(to, src + seg->opos, n);
                    } /* else: already in place (dest == buf + produced and n == out_len) */
                    seg->opos += n;
                    produced += n;
                    if (seg->opos == seg->out_len) {
                        if (seg->res == SEG_END) {
                            if (end_stream(r, seg->used) < 0) {
                                kind = PE_PYTHON;
                                goto fail;
                            }
                        }
                        else {
                            pop_seg(r);
                        }
                    }
                    continue;
                }
            }
            /* serial from here, with the history */
            drain_direct(r);
            wait_seg(r, seg);
            int rc = ops->body_init(r->st, r->hist, r->hist_len, msg, sizeof(msg));
            if (rc != FJ_DEC_OK) {
                ops->end(r->st);
                kind = rc == FJ_DEC_NOMEM ? PE_NOMEM : PE_CORRUPT;
                goto fail;
            }
            r->st_active = 1;
            r->ser = 1;
            r->at_boundary = 0;
            seg->pos = 0;
        }
        /* SER: decode the head segment straight into the caller's buffer */
        const size_t pos_before = seg->pos;
        const unsigned char *in = seg->in + seg->pos;
        size_t in_len = seg->in_len - seg->pos;
        unsigned char *out = (unsigned char *)buf + produced;
        /* at most PAR_SLICE per GIL release: the loop's top checks for signals in between */
        const size_t slice = want - produced > PAR_SLICE ? PAR_SLICE : want - produced;
        size_t out_len = slice;
        int rc;
        if (out_len >= 16384) {
            Py_BEGIN_ALLOW_THREADS
            rc = ops->body_run(r->st, &in, &in_len, &out, &out_len, msg, sizeof(msg));
            Py_END_ALLOW_THREADS
        }
        else {
            rc = ops->body_run(r->st, &in, &in_len, &out, &out_len, msg, sizeof(msg));
        }
        size_t made = slice - out_len;
        account_output(r, (unsigned char *)buf + produced, made);
        produced += made;
        seg->pos = seg->in_len - in_len;
        if (rc == FJ_DEC_END) {
            ops->end(r->st);
            r->st_active = 0;
            r->ser = 0;
            if (ops->end_continues && seg->pos == seg->in_len && seg->at_marker) {
                pop_seg(r);
                r->at_boundary = 1;
                continue;
            }
            if (end_stream(r, seg->pos) < 0) {
                kind = PE_PYTHON;
                goto fail;
            }
            continue;
        }
        if (rc != FJ_DEC_OK) {
            kind = rc == FJ_DEC_NOMEM ? PE_NOMEM : PE_CORRUPT;
            goto fail;
        }
        if (seg->pos == seg->in_len) {
            if (ops->at_boundary(r->st)) {
                ops->end(r->st);
                r->st_active = 0;
                r->ser = 0;
                r->at_boundary = 1;
                pop_seg(r);
            }
            else if (made == 0 && out_len > 0) {
                pop_seg(r); /* the decode goes on in the next segment (or input is truncated) */
            }
        }
        else if (made == 0 && out_len > 0 && seg->pos == pos_before) {
            snprintf(msg, sizeof(msg), "decoder made no progress"); /* never loop on it */
            kind = PE_CORRUPT;
            goto fail;
        }
    }
    drain_direct(r);
    return (Py_ssize_t)produced;
fail:
    drain_direct(r);
    if (kind == PE_PYTHON) {
        const int urgent = fj_error_is_urgent(mark); /* an interrupt is never deferred */
        PyErr_Fetch(&r->perr_type, &r->perr_value, &r->perr_tb);
        r->perr = PE_PYTHON;
        if (produced > 0 && !urgent) {
            return (Py_ssize_t)produced;
        }
        return raise_kind(r, PE_PYTHON, "");
    }
    r->perr = kind;
    memcpy(r->perr_msg, msg, sizeof(msg));
    if (produced > 0) {
        return (Py_ssize_t)produced;
    }
    return raise_kind(r, kind, msg);
}

static void
preader_free(fj_reader *self)
{
    preader *r = (preader *)self;
    if (r->pool != NULL) {
        Py_BEGIN_ALLOW_THREADS
        fj_pool_free(r->pool);
        Py_END_ALLOW_THREADS
        r->pool = NULL;
    }
    if (r->slots != NULL) {
        for (int i = 0; i < r->nslots; i++) {
            pseg *s = &r->slots[i];
            if (s->st != NULL) {
                r->ops->end(s->st);
                PyMem_RawFree(s->st);
            }
            PyMem_RawFree(s->in);
            PyMem_RawFree(s->out);
        }
        PyMem_RawFree(r->slots);
    }
    if (r->st != NULL) {
        if (r->st_active) {
            r->ops->end(r->st);
        }
        PyMem_RawFree(r->st);
    }
    if (r->serial != NULL) {
        r->serial->free(r->serial);
    }
    Py_CLEAR(r->perr_type);
    Py_CLEAR(r->perr_value);
    Py_CLEAR(r->perr_tb);
    PyMem_RawFree(r->pend);
    PyMem_RawFree(r->hist);
    if (r->inner != NULL) {
        r->inner->free(r->inner);
    }
    if (r->lock_inited) {
        pthread_mutex_destroy(&r->lock);
    }
    PyMem_RawFree(r);
}

fj_reader *
fj_preader_new(const fj_pdec_ops *ops, int threads, fj_reader *inner)
{
    threads = fj_codec_threads(threads);
    if (threads > PR_MAX_THREADS) {
        threads = PR_MAX_THREADS;
    }
    if (threads < 2) {
        return fj_sreader_new(ops->serial, inner);
    }
    preader *r = PyMem_RawCalloc(1, sizeof(preader));
    if (r == NULL) {
        inner->free(inner);
        PyErr_NoMemory();
        return NULL;
    }
    r->base.read = preader_read;
    r->base.free = preader_free;
    r->inner = inner;
    r->ops = ops;
    r->threads = threads;
    r->nslots = 2 * threads;
    r->bs = ops->out_hint;
    pthread_mutex_init(&r->lock, NULL);
    r->lock_inited = 1;
    r->slots = PyMem_RawCalloc((size_t)r->nslots, sizeof(pseg));
    r->st = PyMem_RawCalloc(1, ops->state_size);
    if (r->slots == NULL || r->st == NULL) {
        goto nomem;
    }
    if (ops->hist_size > 0 && (r->hist = PyMem_RawMalloc(ops->hist_size)) == NULL) {
        goto nomem;
    }
    for (int i = 0; i < r->nslots; i++) {
        pseg *s = &r->slots[i];
        s->task.fn = run_pseg;
        s->r = r;
        if ((s->st = PyMem_RawCalloc(1, ops->state_size)) == NULL) {
            goto nomem;
        }
    }
    return &r->base;
nomem:
    preader_free(&r->base);
    PyErr_NoMemory();
    return NULL;
}
