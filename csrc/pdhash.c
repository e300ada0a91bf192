/* pdhash.c: _pd_hash_flood, the hash-flooding check of values a pandas callable may put in
 * one of pandas' own hash tables (factorize in Categorical(values), is_unique of categories and
 * MultiIndex levels).
 *
 * pandas' tables (its vendored khash) probe with double hashing: the start is the 32-bit hash
 * masked to the table, the step is derived from the full 32-bit hash. Keys with different
 * 32-bit hashes part after a probe or two; distinct keys with one 32-bit hash all follow one
 * probe sequence, so inserting n of them takes n**2/2 comparisons. Those hashes are unseeded and
 * compress 64 bits to 32, so a file can choose any number of distinct int64, float64, complex or
 * Python-object keys with one hash (120,000 int64 of one hash: 20 s in Categorical). The check
 * computes the hash pandas computes for each value and refuses more than `flood_max` distinct
 * values sharing one; values of 32 bits or less (int32 and narrower, float32) hash one to one
 * and are not looked at.
 *
 * The hashes, from pandas' khash.h / khash_python.h (facts, not code, taken from there):
 *   int64, uint64 (and datetime64/timedelta64 viewed as int64): (uint32)(k >> 33 ^ k ^ k << 11),
 *   the shift arithmetic for int64
 *   float64: 0 for 0.0, -0.0 and NaN, else MurmurHash2 of the two 32-bit halves of the bits
 *   complex128: hash(real) ^ hash(imag); complex64 the same with MurmurHash2 of each float32
 *   objects: Python's hash (floats: NaN -> 0; complex: pandas' own combination; tuples: CPython's
 *   xxHash-style tuple hash over the items' pandas hashes), folded to 32 bits (high ^ low).
 * Equal values (NaN equal to NaN, as pandas treats them) are one key. */
#include "fj.h"
#include "budget.h"

#include <math.h>
#include <string.h>

#define MM_SEED 0xc70f6907u
#define MM_M 0x5bd1e995u

static inline uint32_t
mm_mix(uint32_t k)
{
    k *= MM_M;
    k ^= k >> 24;
    k *= MM_M;
    return k;
}

static inline uint32_t
mm_final(uint32_t h)
{
    h ^= h >> 13;
    h *= MM_M;
    h ^= h >> 15;
    return h;
}

static inline uint32_t
mm_32(uint32_t k)
{
    uint32_t h = (MM_SEED ^ 4u) * MM_M;
    return mm_final(h ^ mm_mix(k));
}

static inline uint32_t
mm_64(uint64_t k)
{
    uint32_t h = (MM_SEED ^ 4u) * MM_M;
    h ^= mm_mix((uint32_t)k);
    h *= MM_M;
    h ^= mm_mix((uint32_t)(k >> 32));
    return mm_final(h);
}

static inline uint32_t
hash_f64(double v)
{
    if (v == 0.0 || v != v) {
        return 0;
    }
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return mm_64(b);
}

static inline uint32_t
hash_f32(float v)
{
    if (v == 0.0f || v != v) {
        return 0;
    }
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    return mm_32(b);
}

static inline int
feq(double a, double b)
{
    return a == b || (a != a && b != b);
}

/* pandas' hash of a Python object, before folding; -1 with an exception on failure */
static Py_hash_t pd_obj_hash(PyObject *o, int depth);

static inline uint32_t
fold(Py_hash_t h)
{
    uint64_t u = (uint64_t)h;
    return (uint32_t)((u >> 32) ^ u);
}

static Py_hash_t
pd_double_hash(double v)
{
    if (v != v) {
        return 0;
    }
    PyObject *f = PyFloat_FromDouble(v);
    if (f == NULL) {
        return -1;
    }
    Py_hash_t h = PyObject_Hash(f);
    Py_DECREF(f);
    return h;
}

