/* codec_ispec.c: one serial zlib/gzip stream (a file joblib wrote) inflated on several cores.
 *
 * A deflate stream written in one piece has no marker to cut it at, and every block may copy from
 * the 32 KiB before it. The consumer (the caller of read()) inflates the stream in order, as the
 * serial reader does; meanwhile workers decode regions further on, speculatively:
 *
 *  - Regions: the compressed body is cut into regions of K bytes (K adapts to the compression
 *    ratio so that a region decodes to about IS_OUT_TARGET); of every `threads` consecutive
 *    regions the first is left to the consumer, the others go to the pool (at most nq in flight).
 *  - A worker looks for a block boundary in its region: a bit position where a non-final block
 *    with dynamic Huffman codes starts (the code-length code must be complete: a cheap filter),
 *    then inflates from there with zlib's own inflate (raw, primed with the bits before the next
 *    byte) until the first block boundary at or after the region's end. The window before that
 *    start is unknown, so the start is decoded three times with three made-up 32 KiB dictionaries
 *    (D1[i] = i & 255, D2[i] = 128 | i >> 8, D3 = ~D1): a byte that differs between the first and
 *    the third decode was copied from window position i = D1 byte | (D2 byte & 127) << 8, which the
 *    consumer fills in later. Once the last 32 KiB of output hold no such byte, the first decoder
 *    goes on alone (its history is then all real bytes). A start that fails to decode is not a
 *    boundary: the search goes on.
 *  - The consumer inflates with Z_BLOCK and looks at every block boundary it reaches: a worker's
 *    region is taken only when the consumer stands exactly at the bit where that worker started.
 *    Then the start really is a block boundary and the worker's output is exactly what the serial
 *    decode produces there: its window bytes are filled in from the last 32 KiB of real output,
 *    and the consumer goes on from the bit where the worker stopped (a new raw inflate, primed,
 *    with the last 32 KiB as dictionary). A region whose start the consumer passes, or whose
 *    worker failed, is dropped: the consumer decodes it itself. Every byte the caller receives was
 *    thus either decoded in order by the consumer or proven to be the serial decode's byte.
 *  - The checksum (Adler-32 / CRC-32) is computed over the output here (the body inflates raw) and
 *    checked against the trailer with zlib's messages; a gzip member is followed by the next one
 *    as the serial reader does; errors are the serial decoder's own (the consumer meets them where
 *    the serial decode does: a region is never taken past an error).
 *
 * Stored and fixed-code blocks are never guessed as starts (the consumer decodes across them).
 * Memory: the input from the consumer's position to the farthest region in flight, plus per
 * region in flight a copy of its input and its output (at most IS_OUT_MAX).
 */
#include "fj.h"
#include "codec.h"
#include "engine.h"

#include <limits.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IS_WIN 32768
#define IS_FILL (1u << 20)             /* input read size */
#define IS_SLACK (256u * 1024)         /* input past a region's end for its last block */
#define IS_K_MIN (256u * 1024)
#define IS_K_MAX (4u << 20)
#define IS_K_FIRST (2u << 20)
#define IS_OUT_TARGET (8u << 20)       /* output a region should decode to */
#define IS_OUT_MAX (12u << 20)         /* a worker stops its region at a block boundary past this */
#define IS_UNCLEAN_MAX (1u << 20)      /* give up when the window is still needed after this */
#define IS_MARKS_MAX (256u * 1024)
#define IS_TRIES_MAX 1024              /* candidate starts decoded per region at most */
#define IS_WASTE_MAX (64u << 20)       /* output + 4 x input of failed candidates per region */
#define IS_SLICE ((size_t)1 << 20)     /* consumer output per GIL release */
#define IS_MAX_THREADS 8
#define IS_NONE UINT64_MAX

enum { IE_NONE = FJ_ERR_NONE, IE_CORRUPT = FJ_ERR_CORRUPT, IE_NOMEM = FJ_ERR_NOMEM,
       IE_TRUNCATED = FJ_ERR_TRUNCATED, IE_PYTHON = FJ_ERR_PYTHON };
enum { IP_HEAD = 0, IP_BODY, IP_TAIL, IP_MAGIC, IP_DONE };

typedef struct {
    const fj_inflate_fns *f;
    union {
        z_stream z;
        fj_zng_stream n;
    } u;
    int inited;
} zs;

typedef struct {
    unsigned char *p;
    size_t len, cap;
} obuf;

typedef struct {
    uint32_t pos;   /* offset in the region's output */
    uint16_t idx;   /* window position (distance 32768 - idx before the region's start) */
} wmark;

typedef struct ispec ispec;

typedef struct {
    fj_task task; /* first member */
    ispec *r;
    /* set by the consumer before submission */
    unsigned char *in;
    size_t in_len, in_cap;
    uint64_t base;        /* absolute offset of in[0] (= the region's start) */
    size_t search_end;    /* candidate starts in bits [0, 8 * search_end) */
    size_t stop_at;       /* stop at the first block boundary at or after bit 8 * stop_at */
    /* results (worker) */
    int gave_up;          /* the window was still needed after IS_UNCLEAN_MAX (or no memory) */
    size_t tried_in;      /* input the last candidate decoded */
    int abandon;          /* atomic, set by the consumer: it went past this region's start, or
                             the stream ended, or the reader is freed */
    uint64_t cand_bit;    /* absolute: the start being decoded (atomic; IS_NONE: none yet) */
    int ok;
    uint64_t start_bit;   /* absolute */
    uint64_t end_bit;     /* absolute, !final */
    int final;            /* ended with the stream's last block */
    uint64_t end_byte;    /* absolute, final: the first byte after the deflate data */
    obuf out, t1, t2;
    wmark *marks;
    size_t nmark, mcap;
    uint16_t min_idx;
    zs d[3];
    /* consumer */
    size_t opos;
    int accepted;
    int landed;           /* the consumer stood on cand_bit while the worker ran: */
    uint64_t land_bit, land_total; /* where, its output count then, and the window there */
    unsigned char win[IS_WIN];
    size_t win_len;
} ichunk;

