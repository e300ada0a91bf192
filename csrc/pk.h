/* pk.h: the pickler engine, shared by pickler.c and ndarray_dump.c. */
#ifndef FJ_PK_H
#define FJ_PK_H

#include "fj.h"
#include "memo.h"
#include "sink.h"

/* save() flags */
#define FJ_SAVE_NOPERS 1 /* do not call persistent_id (saving a persistent id itself) */
#define FJ_SAVE_UNIQUE 2 /* caller knows nothing else references obj: no memo entry needed */

typedef struct {
    fj_state *st;            /* borrowed */
    fj_sink *sink;           /* borrowed */
    fj_memo *memo;           /* borrowed */
    int proto;
    int bin;
    int fast;
    int fast_nesting;        /* fast mode: container depth */
    PyObject *fast_memo;     /* fast mode: ids on the current path past depth 50 (owned) */
    int fix_imports;
    int array_hook;          /* joblib NumpyArrayWrapper records (only in _core.dump) */
    PyObject *pers_func;     /* borrowed, may be NULL */
    PyObject *reducer_override; /* borrowed, may be NULL */
    PyObject *dispatch_table;   /* borrowed, may be NULL (then copyreg's) */
    PyObject *buffer_callback;  /* borrowed, may be NULL */
    /* provenance (_core.dump trailer=): NULL unless asked for */
    PyObject *globals_seen;  /* set of the module names of the globals written (borrowed; shared
                              * with nested object-array streams) */
    PyObject *trailer;       /* callable(frozenset) -> record dict (borrowed; outermost only) */
} fj_pk;

int fj_pk_save(fj_pk *p, PyObject *obj, int flags);
/* PROTO, framing on for >= 4, save(obj), STOP, frame committed (not flushed). */
int fj_pk_dump_stream(fj_pk *p, PyObject *obj);
/* ndarray_dump.c: the joblib array record for an exact ndarray/matrix/memmap. */
int fj_ndarray_save(fj_pk *p, PyObject *arr);

#endif
