/* budget.c: see budget.h. */
#include "budget.h"

#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

uint64_t
fj_table_seed(void)
{
    static uint64_t seed = 0;
    if (seed == 0) { /* (the GIL serialises the first calls) */
        uint64_t s = 0;
        if (getentropy(&s, sizeof s) != 0 || s == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            s = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 16) ^
                (uint64_t)(uintptr_t)&s;
        }
        seed = s | 1;
    }
    return seed;
}

#define CAPSULE_NAME "mem_handler" /* NumPy's name for handler capsules */

struct fj_budget {
    PyDataMem_Handler handler; /* ours: first member, the capsule points here */
    PyDataMem_Handler base;    /* a copy of the handler in force when the budget was made */
    PyObject *base_capsule;    /* keeps `base` alive */
    int64_t limit;             /* <= 0: unlimited */
    int64_t used;              /* atomic */
    int64_t peak;              /* atomic, best effort */
    int64_t total;             /* atomic: every byte taken, frees not given back */
    int64_t refused;           /* the request that went over (0: none) */
    int64_t read;              /* stream bytes the unpickler had read at its last call hook */
};

void
fj_budget_set_read(fj_budget *b, int64_t pos)
{
    if (pos > b->read) {
        b->read = pos;
    }
}

/* Bytes a load may take over its whole run, frees not given back, as a multiple of the limit:
 * allocating and freeing 800 MB forty times stays within any peak budget but not within time
 * linear in the file's size. */
#define FJ_TOTAL_FACTOR 2

static int
take(fj_budget *b, int64_t n)
{
    int64_t now = __atomic_add_fetch(&b->used, n, __ATOMIC_RELAXED);
    int64_t total = __atomic_add_fetch(&b->total, n, __ATOMIC_RELAXED);
    if (b->limit > 0 && (now > b->limit || total / FJ_TOTAL_FACTOR > b->limit)) {
        __atomic_sub_fetch(&b->used, n, __ATOMIC_RELAXED);
        __atomic_sub_fetch(&b->total, n, __ATOMIC_RELAXED);
        __atomic_store_n(&b->refused, n > 0 ? n : 1, __ATOMIC_RELAXED);
        return -1;
    }
    int64_t pk = __atomic_load_n(&b->peak, __ATOMIC_RELAXED);
    if (now > pk) {
        __atomic_store_n(&b->peak, now, __ATOMIC_RELAXED);
    }
    return 0;
}

static void
give(fj_budget *b, int64_t n)
{
    __atomic_sub_fetch(&b->used, n, __ATOMIC_RELAXED);
}

static void *
h_malloc(void *ctx, size_t size)
{
    fj_budget *b = ctx;
    if (size > INT64_MAX || take(b, (int64_t)size) < 0) {
        return NULL;
    }
    void *p = b->base.allocator.malloc(b->base.allocator.ctx, size);
    if (p == NULL) {
        give(b, (int64_t)size);
    }
    return p;
}

static void *
h_calloc(void *ctx, size_t nelem, size_t elsize)
{
    fj_budget *b = ctx;
    if (elsize != 0 && nelem > (size_t)INT64_MAX / elsize) {
        return NULL;
    }
    int64_t size = (int64_t)(nelem * elsize);
    if (take(b, size) < 0) {
        return NULL;
    }
    void *p = b->base.allocator.calloc(b->base.allocator.ctx, nelem, elsize);
    if (p == NULL) {
        give(b, size);
    }
    return p;
}

/* The old size is not known: the new size is charged in full and never given back by realloc
 * (conservative; free gives back the final size). */
static void *
h_realloc(void *ctx, void *ptr, size_t new_size)
{
    fj_budget *b = ctx;
    if (new_size > INT64_MAX || take(b, (int64_t)new_size) < 0) {
        return NULL;
    }
    void *p = b->base.allocator.realloc(b->base.allocator.ctx, ptr, new_size);
    if (p == NULL) {
        give(b, (int64_t)new_size);
    }
    return p;
}

static void
h_free(void *ctx, void *ptr, size_t size)
{
    fj_budget *b = ctx;
    if (ptr != NULL) {
        give(b, (int64_t)size);
    }
    b->base.allocator.free(b->base.allocator.ctx, ptr, size);
}

static void
budget_capsule_free(PyObject *cap)
{
    fj_budget *b = PyCapsule_GetPointer(cap, CAPSULE_NAME);
    if (b != NULL) {
        Py_XDECREF(b->base_capsule);
        PyMem_RawFree(b);
    }
}