struct ispec {
    fj_reader base;
    fj_reader *inner;
    const fj_pdec_ops *ops;
    const fj_inflate_fns *f;
    int gzip, threads;
    fj_pool *pool;
    unsigned char *ib;
    size_t ib_len, ib_cap, ipos; /* input bytes ib[0:ib_len) are at absolute ib_base...; the
                                    consumer's next byte is ib[ipos] */
    uint64_t ib_base;
    int input_eof;
    int phase;
    void *hst;                   /* header decoder (ops->state_size) */
    int hst_active;
    zs m;                        /* the consumer's body decoder */
    uint64_t m_bit;              /* where m starts when (re)initialised */
    unsigned char hist[IS_WIN];
    size_t hist_len;
    uint32_t check;
    uint64_t total, body_start;
    /* regions */
    ichunk *q;
    int nq, qhead, qcount;
    uint64_t next_region;
    unsigned region_idx;
    size_t K, K_fixed;
    int sched_done;
    int gave_up, taken;          /* this stream's regions given up / taken */
    int wait_all;                /* tests: wait for every worker whose region the decode reached */
    pid_t pid;                   /* the pool's threads live in this process only */
    int forked;                  /* a child of the process that used the pool: serial only */
    ichunk *serving;
    int perr;
    char perr_msg[200];
    PyObject *perr_type, *perr_value, *perr_tb;
};

/* ----- zlib stream on either engine ---------------------------------------------------------- */
static int
zs_init(zs *s, const fj_inflate_fns *f)
{
    memset(&s->u, 0, sizeof(s->u));
    s->f = f;
    int rc = f->init2(&s->u, -MAX_WBITS);
    s->inited = rc == Z_OK;
    return rc;
}

static void
zs_end(zs *s)
{
    if (s->inited) {
        s->f->end(&s->u);
        s->inited = 0;
    }
}

/* Inflate from *in into o (grown up to `max` bytes of capacity): with Z_BLOCK until the next
 * block boundary, with Z_NO_FLUSH until the input or the room is used up. 1: at a block boundary
 * (never after the last block: then the stream's end is returned); 2: the stream's end; 0: input
 * used up (Z_BLOCK: inside a block); -1: corrupt data (msg set when given); -2: out of memory,
 * or o holds `max` bytes. */
static int
zs_run(zs *s, const unsigned char **in, size_t *in_len, obuf *o, size_t max, int flush, char *msg,
       size_t cap)
{
    for (;;) {
        if (o->cap - o->len < 65536) {
            size_t ncap = o->cap < 262144 ? 262144 : o->cap * 2;
            if (ncap > max) {
                ncap = max;
            }
            if (ncap <= o->cap) {
                if (o->cap == o->len) {
                    return -2;
                }
            }
            else {
                unsigned char *p = PyMem_RawRealloc(o->p, ncap);
                if (p == NULL) {
                    return -2;
                }
                o->p = p;
                o->cap = ncap;
            }
        }
        size_t room = o->cap - o->len;
        unsigned ain = *in_len > UINT_MAX ? UINT_MAX : (unsigned)*in_len;
        unsigned aout = room > UINT_MAX ? UINT_MAX : (unsigned)room;
        int rc, dt;
        unsigned left_in, left_out;
        const char *m;
        if (s->f->ng) {
            s->u.n.next_in = *in;
            s->u.n.avail_in = ain;
            s->u.n.next_out = o->p + o->len;
            s->u.n.avail_out = aout;
            rc = s->f->inflate(&s->u, flush);
            left_in = s->u.n.avail_in;
            left_out = s->u.n.avail_out;
            dt = s->u.n.data_type;
            m = s->u.n.msg;
        }
        else {
            s->u.z.next_in = (Bytef *)*in;
            s->u.z.avail_in = ain;
            s->u.z.next_out = o->p + o->len;
            s->u.z.avail_out = aout;
            rc = s->f->inflate(&s->u, flush);
            left_in = s->u.z.avail_in;
            left_out = s->u.z.avail_out;
            dt = s->u.z.data_type;
            m = s->u.z.msg;
        }
        size_t used = ain - left_in, made = aout - left_out;
        *in += used;
        *in_len -= used;
        o->len += made;
        if (rc == Z_STREAM_END) {
            return 2;
        }
        if (rc == Z_MEM_ERROR) {
            if (msg != NULL) {
                snprintf(msg, cap, "out of memory");
            }
            return -2;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            if (msg != NULL) {
                snprintf(msg, cap, "%s", m ? m : "invalid stream");
            }
            return -1;
        }
        if ((dt & 128) && (used > 0 || made > 0) && flush == Z_BLOCK) {
            if (dt & 64) {
                continue; /* after the last block: the next call ends the stream */
            }
            return 1;
        }
        if (*in_len == 0) {
            return 0;
        }
        if (used == 0 && made == 0 && left_out > 0) {
            if (msg != NULL) {
                snprintf(msg, cap, "decoder made no progress");
            }
            return -1;
        }
    }
}

static int
zs_unused_bits(const zs *s)
{
    return (s->f->ng ? s->u.n.data_type : s->u.z.data_type) & 7;
}

/* Start a raw decode at bit `bit` of buf (counted from buf[0]), with a dictionary; sets in, in_len
 * to the bytes after the primed ones. Z_OK or zlib's error. */
