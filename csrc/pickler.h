/* pickler.h: module-state part of the pickler (embedded in fj_state by fj.h). The engine's
 * internal API is in pk.h. */
#ifndef FJ_PICKLER_H
#define FJ_PICKLER_H

typedef struct fj_pickler_state {
    PyTypeObject *PicklerType;
    PyTypeObject *MemoProxyType;      /* Pickler.memo proxies */
    int default_protocol;             /* pickle.DEFAULT_PROTOCOL */
    PyObject *copyreg_dispatch_table; /* copyreg.dispatch_table (the live dict) */
    PyObject *extension_registry;     /* copyreg._extension_registry */
    PyObject *reconstructor;          /* copyreg._reconstructor */
    PyObject *name_mapping_3to2;      /* _compat_pickle.REVERSE_NAME_MAPPING */
    PyObject *import_mapping_3to2;    /* _compat_pickle.REVERSE_IMPORT_MAPPING */
    PyObject *codecs_encode;          /* codecs.encode */
    PyObject *partial;                /* functools.partial */
    PyObject *getattr;                /* builtins.getattr */
    PyObject *empty_tuple;
    /* interned names */
    PyObject *s_reduce_ex, *s_reduce, *s_module, *s_qualname, *s_name, *s_new, *s_class,
        *s_latin1, *s_persistent_id, *s_reducer_override, *s_dispatch_table, *s_locals;
    /* joblib NumpyArrayWrapper state keys */
    PyObject *k_subclass, *k_shape, *k_order, *k_dtype, *k_allow_mmap, *k_alignment;
    PyObject *s_C, *s_F;
} fj_pickler_state;

#endif
