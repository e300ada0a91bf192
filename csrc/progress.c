/* progress.c: progress callbacks and the counting writer / reader (see progress.h). */
#include "progress.h"

int
fj_progress_init(fj_progress *p, PyObject *cb, int64_t total)
{
    p->cb = cb;
    p->done = 0;
    p->next = FJ_PROGRESS_STEP;
    if (total < 0) {
        p->total = Py_NewRef(Py_None);
    }
    else if ((p->total = PyLong_FromLongLong((long long)total)) == NULL) {
        return -1;
    }
    return 0;
}

void
fj_progress_clear(fj_progress *p)
{
    Py_CLEAR(p->total);
    p->cb = NULL;
}

int
fj_progress_report(fj_progress *p)
{
    /* the next report comes one step after this one, whatever the callback does */
    p->next = p->done > INT64_MAX - FJ_PROGRESS_STEP ? INT64_MAX : p->done + FJ_PROGRESS_STEP;
    PyObject *done = PyLong_FromLongLong((long long)p->done);
    if (done == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallFunctionObjArgs(p->cb, done, p->total, NULL);
    Py_DECREF(done);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Counting writer */

typedef struct {
    fj_writer base;
    fj_writer *inner; /* owned */
    fj_progress *p;   /* borrowed */
} progress_writer;

static int
pw_write(fj_writer *self, const char *data, Py_ssize_t len)
{
    progress_writer *w = (progress_writer *)self;
    while (len > 0) {
        Py_ssize_t chunk = len > (Py_ssize_t)FJ_PROGRESS_STEP ? (Py_ssize_t)FJ_PROGRESS_STEP : len;
        if (w->inner->write(w->inner, data, chunk) < 0) {
            return -1;
        }
        data += chunk;
        len -= chunk;
        if (fj_progress_update(w->p, w->p->done + chunk) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
pw_close(fj_writer *self)
{
    progress_writer *w = (progress_writer *)self;
    if (w->inner->close(w->inner) < 0) {
        return -1;
    }
    return fj_progress_report(w->p); /* the final call */
}

static void
pw_free(fj_writer *self)
{
    progress_writer *w = (progress_writer *)self;
    if (w->inner != NULL) {
        w->inner->free(w->inner);
    }
    PyMem_Free(w);
}

fj_writer *
fj_progress_writer(fj_writer *inner, fj_progress *p)
{
    progress_writer *w = PyMem_Calloc(1, sizeof(progress_writer));
    if (w == NULL) {
        inner->free(inner);
        PyErr_NoMemory();
        return NULL;
    }
    w->base.write = pw_write;
    w->base.close = pw_close;
    w->base.free = pw_free;
    w->base.pos = inner->pos;
    w->inner = inner;
    w->p = p;
    return &w->base;
}

/* ---------------------------------------------------------------------------------------------
 * Counting reader */

typedef struct {
    fj_reader base;
    fj_reader *inner; /* owned */
    fj_progress *p;   /* borrowed */
} progress_reader;

static Py_ssize_t
pr_read(fj_reader *self, char *buf, Py_ssize_t len)
{
    progress_reader *r = (progress_reader *)self;
    if (len > (Py_ssize_t)FJ_PROGRESS_STEP) {
        len = (Py_ssize_t)FJ_PROGRESS_STEP; /* a short count is allowed: callers loop */
    }
    Py_ssize_t got = r->inner->read(r->inner, buf, len);
    if (got > 0 && fj_progress_update(r->p, r->p->done + got) < 0) {
        return -1;
    }
    return got;
}

static void
pr_free(fj_reader *self)
{
    progress_reader *r = (progress_reader *)self;
    if (r->inner != NULL) {
        r->inner->free(r->inner);
    }
    PyMem_Free(r);
}

fj_reader *
fj_progress_reader(fj_reader *inner, fj_progress *p)
{
    progress_reader *r = PyMem_Calloc(1, sizeof(progress_reader));
    if (r == NULL) {
        inner->free(inner);
        PyErr_NoMemory();
        return NULL;
    }
    r->base.read = pr_read;
    r->base.free = pr_free;
    r->inner = inner;
    r->p = p;
    return &r->base;
}