static int
zs_start(zs *s, const fj_inflate_fns *f, const unsigned char *buf, size_t len, uint64_t bit,
         const unsigned char *dict, size_t dict_len, const unsigned char **in, size_t *in_len)
{
    int rc = zs_init(s, f);
    if (rc != Z_OK) {
        return rc;
    }
    size_t byte = (size_t)(bit >> 3);
    int sh = (int)(bit & 7);
    if (dict_len > 0 && (rc = f->setdict(&s->u, dict, (uint32_t)dict_len)) != Z_OK) {
        return rc;
    }
    if (sh != 0) {
        if (byte >= len) {
            return Z_BUF_ERROR;
        }
        if ((rc = f->prime(&s->u, 8 - sh, buf[byte] >> sh)) != Z_OK) {
            return rc;
        }
        byte++;
    }
    *in = buf + byte;
    *in_len = len - byte;
    return Z_OK;
}

/* ----- candidate block starts ---------------------------------------------------------------- */
static uint64_t
bits_at(const unsigned char *p, size_t len, uint64_t bit, int n) /* n <= 57 */
{
    size_t b = (size_t)(bit >> 3);
    uint64_t v = 0;
    for (int i = 0; i < 8 && b + (size_t)i < len; i++) {
        v |= (uint64_t)p[b + (size_t)i] << (8 * i);
    }
    return (v >> (bit & 7)) & ((n == 64 ? 0 : (UINT64_C(1) << n)) - 1);
}

/* A non-final block with dynamic codes may start at `bit`: lengths in range and a complete
 * code-length code (zlib refuses anything else). */
static int
dyn_header_ok(const unsigned char *p, size_t len, uint64_t bit)
{
    if (bit + 17 + 57 > (uint64_t)len * 8) {
        return 0;
    }
    uint64_t v = bits_at(p, len, bit, 17);
    if ((v & 7) != 4) { /* BFINAL 0, BTYPE 2 */
        return 0;
    }
    unsigned hlit = (unsigned)(v >> 3) & 31, hdist = (unsigned)(v >> 8) & 31;
    unsigned hclen = ((unsigned)(v >> 13) & 15) + 4;
    if (hlit > 29 || hdist > 29) {
        return 0;
    }
    uint64_t w = bits_at(p, len, bit + 17, (int)(3 * hclen));
    int count[8] = {0};
    for (unsigned i = 0; i < hclen; i++) {
        count[(w >> (3 * i)) & 7]++;
    }
    int left = 1;
    for (int l = 1; l < 8; l++) {
        left <<= 1;
        left -= count[l];
        if (left < 0) {
            return 0;
        }
    }
    return left == 0;
}

/* ----- worker -------------------------------------------------------------------------------- */
static unsigned char dict1[IS_WIN], dict2[IS_WIN], dict3[IS_WIN];
static int dicts_ready;

static void
make_dicts(void)
{
    for (int i = 0; i < IS_WIN; i++) {
        dict1[i] = (unsigned char)(i & 255);
        dict2[i] = (unsigned char)(128 | (i >> 8));
        dict3[i] = (unsigned char)(~i & 255);
    }
    dicts_ready = 1;
}

static void
chunk_end_decoders(ichunk *ch)
{
    for (int k = 0; k < 3; k++) {
        zs_end(&ch->d[k]);
    }
}

/* Decode the region from candidate `bit`. 1: done (ch->ok fields set); 0: not a start here;
 * -1: give the region up. */
static int
decode_from(ichunk *ch, uint64_t bit)
{
    const fj_inflate_fns *f = ch->r->f;
    static const unsigned char *const dicts[3] = {dict1, dict2, dict3};
    obuf *ob[3] = {&ch->out, &ch->t1, &ch->t2};
    const unsigned char *in[3];
    size_t inl[3];
    int res = 0;
    ch->nmark = 0;
    ch->min_idx = 0xffff;
    for (int k = 0; k < 3; k++) {
        ob[k]->len = 0;
        if (zs_start(&ch->d[k], f, ch->in, ch->in_len, bit, dicts[k], IS_WIN, &in[k], &inl[k]) !=
            Z_OK) {
            chunk_end_decoders(ch);
            return -1;
        }
    }
    size_t mark_end = 0, blk_out = 0;
    uint64_t blk_bit = bit, stop_bit = (uint64_t)ch->stop_at * 8;
    int clean = 0;
    for (;;) {
        if (__atomic_load_n(&ch->abandon, __ATOMIC_RELAXED)) {
            res = -1;
            break;
        }
        size_t before = ob[0]->len;
        int rc = zs_run(&ch->d[0], &in[0], &inl[0], ob[0],
                        (clean ? IS_OUT_MAX : IS_UNCLEAN_MAX) + 65536, Z_BLOCK, NULL, 0);
        if (rc == -1) {
            res = 0;
            break;
        }
        if (rc == -2 || rc == 0) {
            /* output or input used up inside a block: end at the last boundary, if usable */
            if (clean && blk_bit > bit) {
                ch->out.len = blk_out;
                ch->end_bit = ch->base * 8 + blk_bit;
                ch->final = 0;
                res = 1;
            }
            else {
                res = rc == -2 ? -1 : 0;
            }
            break;
        }
        if (!clean) {
            for (int k = 1; k < 3; k++) {
                int rk = zs_run(&ch->d[k], &in[k], &inl[k], ob[k], IS_UNCLEAN_MAX + 65536, Z_BLOCK,
                                NULL, 0);
                if (rk != rc || ob[k]->len != ob[0]->len) {
                    res = rk == -2 ? -1 : 0;
                    goto out;
                }
            }
            const unsigned char *a = ob[0]->p, *b = ob[1]->p, *c = ob[2]->p;
            for (size_t j = before; j < ob[0]->len; j++) {
                if (a[j] == c[j]) {
                    continue;
                }
                if ((a[j] ^ c[j]) != 0xff || !(b[j] & 128)) {
                    res = 0; /* cannot come from the window: not a real decode */
                    goto out;
                }
                if (ch->nmark == ch->mcap) {
                    size_t ncap = ch->mcap ? ch->mcap * 2 : 4096;
                    if (ncap > IS_MARKS_MAX) {
                        res = -1;
                        goto out;
                    }
                    wmark *p = PyMem_RawRealloc(ch->marks, ncap * sizeof(wmark));
                    if (p == NULL) {
                        res = -1;
                        goto out;
                    }
                    ch->marks = p;
                    ch->mcap = ncap;
                }
                uint16_t idx = (uint16_t)(a[j] | ((b[j] & 127) << 8));
                ch->marks[ch->nmark].pos = (uint32_t)j;
                ch->marks[ch->nmark].idx = idx;
                ch->nmark++;
                if (idx < ch->min_idx) {
                    ch->min_idx = idx;
                }
                mark_end = j + 1;
            }
            if (ob[0]->len >= mark_end + IS_WIN) {
                clean = 1;
                zs_end(&ch->d[1]);
                zs_end(&ch->d[2]);
            }
            else if (ob[0]->len > IS_UNCLEAN_MAX) {
                res = -1;
                break;
            }
        }
        if (before == 0) {
            /* the first block decoded: tell the consumer where this region starts */
            __atomic_store_n(&ch->cand_bit, ch->base * 8 + bit, __ATOMIC_RELEASE);
        }
        if (rc == 2) {
            ch->final = 1;
            ch->end_byte = ch->base + (size_t)(in[0] - ch->in);
            res = 1;
            break;
        }
        blk_bit = (uint64_t)(in[0] - ch->in) * 8 - (uint64_t)zs_unused_bits(&ch->d[0]);
        blk_out = ob[0]->len;
        if (clean && (blk_bit >= stop_bit || blk_out >= IS_OUT_MAX)) {
            ch->final = 0;
            ch->end_bit = ch->base * 8 + blk_bit;
            res = 1;
            break;
        }
    }
out:
    ch->tried_in = (size_t)(in[0] - ch->in) - (size_t)(bit >> 3);
    chunk_end_decoders(ch);
    if (res == 1) {
        ch->start_bit = ch->base * 8 + bit;
    }
    return res;
}

