/* pickler.h: state and internal API of the pickler part. (Skeleton: the part's owner fills it in.) */
#ifndef FJ_PICKLER_H
#define FJ_PICKLER_H

typedef struct fj_pickler_state {
    PyObject *placeholder_unused; /* replaced by the part's real cached objects */
} fj_pickler_state;

#endif
