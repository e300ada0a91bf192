/* codec.h: state and internal API of the codec part. (Skeleton: the part's owner fills it in.) */
#ifndef FJ_CODEC_H
#define FJ_CODEC_H

typedef struct fj_codec_state {
    PyObject *placeholder_unused; /* replaced by the part's real cached objects */
} fj_codec_state;

#endif
