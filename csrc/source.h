/* source.h: bytes in for the unpickler. A window over an in-memory buffer, an fd, a Python file
 * object or any fj_reader, tracking the absolute offset of every byte (mmap offsets).
 *
 * Kinds:
 *   MEM     a bytes-like object (Py_buffer): the window is the whole buffer, zero copy.
 *   READER  an fj_reader (fd backend or a codec): greedy buffered reads. When the reader is our fd
 *           backend, the fd position is moved back to just after the last consumed byte at finish.
 *   PYFILE  a Python file object read exactly: never past what was consumed (peek is used to
 *           prefetch when the file has it; without peek only what is needed, frames whole).
 */
#ifndef FJ_SOURCE_H
#define FJ_SOURCE_H

#include "fj.h"
#include "progress.h"

enum { FJ_SRC_MEM = 1, FJ_SRC_READER = 2, FJ_SRC_PYFILE = 3 };

typedef struct fj_source {
    const char *buf;      /* window */
    Py_ssize_t pos;       /* next byte to consume in buf */
    Py_ssize_t end;       /* valid bytes in buf */
    int64_t base;         /* absolute offset of buf[0] */
    int64_t total;        /* absolute offset of the end of the stream, -1 if unknown */
    int kind;
    int eof;              /* the underlying stream reported end of stream */
    PyObject *trunc_exc;  /* borrowed: exception class raised on truncation (UnpicklingError) */
    /* MEM */
    Py_buffer view;
    int has_view;
    /* READER / PYFILE: owned window memory */
    char *own;
    Py_ssize_t cap;
    fj_reader *reader;    /* READER: owned */
    int fd;               /* READER over our fd backend: the fd (else -1) */
    /* PYFILE */
    PyObject *file, *m_read, *m_readinto, *m_peek, *m_readline;
    Py_ssize_t real_end;  /* buf[0:real_end) consumed from the file; buf[real_end:end) only peeked */
    int64_t safe_until;   /* absolute offset up to which reading ahead is allowed (inside a frame) */
    /* progress reporting (NULL: off) on the bytes taken from the underlying stream */
    fj_progress *prog;    /* borrowed */
    int64_t prog_base;    /* underlying position when reporting started */
} fj_source;

int fj_source_init_mem(fj_source *s, PyObject *obj);
int fj_source_init_reader(fj_source *s, fj_reader *r);   /* steals r (freed also on failure) */
int fj_source_init_fd(fj_source *s, int fd);
int fj_source_init_pyfile(fj_source *s, PyObject *file);
/* Report progress on this source to `p` (borrowed, must outlive the source's use): the count is
 * the bytes taken from the underlying fd / file since now (for memory: the bytes consumed). */
void fj_source_set_progress(fj_source *s, fj_progress *p);
/* Bytes taken from the underlying stream since fj_source_set_progress. */
int64_t fj_source_progress_count(const fj_source *s);
/* Leave the underlying stream positioned right after the last consumed byte. 0 / -1. */
int fj_source_finish(fj_source *s);
void fj_source_release(fj_source *s);

/* Slow path of fj_source_take. */
const char *fj_source_take_slow(fj_source *s, Py_ssize_t n);

/* Largest item fj_source_take accepts from a non-memory source (bigger ones: fj_source_readinto). */
#define FJ_SOURCE_TAKE_MAX ((Py_ssize_t)1 << 20)

/* n contiguous bytes (n <= FJ_SOURCE_TAKE_MAX unless MEM), valid until the next source call.
 * NULL + exception (trunc_exc "pickle data was truncated") when they are not there. */
static inline const char *
fj_source_take(fj_source *s, Py_ssize_t n)
{
    if (s->end - s->pos >= n) {
        const char *p = s->buf + s->pos;
        s->pos += n;
        return p;
    }
    return fj_source_take_slow(s, n);
}

/* One byte, -1 at end of stream (no exception), -2 on error. */
int fj_source_getc_slow(fj_source *s);
static inline int
fj_source_getc(fj_source *s)
{
    if (s->pos < s->end) {
        return (unsigned char)s->buf[s->pos++];
    }
    return fj_source_getc_slow(s);
}

/* A line ending in '\n' (included in *len). NULL + exception if none. */
const char *fj_source_readline(fj_source *s, Py_ssize_t *len);
/* Read up to n bytes into dst (straight from the stream for big reads, GIL released by the
 * backend). Returns the count; short only at end of stream; -1 on error. */
Py_ssize_t fj_source_readinto(fj_source *s, char *dst, Py_ssize_t n);
/* Skip n bytes (seeking when possible). Returns the count skipped (short at EOF), -1 on error. */
int64_t fj_source_skip(fj_source *s, int64_t n);
/* A frame of n bytes starts here: reading ahead up to its end is allowed. */
void fj_source_frame(fj_source *s, int64_t n);

static inline int64_t
fj_source_tell(const fj_source *s)
{
    return s->base + s->pos;
}

/* Bytes left in the stream if known, else -1. */
static inline int64_t
fj_source_remaining(const fj_source *s)
{
    return s->total < 0 ? -1 : s->total - (s->base + s->pos);
}

/* The decoder's preferred read size (fj_reader.read_hint), 0 when none. */
static inline int64_t
fj_source_read_hint(const fj_source *s)
{
    return s->kind == FJ_SRC_READER && s->reader != NULL ? (int64_t)s->reader->read_hint : 0;
}

/* A new bytes object with the next n bytes. Bounded allocation: when the remaining size is unknown
 * the object grows as the bytes arrive. NULL + exception (truncation) on short data. */
PyObject *fj_source_read_bytes(fj_source *s, Py_ssize_t n);
/* Same into a new bytearray. */
PyObject *fj_source_read_bytearray(fj_source *s, Py_ssize_t n);

#endif
