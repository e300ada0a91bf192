/* ndarray_dump.c: the joblib array record, dump side (joblib-format.md sections 2.4-2.7).
 *
 * At an exact ndarray / matrix / memmap (checked in save() before the memo, like joblib):
 *   NumpyArrayWrapper global, NEWOBJ () (copyreg._reconstructor + REDUCE below protocol 2),
 *   state dict {subclass, shape, order, dtype, allow_mmap, numpy_array_alignment_bytes}, BUILD,
 *   frame committed (BUILD is the last byte of its frame), then outside any frame:
 *   - plain dtypes: padding byte P in 1..16 and P x 0xff so the data starts at a multiple of 16 of
 *     the uncompressed stream (no padding when the position is unknown), then the element bytes:
 *     C/F-contiguous memory handed to the writer in one write (zero copy), any other layout copied
 *     out in C order in chunks of at most 4 MiB;
 *   - dtypes with objects: a complete nested protocol-5 pickle stream of the array (no hook).
 */
#include "pk.h"

#define ALIGNMENT 16
#define CHUNK_BYTES (4 * 1024 * 1024)

static const char WRAPPER_MODULE[] = "joblib.numpy_pickle";
static const char WRAPPER_NAME[] = "NumpyArrayWrapper";

static int
write_raw(fj_sink *s, const char *data, Py_ssize_t n)
{
    return fj_sink_write(s, data, n);
}

static int
write_wrapper_class(fj_pk *p)
{
    fj_sink *s = p->sink;
    if (p->proto >= 4) {
        char buf[2 + sizeof(WRAPPER_MODULE) + 2 + sizeof(WRAPPER_NAME) + 1];
        size_t ml = sizeof(WRAPPER_MODULE) - 1, nl = sizeof(WRAPPER_NAME) - 1;
        char *o = buf;
        *o++ = '\x8c'; /* SHORT_BINUNICODE */
        *o++ = (char)ml;
        memcpy(o, WRAPPER_MODULE, ml);
        o += ml;
        *o++ = '\x8c';
        *o++ = (char)nl;
        memcpy(o, WRAPPER_NAME, nl);
        o += nl;
        *o++ = '\x93'; /* STACK_GLOBAL */
        return write_raw(s, buf, o - buf);
    }
    char buf[sizeof(WRAPPER_MODULE) + sizeof(WRAPPER_NAME) + 2];
    int n = PyOS_snprintf(buf, sizeof(buf), "c%s\n%s\n", WRAPPER_MODULE, WRAPPER_NAME);
    return write_raw(s, buf, n);
}

static int
write_wrapper_object(fj_pk *p)
{
    if (p->proto >= 2) {
        if (write_wrapper_class(p) < 0) {
            return -1;
        }
        return write_raw(p->sink, ")\x81", 2); /* EMPTY_TUPLE NEWOBJ */
    }
    /* copyreg._reconstructor(NumpyArrayWrapper, object, None) */
    if (fj_pk_save(p, p->st->pk.reconstructor, 0) < 0 || write_raw(p->sink, "(", 1) < 0 ||
        write_wrapper_class(p) < 0 || fj_pk_save(p, (PyObject *)&PyBaseObject_Type, 0) < 0 ||
        write_raw(p->sink, "NtR", 3) < 0) {
        return -1;
    }
    return 0;
}

static PyObject *
make_state(fj_pk *p, PyArrayObject *arr, int forder, int hasobj, int aligned)
{
    fj_pickler_state *ps = &p->st->pk;
    int nd = PyArray_NDIM(arr);
    PyObject *shape = PyTuple_New(nd);
    PyObject *state = NULL;
    if (shape == NULL) {
        return NULL;
    }
    for (int i = 0; i < nd; i++) {
        PyObject *d = PyLong_FromSsize_t(PyArray_DIM(arr, i));
        if (d == NULL) {
            goto error;
        }
        PyTuple_SET_ITEM(shape, i, d);
    }
    state = PyDict_New();
    if (state == NULL) {
        goto error;
    }
    PyObject *align = aligned ? PyLong_FromLong(ALIGNMENT) : Py_NewRef(Py_None);
    if (align == NULL) {
        goto error;
    }
    int r = PyDict_SetItem(state, ps->k_subclass, (PyObject *)Py_TYPE(arr));
    if (r == 0) {
        r = PyDict_SetItem(state, ps->k_shape, shape);
    }
    if (r == 0) {
        r = PyDict_SetItem(state, ps->k_order, forder ? ps->s_F : ps->s_C);
    }
    if (r == 0) {
        r = PyDict_SetItem(state, ps->k_dtype, (PyObject *)PyArray_DESCR(arr));
    }
    if (r == 0) {
        r = PyDict_SetItem(state, ps->k_allow_mmap, hasobj ? Py_False : Py_True);
    }
    if (r == 0) {
        r = PyDict_SetItem(state, ps->k_alignment, align);
    }
    Py_DECREF(align);
    if (r < 0) {
        goto error;
    }
    Py_DECREF(shape);
    return state;
error:
    Py_XDECREF(state);
    Py_DECREF(shape);
    return NULL;
}

