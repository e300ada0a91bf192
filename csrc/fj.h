/* fj.h: what every part of the fastjoblib C core shares.
 *
 * - the NumPy C-API import symbol (one table for the whole extension; module.c imports it);
 * - the module state (PEP 489 multi-phase init, no mutable C globals), with one sub-struct per
 *   part, each defined in that part's header and owned by it;
 * - the byte-stream interfaces fj_writer / fj_reader on which the sink (pickler side), the source
 *   (unpickler side) and the codecs stack.
 *
 * Conventions: return -1/NULL with an exception set; single exit through `error:` / `done:`;
 * internal non-static names carry the fj_ prefix; static helpers are verb_noun.
 */
#ifndef FJ_H
#define FJ_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PY_ARRAY_UNIQUE_SYMBOL fj_ARRAY_API
#ifndef FJ_IMPORT_ARRAY
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include <stdint.h>

#include "pyver.h" /* interpreter-version switches: the only place that tests PY_VERSION_HEX */

/* ---------------------------------------------------------------------------------------------
 * Byte streams.
 *
 * Both interfaces are called with the GIL held. Implementations release the GIL themselves around
 * blocking I/O and around compression of large buffers, and take it back before touching objects
 * or raising. They never retain `data`/`buf` after returning.
 */
typedef struct fj_writer fj_writer;
struct fj_writer {
    /* Write all `len` bytes. 0 on success, -1 with an exception set. */
    int (*write)(fj_writer *self, const char *data, Py_ssize_t len);
    /* Finish the stream (flush buffers, write a codec trailer). Does not close a user's file
     * object or an fd it does not own. 0 / -1. Called at most once, only after a successful dump. */
    int (*close)(fj_writer *self);
    /* Release everything (the inner writer too). Must be safe after a failed write or no close. */
    void (*free)(fj_writer *self);
    /* Position, in the stream this writer produces for its caller, of the first byte the caller
     * writes, or -1 when it is unknown (a target whose tell() is unsupported: joblib's unaligned
     * form). Set once at construction: the target's current position for fd / file backends, 0
     * for a codec writer (offsets are counted on uncompressed bytes). The caller (the sink) counts
     * from there. */
    int64_t pos;
};

typedef struct fj_reader fj_reader;
struct fj_reader {
    /* Read up to `len` bytes into `buf`. Returns the count (0 only at end of stream), or -1 with an
     * exception set. A short count does not mean end of stream. */
    Py_ssize_t (*read)(fj_reader *self, char *buf, Py_ssize_t len);
    /* Release everything (the inner reader too). */
    void (*free)(fj_reader *self);
    /* 0, or the read size this reader decodes best at (a zstd reader of independent frames
     * places whole frames straight into the caller's buffer): array loads of unknown length read
     * in steps of at least this. Readers are allocated zeroed. */
    Py_ssize_t read_hint;
};

/* Backends (sink.c / source.c). The fd ones do not close the fd. `file` is borrowed for the call
 * and kept with a new reference inside the writer/reader. */
fj_writer *fj_writer_fd(int fd, int64_t start_pos);
fj_writer *fj_writer_pyfile(PyObject *file); /* pos from file.tell(), -1 if unsupported */
fj_reader *fj_reader_fd(int fd);
fj_reader *fj_reader_pyfile(PyObject *file);

/* Codecs (codec.c and codec_*.c). `inner` is owned by the result (freed with it, also when
 * construction fails). `threads` <= 0 means all cores. `level` < 0 means the codec's default. */
fj_writer *fj_codec_writer(const char *name, int level, int threads, fj_writer *inner);
fj_reader *fj_codec_reader(const char *name, fj_reader *inner);
/* The same with a thread count (0: all usable cores; 1: one streaming decoder), codec.c. */
fj_reader *fj_codec_reader_threads(const char *name, int threads, fj_reader *inner);

/* ---------------------------------------------------------------------------------------------
 * Module state. Each part defines its own struct in its header; module.c embeds them. */
#include "pickler.h"
#include "unpickler.h"
#include "codec.h"

typedef struct {
    /* stdlib pickle's exception classes (so `except pickle.UnpicklingError` works) */
    PyObject *PickleError;
    PyObject *PicklingError;
    PyObject *UnpicklingError;
    /* numpy classes intercepted by the joblib array hook (exact type checks) */
    PyObject *np_ndarray;
    PyObject *np_matrix;
    PyObject *np_memmap;

    fj_pickler_state pk;
    fj_unpickler_state up;
    fj_codec_state cd;
} fj_state;

extern PyModuleDef fj_module_def;

/* The state of the module that defined `type` (or one of its bases). Borrowed; NULL + exception if
 * the type does not come from this module. */
fj_state *fj_state_from_type(PyTypeObject *type);
/* The state of the imported fastjoblib._core module (for code with no type at hand). Borrowed. */
fj_state *fj_state_from_module(PyObject *module);

/* Part hooks, called from module.c. exec: 0 / -1. */
int fj_pickler_exec(PyObject *module, fj_state *st);
int fj_pickler_traverse(fj_state *st, visitproc visit, void *arg);
void fj_pickler_clear(fj_state *st);

int fj_unpickler_exec(PyObject *module, fj_state *st);
int fj_unpickler_traverse(fj_state *st, visitproc visit, void *arg);
void fj_unpickler_clear(fj_state *st);

int fj_codec_exec(PyObject *module, fj_state *st);
int fj_codec_traverse(fj_state *st, visitproc visit, void *arg);
void fj_codec_clear(fj_state *st);

/* fsops.c: _exchange (renameat2 RENAME_EXCHANGE); no module state. */
int fj_fsops_exec(PyObject *module);

#endif /* FJ_H */