static Py_hash_t
pd_obj_hash(PyObject *o, int depth)
{
    if (PyFloat_CheckExact(o)) {
        return pd_double_hash(PyFloat_AS_DOUBLE(o));
    }
    if (PyComplex_CheckExact(o)) {
        Py_complex c = PyComplex_AsCComplex(o);
        Py_hash_t r = pd_double_hash(c.real), i = pd_double_hash(c.imag);
        if (r == -1 || i == -1) {
            return -1;
        }
        Py_uhash_t comb = (Py_uhash_t)r + 1000003UL * (Py_uhash_t)i;
        return comb == (Py_uhash_t)-1 ? -2 : (Py_hash_t)comb;
    }
    if (PyTuple_Check(o) && depth < 64) {
        /* CPython's tuple hash (xxHash lanes), over the items' folded pandas hashes */
        const Py_uhash_t p1 = 11400714785074694791ULL, p2 = 14029467366897019727ULL,
                         p5 = 2870177450012600261ULL;
        Py_ssize_t len = PyTuple_GET_SIZE(o);
        Py_uhash_t acc = p5;
        for (Py_ssize_t i = 0; i < len; i++) {
            Py_hash_t ih = pd_obj_hash(PyTuple_GET_ITEM(o, i), depth + 1);
            if (ih == -1 && PyErr_Occurred()) {
                return -1;
            }
            Py_uhash_t lane = fold(ih == -1 ? 0 : ih);
            acc += lane * p2;
            acc = (acc << 31) | (acc >> 33);
            acc *= p1;
        }
        acc += (Py_uhash_t)len ^ (p5 ^ 3527539UL);
        return acc == (Py_uhash_t)-1 ? 1546275796 : (Py_hash_t)acc;
    }
    return PyObject_Hash(o);
}

/* pandas' equality of two objects: NaN equals NaN (floats, complex parts, inside tuples).
 * 1 equal, 0 not, -1 with an exception that is not an ordinary Exception. */
static int
pd_obj_eq(PyObject *a, PyObject *b, int depth)
{
    if (a == b) {
        return 1;
    }
    if (Py_TYPE(a) == Py_TYPE(b)) {
        if (PyFloat_CheckExact(a)) {
            return feq(PyFloat_AS_DOUBLE(a), PyFloat_AS_DOUBLE(b));
        }
        if (PyComplex_CheckExact(a)) {
            Py_complex x = PyComplex_AsCComplex(a), y = PyComplex_AsCComplex(b);
            return feq(x.real, y.real) && feq(x.imag, y.imag);
        }
        if (PyTuple_Check(a) && depth < 64) {
            if (PyTuple_GET_SIZE(a) != PyTuple_GET_SIZE(b)) {
                return 0;
            }
            for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(a); i++) {
                int r = pd_obj_eq(PyTuple_GET_ITEM(a, i), PyTuple_GET_ITEM(b, i), depth + 1);
                if (r <= 0) {
                    return r;
                }
            }
            return 1;
        }
    }
    int r = PyObject_RichCompareBool(a, b, Py_EQ);
    if (r < 0) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            return -1;
        }
        PyErr_Clear();
        return 0;
    }
    return r;
}

typedef struct {
    uint32_t h;
    uint32_t count; /* distinct values of this hash; 0: empty slot */
    Py_ssize_t first;
} pd_ent;

/* _pd_hash_flood(values, kind, flood_max) -> True when more than flood_max distinct values
 * share one pandas hash. kind: 'q' / 'Q' (values: a buffer of native int64 / uint64), 'd' (float64),
 * 'D' (complex128), 'F' (complex64), 'O' (values: a sequence of objects). */
