/* unpickler.h: state and internal API of the unpickler part. (Skeleton: the part's owner fills it in.) */
#ifndef FJ_UNPICKLER_H
#define FJ_UNPICKLER_H

typedef struct fj_unpickler_state {
    PyObject *placeholder_unused; /* replaced by the part's real cached objects */
} fj_unpickler_state;

#endif
