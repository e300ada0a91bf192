/* ndarray_load.c: joblib array records, load side. At the BUILD of a NumpyArrayWrapper
 * placeholder: skip the padding, read the payload straight into np.empty memory (or map the file
 * at that offset for mmap_mode), or read the nested pickle of an object array with the same engine
 * and find_class policy. The pre-0.10 NDArrayWrapper / ZNDArrayWrapper records are handed to
 * fastjoblib._legacy (rare; Python is fine there). */
#include "unpickler_impl.h"
#include "workers.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Streams of unknown length: the array memory grows as the bytes arrive, starting here. */
#define GROW_START ((int64_t)64 << 20)
/* The grow path's address reservation is aligned to (and a multiple of) this: a transparent huge
 * page on x86-64 and arm64 with 4 KiB pages. */
#define HUGE_ALIGN ((size_t)2 << 20)
/* The grow path reads the reserved mapping in steps of this size (between them the prefault
 * helper is told how far the bytes arrived). */
#define PREFAULT_STEP ((int64_t)16 << 20)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels answer EINVAL: no prefault */
#endif

static int
raise_eof(int64_t expected, int64_t got)
{
    PyErr_Format(PyExc_ValueError, "EOF: reading array data, expected %lld bytes got %lld", (long long)expected,
                 (long long)got);
    return -1;
}

/* joblib's _is_numpy_array_byte_order_mismatch on a dtype. 1 / 0 / -1. */
static int
dtype_is_foreign(PyArray_Descr *d)
{
#if NPY_BYTE_ORDER == NPY_LITTLE_ENDIAN
    const char foreign = '>';
#else
    const char foreign = '<';
#endif
    if (d->byteorder == foreign) {
        return 1;
    }
    if (d->byteorder != '|') {
        return 0;
    }
    PyObject *fields = PyObject_GetAttrString((PyObject *)d, "fields");
    if (fields == NULL) {
        return -1;
    }
    int res = 0;
    if (fields != Py_None) {
        PyObject *vals = PyMapping_Values(fields);
        if (vals == NULL) {
            Py_DECREF(fields);
            return -1;
        }
        Py_ssize_t n = PyList_GET_SIZE(vals);
        res = n > 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *v = PyList_GET_ITEM(vals, i); /* borrowed */
            if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) < 1 || !PyArray_DescrCheck(PyTuple_GET_ITEM(v, 0)) ||
                ((PyArray_Descr *)PyTuple_GET_ITEM(v, 0))->byteorder != foreign) {
                res = 0;
                break;
            }
        }
        Py_DECREF(vals);
    }
    Py_DECREF(fields);
    return res;
}