static PyObject *
pd_hash_flood(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyUnicode_Check(args[1]) || PyUnicode_GET_LENGTH(args[1]) != 1) {
        PyErr_SetString(PyExc_TypeError, "_pd_hash_flood(values, kind, flood_max)");
        return NULL;
    }
    Py_UCS4 kind = PyUnicode_READ_CHAR(args[1], 0);
    Py_ssize_t flood_max = PyLong_AsSsize_t(args[2]);
    if (flood_max == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t width = kind == 'q' || kind == 'Q' || kind == 'd' || kind == 'F' ? 8
                     : kind == 'D' ? 16 : 0;
    if (width == 0 && kind != 'O') {
        PyErr_Format(PyExc_ValueError, "_pd_hash_flood: unknown kind %c", (int)kind);
        return NULL;
    }
    Py_buffer view = {0};
    PyObject *seq = NULL;
    const char *base = NULL;
    Py_ssize_t n;
    if (kind == 'O') {
        seq = PySequence_Tuple(args[0]); /* holds every item while __eq__ may run */
        if (seq == NULL) {
            return NULL;
        }
        n = PyTuple_GET_SIZE(seq);
    }
    else {
        if (PyObject_GetBuffer(args[0], &view, PyBUF_C_CONTIGUOUS) < 0) {
            return NULL;
        }
        base = view.buf;
        n = view.len / width;
    }
    size_t cap = 16;
    while (cap < (size_t)n + (size_t)n / 2 + 1) {
        cap *= 2;
    }
    pd_ent *tab = PyMem_Calloc(cap, sizeof(pd_ent));
    Py_ssize_t *next = PyMem_Malloc(((size_t)n + 1) * sizeof(Py_ssize_t));
    int flood = 0;
    if (tab == NULL || next == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < n && !flood; i++) {
        uint32_t h;
        PyObject *o = NULL;
        const char *p = base + (size_t)i * (size_t)width;
        if (kind == 'O') {
            o = PyTuple_GET_ITEM(seq, i);
            Py_hash_t ph = pd_obj_hash(o, 0);
            if (ph == -1 && PyErr_Occurred()) {
                if (!PyErr_ExceptionMatches(PyExc_Exception)) {
                    goto error;
                }
                PyErr_Clear(); /* pandas hashes an unhashable object as 0 (and then fails) */
                ph = 0;
            }
            h = fold(ph);
        }
        else if (kind == 'q') { /* int64: pandas shifts the signed key (sign bits come in) */
            int64_t k;
            memcpy(&k, p, 8);
            h = (uint32_t)((uint64_t)(k >> 33) ^ (uint64_t)k ^ ((uint64_t)k << 11));
        }
        else if (kind == 'Q') {
            uint64_t k;
            memcpy(&k, p, 8);
            h = (uint32_t)((k >> 33) ^ k ^ (k << 11));
        }
        else if (kind == 'd') {
            double v;
            memcpy(&v, p, 8);
            h = hash_f64(v);
        }
        else if (kind == 'D') {
            double re, im;
            memcpy(&re, p, 8);
            memcpy(&im, p + 8, 8);
            h = hash_f64(re) ^ hash_f64(im);
        }
        else {
            float re, im;
            memcpy(&re, p, 4);
            memcpy(&im, p + 4, 4);
            h = hash_f32(re) ^ hash_f32(im);
        }
        size_t j = fj_table_slot(h, cap - 1);
        while (tab[j].count != 0 && tab[j].h != h) {
            j = (j + 1) & (cap - 1);
        }
        pd_ent *e = &tab[j];
        if (e->count == 0) {
            e->h = h;
            e->count = 1;
            e->first = i;
            next[i] = -1;
            continue;
        }
        int dup = 0;
        Py_ssize_t last = -1;
        for (Py_ssize_t r = e->first; r >= 0 && !dup; r = next[r]) {
            const char *q = base + (size_t)r * (size_t)width;
            last = r;
            if (kind == 'O') {
                int c = pd_obj_eq(PyTuple_GET_ITEM(seq, r), o, 0);
                if (c < 0) {
                    goto error;
                }
                dup = c;
            }
            else if (kind == 'q' || kind == 'Q') {
                dup = memcmp(p, q, 8) == 0;
            }
            else if (kind == 'd') {
                double a, b;
                memcpy(&a, p, 8);
                memcpy(&b, q, 8);
                dup = feq(a, b);
            }
            else if (kind == 'D') {
                double a[2], b[2];
                memcpy(a, p, 16);
                memcpy(b, q, 16);
                dup = feq(a[0], b[0]) && feq(a[1], b[1]);
            }
            else {
                float a[2], b[2];
                memcpy(a, p, 8);
                memcpy(b, q, 8);
                dup = feq(a[0], b[0]) && feq(a[1], b[1]);
            }
        }
        if (dup) {
            continue;
        }
        if ((Py_ssize_t)e->count >= flood_max) {
            flood = 1;
            break;
        }
        next[last] = i;
        next[i] = -1;
        e->count++;
    }
    PyMem_Free(tab);
    PyMem_Free(next);
    Py_XDECREF(seq);
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    return PyBool_FromLong(flood);
error:
    PyMem_Free(tab);
    PyMem_Free(next);
    Py_XDECREF(seq);
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    return NULL;
}

/* _pd_obj_hash32(obj) -> the 32-bit hash pandas' object hash table gives obj (tests compare it
 * with pandas._libs.hashtable.object_hash) */
static PyObject *
pd_obj_hash32(PyObject *module, PyObject *obj)
{
    Py_hash_t h = pd_obj_hash(obj, 0);
    if (h == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return PyLong_FromUnsignedLong(fold(h));
}

PyMethodDef fj_pdhash_methods[] = {
    {"_pd_obj_hash32", (PyCFunction)pd_obj_hash32, METH_O,
     "_pd_obj_hash32(obj) -> pandas' 32-bit object hash of obj."},
    {"_pd_hash_flood", (PyCFunction)(void (*)(void))pd_hash_flood, METH_FASTCALL,
     "_pd_hash_flood(values, kind, flood_max) -> True when more than flood_max distinct values "
     "share one of pandas' hash-table hashes (kind 'q' int64, 'Q' uint64, 'd' float64, "
     "'D' complex128, "
     "'F' complex64: a buffer; 'O': a sequence of objects)."},
    {NULL, NULL, 0, NULL},
};