fj_budget *
fj_budget_from(PyObject *capsule)
{
    if (!PyCapsule_IsValid(capsule, CAPSULE_NAME) ||
        PyCapsule_GetDestructor(capsule) != budget_capsule_free) {
        PyErr_SetString(PyExc_TypeError, "not a fastjoblib budget");
        return NULL;
    }
    return PyCapsule_GetPointer(capsule, CAPSULE_NAME);
}

static int
raise_over(fj_budget *b, int64_t n)
{
    PyErr_Format(PyExc_MemoryError,
                 "restricted load refused: the file asks for more memory than its budget of "
                 "max_bytes=%lld (%lld in use, %lld more requested; at most 2 x max_bytes over the "
                 "whole load); pass a larger max_bytes= to load() if you expect this file to be "
                 "that large",
                 (long long)b->limit, (long long)__atomic_load_n(&b->used, __ATOMIC_RELAXED),
                 (long long)n);
    return -1;
}

int
fj_budget_charge(fj_budget *b, int64_t n)
{
    if (n < 0) {
        n = INT64_MAX;
    }
    if (take(b, n) < 0) {
        return raise_over(b, n);
    }
    return 0;
}

int
fj_budget_install(PyObject *capsule, PyObject **old)
{
    *old = PyDataMem_SetHandler(capsule);
    return *old == NULL ? -1 : 0;
}

