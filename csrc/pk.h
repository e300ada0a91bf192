/* pk.h: the pickler engine, shared by pickler.c and ndarray_dump.c. */
#ifndef FJ_PK_H
#define FJ_PK_H

#include "fj.h"
#include "memo.h"
#include "sink.h"

/* save() flags */
#define FJ_SAVE_NOPERS 1 /* do not call persistent_id (saving a persistent id itself) */
#define FJ_SAVE_UNIQUE 2 /* caller knows nothing else references obj: no memo entry needed */

#define FJ_MAX_REDUCERS 8 /* _core.dump(reducers=): exact types with their own reducer */
#define FJ_MAX_NAMES 32   /* _core.dump(global_names=): objects written as a given global */

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
    /* array-likes of other libraries (_core.dump reducers= / global_names=; outermost stream
     * only). n_reducers == n_names == 0 unless given, so other dumps pay one test in save_other. */
    int n_reducers;
    PyObject *reducer_types[FJ_MAX_REDUCERS]; /* exact types (borrowed from the call's dict copy) */
    PyObject *reducer_funcs[FJ_MAX_REDUCERS]; /* callable(obj) -> reduce value or NotImplemented */
    int n_names;
    PyObject *name_objs[FJ_MAX_NAMES];    /* objects written as the global module.qualname ... */
    PyObject *name_modules[FJ_MAX_NAMES]; /* ... str */
    PyObject *name_quals[FJ_MAX_NAMES];   /* ... str (dotted: protocol >= 4 only) */
} fj_pk;

int fj_pk_save(fj_pk *p, PyObject *obj, int flags);
/* PROTO, framing on for >= 4, save(obj), STOP, frame committed (not flushed). */
int fj_pk_dump_stream(fj_pk *p, PyObject *obj);
/* ndarray_dump.c: the joblib array record for an exact ndarray/matrix/memmap. */
int fj_ndarray_save(fj_pk *p, PyObject *arr);

#endif
