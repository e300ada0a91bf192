/* progress.h: progress reporting for long dumps and loads (`progress=` of _core.dump / _core.load).
 *
 * A callable progress(done_bytes, total_bytes) is called with the GIL held, at most once per
 * FJ_PROGRESS_STEP bytes written to / read from the underlying target (the fd or file object,
 * below any codec: compressed bytes), plus one final call at the end. total_bytes is None for
 * dump, and for load the size of the container as stored (from the start position to the end of
 * the file) when it is known, else None. An exception raised by the callback aborts the operation
 * and propagates. With no callback nothing here runs (the hooks test one pointer on slow paths).
 */
#ifndef FJ_PROGRESS_H
#define FJ_PROGRESS_H

#include "fj.h"

#define FJ_PROGRESS_STEP ((int64_t)4 << 20)

typedef struct fj_progress {
    PyObject *cb;    /* the callable (borrowed for the call) */
    PyObject *total; /* owned: an int, or None */
    int64_t done;    /* bytes so far */
    int64_t next;    /* report once done reaches this */
} fj_progress;

/* total < 0: unknown (None). 0 / -1. */
int fj_progress_init(fj_progress *p, PyObject *cb, int64_t total);
void fj_progress_clear(fj_progress *p);
/* Call cb(done, total) now. 0 / -1 (the callback's exception). */
int fj_progress_report(fj_progress *p);

/* New byte count (absolute); reports when a step boundary is crossed. 0 / -1. */
static inline int
fj_progress_update(fj_progress *p, int64_t done)
{
    p->done = done;
    if (done >= p->next) {
        return fj_progress_report(p);
    }
    return 0;
}

/* Wrappers counting the bytes that pass through: writes are cut into FJ_PROGRESS_STEP pieces and
 * reads ask for at most that much, so reports also come during one big array payload. Both own
 * `inner` (freed with them, also when construction fails); `p` is borrowed and must outlive them.
 * The writer's close() closes inner and makes the final report. */
fj_writer *fj_progress_writer(fj_writer *inner, fj_progress *p);
fj_reader *fj_progress_reader(fj_reader *inner, fj_progress *p);

#endif