static void
run_chunk(fj_task *task)
{
    ichunk *ch = (ichunk *)task;
    ch->ok = 0;
    ch->gave_up = 0;
    int tries = 0;
    size_t waste = 0;
    for (size_t byte = 0; byte < ch->search_end; byte++) {
        if ((byte & 4095) == 0 && __atomic_load_n(&ch->abandon, __ATOMIC_RELAXED)) {
            return;
        }
        unsigned v = ch->in[byte] | (byte + 1 < ch->in_len ? (unsigned)ch->in[byte + 1] << 8 : 0);
        for (int sh = 0; sh < 8; sh++) {
            uint64_t bit = (uint64_t)byte * 8 + (uint64_t)sh;
            if (((v >> sh) & 7) != 4 || !dyn_header_ok(ch->in, ch->in_len, bit)) {
                continue;
            }
            /* bounded work on inputs full of false starts (each decoded a while, then failing):
             * give the region up, the consumer decodes it */
            if (++tries > IS_TRIES_MAX || waste > IS_WASTE_MAX ||
                __atomic_load_n(&ch->abandon, __ATOMIC_RELAXED)) {
                ch->gave_up = !__atomic_load_n(&ch->abandon, __ATOMIC_RELAXED);
                return;
            }
            int rc = decode_from(ch, bit);
            if (rc == 1) {
                ch->ok = 1;
                return;
            }
            if (rc < 0) {
                ch->gave_up = !__atomic_load_n(&ch->abandon, __ATOMIC_RELAXED);
                return;
            }
            waste += ch->out.len + 4 * ch->tried_in; /* (empty blocks decode to nothing) */
            __atomic_store_n(&ch->cand_bit, IS_NONE, __ATOMIC_RELEASE);
        }
    }
}

/* ----- counters (tests and benchmarks: _core._ispec_stats) ------------------------------------ */
static uint64_t st_taken, st_failed, st_passed, st_joined;

void
fj_ispec_stats(uint64_t out[4])
{
    out[0] = st_taken;
    out[1] = st_failed;
    out[2] = st_passed;
    out[3] = st_joined;
}

/* ----- consumer helpers (GIL held unless said) ----------------------------------------------- */
static uint32_t
check_update(ispec *r, uint32_t c, const unsigned char *p, size_t n)
{
    return r->gzip ? r->f->crc32(c, p, n) : r->f->adler32(c, p, n);
}

static void
hist_push(ispec *r, const unsigned char *p, size_t n)
{
    if (n >= IS_WIN) {
        memcpy(r->hist, p + n - IS_WIN, IS_WIN);
        r->hist_len = IS_WIN;
        return;
    }
    size_t keep = IS_WIN - n;
    if (keep > r->hist_len) {
        keep = r->hist_len;
    }
    memmove(r->hist, r->hist + r->hist_len - keep, keep);
    memcpy(r->hist + keep, p, n);
    r->hist_len = keep + n;
}

static void
account(ispec *r, const unsigned char *p, size_t n)
{
    r->check = check_update(r, r->check, p, n);
    r->total += n;
    hist_push(r, p, n);
}

/* In a child forked while this reader was in use (by its file object's read, say) the workers are
 * not there: keep a region being served (complete), drop the others, decode serially, and leave
 * the pool alone (joining its absent threads would hang). On entry and after every input read. */
