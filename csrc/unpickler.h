/* unpickler.h: state and internal API of the unpickler part (unpickler.c, source.c,
 * ndarray_load.c). */
#ifndef FJ_UNPICKLER_H
#define FJ_UNPICKLER_H

#include <stdint.h>

/* Module-state part: cached objects, created in fj_unpickler_exec. */
typedef struct fj_unpickler_state {
    PyObject *Unpickler_type;      /* the _core.Unpickler heap type */
    PyObject *MemoProxy_type;      /* Unpickler.memo proxies */
    /* placeholders the array hook gives for joblib's wrapper globals (plain classes) */
    PyObject *NumpyArrayWrapper;
    PyObject *NDArrayWrapper;
    PyObject *ZNDArrayWrapper;
    PyObject *name_mapping;        /* _compat_pickle.NAME_MAPPING */
    PyObject *import_mapping;      /* _compat_pickle.IMPORT_MAPPING */
    PyObject *ext_registry;        /* copyreg._inverted_registry */
    PyObject *ext_cache;           /* copyreg._extension_cache */
    PyObject *str_find_class, *str_check_build, *str_persistent_load, *str_append, *str_extend, *str_add;
    PyObject *str_setstate, *str_dict, *str_new, *str_getinitargs;
    /* joblib state keys */
    PyObject *str_subclass, *str_shape, *str_order, *str_dtype, *str_allow_mmap, *str_alignment;
    PyObject *str_filename, *str_init_args, *str_state;
} fj_unpickler_state;

/* The per-load engine (lives on the C stack of one load call). */
typedef struct fj_up fj_up;

#endif