void
fj_budget_uninstall(PyObject *old)
{
    if (old == NULL) {
        return;
    }
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyObject *ours = PyDataMem_SetHandler(old);
    if (ours == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(ours);
    Py_DECREF(old);
    PyErr_Restore(et, ev, tb);
}

/* _budget(limit) -> capsule */
static PyObject *
budget_new(PyObject *module, PyObject *arg)
{
    long long limit = PyLong_AsLongLong(arg);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *base_cap = PyDataMem_GetHandler();
    if (base_cap == NULL) {
        return NULL;
    }
    PyDataMem_Handler *base = PyCapsule_GetPointer(base_cap, CAPSULE_NAME);
    if (base == NULL) {
        Py_DECREF(base_cap);
        return NULL;
    }
    fj_budget *b = PyMem_RawCalloc(1, sizeof(*b));
    if (b == NULL) {
        Py_DECREF(base_cap);
        return PyErr_NoMemory();
    }
    b->base = *base;
    b->base_capsule = base_cap;
    b->limit = limit;
    snprintf(b->handler.name, sizeof(b->handler.name), "fastjoblib_budget");
    b->handler.version = 1;
    b->handler.allocator.ctx = b;
    b->handler.allocator.malloc = h_malloc;
    b->handler.allocator.calloc = h_calloc;
    b->handler.allocator.realloc = h_realloc;
    b->handler.allocator.free = h_free;
    PyObject *cap = PyCapsule_New(&b->handler, CAPSULE_NAME, budget_capsule_free);
    if (cap == NULL) {
        Py_DECREF(base_cap);
        PyMem_RawFree(b);
    }
    return cap;
}

static PyObject *
budget_charge(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_budget_charge(budget, nbytes)");
        return NULL;
    }
    fj_budget *b = fj_budget_from(args[0]);
    if (b == NULL) {
        return NULL;
    }
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(args[1], &overflow);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow > 0) {
        n = INT64_MAX;
    }
    if (n <= 0) {
        Py_RETURN_NONE;
    }
    if (fj_budget_charge(b, n) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _budget_read(budget) -> stream bytes read by the load at its last call hook */
static PyObject *
budget_read(PyObject *module, PyObject *arg)
{
    fj_budget *b = fj_budget_from(arg);
    if (b == NULL) {
        return NULL;
    }
    return PyLong_FromLongLong((long long)b->read);
}

/* _budget_state(budget) -> (used, peak, limit, refused) */
static PyObject *
budget_state(PyObject *module, PyObject *arg)
{
    fj_budget *b = fj_budget_from(arg);
    if (b == NULL) {
        return NULL;
    }
    return Py_BuildValue("LLLL", (long long)__atomic_load_n(&b->used, __ATOMIC_RELAXED),
                         (long long)__atomic_load_n(&b->peak, __ATOMIC_RELAXED), (long long)b->limit,
                         (long long)__atomic_load_n(&b->refused, __ATOMIC_RELAXED));
}

static PyObject *
budget_set_limit(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_budget_set_limit(budget, limit)");
        return NULL;
    }
    fj_budget *b = fj_budget_from(args[0]);
    if (b == NULL) {
        return NULL;
    }
    long long limit = PyLong_AsLongLong(args[1]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    b->limit = limit;
    Py_RETURN_NONE;
}

/* Hashing an int walks its digits, every time (not cached): one element per 64 bits. */
static Py_ssize_t
int_hash_size(PyObject *o)
{
    if (!PyLong_CheckExact(o)) {
        return 0;
    }
    int overflow = 0;
    (void)PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow == 0) {
        return 0; /* fits in 64 bits: cheap */
    }
    PyObject *b = PyObject_CallMethod(o, "bit_length", NULL);
    if (b == NULL) {
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t bits = PyLong_AsSsize_t(b);
    Py_DECREF(b);
    if (bits < 0) {
        PyErr_Clear();
        return 0;
    }
    return bits / 64;
}

Py_ssize_t
fj_key_size(PyObject *key, Py_ssize_t cap)
{
    if (!PyTuple_Check(key) && !PyFrozenSet_CheckExact(key)) {
        return int_hash_size(key);
    }
    Py_ssize_t scap = 64, sp = 0, n = 0;
    PyObject **stk = PyMem_Malloc((size_t)scap * sizeof(PyObject *));
    if (stk == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    stk[sp++] = key; /* borrowed: the key holds everything below it */
    while (sp > 0 && n <= cap) {
        PyObject *t = stk[--sp];
        PyObject *it = NULL;
        Py_ssize_t len;
        if (PyTuple_Check(t)) {
            len = PyTuple_GET_SIZE(t);
        }
        else {
            len = PySet_GET_SIZE(t);
            it = PyObject_GetIter(t);
            if (it == NULL) {
                PyMem_Free(stk);
                return -1;
            }
        }
        n += 1 + len;
        for (Py_ssize_t i = 0; n <= cap; i++) {
            PyObject *c;
            if (it == NULL) {
                if (i >= len) {
                    break;
                }
                c = PyTuple_GET_ITEM(t, i);
            }
            else {
                c = PyIter_Next(it);
                if (c == NULL) {
                    break;
                }
                Py_DECREF(c); /* the frozenset still holds it */
            }
            if (!PyTuple_Check(c) && !PyFrozenSet_CheckExact(c)) {
                n += int_hash_size(c);
                continue;
            }
            if (sp == scap) {
                PyObject **p = PyMem_Realloc(stk, (size_t)scap * 2 * sizeof(PyObject *));
                if (p == NULL) {
                    Py_XDECREF(it);
                    PyMem_Free(stk);
                    PyErr_NoMemory();
                    return -1;
                }
                stk = p;
                scap *= 2;
            }
            stk[sp++] = c;
        }
        Py_XDECREF(it);
        if (PyErr_Occurred()) {
            PyMem_Free(stk);
            return -1;
        }
    }
    PyMem_Free(stk);
    return n;
}

/* _key_size(key, cap) -> fj_key_size */
static PyObject *
key_size_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_key_size(key, cap)");
        return NULL;
    }
    Py_ssize_t cap = PyLong_AsSsize_t(args[1]);
    if (cap == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t n = fj_key_size(args[0], cap);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

/* _flood_scan(items, work, flood_max, key_max, work_max) -> (status, work): the hash-flooding
 * check of the items a call is about to hash (the guard's _flood_check, at C speed: a fresh list
 * for every call made it the slowest part of a restricted load). Items sharing a hash are
 * compared with the distinct ones kept for it; `work` (this load's running total) grows by each
 * tuple or frozenset item's fj_key_size for its hash and again for each item it is compared
 * with (what hashing and comparing it costs the callee too). status 0: fine; 1: more than
 * flood_max unequal items (not str or bytes: randomised hashes) share one hash; 2: an item that
 * expands past key_max, or work past work_max; 3: an unhashable item (the callee raises). */
typedef struct {
    Py_hash_t h;
    Py_ssize_t first; /* index of the first distinct item of this hash, -1: empty slot */
    Py_ssize_t count; /* distinct items of this hash */
} flood_ent;

static PyObject *
flood_scan_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "_flood_scan(items, work, flood_max, key_max, work_max)");
        return NULL;
    }
    long long work = PyLong_AsLongLong(args[1]);
    Py_ssize_t flood_max = PyLong_AsSsize_t(args[2]);
    Py_ssize_t key_max = PyLong_AsSsize_t(args[3]);
    long long work_max = PyLong_AsLongLong(args[4]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject *seq = PySequence_Tuple(args[0]); /* holds every item while __eq__ may run */
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    size_t cap = 16;
    while (cap < (size_t)n + (size_t)n / 2 + 1) {
        cap *= 2;
    }
    flood_ent *tab = PyMem_Malloc(cap * sizeof(flood_ent));
    Py_ssize_t *next = PyMem_Malloc(((size_t)n + 1) * sizeof(Py_ssize_t)); /* chains of distinct items */
    int status = 0;
    if (tab == NULL || next == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (size_t j = 0; j < cap; j++) {
        tab[j].first = -1;
    }
    for (Py_ssize_t i = 0; i < n && status == 0; i++) {
        PyObject *k = PyTuple_GET_ITEM(seq, i);
        if (PyUnicode_CheckExact(k) || PyBytes_CheckExact(k)) {
            continue;
        }
        Py_ssize_t size = fj_key_size(k, key_max);
        if (size < 0) {
            goto error;
        }
        if (size > key_max) {
            status = 2;
            break;
        }
        Py_hash_t h = PyObject_Hash(k);
        if (h == -1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_TypeError)) {
                goto error;
            }
            PyErr_Clear();
            status = 3;
            break;
        }
        size_t j = fj_table_slot((uint64_t)h, cap - 1);
        while (tab[j].first >= 0 && tab[j].h != h) {
            j = (j + 1) & (cap - 1);
        }
        flood_ent *e = &tab[j];
        work += size; /* its hash */
        if (work > work_max) {
            status = 2;
            break;
        }
        if (e->first < 0) {
            e->h = h;
            e->first = i;
            e->count = 1;
            next[i] = -1;
            continue;
        }
        int dup = 0;
        Py_ssize_t last = -1;
        for (Py_ssize_t r = e->first; r >= 0 && !dup; r = next[r]) {
            PyObject *rep = PyTuple_GET_ITEM(seq, r);
            last = r;
            if (rep == k) {
                dup = 1;
                break;
            }
            work += size; /* a comparison walks it too */
            if (work > work_max) {
                status = 2;
                break;
            }
            int c = PyObject_RichCompareBool(rep, k, Py_EQ);
            if (c < 0) {
                if (!PyErr_ExceptionMatches(PyExc_Exception)) {
                    goto error; /* KeyboardInterrupt and the like */
                }
                PyErr_Clear(); /* not comparable: unequal */
            }
            else if (c > 0) {
                dup = 1;
            }
        }
        if (dup || status != 0) {
            continue;
        }
        if (e->count >= flood_max) {
            status = 1;
            break;
        }
        next[last] = i;
        next[i] = -1;
        e->count++;
    }
    PyMem_Free(tab);
    PyMem_Free(next);
    Py_DECREF(seq);
    return Py_BuildValue("iL", status, work);