static void
fork_check(ispec *r)
{
    if (r->pool == NULL || r->pid == getpid()) {
        return;
    }
    r->pool = NULL;
    r->forked = 1; /* no pool again in this process for this reader (gzip members included) */
    /* the other regions were copied at an arbitrary moment of their workers (a buffer being
     * reallocated, a decoder being freed): forget their memory (leaked), never touch it */
    for (int i = 0; i < r->nq; i++) {
        ichunk *ch = &r->q[i];
        if (ch == r->serving) {
            continue; /* its worker was done before it was served */
        }
        ch->in = NULL;
        ch->in_cap = ch->in_len = 0;
        memset(&ch->out, 0, sizeof(ch->out));
        memset(&ch->t1, 0, sizeof(ch->t1));
        memset(&ch->t2, 0, sizeof(ch->t2));
        ch->marks = NULL;
        ch->nmark = ch->mcap = 0;
        for (int k = 0; k < 3; k++) {
            ch->d[k].inited = 0;
        }
    }
    r->qcount = r->serving != NULL ? 1 : 0;
    if (r->serving != NULL) {
        r->qhead = (int)(r->serving - r->q);
    }
    r->sched_done = 1;
}

/* Read input until ib holds `upto` bytes (absolute end) or the input ends. -1 on error. */
static int
ib_fill(ispec *r, uint64_t upto)
{
    while (!r->input_eof && r->ib_base + r->ib_len < upto) {
        if (r->ipos > 0 && r->ipos >= r->ib_len / 2) {
            memmove(r->ib, r->ib + r->ipos, r->ib_len - r->ipos);
            r->ib_base += r->ipos;
            r->ib_len -= r->ipos;
            r->ipos = 0;
        }
        size_t want = (size_t)(upto - (r->ib_base + r->ib_len));
        if (want < IS_FILL) {
            want = IS_FILL;
        }
        if (r->ib_cap - r->ib_len < want) {
            size_t ncap = r->ib_len + want;
            unsigned char *p = PyMem_RawRealloc(r->ib, ncap);
            if (p == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            r->ib = p;
            r->ib_cap = ncap;
        }
        Py_ssize_t n = r->inner->read(r->inner, (char *)r->ib + r->ib_len, (Py_ssize_t)want);
        fork_check(r);
        if (n < 0) {
            return -1;
        }
        if (n == 0) {
            r->input_eof = 1;
        }
        r->ib_len += (size_t)n;
    }
    return 0;
}

static ichunk *
q_at(ispec *r, int i)
{
    return &r->q[(r->qhead + i) % r->nq];
}

static void
q_pop(ispec *r)
{
    ichunk *ch = q_at(r, 0);
    if (r->pool != NULL && !fj_pool_is_done(r->pool, &ch->task)) {
        Py_BEGIN_ALLOW_THREADS
        fj_pool_wait(r->pool, &ch->task);
        Py_END_ALLOW_THREADS
    }
    ch->task.state = FJ_TASK_IDLE;
    ch->accepted = 0;
    if (r->serving == ch) {
        r->serving = NULL;
    }
    r->qhead = (r->qhead + 1) % r->nq;
    r->qcount--;
}

/* Drop every region (the stream ended, or an error). */
static void
q_clear(ispec *r)
{
    for (int i = 0; i < r->qcount; i++) {
        __atomic_store_n(&q_at(r, i)->abandon, 1, __ATOMIC_RELAXED);
    }
    if (r->pool != NULL) {
        Py_BEGIN_ALLOW_THREADS
        fj_pool_cancel_all(r->pool);
        Py_END_ALLOW_THREADS
    }
    while (r->qcount > 0) {
        q_pop(r);
    }
    r->sched_done = 1;
}

/* Queue regions ahead of the consumer. -1 on a Python error. */
static int
schedule(ispec *r)
{
    if (r->sched_done || r->forked) {
        return 0;
    }
    if (r->K_fixed > 0) {
        r->K = r->K_fixed;
    }
    else if (r->total > 0 && r->ib_base + r->ipos > r->body_start) {
        double ratio = (double)r->total / (double)(r->ib_base + r->ipos - r->body_start);
        double k = (double)IS_OUT_TARGET / (ratio > 1.0 ? ratio : 1.0);
        r->K = k < IS_K_MIN ? IS_K_MIN : k > IS_K_MAX ? IS_K_MAX : (size_t)k;
    }
    if (r->ib_base + r->ipos < r->body_start + 2 * (uint64_t)r->K) {
        /* only streams that go on past two regions: small files read no further ahead and
         * start no worker (measured: a 4.3 MB file loaded 8% slower with one failing region) */
        return 0;
    }
    if (r->pool == NULL) {
        /* the workers start with the first region (threads - 1 of them) */
        r->pid = getpid();
        if ((r->pool = fj_pool_new(r->threads - 1)) == NULL) {
            r->sched_done = 1; /* no threads to be had: the consumer decodes everything */
            return 0;
        }
    }
    while (r->qcount < r->nq) {
        uint64_t s = r->next_region;
        if (r->region_idx % (unsigned)r->threads == 0 || s < r->ib_base + r->ipos + r->K / 4) {
            r->next_region += r->K; /* the consumer's region, or one it is already in */
            r->region_idx++;
            continue;
        }
        if (ib_fill(r, s + r->K + IS_SLACK) < 0) {
            return -1;
        }
        if (r->pool == NULL) {
            return 0; /* forked during that read (fork_check) */
        }
        uint64_t end = r->ib_base + r->ib_len;
        if (end < s + r->K / 2) {
            r->sched_done = 1; /* near the end of the input: the consumer does the rest */
            return 0;
        }
        ichunk *ch = q_at(r, r->qcount);
        size_t n = (size_t)((end < s + r->K + IS_SLACK ? end : s + r->K + IS_SLACK) - s);
        if (ch->in_cap < n) {
            unsigned char *p = PyMem_RawRealloc(ch->in, n);
            if (p == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            ch->in = p;
            ch->in_cap = n;
        }
        memcpy(ch->in, r->ib + (size_t)(s - r->ib_base), n);
        ch->in_len = n;
        ch->base = s;
        ch->search_end = n < r->K ? n : r->K;
        ch->stop_at = r->K;
        ch->ok = 0;
        ch->landed = 0;
        ch->abandon = 0;
        ch->cand_bit = IS_NONE;
        ch->opos = 0;
        ch->accepted = 0;
        r->qcount++;
        r->next_region += r->K;
        r->region_idx++;
        fj_pool_submit(r->pool, &ch->task);
    }
    return 0;
}

/* Take a region from offset `o` of its output on (the consumer made the bytes before itself):
 * fill in the window bytes (win: the 32 KiB before the region's start) and account the output.
 * 0, or -1 when a copy reaches before the stream's start (corrupt: the consumer decodes on and
 * meets the error where the serial decode does). */
static int
take_chunk(ispec *r, ichunk *ch, size_t o, const unsigned char *win, size_t win_len)
{
    for (size_t k = 0; k < ch->nmark; k++) {
        if ((size_t)(IS_WIN - ch->marks[k].idx) > win_len) {
            return -1;
        }
    }
    for (size_t k = 0; k < ch->nmark; k++) {
        if (ch->marks[k].pos >= o) {
            ch->out.p[ch->marks[k].pos] = win[win_len - (IS_WIN - ch->marks[k].idx)];
        }
    }
    account(r, ch->out.p + o, ch->out.len - o);
    ch->opos = o;
    ch->accepted = 1;
    st_joined += o > 0;
    r->serving = ch;
    r->taken++;
    st_taken++;
    return 0;
}

static void
start_body(ispec *r)
{
    r->phase = IP_BODY;
    r->check = r->gzip ? 0 : 1;
    r->total = 0;
    r->hist_len = 0;
    r->body_start = r->ib_base + r->ipos;
    r->m_bit = r->body_start * 8;
    r->next_region = r->body_start;
    r->region_idx = 0;
    r->sched_done = 0;
    r->gave_up = r->taken = 0;
    r->K = IS_K_FIRST;
}

static int
raise_kind(ispec *r, int kind, const char *msg)
{
    return fj_codec_raise_kind(r->ops->serial, kind, msg, r->perr_type, r->perr_value, r->perr_tb);
}

/* At least one unread input byte: 0, or the error kind (input ended: truncated). */
static int
need_input(ispec *r)
{
    if (r->ipos < r->ib_len) {
        return IE_NONE;
    }
    if (ib_fill(r, r->ib_base + r->ib_len + 1) < 0) {
        return IE_PYTHON;
    }
    return r->ipos < r->ib_len ? IE_NONE : IE_TRUNCATED;
}

/* At block boundary `bit` of the consumer's decode: take the region starting there, dropping the
 * ones it passed. 1: a region was taken (r->serving), 0: go on decoding, -1: Python error. */
static int
at_boundary(ispec *r, uint64_t bit)
{
    while (r->qcount > 0 && r->pool != NULL) {
        ichunk *ch = q_at(r, 0);
        if (bit < ch->base * 8) {
            return 0;
        }
        int done = fj_pool_is_done(r->pool, &ch->task);
        uint64_t cand = done ? (ch->ok ? ch->start_bit : IS_NONE)
                             : __atomic_load_n(&ch->cand_bit, __ATOMIC_ACQUIRE);
        while (r->wait_all == 2 && cand == IS_NONE && !done) {
            /* test switch 2: let the worker find its start first (then join it later) */
            Py_BEGIN_ALLOW_THREADS
            usleep(200);
            Py_END_ALLOW_THREADS
            done = fj_pool_is_done(r->pool, &ch->task);
            cand = done ? (ch->ok ? ch->start_bit : IS_NONE)
                        : __atomic_load_n(&ch->cand_bit, __ATOMIC_ACQUIRE);
        }
        if (cand == bit) {
            /* standing on the worker's start: note where, for joining it later */
            ch->landed = 1;
            ch->land_bit = bit;
            ch->land_total = r->total;
            memcpy(ch->win, r->hist, r->hist_len);
            ch->win_len = r->hist_len;
        }
        if (!done) {
            /* The consumer never waits for a worker (a busy machine may give it no time): it
             * decodes on, and once the worker is done it takes the rest of the worker's output
             * from where it then is, if it stood on the worker's start. */
            if (cand != IS_NONE && cand < bit && !(ch->landed && ch->land_bit == cand)) {
                __atomic_store_n(&ch->abandon, 1, __ATOMIC_RELAXED); /* passed: stop it */
            }
            if (!r->wait_all || (r->wait_all == 2 && !(ch->landed && bit > ch->land_bit))) {
                return 0;
            }
            if (fj_wait_interruptible(r->pool, &ch->task) < 0) {
                return -1;
            }
        }
        if (ch->ok && ch->start_bit == bit && r->wait_all != 2 &&
            take_chunk(r, ch, 0, r->hist, r->hist_len) == 0) {
            return 1;
        }
        if (ch->ok && ch->start_bit < bit && ch->landed && ch->land_bit == ch->start_bit &&
            r->total - ch->land_total < ch->out.len &&
            take_chunk(r, ch, (size_t)(r->total - ch->land_total), ch->win, ch->win_len) == 0) {
            return 1;
        }
        if (ch->ok && ch->start_bit >= bit) {
            return 0;
        }
        if (ch->ok) {
            st_passed++;
        }
        else {
            st_failed++;
            /* data whose copies keep reaching back before the region (long repeats) cannot be
             * cut this way: when the first region of a stream is given up, or two more after
             * others were taken, the rest is decoded serially */
            if (ch->gave_up && ++r->gave_up >= (r->taken == 0 ? 1 : 3)) {
                q_pop(r);
                q_clear(r);
                return 0;
            }
        }
        q_pop(r);
    }
    return 0;
}

static Py_ssize_t
ispec_read(fj_reader *self, char *buf, Py_ssize_t len)
{
    ispec *r = (ispec *)self;
    const fj_pdec_ops *ops = r->ops;
    size_t produced = 0, want = len > 0 ? (size_t)len : 0;
    int kind = IE_NONE;
    char msg[200] = "";
    const unsigned long mark = fj_interrupt_mark();

    if (r->perr != IE_NONE) {
        return raise_kind(r, r->perr, r->perr_msg);
    }
    fork_check(r);
    while (produced < want) {
        if (fj_check_interrupt() < 0) {
            kind = IE_PYTHON;
            goto fail;
        }
        if (r->phase == IP_DONE) {
            break;
        }
        if (r->phase == IP_HEAD) {
            if (!r->hst_active) {
                int rc = ops->head_init(r->hst, msg, sizeof(msg));
                if (rc != FJ_DEC_OK) {
                    kind = rc == FJ_DEC_NOMEM ? IE_NOMEM : IE_CORRUPT;
                    goto fail;
                }
                r->hst_active = 1;
            }
            if ((kind = need_input(r)) != IE_NONE) {
                goto fail;
            }
            const unsigned char *in = r->ib + r->ipos;
            size_t in_len = r->ib_len - r->ipos;
            int rc = ops->head(r->hst, &in, &in_len, msg, sizeof(msg));
            size_t used = (size_t)(in - (r->ib + r->ipos));
            r->ipos += used;
            if (rc == FJ_DEC_END) {
                ops->end(r->hst);
                r->hst_active = 0;
                start_body(r);
                continue;
            }
            if (rc != FJ_DEC_OK) {
                kind = rc == FJ_DEC_NOMEM ? IE_NOMEM : IE_CORRUPT;
                goto fail;
            }
            if (used == 0 && r->ipos < r->ib_len) {
                snprintf(msg, sizeof(msg), "decoder made no progress");
                kind = IE_CORRUPT;
                goto fail;
            }
            continue;
        }
        if (r->phase == IP_TAIL) {
            size_t tl = ops->tail_len;
            if (ib_fill(r, r->ib_base + r->ipos + tl) < 0) {
                kind = IE_PYTHON;
                goto fail;
            }
            if (r->ib_len - r->ipos < tl) {
                kind = IE_TRUNCATED;
                goto fail;
            }
            if (ops->tail(r->ib + r->ipos, r->check, r->total, msg, sizeof(msg)) < 0) {
                kind = IE_CORRUPT;
                goto fail;
            }
            r->ipos += tl;
            r->phase = IP_MAGIC;
            continue;
        }
        if (r->phase == IP_MAGIC) {
            const fj_sdec_ops *s = ops->serial;
            if (s->magic == NULL) {
                r->phase = IP_DONE;
                continue;
            }
            if (ib_fill(r, r->ib_base + r->ipos + s->magic_len) < 0) {
                kind = IE_PYTHON;
                goto fail;
            }
            if (r->ib_len - r->ipos >= s->magic_len &&
                memcmp(r->ib + r->ipos, s->magic, s->magic_len) == 0) {
                r->phase = IP_HEAD;
            }
            else {
                r->phase = IP_DONE; /* anything after the end is ignored */
            }
            continue;
        }
        /* IP_BODY */
        if (r->serving != NULL) {
            ichunk *ch = r->serving;
            size_t n = ch->out.len - ch->opos;
            if (n > want - produced) {
                n = want - produced;
            }
            memcpy(buf + produced, ch->out.p + ch->opos, n);
            ch->opos += n;
            produced += n;
            if (ch->opos < ch->out.len) {
                continue;
            }
            int final = ch->final;
            uint64_t end_bit = ch->end_bit, end_byte = ch->end_byte;
            q_pop(r);
            if (final) {
                q_clear(r);
                r->ipos = (size_t)(end_byte - r->ib_base);
                r->phase = IP_TAIL;
                continue;
            }
            /* the region ended on a block boundary: the next region may start right there */
            r->m_bit = end_bit;
            if (at_boundary(r, end_bit) < 0) {
                kind = IE_PYTHON;
                goto fail;
            }
            continue;
        }
        if (schedule(r) < 0) {
            kind = IE_PYTHON;
            goto fail;
        }
        if (!r->m.inited) {
            /* (re)start the body decode at m_bit with the history as dictionary */
            if (ib_fill(r, (r->m_bit >> 3) + 2) < 0) {
                kind = IE_PYTHON;
                goto fail;
            }
            r->ipos = (size_t)((r->m_bit >> 3) - r->ib_base);
            const unsigned char *in;
            size_t in_len;
            int rc = zs_start(&r->m, r->f, r->ib, r->ib_len, r->m_bit - r->ib_base * 8, r->hist,
                              r->hist_len, &in, &in_len);
            if (rc == Z_BUF_ERROR) {
                zs_end(&r->m);
                kind = IE_TRUNCATED;
                goto fail;
            }
            if (rc != Z_OK) {
                zs_end(&r->m);
                snprintf(msg, sizeof(msg), "inflate setup failed (%d)", rc);
                kind = rc == Z_MEM_ERROR ? IE_NOMEM : IE_CORRUPT;
                goto fail;
            }
            r->ipos = (size_t)(in - r->ib);
        }
        if ((kind = need_input(r)) != IE_NONE) {
            goto fail;
        }
        const unsigned char *in = r->ib + r->ipos;
        size_t in_len = r->ib_len - r->ipos;
        /* block by block (Z_BLOCK) only inside the next worker's region, where its start may be;
         * before it in one go, up to the region */
        int flush = Z_NO_FLUSH;
        if (r->qcount > 0) {
            uint64_t base = q_at(r, 0)->base, pos = r->ib_base + r->ipos;
            if (pos >= base) {
                flush = Z_BLOCK;
            }
            else if (base - pos < in_len) {
                in_len = (size_t)(base - pos);
            }
        }
        else if (!r->sched_done) {
            /* stop where the workers may start (schedule) */
            uint64_t start = r->body_start + 2 * (uint64_t)r->K, pos = r->ib_base + r->ipos;
            if (pos < start && start - pos < in_len) {
                in_len = (size_t)(start - pos);
            }
        }
        const size_t slice = want - produced > IS_SLICE ? IS_SLICE : want - produced;
        obuf o = {(unsigned char *)buf + produced, 0, slice};
        int rc;
        if (slice >= 16384) {
            Py_BEGIN_ALLOW_THREADS
            rc = zs_run(&r->m, &in, &in_len, &o, slice, flush, msg, sizeof(msg));
            Py_END_ALLOW_THREADS
        }
        else {
            rc = zs_run(&r->m, &in, &in_len, &o, slice, flush, msg, sizeof(msg));
        }
        account(r, (unsigned char *)buf + produced, o.len);
        produced += o.len;
        r->ipos = (size_t)(in - r->ib);
        if (rc == 2) {
            zs_end(&r->m);
            q_clear(r);
            r->phase = IP_TAIL;
            continue;
        }
        if (rc == -1) {
            kind = IE_CORRUPT;
            goto fail;
        }
        if (rc == -2 && o.len < o.cap) {
            snprintf(msg, sizeof(msg), "out of memory");
            kind = IE_NOMEM;
            goto fail;
        }
        if (rc == 1 && r->qcount > 0) {
            uint64_t bit = (r->ib_base + r->ipos) * 8 - (uint64_t)zs_unused_bits(&r->m);
            int t = at_boundary(r, bit);
            if (t < 0) {
                kind = IE_PYTHON;
                goto fail;
            }
            if (t == 1) {
                zs_end(&r->m);
            }
        }
        /* rc 0 (input used up): the next turn reads more, or reports the truncation */
    }
    return (Py_ssize_t)produced;
fail:
    if (kind == IE_PYTHON) {
        const int urgent = fj_error_is_urgent(mark); /* an interrupt is never deferred */
        PyErr_Fetch(&r->perr_type, &r->perr_value, &r->perr_tb);
        r->perr = IE_PYTHON;
        q_clear(r);
        if (produced > 0 && !urgent) {
            return (Py_ssize_t)produced;
        }
        return raise_kind(r, IE_PYTHON, "");
    }
    q_clear(r);
    r->perr = kind;
    memcpy(r->perr_msg, msg, sizeof(msg));
    if (produced > 0) {
        return (Py_ssize_t)produced;
    }
    return raise_kind(r, kind, msg);
}

static void
ispec_free(fj_reader *self)
{
    ispec *r = (ispec *)self;
    if (r->pool != NULL) {
        for (int i = 0; i < r->qcount; i++) {
            __atomic_store_n(&q_at(r, i)->abandon, 1, __ATOMIC_RELAXED);
        }
        Py_BEGIN_ALLOW_THREADS
        fj_pool_free(r->pool);
        Py_END_ALLOW_THREADS
        r->pool = NULL;
    }
    if (r->q != NULL) {
        for (int i = 0; i < r->nq; i++) {
            ichunk *ch = &r->q[i];
            chunk_end_decoders(ch);
            PyMem_RawFree(ch->in);
            PyMem_RawFree(ch->out.p);
            PyMem_RawFree(ch->t1.p);
            PyMem_RawFree(ch->t2.p);
            PyMem_RawFree(ch->marks);
        }
        PyMem_RawFree(r->q);
    }
    zs_end(&r->m);
    if (r->hst != NULL) {
        if (r->hst_active) {
            r->ops->end(r->hst);
        }
        PyMem_RawFree(r->hst);
    }
    Py_CLEAR(r->perr_type);
    Py_CLEAR(r->perr_value);
    Py_CLEAR(r->perr_tb);
    PyMem_RawFree(r->ib);
    if (r->inner != NULL) {
        r->inner->free(r->inner);
    }
    PyMem_RawFree(r);
}

fj_reader *
fj_ispec_new(const fj_pdec_ops *ops, const fj_inflate_fns *f, int gzip, int threads,
             fj_reader *inner)
{
    if (threads > IS_MAX_THREADS) {
        threads = IS_MAX_THREADS;
    }
    if (!dicts_ready) {
        make_dicts(); /* GIL held: once */
    }
    ispec *r = PyMem_RawCalloc(1, sizeof(ispec));
    if (r == NULL) {
        inner->free(inner);
        PyErr_NoMemory();
        return NULL;
    }
    r->base.read = ispec_read;
    /* no read_hint: array loads keep their page-prefault helper, which the OS schedules beside the
     * workers (measured: 1.13-1.21 s for a 512 MiB random array with it, 1.2-1.47 s without) */
    r->base.free = ispec_free;
    r->inner = inner;
    r->ops = ops;
    r->f = f;
    r->gzip = gzip;
    r->threads = threads;
    r->nq = threads;
    r->phase = IP_HEAD;
    r->K = IS_K_FIRST;
    const char *e = getenv("FASTJOBLIB_ISPEC_REGION"); /* tests: small regions */
    if (e != NULL && atol(e) >= 4096) {
        r->K_fixed = (size_t)atol(e);
    }
    /* tests: 1, the decode waits for each worker when it reaches that worker's region (regions
     * are taken whole); 2, it waits for a worker to find its start, decodes on from there and
     * waits for the worker at the next boundary (regions are joined half-way); so that what is
     * taken does not depend on the machine's speed */
    e = getenv("FASTJOBLIB_ISPEC_WAIT");
    r->wait_all = e != NULL ? atoi(e) : 0;
    r->hst = PyMem_RawCalloc(1, ops->state_size);
    r->q = PyMem_RawCalloc((size_t)r->nq, sizeof(ichunk));
    if (r->hst == NULL || r->q == NULL) {
        ispec_free(&r->base);
        PyErr_NoMemory();
        return NULL;
    }
    for (int i = 0; i < r->nq; i++) {
        r->q[i].task.fn = run_chunk;
        r->q[i].r = r;
    }
    return &r->base;
}