/* array.byteswap().view(array.dtype.newbyteorder('=')) when the byte order is foreign. Steals arr. */
static PyObject *
ensure_native(PyObject *arr)
{
    if (!PyArray_Check(arr)) {
        return arr;
    }
    int f = dtype_is_foreign(PyArray_DESCR((PyArrayObject *)arr));
    if (f < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    if (f == 0) {
        return arr;
    }
    PyObject *swapped = PyObject_CallMethod(arr, "byteswap", NULL);
    PyObject *dt = PyObject_CallMethod((PyObject *)PyArray_DESCR((PyArrayObject *)arr), "newbyteorder", "s", "=");
    Py_DECREF(arr);
    PyObject *res = NULL;
    if (swapped != NULL && dt != NULL) {
        res = PyObject_CallMethod(swapped, "view", "O", dt);
    }
    Py_XDECREF(swapped);
    Py_XDECREF(dt);
    return res;
}

static void
free_capsule_mem(PyObject *cap)
{
    PyMem_RawFree(PyCapsule_GetPointer(cap, "fastjoblib.array_memory"));
}

/* The context holds the mapping's length. */
static void
free_capsule_map(PyObject *cap)
{
    void *p = PyCapsule_GetPointer(cap, "fastjoblib.array_map");
    size_t len = (size_t)(uintptr_t)PyCapsule_GetContext(cap);
    if (p != NULL && len > 0) {
        munmap(p, len);
    }
}

/* Backing fresh pages with memory is the kernel zeroing them (plus a fault per page): for an
 * array decoded from a fast codec that is a large part of the load (a tenth of a zlib-ng load of
 * random float64, more of a zstd load of compressible or incompressible data, with huge pages).
 * A helper thread does it ahead of the decoder on another core: madvise(MADV_POPULATE_WRITE)
 * writes no data (populating a page that is already backed does nothing), so it cannot race with
 * the decoder's writes. The decoder never waits for it: a helper the scheduler runs late only
 * finds pages the decoder already backed (an earlier version joined a helper per 16 MiB step and
 * was slower on a loaded machine, waiting for it). It only ever populates below `limit`, which
 * the decoder keeps within the charged size and at most PREFAULT_AHEAD past the bytes that
 * arrived: a claim larger than its stream costs at most that much more. Stopping it waits for at
 * most one madvise of PREFAULT_CHUNK bytes. */
#define PREFAULT_CHUNK ((int64_t)2 << 20)
#define PREFAULT_AHEAD ((int64_t)32 << 20)
typedef struct {
    char *mem;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t written; /* the decoder's position: nothing below it is worth populating */
    int64_t limit;   /* populate below this */
    int stop;
    int running;
    pid_t pid; /* a child forked by the loading thread (its file object's readinto) has no helper */
    pthread_t th;
} prefaulter;

static void *
prefaulter_main(void *arg)
{
    prefaulter *p = arg;
    int64_t pos = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        /* skip the chunk the decoder is writing into now (both would fault the same page) */
        int64_t from = (p->written + PREFAULT_CHUNK) & ~(PREFAULT_CHUNK - 1);
        if (pos < from) {
            pos = from;
        }
        if (p->stop) {
            break;
        }
        if (pos >= p->limit) {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        int64_t end = pos + PREFAULT_CHUNK < p->limit ? pos + PREFAULT_CHUNK : p->limit;
        pthread_mutex_unlock(&p->mu);
        int rc = madvise(p->mem + pos, (size_t)(end - pos), MADV_POPULATE_WRITE);
        pthread_mutex_lock(&p->mu);
        if (rc != 0) {
            break; /* EINVAL before Linux 5.14, ENOMEM without memory: the decoder faults them */
        }
        pos = end;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void
prefaulter_start(prefaulter *p, char *mem)
{
    memset(p, 0, sizeof(*p));
    p->mem = mem;
    p->pid = getpid();
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        return;
    }
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        return;
    }
    p->running = pthread_create(&p->th, NULL, prefaulter_main, p) == 0;
    if (!p->running) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
    }
}

/* In a child forked by the loading thread the helper does not exist: its mutex may be held and
 * its condition variable counts it as a waiter (destroying it would wait for ever), so the child
 * leaves both alone and decodes without it. */
static int
prefaulter_live(prefaulter *p)
{
    if (p->running && p->pid != getpid()) {
        p->running = 0;
    }
    return p->running;
}

