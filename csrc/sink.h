/* sink.h: the pickler's output side. An inline output buffer (a bytes object grown in place), pickle
 * protocol 4 framing (frames committed at opcode boundaries), the count of bytes produced so far
 * (the uncompressed offset), on top of an optional fj_writer. Without a writer (dumps) everything
 * stays in the buffer and becomes the result bytes. */
#ifndef FJ_SINK_H
#define FJ_SINK_H

#include "fj.h"
#include <string.h>

#define FJ_FRAME_TARGET (64 * 1024)
#define FJ_FRAME_HEADER 9

typedef struct {
    PyObject *bytes;        /* the buffer (a bytes object resized as needed), owned */
    char *buf;              /* PyBytes_AS_STRING(bytes) */
    Py_ssize_t len;         /* bytes used */
    Py_ssize_t cap;         /* bytes allocated */
    Py_ssize_t frame_start; /* offset of the open frame's 9-byte header slot, -1 = no frame open */
    Py_ssize_t limit;       /* fj_sink_boundary does real work once len >= limit */
    int framing;            /* protocol >= 4 framing active: the next write opens a frame */
    fj_writer *w;           /* borrowed; NULL = in-memory (dumps) */
    int64_t flushed;        /* bytes handed to w */
} fj_sink;

int fj_sink_init(fj_sink *s, fj_writer *w);
void fj_sink_free(fj_sink *s);
int fj_sink_grow(fj_sink *s, Py_ssize_t n);
int fj_sink_open_frame(fj_sink *s);
/* Turn framing on/off (protocol >= 4 streams); the frame, if any, must be closed. */
void fj_sink_set_framing(fj_sink *s, int on);
/* Close the open frame (patch its FRAME header, or drop the header for a frame < 4 bytes). */
void fj_sink_commit_frame(fj_sink *s);
/* Hand the whole buffer to the writer (no-op without a writer). Call with no frame open. */
int fj_sink_flush(fj_sink *s);
int fj_sink_boundary_slow(fj_sink *s);
/* Header + a payload owned by the caller. Payloads >= 64 KiB with a writer bypass the buffer:
 * the frame is committed, the header flushed, the payload written directly outside any frame. */
int fj_sink_write_big(fj_sink *s, const char *hdr, Py_ssize_t hlen, const char *data, Py_ssize_t n);
/* Raw bytes written unframed right now (frame must be closed): flushes and writes through. */
int fj_sink_write_direct(fj_sink *s, const char *data, Py_ssize_t n);
/* Offset, in the produced stream, of the next byte; -1 if the writer's start is unknown. */
static inline int64_t
fj_sink_offset(fj_sink *s)
{
    if (s->w != NULL) {
        if (s->w->pos < 0) {
            return -1;
        }
        return s->w->pos + s->flushed + s->len;
    }
    return s->len;
}
/* End the stream: commit the frame, flush. */
int fj_sink_finish(fj_sink *s);
/* In-memory mode: take the result (the buffer trimmed to len). New reference. */
PyObject *fj_sink_take_bytes(fj_sink *s);

/* Space for n bytes at the end of the buffer (opening a frame first when framing). */
static inline char *
fj_sink_reserve(fj_sink *s, Py_ssize_t n)
{
    if (s->frame_start < 0 && s->framing) {
        if (fj_sink_open_frame(s) < 0) {
            return NULL;
        }
    }
    if (s->cap - s->len < n && fj_sink_grow(s, n) < 0) {
        return NULL;
    }
    char *p = s->buf + s->len;
    s->len += n;
    return p;
}

static inline int
fj_sink_write(fj_sink *s, const char *data, Py_ssize_t n)
{
    char *p = fj_sink_reserve(s, n);
    if (p == NULL) {
        return -1;
    }
    if (n < 8) {
        for (Py_ssize_t i = 0; i < n; i++) {
            p[i] = data[i];
        }
    }
    else {
        memcpy(p, data, n);
    }
    return 0;
}

/* At an opcode boundary: commit a full frame and flush it to the writer. */
static inline int
fj_sink_boundary(fj_sink *s)
{
    if (s->len >= s->limit) {
        return fj_sink_boundary_slow(s);
    }
    return 0;
}

/* Writer constructors beyond fj.h's: as_bytes = call write() with bytes objects (pickle-compatible
 * API: the user may keep them); want_pos = ask tell() for the start position. */
fj_writer *fj_writer_pyfile_ex(PyObject *file, int as_bytes, int want_pos);

#endif