/* Element bytes of a non-contiguous array in C order, in bounded chunks. */
static int
write_strided(fj_sink *s, PyArrayObject *arr)
{
    npy_intp itemsize = PyArray_ITEMSIZE(arr);
    npy_intp bufsize = CHUNK_BYTES / itemsize;
    if (bufsize < 1) {
        bufsize = 1;
    }
    npy_uint32 op_flags = NPY_ITER_READONLY | NPY_ITER_CONTIG;
    NpyIter *it = NpyIter_AdvancedNew(
        1, &arr,
        NPY_ITER_EXTERNAL_LOOP | NPY_ITER_BUFFERED | NPY_ITER_ZEROSIZE_OK | NPY_ITER_GROWINNER,
        NPY_CORDER, NPY_NO_CASTING, &op_flags, NULL, -1, NULL, NULL, bufsize);
    if (it == NULL) {
        return -1;
    }
    int status = -1;
    char *stage = NULL;
    Py_ssize_t staged = 0;
    if (NpyIter_GetIterSize(it) == 0) {
        status = 0;
        goto done;
    }
    NpyIter_IterNextFunc *next = NpyIter_GetIterNext(it, NULL);
    if (next == NULL) {
        goto done;
    }
    char **dataptr = NpyIter_GetDataPtrArray(it);
    npy_intp *strideptr = NpyIter_GetInnerStrideArray(it);
    npy_intp *sizeptr = NpyIter_GetInnerLoopSizePtr(it);
    stage = PyMem_Malloc(CHUNK_BYTES);
    if (stage == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    do {
        char *data = dataptr[0];
        npy_intp count = *sizeptr;
        npy_intp stride = strideptr[0];
        if (stride == itemsize) {
            Py_ssize_t n = (Py_ssize_t)(count * itemsize);
            if (n >= CHUNK_BYTES) {
                if (staged > 0 && fj_sink_write_direct(s, stage, staged) < 0) {
                    goto done;
                }
                staged = 0;
                if (fj_sink_write_direct(s, data, n) < 0) {
                    goto done;
                }
                continue;
            }
            if (staged + n > CHUNK_BYTES) {
                if (fj_sink_write_direct(s, stage, staged) < 0) {
                    goto done;
                }
                staged = 0;
            }
            memcpy(stage + staged, data, n);
            staged += n;
        }
        else {
            for (npy_intp i = 0; i < count; i++, data += stride) {
                if (staged + itemsize > CHUNK_BYTES) {
                    if (fj_sink_write_direct(s, stage, staged) < 0) {
                        goto done;
                    }
                    staged = 0;
                }
                memcpy(stage + staged, data, itemsize);
                staged += itemsize;
            }
        }
    } while (next(it));
    if (PyErr_Occurred()) {
        goto done;
    }
    if (staged > 0 && fj_sink_write_direct(s, stage, staged) < 0) {
        goto done;
    }
    status = 0;
done:
    PyMem_Free(stage);
    NpyIter_Deallocate(it);
    return status;
}

static int
write_payload(fj_pk *p, PyArrayObject *arr, int hasobj, int aligned)
{
    fj_sink *s = p->sink;
    if (hasobj) {
        /* nested, complete protocol-5 stream: own PROTO/frames/memo/STOP, plain pickling */
        fj_memo memo;
        fj_memo_init(&memo);
        fj_pk q;
        memset(&q, 0, sizeof(q));
        q.st = p->st;
        q.sink = s;
        q.memo = &memo;
        q.proto = 5;
        q.bin = 1;
        q.globals_seen = p->globals_seen; /* provenance: its globals count too */
        int r = fj_pk_dump_stream(&q, (PyObject *)arr);
        fj_memo_free(&memo);
        return r;
    }
    if (aligned) {
        int64_t off = fj_sink_offset(s);
        char pad[1 + ALIGNMENT];
        int n = ALIGNMENT - (int)((off + 1) % ALIGNMENT); /* 1..16 */
        pad[0] = (char)n;
        memset(pad + 1, 0xff, n);
        if (fj_sink_write(s, pad, 1 + n) < 0) {
            return -1;
        }
    }
    Py_ssize_t nbytes = (Py_ssize_t)PyArray_NBYTES(arr);
    if (nbytes == 0) {
        return 0; /* empty arrays and itemsize-0 dtypes */
    }
    if (PyArray_IS_C_CONTIGUOUS(arr) || PyArray_IS_F_CONTIGUOUS(arr)) {
        if (nbytes < FJ_FRAME_TARGET) {
            return fj_sink_write(s, PyArray_DATA(arr), nbytes);
        }
        return fj_sink_write_direct(s, PyArray_DATA(arr), nbytes);
    }
    return write_strided(s, arr);
}

int
fj_ndarray_save(fj_pk *p, PyObject *obj)
{
    PyArrayObject *arr = (PyArrayObject *)obj;
    fj_sink *s = p->sink;
    int hasobj = PyDataType_REFCHK(PyArray_DESCR(arr)) ? 1 : 0;
    int c = PyArray_IS_C_CONTIGUOUS(arr), f = PyArray_IS_F_CONTIGUOUS(arr);
    int forder = f && !c;
    int aligned = s->w == NULL || s->w->pos >= 0;

    PyObject *state = make_state(p, arr, forder, hasobj, aligned);
    if (state == NULL) {
        return -1;
    }
    int r = write_wrapper_object(p);
    if (r == 0) {
        r = fj_pk_save(p, state, FJ_SAVE_UNIQUE);
    }
    Py_DECREF(state);
    if (r < 0 || write_raw(s, "b", 1) < 0) { /* BUILD */
        return -1;
    }
    /* the frame ends at BUILD; padding and payload go outside any frame */
    int framing = s->framing;
    fj_sink_commit_frame(s);
    fj_sink_set_framing(s, 0);
    r = write_payload(p, arr, hasobj, aligned);
    fj_sink_set_framing(s, framing);
    return r;
}