/* The decoder is at `written`; pages below `limit` (charged) may be backed ahead of it. */
static void
prefaulter_advance(prefaulter *p, int64_t written, int64_t limit)
{
    if (!prefaulter_live(p)) {
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->written = written;
    p->limit = limit;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void
prefaulter_stop(prefaulter *p)
{
    if (!prefaulter_live(p)) {
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->th, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    p->running = 0;
}

/* The helper is worth a thread with a second usable core (on a kernel without
 * MADV_POPULATE_WRITE it ends at its first EINVAL); FASTJOBLIB_PREFAULT=0 turns it off (=1
 * forces it on one core). */
static int
prefault_wanted(void)
{
    const char *pf = getenv("FASTJOBLIB_PREFAULT");
    if (pf != NULL && strcmp(pf, "0") == 0) {
        return 0;
    }
    if (pf != NULL && strcmp(pf, "1") == 0) {
        return 1;
    }
    return fj_usable_cpus() > 1;
}

/* Address space for n bytes of array data, HUGE_ALIGN-aligned, its length rounded up to a
 * multiple of HUGE_ALIGN (*maplen), with the transparent-huge-page hint NumPy gives its own large
 * arrays (np.empty memory). Nothing is committed until the bytes arrive: pages are backed as the
 * decoder writes them, so a claim larger than its stream costs address space only. With 4 KiB
 * pages a 512 MiB array took 131,072 page faults (a quarter of a zstd load of incompressible
 * data); with huge pages, 256. NULL (no exception) when the kernel refuses the mapping (strict
 * overcommit, address space): the caller grows a heap block instead. */
static char *
reserve_array_memory(int64_t n, size_t *maplen)
{
    if (n <= 0 || (uint64_t)n > (uint64_t)(SIZE_MAX / 2)) {
        return NULL;
    }
    size_t len = ((size_t)n + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1);
    size_t total = len + HUGE_ALIGN;
    char *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    uintptr_t a = ((uintptr_t)p + HUGE_ALIGN - 1) & ~(uintptr_t)(HUGE_ALIGN - 1);
    size_t head = (size_t)(a - (uintptr_t)p), tail = total - head - len;
    if (head > 0) {
        munmap(p, head);
    }
    if (tail > 0) {
        munmap((char *)a + len, tail);
    }
#ifdef MADV_HUGEPAGE
    (void)madvise((void *)a, len, MADV_HUGEPAGE); /* a hint: no huge pages is not an error */
#endif
    *maplen = len;
    return (char *)a;
}

/* A new array filled with the next nbytes of the source. */
static PyObject *
read_in_memory(fj_up *u, PyArray_Descr *descr, int nd, npy_intp *dims, int fortran, int64_t nbytes)
{
    fj_source *s = u->src;
    int64_t rem = fj_source_remaining(s);
    if (rem >= 0 && nbytes > rem) {
        return raise_eof(nbytes, rem), NULL;
    }
    if (rem >= 0 || nbytes <= GROW_START) {
        Py_INCREF(descr);
        PyObject *arr = PyArray_Empty(nd, dims, descr, fortran); /* steals descr */
        if (arr == NULL) {
            return NULL;
        }
        Py_ssize_t got = fj_source_readinto(s, PyArray_DATA((PyArrayObject *)arr), (Py_ssize_t)nbytes);
        if (got < 0) {
            Py_DECREF(arr);
            return NULL;
        }
        if (got < nbytes) {
            Py_DECREF(arr);
            return raise_eof(nbytes, got), NULL;
        }
        return arr;
    }
    /* Unknown length (a pipe, a compressed stream) and a big claim: the memory is charged and
     * filled in doubling steps as the bytes come; it is one reserved mapping (pages backed as
     * they are written) or, when the kernel refuses that, a heap block that grows. */
    size_t maplen = 0;
    char *map = reserve_array_memory(nbytes, &maplen);
    char *mem = map;
    int64_t cap = 0, got = 0;
    prefaulter pf = {0};
    /* A reader that decodes whole frames on several cores straight into this memory (read_hint)
     * is asked for all the charged memory at once (fewer frames cross the end of a read), and
     * its workers back their own pages: no helper competes with them. */
    const int64_t hint = fj_source_read_hint(s);
    if (map != NULL && hint == 0 && prefault_wanted()) {
        prefaulter_start(&pf, map);
    }
    while (got < nbytes) {
        int64_t ncap = cap == 0 ? GROW_START : cap * 2;
        if (ncap > nbytes) {
            ncap = nbytes;
        }
        if (fj_up_charge(u, ncap - cap) < 0) {
            goto error;
        }
        if (map == NULL) {
            char *p = PyMem_RawRealloc(mem, (size_t)ncap);
            if (p == NULL) {
                PyErr_NoMemory();
                goto error;
            }
            mem = p;
        }
        cap = ncap;
        while (got < cap) {
            int64_t step = map != NULL && hint == 0 && cap - got > PREFAULT_STEP ? PREFAULT_STEP
                                                                                 : cap - got;
            prefaulter_advance(&pf, got, cap - got > PREFAULT_AHEAD ? got + PREFAULT_AHEAD : cap);
            Py_ssize_t r = fj_source_readinto(s, mem + got, (Py_ssize_t)step);
            if (r < 0) {
                goto error;
            }
            got += r;
            if (r < step) {
                raise_eof(nbytes, got);
                goto error;
            }
        }
    }
    prefaulter_stop(&pf);
    PyObject *capsule;
    if (map != NULL) {
        capsule = PyCapsule_New(map, "fastjoblib.array_map", free_capsule_map);
        if (capsule != NULL && PyCapsule_SetContext(capsule, (void *)(uintptr_t)maplen) < 0) {
            Py_CLEAR(capsule);
        }
    }
    else {
        capsule = PyCapsule_New(mem, "fastjoblib.array_memory", free_capsule_mem);
    }
    if (capsule == NULL) {
        goto error;
    }
    Py_INCREF(descr);
    PyObject *arr = PyArray_NewFromDescr(&PyArray_Type, descr, nd, dims, NULL, mem,
                                         (fortran ? NPY_ARRAY_FARRAY : NPY_ARRAY_CARRAY), NULL);
    if (arr == NULL) {
        Py_DECREF(capsule);
        return NULL;
    }
    if (PyArray_SetBaseObject((PyArrayObject *)arr, capsule) < 0) { /* steals capsule */
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
error:
    prefaulter_stop(&pf);
    if (map != NULL) {
        munmap(map, maplen);
    }
    else {
        PyMem_RawFree(mem);
    }
    return NULL;
}

static PyObject *
read_memmap(fj_up *u, PyArray_Descr *descr, PyObject *shape, const char *order, int64_t nbytes, int padded)
{
    fj_source *s = u->src;
    int64_t offset = fj_source_tell(s);
    PyObject *kw = Py_BuildValue("{s:O,s:s,s:L,s:O,s:s}", "dtype", (PyObject *)descr, "mode", u->mmap_mode, "offset",
                                 (long long)offset, "shape", shape, "order", order);
    if (kw == NULL) {
        return NULL;
    }
    PyObject *args = PyTuple_Pack(1, u->filename);
    if (args == NULL) {
        Py_DECREF(kw);
        return NULL;
    }
    PyObject *arr = PyObject_Call(u->st->np_memmap, args, kw);
    Py_DECREF(args);
    Py_DECREF(kw);
    if (arr == NULL) {
        return NULL;
    }
    int64_t skipped = fj_source_skip(s, nbytes);
    if (skipped < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    if (skipped < nbytes) {
        Py_DECREF(arr);
        return raise_eof(nbytes, skipped), NULL;
    }
    if (!padded && offset % 16 != 0) { /* joblib warns whenever the record has no padding */
        if (PyErr_WarnFormat(PyExc_UserWarning, 1,
                             "The memmapped array %S loaded from the file %S is not byte aligned. This may cause "
                             "segmentation faults if this memmapped array is used in some libraries like BLAS or "
                             "PyTorch. To get rid of this warning, regenerate your pickle file with joblib >= 1.2.0. "
                             "See https://github.com/joblib/joblib/issues/563 for more details",
                             arr, u->filename != NULL ? u->filename : Py_None) < 0) {
            Py_DECREF(arr);
            return NULL;
        }
    }
    return arr;
}

static PyObject *
read_object_array(fj_up *u)
{
    if (u->depth >= 16) {
        PyErr_Format(u->st->UnpicklingError, "object arrays nested too deeply");
        return NULL;
    }
    fj_up sub;
    fj_up_init(&sub, u->st, u->src);
    sub.fix_imports = u->fix_imports;
    sub.encoding = u->encoding;
    sub.errors = u->errors;
    fj_up_inherit_policy(&sub, u);
    sub.depth = u->depth + 1;
    /* joblib reads the nested stream with a fresh plain unpickler: no array hook. */
    sub.joblib = 0;
    PyObject *res = fj_up_load(&sub);
    fj_up_clear(&sub);
    return res;
}

/* NumPy's dtype __setstate__ accepts a structured dtype whose names and fields disagree (a
 * corrupted file), and creating an array of it then crashes inside NumPy. Check the structure
 * before allocating: every name maps to (dtype, offset[, title]), recursively. 0 / -1. */
static int
validate_descr(fj_up *u, PyArray_Descr *d, int depth, fj_memo *visited)
{
    if (depth > 32) {
        PyErr_SetString(u->st->UnpicklingError, "NumpyArrayWrapper dtype nested too deeply");
        return -1;
    }
    /* a sub-dtype shared by many fields (through the memo) is checked once: linear time */
    if (fj_memo_get(visited, (PyObject *)d) != NULL) {
        return 0;
    }
    if (fj_memo_set(visited, (PyObject *)d, 0) < 0) {
        return -1;
    }
    int r = -1;
    PyObject *names = NULL, *fields = NULL, *sub = NULL;
    if ((sub = PyObject_GetAttrString((PyObject *)d, "subdtype")) == NULL) {
        goto done;
    }
    if (sub != Py_None) {
        if (!PyTuple_Check(sub) || PyTuple_GET_SIZE(sub) != 2 || !PyArray_DescrCheck(PyTuple_GET_ITEM(sub, 0))) {
            goto bad;
        }
        if (validate_descr(u, (PyArray_Descr *)PyTuple_GET_ITEM(sub, 0), depth + 1, visited) < 0) {
            goto done;
        }
    }
    if ((names = PyObject_GetAttrString((PyObject *)d, "names")) == NULL ||
        (fields = PyObject_GetAttrString((PyObject *)d, "fields")) == NULL) {
        goto done;
    }
    if ((names == Py_None) != (fields == Py_None)) {
        goto bad;
    }
    if (names != Py_None) {
        if (!PyTuple_Check(names)) {
            goto bad;
        }
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
            PyObject *v = PyObject_GetItem(fields, PyTuple_GET_ITEM(names, i));
            if (v == NULL) {
                PyErr_Clear();
                goto bad;
            }
            int ok = PyTuple_Check(v) && PyTuple_GET_SIZE(v) >= 2 && PyArray_DescrCheck(PyTuple_GET_ITEM(v, 0)) &&
                     PyLong_Check(PyTuple_GET_ITEM(v, 1));
            if (ok && validate_descr(u, (PyArray_Descr *)PyTuple_GET_ITEM(v, 0), depth + 1, visited) < 0) {
                Py_DECREF(v);
                goto done;
            }
            Py_DECREF(v);
            if (!ok) {
                goto bad;
            }
        }
    }
    r = 0;
    goto done;
bad:
    PyErr_Format(u->st->UnpicklingError, "NumpyArrayWrapper dtype is inconsistent (names and fields disagree)");
done:
    Py_XDECREF(names);
    Py_XDECREF(fields);
    Py_XDECREF(sub);
    return r;
}

static PyObject *
numpy_wrapper_build(fj_up *u, PyObject *state)
{
    fj_unpickler_state *up = &u->st->up;
    PyObject *res = NULL, *shape_t = NULL;
    if (!PyDict_Check(state)) {
        PyErr_Format(u->st->UnpicklingError, "NumpyArrayWrapper state must be a dict, not %.200s",
                     Py_TYPE(state)->tp_name);
        return NULL;
    }
    /* borrowed */
    PyObject *dtype = PyDict_GetItemWithError(state, up->str_dtype);
    PyObject *shape = dtype ? PyDict_GetItemWithError(state, up->str_shape) : NULL;
    if (dtype == NULL || shape == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(u->st->UnpicklingError, "NumpyArrayWrapper state lacks %s", dtype ? "shape" : "dtype");
        }
        return NULL;
    }
    if (!PyArray_DescrCheck(dtype)) {
        PyErr_Format(u->st->UnpicklingError, "NumpyArrayWrapper dtype is a %.200s", Py_TYPE(dtype)->tp_name);
        return NULL;
    }
    PyArray_Descr *descr = (PyArray_Descr *)dtype;
    if (PyDataType_HASFIELDS(descr) || PyDataType_HASSUBARRAY(descr)) {
        fj_memo visited;
        fj_memo_init(&visited);
        int vr = validate_descr(u, descr, 0, &visited);
        fj_memo_free(&visited);
        if (vr < 0) {
            return NULL;
        }
    }
    PyObject *order_o = PyDict_GetItemWithError(state, up->str_order);
    if (order_o == NULL && PyErr_Occurred()) {
        return NULL;
    }
    int fortran = 0;
    if (order_o != NULL) {
        if (PyUnicode_Check(order_o) && PyUnicode_CompareWithASCIIString(order_o, "F") == 0) {
            fortran = 1;
        }
        else if (!PyUnicode_Check(order_o) || PyUnicode_CompareWithASCIIString(order_o, "C") != 0) {
            PyErr_Format(u->st->UnpicklingError, "NumpyArrayWrapper order must be 'C' or 'F', not %R", order_o);
            return NULL;
        }
    }
    PyObject *allow_o = PyDict_GetItemWithError(state, up->str_allow_mmap);
    if (allow_o == NULL && PyErr_Occurred()) {
        return NULL;
    }
    int allow_mmap = allow_o != NULL ? PyObject_IsTrue(allow_o) : 0;
    if (allow_mmap < 0) {
        return NULL;
    }
    PyObject *align_o = PyDict_GetItemWithError(state, up->str_alignment);
    if (align_o == NULL && PyErr_Occurred()) {
        return NULL;
    }
    int padded = align_o != NULL && align_o != Py_None; /* missing key: 0.10-1.1 layout */
    PyObject *subclass = PyDict_GetItemWithError(state, up->str_subclass);
    if (subclass == NULL && PyErr_Occurred()) {
        return NULL;
    }

    /* shape -> dims, element count and byte size, all overflow-checked; a shape that is not a
     * tuple or list (a range from the stream) has its length checked before it is materialised */
    if (!PyTuple_Check(shape) && !PyList_Check(shape)) {
        Py_ssize_t n = PyObject_Length(shape);
        if (n < 0) {
            return NULL;
        }
        if (n > NPY_MAXDIMS) {
            PyErr_Format(u->st->UnpicklingError, "NumpyArrayWrapper shape has %zd dimensions", n);
            return NULL;
        }
    }
    shape_t = PySequence_Tuple(shape);
    if (shape_t == NULL) {
        return NULL;
    }
    int nd = (int)PyTuple_GET_SIZE(shape_t);
    if (PyTuple_GET_SIZE(shape_t) > NPY_MAXDIMS) {
        PyErr_Format(u->st->UnpicklingError, "NumpyArrayWrapper shape has %zd dimensions", PyTuple_GET_SIZE(shape_t));
        goto done;
    }
    npy_intp dims[NPY_MAXDIMS];
    int64_t count = 1;
    int overflow = 0;
    for (int i = 0; i < nd; i++) {
        PyObject *d = PyTuple_GET_ITEM(shape_t, i);
        long long v = PyLong_Check(d) ? PyLong_AsLongLong(d) : -1;
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            overflow = 1;
        }
        if (v < 0) {
            PyErr_Format(u->st->UnpicklingError, "NumpyArrayWrapper shape is invalid: %R", shape);
            goto done;
        }
        dims[i] = (npy_intp)v;
        if (v != 0 && count > INT64_MAX / v) {
            overflow = 1;
        }
        else {
            count *= v;
        }
    }
    for (int i = 0; i < nd; i++) {
        if (dims[i] == 0) {
            count = 0;
            overflow = 0;
        }
    }
    int64_t itemsize = (int64_t)PyDataType_ELSIZE(descr);
    if (overflow || (itemsize > 0 && count > PY_SSIZE_T_MAX / itemsize)) {
        PyErr_Format(PyExc_ValueError, "NumpyArrayWrapper shape %R with itemsize %lld exceeds the address space",
                     shape, (long long)itemsize);
        goto done;
    }
    int64_t nbytes = count * itemsize;
    if (fj_up_leave_frame(u) < 0) { /* the payload follows the frame (joblib commits it first) */
        goto done;
    }

    if (PyDataType_REFCHK(descr)) {
        res = read_object_array(u);
        if (res != NULL && u->ensure_native) {
            res = ensure_native(res);
        }
        goto done;
    }
    if (padded) {
        int c = fj_source_getc(u->src);
        if (c == -2) {
            goto done;
        }
        if (c == -1) {
            raise_eof(nbytes, 0);
            goto done;
        }
        if (c > 0) {
            int64_t sk = fj_source_skip(u->src, c);
            if (sk < 0) {
                goto done;
            }
            if (sk < c) {
                raise_eof(nbytes, 0);
                goto done;
            }
        }
    }
    int mapped = 0;
    if (u->mmap_mode != NULL && allow_mmap && u->filename != NULL) {
        res = read_memmap(u, descr, shape_t, fortran ? "F" : "C", nbytes, padded);
        mapped = 1;
    }
    else {
        res = read_in_memory(u, descr, nd, dims, fortran, nbytes);
    }
    if (res == NULL) {
        goto done;
    }
    /* np.matrix: joblib restores it through __array_prepare__, which NumPy 2 removed, so joblib on
     * NumPy 2 returns a plain ndarray. We restore the matrix (a view) on every NumPy: the type
     * recorded in the file is what the user dumped. */
    if (subclass != NULL && subclass == u->st->np_matrix) {
        PyObject *m = PyArray_View((PyArrayObject *)res, NULL, (PyTypeObject *)u->st->np_matrix);
        Py_SETREF(res, m);
        if (res == NULL) {
            goto done;
        }
    }
    if (!mapped && u->ensure_native) {
        res = ensure_native(res); /* memmaps are never swapped */
    }
done:
    Py_XDECREF(shape_t);
    return res;
}

static PyObject *
legacy_build(fj_up *u, PyObject *inst, PyObject *state)
{
    int z = (PyObject *)Py_TYPE(inst) == u->st->up.ZNDArrayWrapper;
    u->compat_mode = 1;
    if (!PyDict_Check(state)) {
        PyErr_Format(u->st->UnpicklingError, "%s state must be a dict", z ? "ZNDArrayWrapper" : "NDArrayWrapper");
        return NULL;
    }
    PyObject *mod = PyImport_ImportModule("fastjoblib._legacy");
    if (mod == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_CallMethod(mod, z ? "read_zndarray_wrapper" : "read_ndarray_wrapper", "OOsO", state,
                                        u->filename ? u->filename : Py_None, u->mmap_mode ? u->mmap_mode : "",
                                        u->find_class ? u->find_class : Py_None);
    Py_DECREF(mod);
    return res;
}

PyObject *
fj_ndarray_build(fj_up *u, PyObject *inst, PyObject *state)
{
    if ((PyObject *)Py_TYPE(inst) == u->st->up.NumpyArrayWrapper) {
        return numpy_wrapper_build(u, state);
    }
    return legacy_build(u, inst, state);
}