error:
    PyMem_Free(tab);
    PyMem_Free(next);
    Py_DECREF(seq);
    return NULL;
}

/* _dunder_key(d) -> the first key of dict d that is a str of the form __x__, or None */
static PyObject *
dunder_key_py(PyObject *module, PyObject *d)
{
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "_dunder_key(dict)");
        return NULL;
    }
    Py_ssize_t i = 0;
    PyObject *k, *v;
    while (PyDict_Next(d, &i, &k, &v)) {
        if (!PyUnicode_Check(k)) {
            continue;
        }
        Py_ssize_t n = PyUnicode_GET_LENGTH(k);
        if (n >= 4 && PyUnicode_READ_CHAR(k, 0) == '_' && PyUnicode_READ_CHAR(k, 1) == '_' &&
            PyUnicode_READ_CHAR(k, n - 1) == '_' && PyUnicode_READ_CHAR(k, n - 2) == '_') {
            return Py_NewRef(k);
        }
    }
    Py_RETURN_NONE;
}

PyMethodDef fj_budget_methods[] = {
    {"_dunder_key", (PyCFunction)dunder_key_py, METH_O,
     "_dunder_key(d) -> the first __x__ key of dict d, or None."},
    {"_flood_scan", (PyCFunction)(void (*)(void))flood_scan_py, METH_FASTCALL,
     "_flood_scan(items, work, flood_max, key_max, work_max) -> (status, work): the guard's "
     "hash-flooding check (0 fine, 1 flood, 2 key work, 3 unhashable)."},
    {"_key_size", (PyCFunction)(void (*)(void))key_size_py, METH_FASTCALL,
     "_key_size(key, cap) -> elements hashing or comparing the key walks (tuples, frozensets), "
     "counted up to just past cap."},
    {"_budget", (PyCFunction)budget_new, METH_O,
     "_budget(limit) -> a memory budget for a restricted load (limit <= 0: unlimited)."},
    {"_budget_charge", (PyCFunction)(void (*)(void))budget_charge, METH_FASTCALL,
     "_budget_charge(budget, nbytes): count nbytes; MemoryError when over the limit."},
    {"_budget_state", (PyCFunction)budget_state, METH_O,
     "_budget_state(budget) -> (used, peak, limit, refused request or 0)."},
    {"_budget_read", (PyCFunction)budget_read, METH_O,
     "_budget_read(budget) -> stream bytes the load had read at its last call hook."},
    {"_budget_set_limit", (PyCFunction)(void (*)(void))budget_set_limit, METH_FASTCALL,
     "_budget_set_limit(budget, limit)."},
    {NULL, NULL, 0, NULL},
};
