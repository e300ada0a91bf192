/* unpickler.c: pickle opcodes (protocols 0-5) -> objects. The engine (stack with marks, memo as a
 * flat array indexed by memo id, find_class policy) and the entry points: the Unpickler heap type,
 * loads(), load_pickle() and load() (joblib's format: array hook in ndarray_load.c).
 *
 * The engine (fj_up) lives on the C stack of each call: no shared mutable state, thread safe.
 */
#include "unpickler_impl.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <structmember.h>

/* Opcodes (pickle.py names). */
enum {
    OP_MARK = '(', OP_STOP = '.', OP_POP = '0', OP_POP_MARK = '1', OP_DUP = '2', OP_FLOAT = 'F',
    OP_INT = 'I', OP_BININT = 'J', OP_BININT1 = 'K', OP_LONG = 'L', OP_BININT2 = 'M', OP_NONE = 'N',
    OP_PERSID = 'P', OP_BINPERSID = 'Q', OP_REDUCE = 'R', OP_STRING = 'S', OP_BINSTRING = 'T',
    OP_SHORT_BINSTRING = 'U', OP_UNICODE = 'V', OP_BINUNICODE = 'X', OP_APPEND = 'a', OP_BUILD = 'b',
    OP_GLOBAL = 'c', OP_DICT = 'd', OP_EMPTY_DICT = '}', OP_APPENDS = 'e', OP_GET = 'g', OP_BINGET = 'h',
    OP_INST = 'i', OP_LONG_BINGET = 'j', OP_LIST = 'l', OP_EMPTY_LIST = ']', OP_OBJ = 'o', OP_PUT = 'p',
    OP_BINPUT = 'q', OP_LONG_BINPUT = 'r', OP_SETITEM = 's', OP_TUPLE = 't', OP_EMPTY_TUPLE = ')',
    OP_SETITEMS = 'u', OP_BINFLOAT = 'G',
    OP_PROTO = 0x80, OP_NEWOBJ = 0x81, OP_EXT1 = 0x82, OP_EXT2 = 0x83, OP_EXT4 = 0x84, OP_TUPLE1 = 0x85,
    OP_TUPLE2 = 0x86, OP_TUPLE3 = 0x87, OP_NEWTRUE = 0x88, OP_NEWFALSE = 0x89, OP_LONG1 = 0x8a,
    OP_LONG4 = 0x8b,
    OP_BINBYTES = 'B', OP_SHORT_BINBYTES = 'C',
    OP_SHORT_BINUNICODE = 0x8c, OP_BINUNICODE8 = 0x8d, OP_BINBYTES8 = 0x8e, OP_EMPTY_SET = 0x8f,
    OP_ADDITEMS = 0x90, OP_FROZENSET = 0x91, OP_NEWOBJ_EX = 0x92, OP_STACK_GLOBAL = 0x93,
    OP_MEMOIZE = 0x94, OP_FRAME = 0x95,
    OP_BYTEARRAY8 = 0x96, OP_NEXT_BUFFER = 0x97, OP_READONLY_BUFFER = 0x98,
};


/* ---------------------------------------------------------------------------------------------
 * Small readers */

static inline uint32_t
rd_u32(const char *p)
{
    const unsigned char *q = (const unsigned char *)p;
    return (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16) | ((uint32_t)q[3] << 24);
}

static inline uint64_t
rd_u64(const char *p)
{
    return (uint64_t)rd_u32(p) | ((uint64_t)rd_u32(p + 4) << 32);
}

#define lookup_attr fj_lookup_attr /* pyver.h */

/* ---------------------------------------------------------------------------------------------
 * Engine: stack and marks */

void
fj_up_init(fj_up *u, fj_state *st, fj_source *src)
{
    memset(u, 0, sizeof(*u));
    u->st = st;
    u->src = src;
    u->fix_imports = 1;
    u->encoding = "ASCII";
    u->errors = "strict";
    u->frame_end = -1;
    src->trunc_exc = st->UnpicklingError;
}

static int
policy_hook(PyObject *policy, const char *name, PyObject **out)
{
    PyObject *n = PyUnicode_FromString(name);
    if (n == NULL) {
        return -1;
    }
    int r = lookup_attr(policy, n, out);
    Py_DECREF(n);
    if (r > 0 && *out == Py_None) {
        Py_CLEAR(*out);
    }
    return r < 0 ? -1 : 0;
}

int
fj_up_restrict(fj_up *u, PyObject *find_class, PyObject *check_build)
{
    u->find_class = find_class;
    u->check_build = check_build;
    u->restricted = 1;
    fj_memo_init(&u->seen_own);
    u->seen = &u->seen_own;
    fj_policy *pol = &u->pol_own;
    u->pol = pol;
    fj_memo_init(&pol->pinned);
    if (policy_hook(find_class, "filter_state", &pol->filter_state) < 0 ||
        policy_hook(find_class, "check_object", &pol->check_object) < 0 ||
        policy_hook(find_class, "before_call", &pol->before_call) < 0 ||
        policy_hook(find_class, "budget", &pol->budget_cap) < 0) {
        return -1;
    }
    if (pol->budget_cap != NULL) {
        if ((pol->budget = fj_budget_from(pol->budget_cap)) == NULL) {
            return -1;
        }
        if (fj_budget_install(pol->budget_cap, &pol->old_handler) < 0) {
            pol->old_handler = NULL;
            return -1;
        }
    }
    return 0;
}

void
fj_up_inherit_policy(fj_up *sub, const fj_up *parent)
{
    sub->find_class = parent->find_class;
    sub->restricted = parent->restricted;
    sub->check_build = parent->check_build;
    sub->seen = parent->seen;
    sub->pol = parent->pol;
    sub->replace_globals = parent->replace_globals;
}

void
fj_up_clear(fj_up *u)
{
    Py_CLEAR(u->trailer_pending); /* provenance */
    if (u->seen == &u->seen_own) {
        fj_memo_free(&u->seen_own);
        u->seen = NULL;
    }
    if (u->pol == &u->pol_own) {
        fj_policy *pol = &u->pol_own;
        fj_budget_uninstall(pol->old_handler); /* steals */
        pol->old_handler = NULL;
        Py_CLEAR(pol->filter_state);
        Py_CLEAR(pol->check_object);
        Py_CLEAR(pol->before_call);
        Py_CLEAR(pol->budget_cap);
        pol->budget = NULL;
        fj_memo_free(&pol->pinned);
        PyMem_Free(pol->hkeys);
        PyMem_Free(pol->hcounts);
        pol->hkeys = NULL;
        pol->hcounts = NULL;
        pol->hmask = pol->hused = 0;
    }
    u->pol = NULL;
    for (Py_ssize_t i = 0; i < u->sp; i++) {
        Py_DECREF(u->stack[i]);
    }
    PyMem_Free(u->stack);
    u->stack = NULL;
    u->sp = u->scap = 0;
    PyMem_Free(u->marks);
    u->marks = NULL;
    for (Py_ssize_t i = 0; i < u->memo_cap; i++) {
        Py_XDECREF(u->memo[i]);
    }
    PyMem_Free(u->memo);
    u->memo = NULL;
    u->memo_cap = 0;
    Py_CLEAR(u->memo_dict);
}

/* A restricted load failed: drop the traceback of the exception and of its chain. The frames of
 * the hooks and constructors that ran hold the half-built objects of the load (a pandas array
 * without its data, an index whose state was refused) in their locals, and an error reporter
 * that prints frame locals would use them. */
static void
strip_error_traceback(void)
{
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    Py_CLEAR(tb);
    PyErr_NormalizeException(&et, &ev, &tb);
    Py_CLEAR(tb);
    PyObject *e = ev;
    for (int i = 0; e != NULL && PyExceptionInstance_Check(e) && i < 64; i++) {
        PyException_SetTraceback(e, Py_None);
        PyObject *next = PyException_GetCause(e); /* new ref or NULL */
        if (next == NULL) {
            next = PyException_GetContext(e);
        }
        Py_XDECREF(next); /* still referenced by e */
        e = next;
    }
    PyErr_Restore(et, ev, NULL);
}

static int
raise_up(fj_up *u, const char *fmt, ...)
{
    va_list va;
    va_start(va, fmt);
    PyObject *msg = PyUnicode_FromFormatV(fmt, va);
    va_end(va);
    if (msg != NULL) {
        PyErr_SetObject(u->st->UnpicklingError, msg);
        Py_DECREF(msg);
    }
    return -1;
}

static int
stack_grow(fj_up *u)
{
    Py_ssize_t ncap = u->scap ? u->scap * 2 : 64;
    PyObject **p = PyMem_Realloc(u->stack, (size_t)ncap * sizeof(PyObject *));
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    u->stack = p;
    u->scap = ncap;
    return 0;
}

/* Push, stealing `o` (NULL: error already set). */
static inline int
push(fj_up *u, PyObject *o)
{
    if (o == NULL) {
        return -1;
    }
    if (u->sp == u->scap && stack_grow(u) < 0) {
        Py_DECREF(o);
        return -1;
    }
    u->stack[u->sp++] = o;
    return 0;
}

/* Pop: new (transferred) reference, or NULL on underflow. */
static inline PyObject *
pop(fj_up *u)
{
    if (u->sp <= u->fence) {
        raise_up(u, "unpickling stack underflow at offset %lld", (long long)fj_source_tell(u->src) - 1);
        return NULL;
    }
    return u->stack[--u->sp];
}

/* Top of stack, borrowed. */
static inline PyObject *
top(fj_up *u)
{
    if (u->sp <= u->fence) {
        raise_up(u, "unpickling stack underflow at offset %lld", (long long)fj_source_tell(u->src) - 1);
        return NULL;
    }
    return u->stack[u->sp - 1];
}

static int
push_mark(fj_up *u)
{
    if (u->nmarks == u->mcap) {
        Py_ssize_t ncap = u->mcap ? u->mcap * 2 : 16;
        Py_ssize_t *p = PyMem_Realloc(u->marks, (size_t)ncap * sizeof(Py_ssize_t));
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        u->marks = p;
        u->mcap = ncap;
    }
    u->marks[u->nmarks++] = u->fence;
    u->fence = u->sp;
    return 0;
}

/* Pop the innermost mark: returns the index of the first marked item (items are
 * stack[k:sp]), -1 if there is no mark. */
static Py_ssize_t
pop_mark(fj_up *u)
{
    if (u->nmarks == 0) {
        raise_up(u, "could not find MARK at offset %lld", (long long)fj_source_tell(u->src) - 1);
        return -1;
    }
    Py_ssize_t k = u->fence;
    u->fence = u->marks[--u->nmarks];
    return k;
}

/* CPython's own rule (_PyTuple_MaybeUntrack, applied lazily by the collector): a tuple holding
 * only objects that cannot be part of a cycle need not be tracked. Applying it at creation keeps
 * the dicts and lists that hold such tuples untracked as well, which makes the collections that
 * run while a big object graph is built much cheaper. */
static inline void
maybe_untrack_tuple(PyObject *t)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t); i++) {
        PyObject *e = PyTuple_GET_ITEM(t, i);
        if (PyObject_IS_GC(e) && !(PyTuple_CheckExact(e) && !PyObject_GC_IsTracked(e))) {
            return;
        }
    }
    if (PyObject_GC_IsTracked(t)) {
        PyObject_GC_UnTrack(t);
    }
}

/* stack[k:sp] -> new tuple (references moved). */
static PyObject *
take_tuple(fj_up *u, Py_ssize_t k)
{
    Py_ssize_t n = u->sp - k;
    PyObject *t = PyTuple_New(n);
    if (t == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTuple_SET_ITEM(t, i, u->stack[k + i]);
    }
    u->sp = k;
    maybe_untrack_tuple(t);
    return t;
}

static PyObject *
take_list(fj_up *u, Py_ssize_t k)
{
    Py_ssize_t n = u->sp - k;
    PyObject *l = PyList_New(n);
    if (l == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyList_SET_ITEM(l, i, u->stack[k + i]);
    }
    u->sp = k;
    return l;
}

/* Drop stack[k:sp]. */
static void
drop_to(fj_up *u, Py_ssize_t k)
{
    while (u->sp > k) {
        PyObject *o = u->stack[--u->sp];
        Py_DECREF(o);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Memo */

/* A memo slot is reused (pickle never does; a hand-made stream may): the object it held keeps a
 * reference from the policy instead, so that the change rule (guard_unshared: at most the
 * stack and one memo slot) still sees every other reference to it. */
static int
pin_object(fj_up *u, PyObject *old)
{
    return u->pol == NULL ? 0 : fj_memo_set(&u->pol->pinned, old, 0);
}

static int
memo_put(fj_up *u, uint64_t idx, PyObject *obj /* borrowed */)
{
    if (idx < (uint64_t)u->memo_cap) {
        PyObject *old = u->memo[idx];
        if (u->restricted && old != NULL && old != obj && pin_object(u, old) < 0) {
            return -1;
        }
        u->memo[idx] = Py_NewRef(obj);
        if (old == NULL) {
            u->memo_count++;
        }
        else {
            Py_DECREF(old);
        }
        return 0;
    }
    /* Grow the flat array while it stays proportional to the entries actually stored. */
    if (idx < (uint64_t)(u->memo_count * 2 + 4096) && idx < ((uint64_t)1 << 40)) {
        Py_ssize_t ncap = u->memo_cap ? u->memo_cap : 64;
        while ((uint64_t)ncap <= idx) {
            ncap *= 2;
        }
        PyObject **p = PyMem_Realloc(u->memo, (size_t)ncap * sizeof(PyObject *));
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memset(p + u->memo_cap, 0, (size_t)(ncap - u->memo_cap) * sizeof(PyObject *));
        u->memo = p;
        u->memo_cap = ncap;
        u->memo[idx] = Py_NewRef(obj);
        u->memo_count++;
        return 0;
    }
    /* sparse high index: dict */
    if (u->memo_dict == NULL && (u->memo_dict = PyDict_New()) == NULL) {
        return -1;
    }
    PyObject *key = PyLong_FromUnsignedLongLong(idx);
    if (key == NULL) {
        return -1;
    }
    int had = PyDict_Contains(u->memo_dict, key);
    if (had > 0 && u->restricted) {
        PyObject *old = PyDict_GetItemWithError(u->memo_dict, key); /* borrowed */
        if ((old == NULL && PyErr_Occurred()) || (old != NULL && old != obj && pin_object(u, old) < 0)) {
            Py_DECREF(key);
            return -1;
        }
    }
    int r = had < 0 ? -1 : PyDict_SetItem(u->memo_dict, key, obj);
    Py_DECREF(key);
    if (r == 0 && had == 0) {
        u->memo_count++;
    }
    return r;
}

/* Borrowed, NULL + UnpicklingError when missing. */
static PyObject *
memo_get(fj_up *u, uint64_t idx)
{
    if (idx < (uint64_t)u->memo_cap) {
        if (u->memo[idx] != NULL) {
            return u->memo[idx];
        }
    }
    else if (u->memo_dict != NULL) {
        PyObject *key = PyLong_FromUnsignedLongLong(idx);
        if (key == NULL) {
            return NULL;
        }
        PyObject *v = PyDict_GetItemWithError(u->memo_dict, key);
        Py_DECREF(key);
        if (v != NULL || PyErr_Occurred()) {
            return v;
        }
    }
    raise_up(u, "Memo value not found at index %llu (offset %lld)", (unsigned long long)idx,
             (long long)fj_source_tell(u->src));
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * find_class */

/* The attribute lookup of stdlib's Unpickler.find_class, with the running interpreter's errors
 * (pyver.h, FJ_PICKLE_314_ERRORS). `mod` the imported module, `module_name` its (mapped) name.
 * New reference. */
static PyObject *
get_global_attr(PyObject *mod, PyObject *module_name, PyObject *name, int proto)
{
    PyObject *parts = NULL, *obj = NULL, *sep = NULL;
    if (proto >= 4 && !PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "must be str, not %.100s", Py_TYPE(name)->tp_name);
        return NULL;
    }
#if FJ_PICKLE_314_ERRORS
    /* plain getattr unless a dotted name under protocol >= 4 */
    if (proto < 4 || PyUnicode_FindChar(name, '.', 0, PyUnicode_GET_LENGTH(name), 1) < 0) {
        return PyObject_GetAttr(mod, name);
    }
    if ((sep = PyUnicode_FromString(".")) == NULL ||
        (parts = PyUnicode_Split(name, sep, -1)) == NULL) {
        goto done;
    }
    obj = Py_NewRef(mod);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(parts); i++) {
        PyObject *next = PyObject_GetAttr(obj, PyList_GET_ITEM(parts, i)); /* item borrowed */
        Py_SETREF(obj, next);
        if (obj == NULL) {
            if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
                /* "raise AttributeError(...)" inside "except AttributeError": context, no cause */
                PyObject *orig = PyErr_GetRaisedException();
                PyErr_Format(PyExc_AttributeError, "Can't resolve path %R on module %R", name,
                             module_name);
                fj_set_context(orig);
            }
            break;
        }
    }
#else
    /* 3.11-3.13: getattribute() of _pickle.c. Protocol >= 4 splits the name (a '<locals>'
     * component is refused before any lookup); a missing attribute anywhere is reported on the
     * module under the full name. */
    (void)module_name;
    if (proto >= 4) {
        if ((sep = PyUnicode_FromString(".")) == NULL ||
            (parts = PyUnicode_Split(name, sep, -1)) == NULL) {
            goto done;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(parts); i++) {
            if (PyUnicode_CompareWithASCIIString(PyList_GET_ITEM(parts, i), "<locals>") == 0) {
                PyErr_Format(PyExc_AttributeError,
                             FJ_PICKLE_313_ERRORS ? "Can't get local attribute %R on %R"
                                                  : "Can't pickle local attribute %R on %R",
                             name, mod);
                goto done;
            }
        }
        obj = Py_NewRef(mod);
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(parts); i++) {
            PyObject *next = NULL;
            int r = lookup_attr(obj, PyList_GET_ITEM(parts, i), &next); /* item borrowed */
            Py_SETREF(obj, next);
            if (r <= 0) {
                break;
            }
        }
    }
    else if (lookup_attr(mod, name, &obj) < 0) {
        goto done;
    }
    if (obj == NULL && !PyErr_Occurred()) {
        PyErr_Format(PyExc_AttributeError, "Can't get attribute %R on %R", name, mod);
    }
#endif
done:
    Py_XDECREF(sep);
    Py_XDECREF(parts);
    return obj;
}

PyObject *
fj_default_find_class(fj_state *st, int proto, int fix_imports, PyObject *module, PyObject *name)
{
    PyObject *mod = NULL, *res = NULL;
    if (PySys_Audit("pickle.find_class", "OO", module, name) < 0) {
        return NULL;
    }
    Py_INCREF(module);
    Py_INCREF(name);
    if (proto < 3 && fix_imports) {
        PyObject *key = PyTuple_Pack(2, module, name);
        if (key == NULL) {
            goto done;
        }
        PyObject *item = PyDict_GetItemWithError(st->up.name_mapping, key); /* borrowed */
        Py_DECREF(key);
        if (item != NULL) {
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
                !PyUnicode_Check(PyTuple_GET_ITEM(item, 0)) || !PyUnicode_Check(PyTuple_GET_ITEM(item, 1))) {
                PyErr_SetString(PyExc_RuntimeError, "_compat_pickle.NAME_MAPPING values should be 2-tuples of str");
                goto done;
            }
            Py_SETREF(module, Py_NewRef(PyTuple_GET_ITEM(item, 0)));
            Py_SETREF(name, Py_NewRef(PyTuple_GET_ITEM(item, 1)));
        }
        else if (PyErr_Occurred()) {
            goto done;
        }
        else {
            item = PyDict_GetItemWithError(st->up.import_mapping, module);
            if (item != NULL) {
                if (!PyUnicode_Check(item)) {
                    PyErr_SetString(PyExc_RuntimeError, "_compat_pickle.IMPORT_MAPPING values should be str");
                    goto done;
                }
                Py_SETREF(module, Py_NewRef(item));
            }
            else if (PyErr_Occurred()) {
                goto done;
            }
        }
    }
    mod = PyImport_GetModule(module);
    if (mod == NULL) {
        if (PyErr_Occurred()) {
            goto done;
        }
        PyObject *top = PyImport_ImportModuleLevelObject(module, NULL, NULL, NULL, 0);
        if (top == NULL) {
            goto done;
        }
        Py_DECREF(top);
        mod = PyImport_GetModule(module);
        if (mod == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_KeyError, "%R", module);
            }
            goto done;
        }
    }
    res = get_global_attr(mod, module, name, proto);
done:
    Py_XDECREF(mod);
    Py_DECREF(module);
    Py_DECREF(name);
    return res;
}

static const char *const wrapper_modules[] = {
    "joblib.numpy_pickle", "sklearn.externals.joblib.numpy_pickle", "sklearn.externals._joblib.numpy_pickle",
    "joblib.numpy_pickle_compat", NULL,
};

/* In joblib mode: the placeholder for one of joblib's wrapper globals, else NULL (no error). */
static PyObject *
joblib_placeholder(fj_up *u, PyObject *module, PyObject *name)
{
    const char *m = PyUnicode_AsUTF8(module);
    const char *n = PyUnicode_AsUTF8(name);
    if (m == NULL || n == NULL) {
        PyErr_Clear();
        return NULL;
    }
    int known = 0;
    for (int i = 0; wrapper_modules[i] != NULL; i++) {
        if (strcmp(m, wrapper_modules[i]) == 0) {
            known = 1;
        }
    }
    if (!known) {
        return NULL;
    }
    if (strcmp(n, "NumpyArrayWrapper") == 0) {
        return u->st->up.NumpyArrayWrapper;
    }
    if (strcmp(n, "NDArrayWrapper") == 0) {
        return u->st->up.NDArrayWrapper;
    }
    if (strcmp(n, "ZNDArrayWrapper") == 0) {
        return u->st->up.ZNDArrayWrapper;
    }
    return NULL;
}

PyObject *
fj_up_find_class(fj_up *u, PyObject *module, PyObject *name)
{
    if (u->joblib) {
        PyObject *ph = joblib_placeholder(u, module, name); /* borrowed */
        if (ph != NULL) {
            /* The policy still sees the global (it may refuse it by raising); the wrapper itself
             * is always our placeholder, so joblib need not be importable. */
            if (u->find_class != NULL) {
                PyObject *r = PyObject_CallFunctionObjArgs(u->find_class, module, name, NULL);
                if (r == NULL) {
                    return NULL;
                }
                Py_DECREF(r);
            }
            else if (PySys_Audit("pickle.find_class", "OO", module, name) < 0) {
                return NULL;
            }
            if (u->restricted && fj_memo_set(u->seen, ph, 0) < 0) {
                return NULL;
            }
            return Py_NewRef(ph);
        }
    }
    PyObject *r;
    if (u->find_class != NULL) {
        r = PyObject_CallFunctionObjArgs(u->find_class, module, name, NULL);
    }
    else {
        r = fj_default_find_class(u->st, u->proto, u->fix_imports, module, name);
    }
    if (r != NULL && u->replace_globals != NULL) {
        /* after the policy accepted the name: its stand-in (e.g. torch.from_numpy for mmap) */
        PyObject *key = PyTuple_Pack(2, module, name), *alt = NULL; /* alt borrowed */
        if (key == NULL || ((alt = PyDict_GetItemWithError(u->replace_globals, key)) == NULL &&
                            PyErr_Occurred())) {
            Py_CLEAR(r);
        }
        else if (alt != NULL) {
            Py_SETREF(r, Py_NewRef(alt));
        }
        Py_XDECREF(key);
    }
    /* remember what the policy handed out: BUILD may not give it state */
    if (r != NULL && u->find_class != NULL && u->restricted && fj_memo_set(u->seen, r, 0) < 0) {
        Py_CLEAR(r);
    }
    return r;
}

/* Restricted loading: may BUILD give state to `inst` (borrowed)? The policy's check_build first
 * (its own exception type), then the built-in rule. 0 / -1. */
static int
check_build_target(fj_up *u, PyObject *inst)
{
    if (u->check_build != NULL) {
        PyObject *r = PyObject_CallOneArg(u->check_build, inst);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    PyTypeObject *tp = Py_TYPE(inst);
    const char *what = NULL;
    if (PyType_Check(inst)) {
        what = "class";
    }
    else if (PyModule_Check(inst)) {
        what = "module";
    }
    else if (PyFunction_Check(inst) || PyCFunction_Check(inst) || PyMethod_Check(inst) ||
             PyInstanceMethod_Check(inst) || PyCode_Check(inst)) {
        what = "function";
    }
    else if (tp->tp_descr_get != NULL) {
        what = "descriptor";
    }
    else if (u->seen != NULL && fj_memo_get(u->seen, inst) != NULL) {
        what = "global or an object shared outside this load";
    }
    if (what == NULL) {
        return 0;
    }
    if (PyType_Check(inst)) {
        PyErr_Format(u->st->UnpicklingError,
                     "refused BUILD on the class %.200s: state may only be given to objects created by this "
                     "load, not to globals (offset %lld)",
                     ((PyTypeObject *)inst)->tp_name, (long long)fj_source_tell(u->src) - 1);
    }
    else {
        PyErr_Format(u->st->UnpicklingError,
                     "refused BUILD on a %.200s object (a %s): state may only be given to objects created by "
                     "this load, not to globals (offset %lld)",
                     tp->tp_name, what, (long long)fj_source_tell(u->src) - 1);
    }
    return -1;
}


/* ---------------------------------------------------------------------------------------------
 * Restricted loading: what the stream may call and mutate.
 *
 * `seen` holds every object this load did not create: what find_class handed out, and what a
 * call returned while something else also held a reference to it (a singleton, a cached or
 * module-level object). Such objects may be passed around and called, but no opcode may change
 * them (BUILD, SETITEM(S), APPEND(S), ADDITEMS). Only objects in `seen` may be called: a callable
 * that a call returned fresh (a bound method, a partial) is not a global that passed the policy. */

static int
refuse_not_created(fj_up *u, const char *op, PyObject *obj)
{
    PyErr_Format(u->st->UnpicklingError,
                 "refused %s on a %.200s object that this load did not create (a global, or an object "
                 "shared with the rest of the process) (offset %lld)",
                 op, Py_TYPE(obj)->tp_name, (long long)fj_source_tell(u->src) - 1);
    return -1;
}

/* collections.deque or a subclass (APPENDS targets under a policy: deques pickle their items so). */
static int
is_deque(PyObject *o)
{
    for (PyTypeObject *t = Py_TYPE(o); t != NULL; t = t->tp_base) {
        if (strcmp(t->tp_name, "collections.deque") == 0) {
            return 1;
        }
    }
    return 0;
}

static int guard_unshared(fj_up *u, const char *op, PyObject *obj, Py_ssize_t self_refs);

/* References to `inst` held directly by its BUILD state (the state itself, a (dict, slots) pair,
 * and their values): an object whose attribute is itself. */
static Py_ssize_t
state_self_refs(PyObject *inst, PyObject *state)
{
    Py_ssize_t n = state == inst;
    PyObject *parts[2] = {state, NULL};
    if (PyTuple_Check(state) && PyTuple_GET_SIZE(state) == 2) {
        parts[0] = PyTuple_GET_ITEM(state, 0);
        parts[1] = PyTuple_GET_ITEM(state, 1);
        n += (parts[0] == inst) + (parts[1] == inst);
        if (parts[1] == parts[0]) { /* one dict given twice holds its references once */
            parts[1] = NULL;
        }
    }
    for (int p = 0; p < 2; p++) {
        if (parts[p] != NULL && PyDict_Check(parts[p])) {
            Py_ssize_t pos = 0;
            PyObject *k, *v;
            while (PyDict_Next(parts[p], &pos, &k, &v)) {
                n += v == inst;
            }
        }
    }
    return n;
}

/* How many of the stack items from k up are `target` itself (a container given itself). */
static Py_ssize_t
self_refs_on_stack(fj_up *u, PyObject *target, Py_ssize_t k)
{
    Py_ssize_t n = 0;
    for (Py_ssize_t i = k; i < u->sp; i++) {
        n += u->stack[i] == target;
    }
    return n;
}

/* May the opcode `op` change `target` (borrowed)? self_refs: references to it among the items
 * being added (a container given itself). 0 / -1. */
static inline int
guard_mutation(fj_up *u, const char *op, PyObject *target, Py_ssize_t self_refs)
{
    if (u->restricted && u->seen != NULL && fj_memo_get(u->seen, target) != NULL) {
        return refuse_not_created(u, op, target);
    }
    if (u->restricted && guard_unshared(u, op, target, self_refs) < 0) {
        return -1;
    }
    return 0;
}

/* Before a call of `func` with `args` (a tuple) and `kw` (dict or NULL) under a policy. */
static int
guard_call(fj_up *u, PyObject *func, PyObject *args, PyObject *kw)
{
    if (u->seen == NULL || fj_memo_get(u->seen, func) == NULL) {
        PyErr_Format(u->st->UnpicklingError,
                     "refused call of a %.200s object: under trusted=, only globals that passed the "
                     "policy may be called (offset %lld)",
                     Py_TYPE(func)->tp_name, (long long)fj_source_tell(u->src) - 1);
        return -1;
    }
    if (u->pol != NULL && u->pol->before_call != NULL) {
        if (u->pol->budget != NULL) {
            fj_budget_set_read(u->pol->budget, fj_source_tell(u->src));
        }
        PyObject *r = PyObject_CallFunctionObjArgs(u->pol->before_call, func, args, kw ? kw : Py_None, NULL);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    return 0;
}

/* Whether the policy's check_object has anything to look at in `o`: not for the exact builtin
 * data types and NumPy arrays, which carry no instance attributes, are no pandas, NumPy random or
 * dtype object and are not callable (its checks of them all pass: a Python call saved for each
 * bytearray(), slice() or _reconstruct() a file makes). */
static inline int
policy_checks(PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    return !(o == Py_None || t == &PyUnicode_Type || t == &PyLong_Type || t == &PyFloat_Type ||
             t == &PyBool_Type || t == &PyComplex_Type || t == &PyBytes_Type ||
             t == &PyByteArray_Type || t == &PySlice_Type || t == &PyTuple_Type ||
             t == &PyList_Type || t == &PyDict_Type || t == &PySet_Type ||
             t == &PyFrozenSet_Type || t == &PyArray_Type);
}

/* After a call returned `res` (borrowed; the caller holds the only reference it took). */
static int
guard_result(fj_up *u, PyObject *res)
{
    int shared = Py_REFCNT(res) > 1;
    if (shared && fj_memo_set(u->seen, res, 1) < 0) {
        return -1;
    }
    if (u->pol != NULL && u->pol->check_object != NULL && policy_checks(res)) {
        PyObject *r = PyObject_CallFunctionObjArgs(u->pol->check_object, res, shared ? Py_True : Py_False, NULL);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    return 0;
}

/* Hash flooding: count, per container and full hash value, the distinct keys this load's
 * opcodes insert into dicts and sets. Distinct keys sharing one hash make every insert and lookup
 * in that container walk all of them (quadratic time); ints, floats, tuples of them and the like
 * have hashes a file can choose (str and bytes hashes are randomised: not counted). More than
 * FLOOD_MAX keys on one hash in one container is refused. */
#define FLOOD_MAX 64

/* A tuple key is hashed (and compared) element by element every time it is used, nested tuples
 * included, and nothing is cached: a tuple whose two items are the tuple below, 28 deep, is a
 * few hundred bytes and 2**28 elements to hash. An insert also compares the key with every key
 * of its hash already in the container: 64 equal-hash 100,000-element tuple keys (equal but for
 * their last item) are 200M element compares. Under a policy a key may expand to at most
 * KEY_MAX elements (fj_key_size: tuples, frozensets), and the elements a load's inserts may walk,
 * each key's size times one plus the keys of its hash already there, are at most KEY_WORK_MAX. */
#define KEY_MAX 100000
#define KEY_WORK_MAX ((int64_t)64 << 20)

/* one counter per (container, hash): mix the container's address into the hash */
static inline Py_hash_t
flood_hash(PyObject *container, Py_hash_t kh)
{
    return (Py_hash_t)((size_t)kh ^ ((size_t)container * 0xD6E8FEB86659FD93ull));
}

/* Distinct keys of mixed hash h counted so far. */
static uint32_t
flood_seen(const fj_policy *pol, Py_hash_t h)
{
    if (pol->hmask == 0) {
        return 0;
    }
    size_t j = fj_table_slot((uint64_t)h, pol->hmask);
    while (pol->hcounts[j] != 0) {
        if (pol->hkeys[j] == h) {
            return pol->hcounts[j];
        }
        j = (j + 1) & pol->hmask;
    }
    return 0;
}

static int
key_work(fj_up *u, PyObject *container, PyObject *key)
{
    if (u->pol == NULL) {
        return 0;
    }
    Py_ssize_t n = fj_key_size(key, KEY_MAX);
    if (n <= 0) {
        return (int)n;
    }
    int64_t w = n;
    if (n <= KEY_MAX) {
        Py_hash_t kh = PyObject_Hash(key);
        if (kh == -1 && PyErr_Occurred()) {
            return -1;
        }
        w = (int64_t)n * (1 + (int64_t)flood_seen(u->pol, flood_hash(container, kh)));
    }
    u->pol->key_work += w;
    if (n > KEY_MAX || u->pol->key_work > KEY_WORK_MAX) {
        PyErr_Format(u->st->UnpicklingError,
                     "refused a tuple, frozenset or big-int key that expands to more than %d "
                     "elements, or keys whose inserts would hash and compare more than %lld "
                     "elements in all (each use walks every element) (offset %lld)",
                     KEY_MAX, (long long)KEY_WORK_MAX, (long long)fj_source_tell(u->src) - 1);
        return -1;
    }
    return 0;
}

static int
flood_count(fj_up *u, PyObject *container, PyObject *key)
{
    fj_policy *pol = u->pol;
    if (PyUnicode_CheckExact(key) || PyBytes_CheckExact(key)) {
        return 0;
    }
    Py_hash_t kh = PyObject_Hash(key);
    if (kh == -1 && PyErr_Occurred()) {
        return -1;
    }
    Py_hash_t h = flood_hash(container, kh);
    if (pol->hused * 2 >= pol->hmask) { /* grow (also the first time: hmask 0) */
        size_t ncap = pol->hmask ? (pol->hmask + 1) * 2 : 1024;
        Py_hash_t *nk = PyMem_Calloc(ncap, sizeof(Py_hash_t));
        uint32_t *nc = PyMem_Calloc(ncap, sizeof(uint32_t));
        if (nk == NULL || nc == NULL) {
            PyMem_Free(nk);
            PyMem_Free(nc);
            PyErr_NoMemory();
            return -1;
        }
        for (size_t i = 0; pol->hmask && i <= pol->hmask; i++) {
            if (pol->hcounts[i] == 0) {
                continue;
            }
            size_t j = fj_table_slot((uint64_t)pol->hkeys[i], ncap - 1); /* as lookups place it */
            while (nc[j] != 0) {
                j = (j + 1) & (ncap - 1);
            }
            nk[j] = pol->hkeys[i];
            nc[j] = pol->hcounts[i];
        }
        PyMem_Free(pol->hkeys);
        PyMem_Free(pol->hcounts);
        pol->hkeys = nk;
        pol->hcounts = nc;
        pol->hmask = ncap - 1;
    }
    size_t j = fj_table_slot((uint64_t)h, pol->hmask);
    while (pol->hcounts[j] != 0 && pol->hkeys[j] != h) {
        j = (j + 1) & pol->hmask;
    }
    if (pol->hcounts[j] == 0) {
        pol->hkeys[j] = h;
        pol->hused++;
    }
    if (++pol->hcounts[j] > FLOOD_MAX) {
        PyErr_Format(u->st->UnpicklingError,
                     "refused: more than %d distinct dict keys or set items share one hash value "
                     "(hash flooding: inserting them would take quadratic time) (offset %lld)",
                     FLOOD_MAX, (long long)fj_source_tell(u->src) - 1);
        return -1;
    }
    return 0;
}

/* Names a file may never set on an object: dunders (__class__, __array_interface__, __dict__...). */
static inline int
is_dunder(PyObject *k)
{
    if (!PyUnicode_Check(k)) {
        return 0;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(k);
    return n >= 4 && PyUnicode_READ_CHAR(k, 0) == '_' && PyUnicode_READ_CHAR(k, 1) == '_' &&
           PyUnicode_READ_CHAR(k, n - 1) == '_' && PyUnicode_READ_CHAR(k, n - 2) == '_';
}

static int
refuse_dunder_keys(fj_up *u, PyObject *d)
{
    if (d == NULL || !PyDict_Check(d)) {
        return 0;
    }
    Py_ssize_t i = 0;
    PyObject *k, *v;
    while (PyDict_Next(d, &i, &k, &v)) {
        if (is_dunder(k)) {
            PyErr_Format(u->st->UnpicklingError,
                         "refused BUILD: a state may not set the special attribute %R under trusted= "
                         "(offset %lld)", k, (long long)fj_source_tell(u->src) - 1);
            return -1;
        }
    }
    return 0;
}

/* An object changes in place (BUILD, SETITEM(S), APPEND(S), ADDITEMS) and whatever already
 * refers to it is not told: a Categorical checked against its categories, a structured dtype
 * against its fields, a DataFrame against its index, a class-level cache keyed by it. Under a
 * policy, an object may only change while nothing but the unpickler's stack (one slot: DUP is
 * refused) and one memo slot refer to it. Legitimate streams fill each object right after making
 * it, before anything else refers to it; only cyclic structures are refused. */
static int
guard_unshared(fj_up *u, const char *op, PyObject *obj, Py_ssize_t self_refs)
{
    if (Py_REFCNT(obj) - self_refs > 2) { /* (references from the object's own new items do not count) */
        PyErr_Format(u->st->UnpicklingError,
                     "refused %s on a %.200s that is already referenced elsewhere (%zd references): "
                     "under trusted=, objects change only before anything refers to them (offset %lld)",
                     op, Py_TYPE(obj)->tp_name, (Py_ssize_t)Py_REFCNT(obj), (long long)fj_source_tell(u->src) - 1);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Opcode helpers */

static PyObject *
decode_string(fj_up *u, const char *p, Py_ssize_t n)
{
    if (strcmp(u->encoding, "bytes") == 0) {
        return PyBytes_FromStringAndSize(p, n);
    }
    return PyUnicode_Decode(p, n, u->encoding, u->errors);
}

/* readline without the trailing newline (and optional \r? no: pickle keeps it). */
static const char *
read_line(fj_up *u, Py_ssize_t *len)
{
    const char *p = fj_source_readline(u->src, len);
    if (p != NULL) {
        *len -= 1;
    }
    return p;
}

/* A NUL-terminated copy of a line for the C number parsers. */
static char *
line_copy(const char *p, Py_ssize_t n)
{
    char *s = PyMem_Malloc((size_t)n + 1);
    if (s == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    return s;
}

/* A plain decimal literal: optional sign, then 1-18 digits with no leading zero (except "0"),
 * and nothing else. 1 with *out set, or 0 when the text is anything else (the caller falls back to
 * PyLong_FromString, whose rules then apply unchanged). */
static int
parse_small_decimal(const char *p, Py_ssize_t n, long long *out)
{
    int neg = 0;
    if (n > 0 && (p[0] == '-' || p[0] == '+')) {
        neg = p[0] == '-';
        p++;
        n--;
    }
    if (n < 1 || n > 18 || (n > 1 && p[0] == '0')) {
        return 0;
    }
    long long v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }
        v = v * 10 + (p[i] - '0');
    }
    *out = neg ? -v : v;
    return 1;
}

/* The index of a text PUT / GET line. 0 / -1 (ValueError, or the caller's own for negatives). */
static int
parse_memo_index(const char *l, Py_ssize_t n, long long *idx)
{
    if (parse_small_decimal(l, n, idx)) {
        return 0;
    }
    char *cs = line_copy(l, n);
    if (cs == NULL) {
        return -1;
    }
    char *endp;
    PyObject *iv = PyLong_FromString(cs, &endp, 10);
    PyMem_Free(cs);
    if (iv == NULL) {
        return -1;
    }
    *idx = PyLong_AsLongLong(iv);
    Py_DECREF(iv);
    if (*idx == -1 && PyErr_Occurred()) {
        return -1;
    }
    return 0;
}

static PyObject *
load_int_text(fj_up *u, int is_long)
{
    Py_ssize_t n;
    const char *p = read_line(u, &n);
    if (p == NULL) {
        return NULL;
    }
    if (!is_long && n == 2 && p[0] == '0' && (p[1] == '0' || p[1] == '1')) {
        return Py_NewRef(p[1] == '1' ? Py_True : Py_False);
    }
    if (is_long && n > 0 && p[n - 1] == 'L') {
        n--;
    }
    long long small;
    if (parse_small_decimal(p, n, &small)) {
        return PyLong_FromLongLong(small);
    }
    char *s = line_copy(p, n);
    if (s == NULL) {
        return NULL;
    }
    char *end;
    PyObject *v = PyLong_FromString(s, &end, FJ_PICKLE_TEXT_INT_BASE); /* pyver.h */
    if (v != NULL && *end != '\0' && *end != '\r' && *end != ' ') {
        Py_CLEAR(v);
        PyErr_Format(u->st->UnpicklingError, "invalid integer literal in pickle: %.40s", s);
    }
    PyMem_Free(s);
    return v;
}

static PyObject *
load_float_text(fj_up *u)
{
    Py_ssize_t n;
    const char *p = read_line(u, &n);
    if (p == NULL) {
        return NULL;
    }
    PyObject *b = PyBytes_FromStringAndSize(p, n);
    if (b == NULL) {
        return NULL;
    }
    PyObject *v = PyFloat_FromString(b);
    Py_DECREF(b);
    return v;
}

static PyObject *
load_string_text(fj_up *u)
{
    Py_ssize_t n;
    const char *p = read_line(u, &n);
    if (p == NULL) {
        return NULL;
    }
    if (n < 2 || p[0] != p[n - 1] || (p[0] != '"' && p[0] != '\'')) {
        raise_up(u, "the STRING opcode argument must be quoted");
        return NULL;
    }
    PyObject *b = PyBytes_DecodeEscape(p + 1, n - 2, NULL, 0, NULL);
    if (b == NULL) {
        return NULL;
    }
    if (strcmp(u->encoding, "bytes") == 0) {
        return b;
    }
    PyObject *s = PyUnicode_Decode(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), u->encoding, u->errors);
    Py_DECREF(b);
    return s;
}

/* Global from two text lines (GLOBAL, INST). New reference. */
static PyObject *
load_global_lines(fj_up *u)
{
    Py_ssize_t n;
    PyObject *module = NULL, *name = NULL, *res = NULL;
    const char *p = read_line(u, &n);
    if (p == NULL || (module = PyUnicode_DecodeUTF8(p, n, "strict")) == NULL) {
        goto done;
    }
    p = read_line(u, &n);
    if (p == NULL || (name = PyUnicode_DecodeUTF8(p, n, "strict")) == NULL) {
        goto done;
    }
    res = fj_up_find_class(u, module, name);
done:
    Py_XDECREF(module);
    Py_XDECREF(name);
    return res;
}

/* pickle's _instantiate for INST / OBJ. */
static PyObject *
instantiate(fj_up *u, PyObject *cls, PyObject *args)
{
    int use_call = PyTuple_GET_SIZE(args) > 0 || !PyType_Check(cls);
    if (!use_call) {
        int has = fj_has_attr_string(cls, "__getinitargs__");
        if (has < 0) {
            return NULL;
        }
        use_call = has;
    }
    if (u->restricted && guard_call(u, cls, args, NULL) < 0) {
        return NULL;
    }
    PyObject *res = use_call ? PyObject_Call(cls, args, NULL)
                             : PyObject_CallMethodOneArg(cls, u->st->up.str_new, cls);
    if (res != NULL && u->restricted && guard_result(u, res) < 0) {
        Py_CLEAR(res);
    }
    return res;
}

static int
do_setitems(fj_up *u, PyObject *d, Py_ssize_t k)
{
    Py_ssize_t n = u->sp - k;
    if (n % 2 != 0) {
        return raise_up(u, "odd number of items for SETITEMS");
    }
    if (guard_mutation(u, "SETITEMS", d, u->restricted ? self_refs_on_stack(u, d, k) : 0) < 0) {
        return -1;
    }
    int exact = PyDict_CheckExact(d);
    int flood = u->restricted && u->pol != NULL;
    if (u->restricted && !PyDict_Check(d)) { /* no other type's __setitem__ on file data */
        PyErr_Format(u->st->UnpicklingError,
                     "refused SETITEMS on a %.200s object: under trusted=, only dicts take items "
                     "(offset %lld)", Py_TYPE(d)->tp_name, (long long)fj_source_tell(u->src) - 1);
        return -1;
    }
    for (Py_ssize_t i = k; i < u->sp; i += 2) {
        Py_ssize_t before = PyDict_Check(d) ? PyDict_GET_SIZE(d) : 0;
        if (flood && key_work(u, d, u->stack[i]) < 0) {
            return -1;
        }
        int r = exact ? PyDict_SetItem(d, u->stack[i], u->stack[i + 1])
                      : PyObject_SetItem(d, u->stack[i], u->stack[i + 1]);
        if (r < 0 || (flood && PyDict_GET_SIZE(d) > before && flood_count(u, d, u->stack[i]) < 0)) {
            return -1;
        }
    }
    drop_to(u, k);
    return 0;
}

static int
do_appends(fj_up *u, PyObject *lst, Py_ssize_t k)
{
    if (guard_mutation(u, "APPENDS", lst, u->restricted ? self_refs_on_stack(u, lst, k) : 0) < 0) {
        return -1;
    }
    if (u->restricted && !PyList_Check(lst) && !is_deque(lst)) {
        PyErr_Format(u->st->UnpicklingError,
                     "refused APPENDS on a %.200s object: under trusted=, only lists and deques take "
                     "items (offset %lld)", Py_TYPE(lst)->tp_name, (long long)fj_source_tell(u->src) - 1);
        return -1;
    }
    if (PyList_CheckExact(lst)) {
        if (u->sp - k <= 4) {
            for (Py_ssize_t i = k; i < u->sp; i++) {
                if (PyList_Append(lst, u->stack[i]) < 0) {
                    return -1;
                }
            }
            drop_to(u, k);
            return 0;
        }
        /* one resize for the whole batch */
        PyObject *batch = take_list(u, k);
        if (batch == NULL) {
            return -1;
        }
        Py_ssize_t len = PyList_GET_SIZE(lst);
        int r = PyList_SetSlice(lst, len, len, batch);
        Py_DECREF(batch);
        return r;
    }
    PyObject *items = take_list(u, k);
    if (items == NULL) {
        return -1;
    }
    PyObject *ext = PyObject_GetAttr(lst, u->st->up.str_extend);
    int r = 0;
    if (ext != NULL) {
        PyObject *res = PyObject_CallOneArg(ext, items);
        Py_DECREF(ext);
        r = res == NULL ? -1 : 0;
        Py_XDECREF(res);
    }
    else if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        PyObject *app = PyObject_GetAttr(lst, u->st->up.str_append);
        if (app == NULL) {
            r = -1;
        }
        for (Py_ssize_t i = 0; r == 0 && i < PyList_GET_SIZE(items); i++) {
            PyObject *res = PyObject_CallOneArg(app, PyList_GET_ITEM(items, i));
            if (res == NULL) {
                r = -1;
            }
            Py_XDECREF(res);
        }
        Py_XDECREF(app);
    }
    else {
        r = -1;
    }
    Py_DECREF(items);
    return r;
}

static int
do_additems(fj_up *u, PyObject *set, Py_ssize_t k)
{
    if (guard_mutation(u, "ADDITEMS", set, u->restricted ? self_refs_on_stack(u, set, k) : 0) < 0) {
        return -1;
    }
    if (u->restricted && !PyAnySet_Check(set)) {
        PyErr_Format(u->st->UnpicklingError,
                     "refused ADDITEMS on a %.200s object: under trusted=, only sets take items "
                     "(offset %lld)", Py_TYPE(set)->tp_name, (long long)fj_source_tell(u->src) - 1);
        return -1;
    }
    int flood = u->restricted && u->pol != NULL;
    if (PySet_Check(set)) {
        for (Py_ssize_t i = k; i < u->sp; i++) {
            Py_ssize_t before = PySet_GET_SIZE(set);
            if ((flood && key_work(u, set, u->stack[i]) < 0) || PySet_Add(set, u->stack[i]) < 0 ||
                (flood && PySet_GET_SIZE(set) > before && flood_count(u, set, u->stack[i]) < 0)) {
                return -1;
            }
        }
        drop_to(u, k);
        return 0;
    }
    PyObject *add = PyObject_GetAttr(set, u->st->up.str_add);
    if (add == NULL) {
        return -1;
    }
    for (Py_ssize_t i = k; i < u->sp; i++) {
        Py_ssize_t before = PyAnySet_Check(set) ? PySet_GET_SIZE(set) : 0;
        PyObject *res = PyObject_CallOneArg(add, u->stack[i]);
        if (res == NULL ||
            (flood && PyAnySet_Check(set) && PySet_GET_SIZE(set) > before && flood_count(u, set, u->stack[i]) < 0)) {
            Py_XDECREF(res);
            Py_DECREF(add);
            return -1;
        }
        Py_DECREF(res);
    }
    Py_DECREF(add);
    drop_to(u, k);
    return 0;
}

/* ndarray.__setstate__ (NumPy 2.4 and earlier) reads one list item per element of an object
 * array without checking the list's length: a state whose list is shorter than the shape crashes
 * the process. Refuse such a state before NumPy sees it. `state` is ndarray's
 * (shape, dtype, is_fortran, data), with a version in front (5 items), or MaskedArray's 7-tuple
 * (version, shape, dtype, is_fortran, data, mask, fill_value). 0 = fine or not ours to judge. */
static int
check_ndarray_state(fj_up *u, PyObject *state)
{
    if (!PyTuple_Check(state)) {
        return 0;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(state), off = n == 4 ? 0 : (n == 5 || n == 7) ? 1 : -1;
    if (off < 0) {
        return 0;
    }
    PyObject *shape = PyTuple_GET_ITEM(state, off);
    PyObject *descr = PyTuple_GET_ITEM(state, off + 1);
    PyObject *data = PyTuple_GET_ITEM(state, off + 3);
    if (!PyTuple_Check(shape) || !PyArray_DescrCheck(descr) || !PyList_Check(data) ||
        !PyDataType_FLAGCHK((PyArray_Descr *)descr, NPY_LIST_PICKLE)) {
        return 0;
    }
    Py_ssize_t count = 1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(shape); i++) {
        PyObject *d = PyTuple_GET_ITEM(shape, i);
        if (!PyLong_Check(d)) {
            return 0; /* NumPy rejects it itself */
        }
        Py_ssize_t v = PyLong_AsSsize_t(d);
        if (v < 0) {
            PyErr_Clear();
            return 0;
        }
        if (v == 0) {
            return 0;
        }
        if (count > PY_SSIZE_T_MAX / v) {
            count = PY_SSIZE_T_MAX; /* more elements than any list can hold */
        }
        else {
            count *= v;
        }
    }
    if (PyList_GET_SIZE(data) < count) {
        return raise_up(u, "invalid ndarray state: %zd objects for an array of %zd elements",
                        PyList_GET_SIZE(data), count);
    }
    return 0;
}

/* dtype.__setstate__ (NumPy 2.4 and earlier) uses the `fields` item as a dict without checking
 * its type: (3, '|', None, -1, -1, 63) on a copied dtype segfaults (stdlib pickle too). Refuse
 * a state whose fields item is neither None nor a dict (NumPy checks the other items itself),
 * and a datetime/timedelta state without its metadata item.
 * Where it sits, by length: 9, 8, 7 = (version, endian, subarray, names, fields, ...);
 * 6 = (version, endian, subarray, fields, elsize, alignment); 5 = (endian, subarray, fields,
 * elsize, alignment). 0 = fine or not ours to judge. */
static int
check_descr_state(fj_up *u, PyArray_Descr *descr, PyObject *state)
{
    if (!PyTuple_Check(state)) {
        return 0;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(state);
    /* datetime64 / timedelta64 read their unit from the 9th item (metadata) unchecked: any
     * shorter state segfaults NumPy. */
    if ((descr->type_num == NPY_DATETIME || descr->type_num == NPY_TIMEDELTA) && n != 9) {
        return raise_up(u, "invalid dtype state: a datetime64/timedelta64 state needs its unit "
                           "(9 items, got %zd)", n);
    }
    Py_ssize_t at = (n >= 7 && n <= 9) ? 4 : n == 6 ? 3 : n == 5 ? 2 : -1;
    if (at < 0) {
        return 0; /* NumPy rejects other lengths itself */
    }
    PyObject *fields = PyTuple_GET_ITEM(state, at);
    if (fields != Py_None && !PyDict_Check(fields)) {
        return raise_up(u, "invalid dtype state: fields is a %.100s, not a dict",
                        Py_TYPE(fields)->tp_name);
    }
    return 0;
}

/* What one item of a BUILD's dict state is charged under a policy (a dict entry, and the time of
 * setting it, ~200 ns: a budget of 1 GiB is 2M items). */
#define BUILD_ITEM_CHARGE 512

/* BUILD with stdlib semantics; `state` borrowed, `inst` borrowed. */

static int
do_build(fj_up *u, PyObject *inst, PyObject *state)
{
    PyObject *setstate;
    if (u->restricted) {
        if (refuse_dunder_keys(u, state) < 0) {
            return -1;
        }
        /* a state shared through the memo is copied into every object BUILD gives it to: each
         * use is charged for the items it copies (8 stream bytes a BUILD) */
        Py_ssize_t items = PyDict_Check(state) ? PyDict_GET_SIZE(state) : 0;
        if (PyTuple_Check(state) && PyTuple_GET_SIZE(state) == 2) {
            for (int t = 0; t < 2; t++) {
                PyObject *part = PyTuple_GET_ITEM(state, t);
                items += PyDict_Check(part) ? PyDict_GET_SIZE(part) : 0;
            }
        }
        if (items >= 16 && fj_up_charge(u, (int64_t)items * BUILD_ITEM_CHARGE) < 0) {
            return -1;
        }
        if (PyTuple_Check(state) && PyTuple_GET_SIZE(state) == 2 &&
            (refuse_dunder_keys(u, PyTuple_GET_ITEM(state, 0)) < 0 ||
             refuse_dunder_keys(u, PyTuple_GET_ITEM(state, 1)) < 0)) {
            return -1;
        }
    }
    if (PyArray_Check(inst) && check_ndarray_state(u, state) < 0) {
        return -1;
    }
    if (PyArray_DescrCheck(inst) && check_descr_state(u, (PyArray_Descr *)inst, state) < 0) {
        return -1;
    }
    int found = lookup_attr(inst, u->st->up.str_setstate, &setstate);
    if (found < 0) {
        return -1;
    }
    if (found) {
        PyObject *r = PyObject_CallOneArg(setstate, state);
        Py_DECREF(setstate);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
        return 0;
    }
    PyObject *slotstate = NULL;
    if (PyTuple_Check(state) && PyTuple_GET_SIZE(state) == 2) {
        slotstate = PyTuple_GET_ITEM(state, 1);
        state = PyTuple_GET_ITEM(state, 0);
    }
    if (state != Py_None) {
        if (!PyDict_Check(state)) {
            return raise_up(u, "state is not a dictionary");
        }
        if (PyDict_GET_SIZE(state) > 0) {
            PyObject *dict = PyObject_GetAttr(inst, u->st->up.str_dict);
            if (dict == NULL) {
                return -1;
            }
            Py_ssize_t i = 0;
            PyObject *k, *v;
            while (PyDict_Next(state, &i, &k, &v)) {
                int r;
                if (PyUnicode_CheckExact(k)) {
                    Py_INCREF(k);
                    PyUnicode_InternInPlace(&k);
                    r = PyObject_SetItem(dict, k, v);
                    Py_DECREF(k);
                }
                else {
                    r = PyObject_SetItem(dict, k, v);
                }
                if (r < 0) {
                    Py_DECREF(dict);
                    return -1;
                }
            }
            Py_DECREF(dict);
        }
    }
    if (slotstate != NULL && slotstate != Py_None) {
        if (!PyDict_Check(slotstate)) {
            return raise_up(u, "slot state is not a dictionary");
        }
        Py_ssize_t i = 0;
        PyObject *k, *v;
        while (PyDict_Next(slotstate, &i, &k, &v)) {
            if (PyObject_SetAttr(inst, k, v) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* EXT1/2/4. With a find_class of the caller's, copyreg's cache is neither read nor written: the
 * registered (module, name) goes through find_class on every use (a cache hit would skip the
 * policy, and a policy's answer, e.g. a shim, must not leak into unrestricted loads). */
static PyObject *
load_ext(fj_up *u, int32_t code)
{
    PyObject *key = PyLong_FromLong(code);
    PyObject *obj = NULL;
    int use_cache = u->find_class == NULL;
    if (key == NULL) {
        return NULL;
    }
    if (use_cache) {
        obj = PyDict_GetItemWithError(u->st->up.ext_cache, key);
        if (obj != NULL) {
            Py_INCREF(obj);
            goto done;
        }
        if (PyErr_Occurred()) {
            goto done;
        }
    }
    PyObject *pair = PyDict_GetItemWithError(u->st->up.ext_registry, key); /* borrowed */
    if (pair == NULL) {
        if (!PyErr_Occurred()) {
            if (code <= 0) {
                raise_up(u, "EXT specifies code <= 0");
            }
            else {
                PyErr_Format(PyExc_ValueError, "unregistered extension code %d", (int)code);
            }
        }
        goto done;
    }
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
        PyErr_Format(PyExc_ValueError, "_inverted_registry[%d] isn't a 2-tuple of strings", (int)code);
        goto done;
    }
    obj = fj_up_find_class(u, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1));
    if (obj != NULL && use_cache && PyDict_SetItem(u->st->up.ext_cache, key, obj) < 0) {
        Py_CLEAR(obj);
    }
done:
    Py_DECREF(key);
    return obj;
}

static PyObject *
call_persistent_load(fj_up *u, PyObject *pid /* stolen */)
{
    if (pid == NULL) {
        return NULL;
    }
    if (u->persistent_load == NULL) {
        Py_DECREF(pid);
        raise_up(u, "A load persistent id instruction was encountered, but no persistent_load function was specified.");
        return NULL;
    }
    PyObject *r = PyObject_CallOneArg(u->persistent_load, pid);
    Py_DECREF(pid);
    return r;
}

static PyObject *
long_from_bytes(const char *p, Py_ssize_t n)
{
    if (n == 0) {
        return PyLong_FromLong(0);
    }
    if (n <= 8) {
        uint64_t v = 0;
        for (Py_ssize_t i = n - 1; i >= 0; i--) {
            v = (v << 8) | (unsigned char)p[i];
        }
        if (n < 8 && ((unsigned char)p[n - 1] & 0x80)) {
            v |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        }
        if (n < 8 || !(v >> 63) || ((unsigned char)p[7] & 0x80)) {
            return PyLong_FromLongLong((long long)v);
        }
    }
    return _PyLong_FromByteArray((const unsigned char *)p, (size_t)n, 1, 1);
}

/* Bytes object of length n from the source (small: from the window). */
static inline PyObject *
read_bytes(fj_up *u, Py_ssize_t n)
{
    if (n >= ((Py_ssize_t)1 << 16) && fj_up_charge(u, n) < 0) {
        return NULL;
    }
    if (u->src->end - u->src->pos >= n) {
        PyObject *b = PyBytes_FromStringAndSize(u->src->buf + u->src->pos, n);
        u->src->pos += n;
        return b;
    }
    return fj_source_read_bytes(u->src, n);
}

/* UTF-8 (surrogatepass) -> str. Short pure-ASCII text (most keys and labels) is copied straight
 * into a new compact ASCII string; anything else (and 0/1 characters: the shared singletons) goes
 * through PyUnicode_DecodeUTF8. Same result either way. */
static inline PyObject *
decode_utf8(const char *p, Py_ssize_t n)
{
    if (n > 1 && n <= 64) {
        unsigned char acc = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            acc |= (unsigned char)p[i];
        }
        if (acc < 0x80) {
            PyObject *s = PyUnicode_New(n, 127);
            if (s != NULL) {
                memcpy(PyUnicode_1BYTE_DATA(s), p, (size_t)n);
            }
            return s;
        }
    }
    return PyUnicode_DecodeUTF8(p, n, "surrogatepass");
}

static PyObject *
read_unicode(fj_up *u, Py_ssize_t n)
{
    if (n >= ((Py_ssize_t)1 << 16) && fj_up_charge(u, 2 * n) < 0) {
        return NULL;
    }
    if (u->src->end - u->src->pos >= n) {
        PyObject *s = decode_utf8(u->src->buf + u->src->pos, n);
        u->src->pos += n;
        return s;
    }
    if (n <= FJ_SOURCE_TAKE_MAX || u->src->kind == FJ_SRC_MEM) {
        const char *p = fj_source_take(u->src, n);
        return p == NULL ? NULL : decode_utf8(p, n);
    }
    PyObject *b = fj_source_read_bytes(u->src, n);
    if (b == NULL) {
        return NULL;
    }
    PyObject *s = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(b), n, "surrogatepass");
    Py_DECREF(b);
    return s;
}

static int
check_size(fj_up *u, uint64_t n, const char *what)
{
    if (n > (uint64_t)PY_SSIZE_T_MAX) {
        return raise_up(u, "%s exceeds system's maximum size of %zd bytes", what, PY_SSIZE_T_MAX);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The opcode loop */

/* What the budget of a restricted load charges per opcode: about one small object's worth. */
#define FJ_OP_COST 64

#define TAKE(p, n)                                                                                   \
    do {                                                                                             \
        if (((p) = fj_source_take(s, (n))) == NULL)                                                  \
            goto error;                                                                              \
    } while (0)
#define PUSH(o)                                                                                      \
    do {                                                                                             \
        if (push(u, (o)) < 0)                                                                        \
            goto error;                                                                              \
    } while (0)
/* Push an owned reference held in a local variable: the variable is cleared first, since push()
 * consumes the reference even when it fails. */
#define PUSHV(v)                                                                                     \
    do {                                                                                             \
        PyObject *pushed_ = (v);                                                                     \
        (v) = NULL;                                                                                  \
        if (push(u, pushed_) < 0)                                                                    \
            goto error;                                                                              \
    } while (0)

/* A MEMOIZE right after a push (the pickler memoizes most strings and containers as it creates
 * them) is done here, saving a trip through the dispatch. Same effect as the MEMOIZE case. */
#define MEMOIZE_NEXT()                                                                               \
    do {                                                                                             \
        if (s->pos < s->end && (unsigned char)s->buf[s->pos] == OP_MEMOIZE) {                       \
            s->pos++;                                                                                \
            if (memo_put(u, (uint64_t)u->memo_count, u->stack[u->sp - 1]) < 0)                      \
                goto error;                                                                          \
        }                                                                                            \
    } while (0)

/* ---- provenance trailer (begin): a POP immediately followed by STOP hands its object to the
 * caller's list (see unpickler_impl.h). */
static int
take_trailer(fj_up *u)
{
    int r = 0;
    if (fj_source_tell(u->src) - 1 == u->trailer_at) {
        r = PyList_Append(u->trailer, u->trailer_pending);
    }
    Py_CLEAR(u->trailer_pending);
    return r;
}
/* ---- provenance trailer (end) */

/* Loop top inside a checked frame: the previous opcode must have ended inside it. 0 / -1. */
static int
check_frame(fj_up *u)
{
    int64_t pos = fj_source_tell(u->src);
    if (pos > u->frame_end) {
        raise_up(u, "pickle exhausted before end of frame");
        return -1;
    }
    if (pos == u->frame_end) {
        u->frame_end = -1;
    }
    return 0;
}

int
fj_up_leave_frame(fj_up *u)
{
    if (u->frame_end >= 0) {
        if (fj_source_tell(u->src) < u->frame_end) {
            raise_up(u, "array data inside a pickle frame (the frame must end before it)");
            return -1;
        }
        u->frame_end = -1;
    }
    return 0;
}

static PyObject *up_load_ops(fj_up *u);

/* The cyclic collector is off while a load runs (and back on after, if it was on): a load
 * makes objects that all stay alive, and each collection the allocations trigger would walk
 * them all again for nothing (a 1 MB file of 2,000 small DataFrames: 0.17 s to load with the
 * collector, 0.10 s without, measured with what the next allocations then collect). The
 * unreachable cycles a load can make (a hostile stream's, a failed load's) wait for the next
 * collection; under a policy the budget's per-opcode charge bounds them. */
PyObject *
fj_up_load(fj_up *u)
{
    int was_enabled = PyGC_Disable();
    PyObject *res = up_load_ops(u);
    if (was_enabled) {
        PyGC_Enable();
    }
    return res;
}

static PyObject *
up_load_ops(fj_up *u)
{
    fj_source *s = u->src;
    const char *p;
    PyObject *a = NULL, *b = NULL, *c = NULL, *res = NULL;
    Py_ssize_t k;
    int64_t start = fj_source_tell(s);
    /* the load's own stack base: nested loads share nothing but the source */

    for (;;) {
        /* restricted loads with a budget: a fixed cost per opcode (the objects opcodes create) */
        if (u->pol != NULL && u->pol->budget != NULL && (++u->ops & 1023) == 0 &&
            fj_budget_charge(u->pol->budget, 1024 * FJ_OP_COST) < 0) {
            goto error;
        }
        if (u->frame_end >= 0 && check_frame(u) < 0) {
            goto error;
        }
        int op = fj_source_getc(s);
        if (op < 0) {
            if (op == -2) {
                goto error;
            }
            /* stdlib raises EOFError whenever the input ends where an opcode should start */
            if (fj_source_tell(s) == start) {
                PyErr_SetString(PyExc_EOFError, "Ran out of input");
            }
            else {
                PyErr_Format(PyExc_EOFError, "Ran out of input: no STOP opcode before the end at offset %lld",
                             (long long)fj_source_tell(s));
            }
            goto error;
        }
        switch (op) {
        case OP_BININT1:
            TAKE(p, 1);
            PUSH(PyLong_FromLong((unsigned char)p[0]));
            break;
        case OP_BININT2:
            TAKE(p, 2);
            PUSH(PyLong_FromLong((unsigned char)p[0] | ((unsigned char)p[1] << 8)));
            break;
        case OP_BININT:
            TAKE(p, 4);
            PUSH(PyLong_FromLong((int32_t)rd_u32(p)));
            break;
        case OP_LONG1:
            TAKE(p, 1);
            k = (unsigned char)p[0];
            TAKE(p, k);
            PUSH(long_from_bytes(p, k));
            break;
        case OP_LONG4: {
            TAKE(p, 4);
            int32_t n = (int32_t)rd_u32(p);
            if (n < 0) {
                raise_up(u, "LONG pickle has negative byte count");
                goto error;
            }
            if (n > FJ_SOURCE_TAKE_MAX && s->kind != FJ_SRC_MEM) {
                PyObject *bb = fj_source_read_bytes(s, n);
                if (bb == NULL) {
                    goto error;
                }
                a = _PyLong_FromByteArray((const unsigned char *)PyBytes_AS_STRING(bb), (size_t)n, 1, 1);
                Py_DECREF(bb);
                PUSHV(a);
                a = NULL;
            }
            else {
                TAKE(p, n);
                PUSH(long_from_bytes(p, n));
            }
            break;
        }
        case OP_NONE:
            PUSH(Py_NewRef(Py_None));
            break;
        case OP_NEWTRUE:
            PUSH(Py_NewRef(Py_True));
            break;
        case OP_NEWFALSE:
            PUSH(Py_NewRef(Py_False));
            break;
        case OP_BINFLOAT:
            TAKE(p, 8);
            PUSH(PyFloat_FromDouble(PyFloat_Unpack8(p, 0)));
            break;
        case OP_SHORT_BINUNICODE:
            TAKE(p, 1);
            PUSH(read_unicode(u, (unsigned char)p[0]));
            MEMOIZE_NEXT();
            break;
        case OP_BINUNICODE:
            TAKE(p, 4);
            PUSH(read_unicode(u, (Py_ssize_t)rd_u32(p)));
            MEMOIZE_NEXT();
            break;
        case OP_BINUNICODE8: {
            TAKE(p, 8);
            uint64_t n = rd_u64(p);
            if (check_size(u, n, "BINUNICODE8") < 0) {
                goto error;
            }
            PUSH(read_unicode(u, (Py_ssize_t)n));
            break;
        }
        case OP_SHORT_BINBYTES:
            TAKE(p, 1);
            PUSH(read_bytes(u, (unsigned char)p[0]));
            MEMOIZE_NEXT();
            break;
        case OP_BINBYTES:
            TAKE(p, 4);
            PUSH(read_bytes(u, (Py_ssize_t)rd_u32(p)));
            MEMOIZE_NEXT();
            break;
        case OP_BINBYTES8: {
            TAKE(p, 8);
            uint64_t n = rd_u64(p);
            if (check_size(u, n, "BINBYTES8") < 0) {
                goto error;
            }
            PUSH(read_bytes(u, (Py_ssize_t)n));
            break;
        }
        case OP_BYTEARRAY8: {
            TAKE(p, 8);
            uint64_t n = rd_u64(p);
            if (check_size(u, n, "BYTEARRAY8") < 0) {
                goto error;
            }
            if (fj_up_charge(u, (int64_t)n) < 0) {
                goto error;
            }
            PUSH(fj_source_read_bytearray(s, (Py_ssize_t)n));
            break;
        }
        case OP_SHORT_BINSTRING:
            TAKE(p, 1);
            k = (unsigned char)p[0];
            TAKE(p, k);
            PUSH(decode_string(u, p, k));
            break;
        case OP_BINSTRING: {
            TAKE(p, 4);
            int32_t n = (int32_t)rd_u32(p);
            if (n < 0) {
                raise_up(u, "BINSTRING pickle has negative byte count");
                goto error;
            }
            a = read_bytes(u, n);
            if (a == NULL) {
                goto error;
            }
            if (strcmp(u->encoding, "bytes") != 0) {
                b = PyUnicode_Decode(PyBytes_AS_STRING(a), n, u->encoding, u->errors);
                Py_CLEAR(a);
                if (b == NULL) {
                    goto error;
                }
                a = b;
                b = NULL;
            }
            PUSHV(a);
            a = NULL;
            break;
        }
        case OP_EMPTY_DICT:
            PUSH(PyDict_New());
            MEMOIZE_NEXT();
            break;
        case OP_EMPTY_LIST:
            PUSH(PyList_New(0));
            MEMOIZE_NEXT();
            break;
        case OP_EMPTY_TUPLE:
            PUSH(PyTuple_New(0));
            break;
        case OP_EMPTY_SET:
            PUSH(PySet_New(NULL));
            MEMOIZE_NEXT();
            break;
        case OP_MARK:
            if (push_mark(u) < 0) {
                goto error;
            }
            break;
        case OP_TUPLE1:
        case OP_TUPLE2:
        case OP_TUPLE3: {
            Py_ssize_t n = op - OP_TUPLE1 + 1;
            if (u->sp - u->fence < n) {
                raise_up(u, "unpickling stack underflow at offset %lld", (long long)fj_source_tell(s) - 1);
                goto error;
            }
            PUSH(take_tuple(u, u->sp - n));
            MEMOIZE_NEXT();
            break;
        }
        case OP_TUPLE:
            if ((k = pop_mark(u)) < 0) {
                goto error;
            }
            PUSH(take_tuple(u, k));
            MEMOIZE_NEXT();
            break;
        case OP_LIST:
            if ((k = pop_mark(u)) < 0) {
                goto error;
            }
            PUSH(take_list(u, k));
            break;
        case OP_DICT: {
            if ((k = pop_mark(u)) < 0) {
                goto error;
            }
            a = PyDict_New();
            if (a == NULL) {
                goto error;
            }
            if (do_setitems(u, a, k) < 0) {
                goto error;
            }
            PUSHV(a);
            a = NULL;
            break;
        }
        case OP_FROZENSET:
            if ((k = pop_mark(u)) < 0) {
                goto error;
            }
            a = take_tuple(u, k);
            if (a == NULL) {
                goto error;
            }
            if (u->restricted && u->pol != NULL) { /* hash flooding: refuse before building it */
                c = PySet_New(NULL);
                for (Py_ssize_t fi = 0; c != NULL && fi < PyTuple_GET_SIZE(a); fi++) {
                    Py_ssize_t before = PySet_GET_SIZE(c);
                    if (key_work(u, c, PyTuple_GET_ITEM(a, fi)) < 0 || PySet_Add(c, PyTuple_GET_ITEM(a, fi)) < 0 ||
                        (PySet_GET_SIZE(c) > before && flood_count(u, c, PyTuple_GET_ITEM(a, fi)) < 0)) {
                        Py_CLEAR(c);
                    }
                }
                if (c == NULL) {
                    goto error;
                }
                Py_CLEAR(c);
            }
            b = PyFrozenSet_New(a);
            Py_CLEAR(a);
            PUSHV(b);
            b = NULL;
            break;
        case OP_APPEND:
            if ((a = pop(u)) == NULL || (b = top(u)) == NULL) {
                goto error;
            }
            if (guard_mutation(u, "APPEND", b, a == b) < 0) {
                b = NULL;
                goto error;
            }
            if (PyList_CheckExact(b)) {
                if (PyList_Append(b, a) < 0) {
                    b = NULL; /* borrowed */
                    goto error;
                }
            }
            else {
                /* like APPENDS with one item */
                if (push(u, a) < 0) {
                    a = NULL;
                    goto error;
                }
                a = NULL;
                if (do_appends(u, b, u->sp - 1) < 0) {
                    b = NULL;
                    goto error;
                }
            }
            Py_CLEAR(a);
            b = NULL;
            break;
        case OP_APPENDS:
            if ((k = pop_mark(u)) < 0) {
                goto error;
            }
            if (k <= u->fence) { /* the list itself must be below the mark */
                raise_up(u, "unpickling stack underflow at offset %lld", (long long)fj_source_tell(s) - 1);
                goto error;
            }
            b = u->stack[k - 1]; /* borrowed */
            if (do_appends(u, b, k) < 0) {
                b = NULL;
                goto error;
            }
            b = NULL;
            break;
        case OP_SETITEM:
            if (u->sp - u->fence < 3) {
                raise_up(u, "unpickling stack underflow at offset %lld", (long long)fj_source_tell(s) - 1);
                goto error;
            }
            if (do_setitems(u, u->stack[u->sp - 3], u->sp - 2) < 0) {
                goto error;
            }
            break;
        case OP_SETITEMS:
            if ((k = pop_mark(u)) < 0) {
                goto error;
            }
            if (k <= u->fence) {
                raise_up(u, "unpickling stack underflow at offset %lld", (long long)fj_source_tell(s) - 1);
                goto error;
            }
            if (do_setitems(u, u->stack[k - 1], k) < 0) {
                goto error;
            }
            break;
        case OP_ADDITEMS:
            if ((k = pop_mark(u)) < 0) {
                goto error;
            }
            if (k <= u->fence) {
                raise_up(u, "unpickling stack underflow at offset %lld", (long long)fj_source_tell(s) - 1);
                goto error;
            }
            if (do_additems(u, u->stack[k - 1], k) < 0) {
                goto error;
            }
            break;
        case OP_MEMOIZE:
            if ((b = top(u)) == NULL || memo_put(u, (uint64_t)u->memo_count, b) < 0) {
                b = NULL;
                goto error;
            }
            b = NULL;
            break;
        case OP_BINPUT:
            TAKE(p, 1);
            if ((b = top(u)) == NULL || memo_put(u, (unsigned char)p[0], b) < 0) {
                b = NULL;
                goto error;
            }
            b = NULL;
            break;
        case OP_LONG_BINPUT:
            TAKE(p, 4);
            if ((b = top(u)) == NULL || memo_put(u, rd_u32(p), b) < 0) {
                b = NULL;
                goto error;
            }
            b = NULL;
            break;
        case OP_PUT: {
            Py_ssize_t n;
            const char *l = read_line(u, &n);
            if (l == NULL) {
                goto error;
            }
            long long idx;
            if (parse_memo_index(l, n, &idx) < 0) {
                goto error;
            }
            if (idx < 0) {
                PyErr_SetString(PyExc_ValueError, "negative PUT argument");
                goto error;
            }
            if ((b = top(u)) == NULL || memo_put(u, (uint64_t)idx, b) < 0) {
                b = NULL;
                goto error;
            }
            b = NULL;
            break;
        }
        case OP_BINGET:
            TAKE(p, 1);
            if ((b = memo_get(u, (unsigned char)p[0])) == NULL) {
                goto error;
            }
            Py_INCREF(b);
            c = b;
            b = NULL;
            PUSHV(c);
            c = NULL;
            break;
        case OP_LONG_BINGET:
            TAKE(p, 4);
            if ((b = memo_get(u, rd_u32(p))) == NULL) {
                goto error;
            }
            Py_INCREF(b);
            c = b;
            b = NULL;
            PUSHV(c);
            c = NULL;
            break;
        case OP_GET: {
            Py_ssize_t n;
            const char *l = read_line(u, &n);
            if (l == NULL) {
                goto error;
            }
            long long idx;
            if (parse_memo_index(l, n, &idx) < 0) {
                goto error;
            }
            if (idx < 0) {
                raise_up(u, "Memo value not found at index %lld", idx);
                goto error;
            }
            if ((b = memo_get(u, (uint64_t)idx)) == NULL) {
                goto error;
            }
            Py_INCREF(b);
            c = b;
            b = NULL;
            PUSHV(c);
            c = NULL;
            break;
        }
        case OP_STACK_GLOBAL:
            if ((b = pop(u)) == NULL) {
                goto error;
            }
            if ((a = pop(u)) == NULL) {
                goto error;
            }
            if (!PyUnicode_CheckExact(a) || !PyUnicode_CheckExact(b)) {
                raise_up(u, "STACK_GLOBAL requires str");
                goto error;
            }
            c = fj_up_find_class(u, a, b);
            Py_CLEAR(a);
            Py_CLEAR(b);
            PUSHV(c);
            c = NULL;
            MEMOIZE_NEXT();
            break;
        case OP_GLOBAL:
            PUSH(load_global_lines(u));
            break;
        case OP_NEWOBJ:
        case OP_NEWOBJ_EX: {
            PyObject *kw = NULL;
            if (op == OP_NEWOBJ_EX) {
                if ((c = pop(u)) == NULL) {
                    goto error;
                }
                if (!PyDict_Check(c)) {
                    raise_up(u, "NEWOBJ_EX kwargs argument must be a dict, not %.200s", Py_TYPE(c)->tp_name);
                    goto error;
                }
                kw = c;
            }
            if ((b = pop(u)) == NULL || (a = pop(u)) == NULL) {
                goto error;
            }
            if (!PyType_Check(a)) {
                raise_up(u, "%s class argument must be a type, not %.200s",
                         op == OP_NEWOBJ ? "NEWOBJ" : "NEWOBJ_EX", Py_TYPE(a)->tp_name);
                goto error;
            }
            if (!PyTuple_Check(b)) {
                raise_up(u, "%s args argument must be a tuple, not %.200s",
                         op == OP_NEWOBJ ? "NEWOBJ" : "NEWOBJ_EX", Py_TYPE(b)->tp_name);
                goto error;
            }
            PyTypeObject *tp = (PyTypeObject *)a;
            if (tp->tp_new == NULL) {
                raise_up(u, "NEWOBJ: %.200s has no __new__", tp->tp_name);
                goto error;
            }
            if (u->restricted && guard_call(u, a, b, kw) < 0) {
                goto error;
            }
            res = tp->tp_new(tp, b, kw);
            if (res != NULL && u->restricted && guard_result(u, res) < 0) {
                Py_CLEAR(res);
            }
            Py_CLEAR(a);
            Py_CLEAR(b);
            Py_CLEAR(c);
            PUSHV(res);
            res = NULL;
            MEMOIZE_NEXT();
            break;
        }
        case OP_REDUCE:
            if ((b = pop(u)) == NULL || (a = top(u)) == NULL) {
                a = NULL;
                goto error;
            }
            if (!PyTuple_Check(b)) {
                a = NULL;
                /* TypeError like stdlib (it calls the callable with a non-tuple argument list) */
                PyErr_Format(PyExc_TypeError, "REDUCE argument must be a tuple, not %.200s", Py_TYPE(b)->tp_name);
                goto error;
            }
            if (u->restricted && guard_call(u, a, b, NULL) < 0) {
                a = NULL;
                goto error;
            }
            res = PyObject_Call(a, b, NULL);
            a = NULL;
            Py_CLEAR(b);
            if (res == NULL) {
                goto error;
            }
            if (u->restricted && guard_result(u, res) < 0) {
                Py_CLEAR(res);
                goto error;
            }
            Py_SETREF(u->stack[u->sp - 1], res);
            res = NULL;
            MEMOIZE_NEXT();
            break;
        case OP_BUILD: {
            if ((b = pop(u)) == NULL || (a = top(u)) == NULL) {
                a = NULL;
                goto error;
            }
            /* (the refcount is taken before the policy's check_build, which may keep a reference) */
            Py_ssize_t refs_before = Py_REFCNT(a);
            if (u->restricted && (check_build_target(u, a) < 0 ||
                                  (refs_before > 2 && guard_unshared(u, "BUILD", a, state_self_refs(a, b)) < 0))) {
                a = NULL; /* borrowed */
                goto error;
            }
            PyObject *tp = (PyObject *)Py_TYPE(a);
            if (tp == u->st->up.NumpyArrayWrapper || tp == u->st->up.NDArrayWrapper ||
                tp == u->st->up.ZNDArrayWrapper) {
                res = fj_ndarray_build(u, a, b);
                a = NULL;
                Py_CLEAR(b);
                if (res == NULL) {
                    goto error;
                }
                Py_SETREF(u->stack[u->sp - 1], res);
                res = NULL;
                break;
            }
            if (u->restricted && u->pol != NULL && u->pol->filter_state != NULL) {
                /* the policy may refuse the state or hand back a checked one to use instead */
                c = PyObject_CallFunctionObjArgs(u->pol->filter_state, a, b, NULL);
                if (c == NULL) {
                    a = NULL;
                    goto error;
                }
                Py_SETREF(b, c);
                c = NULL;
            }
            int r = do_build(u, a, b);
            Py_CLEAR(b);
            if (r == 0 && u->restricted && u->pol != NULL && u->pol->check_object != NULL &&
                policy_checks(a)) {
                c = PyObject_CallOneArg(u->pol->check_object, a);
                r = c == NULL ? -1 : 0;
                Py_CLEAR(c);
            }
            a = NULL;
            if (r < 0) {
                goto error;
            }
            break;
        }
        case OP_INST: {
            PyObject *cls = load_global_lines(u);
            if (cls == NULL) {
                goto error;
            }
            if ((k = pop_mark(u)) < 0) {
                Py_DECREF(cls);
                goto error;
            }
            a = take_tuple(u, k);
            if (a == NULL) {
                Py_DECREF(cls);
                goto error;
            }
            res = instantiate(u, cls, a);
            Py_DECREF(cls);
            Py_CLEAR(a);
            PUSHV(res);
            res = NULL;
            break;
        }
        case OP_OBJ: {
            if ((k = pop_mark(u)) < 0) {
                goto error;
            }
            if (u->sp == k) {
                raise_up(u, "unpickling stack underflow at offset %lld", (long long)fj_source_tell(s) - 1);
                goto error;
            }
            c = take_tuple(u, k); /* (cls, *args) */
            if (c == NULL) {
                goto error;
            }
            a = PyTuple_GetSlice(c, 1, PyTuple_GET_SIZE(c));
            if (a == NULL) {
                goto error;
            }
            res = instantiate(u, PyTuple_GET_ITEM(c, 0), a);
            Py_CLEAR(c);
            Py_CLEAR(a);
            PUSHV(res);
            res = NULL;
            break;
        }
        case OP_POP:
            if (u->sp > u->fence) {
                a = u->stack[--u->sp];
                if (u->trailer != NULL) { /* provenance: kept until the next opcode is known */
                    Py_XSETREF(u->trailer_pending, a);
                    a = NULL;
                    u->trailer_at = fj_source_tell(s);
                }
                Py_CLEAR(a);
            }
            else if ((k = pop_mark(u)) < 0) {
                goto error;
            }
            else {
                drop_to(u, k);
            }
            break;
        case OP_POP_MARK:
            if ((k = pop_mark(u)) < 0) {
                goto error;
            }
            drop_to(u, k);
            break;
        case OP_DUP:
            if (u->restricted) { /* pickle never writes it; it would hide a second reference */
                raise_up(u, "refused DUP under trusted= (offset %lld)", (long long)fj_source_tell(s) - 1);
                goto error;
            }
            if ((b = top(u)) == NULL) {
                goto error;
            }
            Py_INCREF(b);
            c = b;
            b = NULL;
            PUSHV(c);
            c = NULL;
            break;
        case OP_INT:
            PUSH(load_int_text(u, 0));
            break;
        case OP_LONG:
            PUSH(load_int_text(u, 1));
            break;
        case OP_FLOAT:
            PUSH(load_float_text(u));
            break;
        case OP_STRING:
            PUSH(load_string_text(u));
            break;
        case OP_UNICODE: {
            Py_ssize_t n;
            const char *l = read_line(u, &n);
            if (l == NULL) {
                goto error;
            }
            PUSH(PyUnicode_DecodeRawUnicodeEscape(l, n, NULL));
            break;
        }
        case OP_EXT1:
            TAKE(p, 1);
            PUSH(load_ext(u, (unsigned char)p[0]));
            break;
        case OP_EXT2:
            TAKE(p, 2);
            PUSH(load_ext(u, (unsigned char)p[0] | ((unsigned char)p[1] << 8)));
            break;
        case OP_EXT4:
            TAKE(p, 4);
            PUSH(load_ext(u, (int32_t)rd_u32(p)));
            break;
        case OP_PERSID: {
            Py_ssize_t n;
            const char *l = read_line(u, &n);
            if (l == NULL) {
                goto error;
            }
            a = PyUnicode_DecodeASCII(l, n, "strict");
            if (a == NULL) {
                if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                    PyErr_Clear();
                    raise_up(u, "persistent IDs in protocol 0 must be ASCII strings");
                }
                goto error;
            }
            res = call_persistent_load(u, a);
            a = NULL;
            PUSHV(res);
            res = NULL;
            break;
        }
        case OP_BINPERSID:
            if ((a = pop(u)) == NULL) {
                goto error;
            }
            res = call_persistent_load(u, a);
            a = NULL;
            PUSHV(res);
            res = NULL;
            break;
        case OP_NEXT_BUFFER:
            if (u->buffers == NULL) {
                raise_up(u, "pickle stream refers to out-of-band data but no *buffers* argument was given");
                goto error;
            }
            a = PyIter_Next(u->buffers);
            if (a == NULL) {
                if (!PyErr_Occurred()) {
                    raise_up(u, "not enough out-of-band buffers");
                }
                goto error;
            }
            PUSHV(a);
            a = NULL;
            break;
        case OP_READONLY_BUFFER: {
            if ((b = top(u)) == NULL) {
                goto error;
            }
            PyObject *mv = PyMemoryView_FromObject(b);
            b = NULL;
            if (mv == NULL) {
                goto error;
            }
            if (!PyMemoryView_GET_BUFFER(mv)->readonly) {
                PyObject *ro = PyObject_CallMethod(mv, "toreadonly", NULL);
                Py_DECREF(mv);
                if (ro == NULL) {
                    goto error;
                }
                Py_SETREF(u->stack[u->sp - 1], ro);
            }
            else {
                Py_DECREF(mv);
            }
            break;
        }
        case OP_PROTO:
            TAKE(p, 1);
            if ((unsigned char)p[0] > 5) {
                PyErr_Format(PyExc_ValueError, "unsupported pickle protocol: %d", (unsigned char)p[0]);
                goto error;
            }
            u->proto = (unsigned char)p[0];
            break;
        case OP_FRAME: {
            TAKE(p, 8);
            uint64_t n = rd_u64(p);
            if (n > (uint64_t)PY_SSIZE_T_MAX) {
                raise_up(u, "frame size > sys.maxsize: %llu", (unsigned long long)n);
                goto error;
            }
            if (u->frame_end >= 0 || u->joblib || FJ_PICKLE_STRICT_FRAMES) {
                /* the 8-byte argument must lie in the current frame, which must end right here */
                int64_t pos = fj_source_tell(s);
                if (u->frame_end >= 0 && pos > u->frame_end) {
                    raise_up(u, "pickle exhausted before end of frame");
                    goto error;
                }
                if (u->frame_end >= 0 && pos < u->frame_end) {
                    raise_up(u, "beginning of a new frame before end of current frame");
                    goto error;
                }
                u->frame_end = pos + (int64_t)n; /* n <= PY_SSIZE_T_MAX: no overflow */
            }
            fj_source_frame(s, (int64_t)n);
            break;
        }
        case OP_STOP:
            if (u->trailer_pending != NULL && take_trailer(u) < 0) {
                goto error;
            }
            if ((res = pop(u)) == NULL) {
                goto error;
            }
            goto done;
        default: {
            int64_t off = fj_source_tell(s) - 1;
            if (op >= 0x20 && op < 0x7f) {
                raise_up(u, "invalid load key, '%c' (at offset %lld).", op, (long long)off);
            }
            else {
                raise_up(u, "invalid load key, '\\x%02x' (at offset %lld).", op, (long long)off);
            }
            goto error;
        }
        }
    }
error:
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(c);
    res = NULL;
done:
    return res;
}

/* ---------------------------------------------------------------------------------------------
 * Unpickler type */

typedef struct {
    PyObject_HEAD
    PyObject *file;
    PyObject *buffers;
    PyObject *encoding; /* str */
    PyObject *errors;   /* str */
    PyObject *dict;     /* instance __dict__ (u.persistent_load = f, u.find_class = f) */
    /* the memo survives between load() calls, as in stdlib (a Pickler's successive dumps share
     * one memo) */
    PyObject **memo;
    Py_ssize_t memo_cap, memo_count;
    PyObject *memo_dict;
    int fix_imports;
    int proto;
    int loading;
    fj_up *active;      /* the running load's engine (it holds the memo meanwhile), or NULL */
} UnpicklerObject;

static PyObject *unpickler_find_class(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
static int policy_check_build(fj_state *st, PyObject *find_class, PyObject **cb);

/* The file attributes an Unpickler needs, looked up like _pickle.c does (peek, readinto, read,
 * readline): an exception raised while getting one (a failing property) propagates; a missing
 * read or readline is a TypeError. 0 / -1. */
static int
check_file_attrs(PyObject *file)
{
    static const char *const names[] = {"peek", "readinto", "read", "readline"};
    int found[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4; i++) {
        PyObject *name = PyUnicode_InternFromString(names[i]);
        if (name == NULL) {
            return -1;
        }
        PyObject *v;
        int r = lookup_attr(file, name, &v);
        Py_DECREF(name);
        if (r < 0) {
            return -1;
        }
        Py_XDECREF(v);
        found[i] = r;
    }
    if (!found[2] || !found[3]) {
        PyErr_SetString(PyExc_TypeError, "file must have 'read' and 'readline' attributes");
        return -1;
    }
    return 0;
}

static int
unpickler_traverse(UnpicklerObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->file);
    Py_VISIT(self->buffers);
    Py_VISIT(self->dict);
    Py_VISIT(self->memo_dict);
    for (Py_ssize_t i = 0; i < self->memo_cap; i++) {
        Py_VISIT(self->memo[i]);
    }
    return 0;
}

static void
unpickler_clear_memo(UnpicklerObject *self)
{
    Py_CLEAR(self->memo_dict);
    PyObject **memo = self->memo;
    Py_ssize_t cap = self->memo_cap;
    self->memo = NULL;
    self->memo_cap = self->memo_count = 0;
    for (Py_ssize_t i = 0; i < cap; i++) {
        Py_XDECREF(memo[i]);
    }
    PyMem_Free(memo);
}

static int
unpickler_clear(UnpicklerObject *self)
{
    Py_CLEAR(self->file);
    Py_CLEAR(self->buffers);
    Py_CLEAR(self->encoding);
    Py_CLEAR(self->errors);
    Py_CLEAR(self->dict);
    unpickler_clear_memo(self);
    return 0;
}

static void
unpickler_dealloc(UnpicklerObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    unpickler_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int
unpickler_init(UnpicklerObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"file", "fix_imports", "encoding", "errors", "buffers", NULL};
    PyObject *file, *buffers = Py_None;
    int fix_imports = 1;
    const char *encoding = "ASCII", *errors = "strict";
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$pssO:Unpickler", kwlist, &file, &fix_imports, &encoding,
                                     &errors, &buffers)) {
        return -1;
    }
    if (self->loading) {
        /* the running load borrows encoding/errors from this object */
        PyErr_SetString(PyExc_RuntimeError, "Unpickler.__init__() called during load()");
        return -1;
    }
    if (check_file_attrs(file) < 0) {
        return -1;
    }
    Py_XSETREF(self->file, Py_NewRef(file));
    if (buffers == Py_None) {
        Py_CLEAR(self->buffers);
    }
    else {
        PyObject *it = PyObject_GetIter(buffers); /* one iterator for all load() calls, as stdlib */
        if (it == NULL) {
            return -1;
        }
        Py_XSETREF(self->buffers, it);
    }
    Py_XSETREF(self->encoding, PyUnicode_FromString(encoding));
    Py_XSETREF(self->errors, PyUnicode_FromString(errors));
    if (self->encoding == NULL || self->errors == NULL) {
        return -1;
    }
    self->fix_imports = fix_imports;
    self->proto = 0;
    unpickler_clear_memo(self);
    return 0;
}

/* The overridable hooks of an Unpickler instance: find_class (NULL when it is the built-in one)
 * and persistent_load (NULL when absent). New references. */
static int
unpickler_hooks(PyObject *self, fj_state *st, PyObject **find_class, PyObject **pers)
{
    *find_class = NULL;
    *pers = NULL;
    PyObject *fc = PyObject_GetAttr(self, st->up.str_find_class);
    if (fc == NULL) {
        return -1;
    }
    if (PyCFunction_Check(fc) && PyCFunction_GET_SELF(fc) == self &&
        PyCFunction_GET_FUNCTION(fc) == (PyCFunction)(void (*)(void))unpickler_find_class) {
        Py_DECREF(fc);
    }
    else {
        *find_class = fc;
    }
    PyObject *pl;
    int found = lookup_attr(self, st->up.str_persistent_load, &pl);
    if (found < 0) {
        Py_CLEAR(*find_class);
        return -1;
    }
    if (!found) {
        /* none */
    }
    else if (pl == Py_None) {
        Py_DECREF(pl);
    }
    else {
        *pers = pl;
    }
    return 0;
}

static PyObject *
unpickler_load(UnpicklerObject *self, PyObject *Py_UNUSED(ignored))
{
    fj_state *st = fj_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        return NULL;
    }
    if (self->file == NULL) {
        PyErr_Format(st->UnpicklingError, "Unpickler.__init__() was not called by %s.__init__()",
                     Py_TYPE(self)->tp_name);
        return NULL;
    }
    if (self->loading) {
        PyErr_SetString(PyExc_RuntimeError, "Unpickler.load() is already running on this object");
        return NULL;
    }
    PyObject *fc = NULL, *pl = NULL, *it = NULL, *res = NULL, *cb = NULL;
    fj_source src;
    fj_up u;
    int src_ok = 0;
    if (unpickler_hooks((PyObject *)self, st, &fc, &pl) < 0) {
        return NULL;
    }
    it = Py_XNewRef(self->buffers);
    if (fj_source_init_pyfile(&src, self->file) < 0) {
        fj_source_release(&src);
        goto done;
    }
    src_ok = 1;
    fj_up_init(&u, st, &src);
    u.fix_imports = self->fix_imports;
    if ((u.encoding = PyUnicode_AsUTF8(self->encoding)) == NULL || (u.errors = PyUnicode_AsUTF8(self->errors)) == NULL) {
        fj_up_clear(&u);
        goto done;
    }
    u.find_class = fc;
    u.persistent_load = pl;
    u.buffers = it;
    /* Restricted loading when the Unpickler declares a check_build (a method or an instance
     * attribute) or its find_class carries one (a policy object assigned as find_class). A plain
     * find_class override alone keeps stdlib semantics (no BUILD rule). */
    if (lookup_attr((PyObject *)self, st->up.str_check_build, &cb) < 0) {
        fj_up_clear(&u);
        goto done;
    }
    if (cb == NULL && fc != NULL && policy_check_build(st, fc, &cb) < 0) {
        fj_up_clear(&u);
        goto done;
    }
    if (cb == Py_None) {
        Py_CLEAR(cb);
    }
    if (cb != NULL) {
        if (fc == NULL) {
            /* the built-in find_class, as a callable the engine can call (it is the policy) */
            if ((fc = PyObject_GetAttr((PyObject *)self, st->up.str_find_class)) == NULL) {
                fj_up_clear(&u);
                goto done;
            }
        }
        if (fj_up_restrict(&u, fc, cb) < 0) {
            fj_up_clear(&u);
            goto done;
        }
    }
    self->loading = 1;
    self->proto = 0;
    /* the memo moves into the engine for the load and back afterwards */
    u.memo = self->memo;
    u.memo_cap = self->memo_cap;
    u.memo_count = self->memo_count;
    u.memo_dict = self->memo_dict;
    self->memo = NULL;
    self->memo_cap = self->memo_count = 0;
    self->memo_dict = NULL;
    self->active = &u;
    res = fj_up_load(&u);
    if (res == NULL && u.restricted) {
        strip_error_traceback();
    }
    self->active = NULL;
    self->proto = u.proto;
    self->loading = 0;
    self->memo = u.memo;
    self->memo_cap = u.memo_cap;
    self->memo_count = u.memo_count;
    self->memo_dict = u.memo_dict;
    u.memo = NULL;
    u.memo_cap = u.memo_count = 0;
    u.memo_dict = NULL;
    fj_up_clear(&u);
    if (fj_source_finish(&src) < 0) {
        Py_CLEAR(res);
    }
done:
    if (src_ok) {
        fj_source_release(&src);
    }
    Py_XDECREF(fc);
    Py_XDECREF(pl);
    Py_XDECREF(it);
    Py_XDECREF(cb);
    return res;
}

static PyObject *
unpickler_find_class(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "find_class expected 2 arguments, got %zd", nargs);
        return NULL;
    }
    fj_state *st = fj_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        return NULL;
    }
    UnpicklerObject *u = (UnpicklerObject *)self;
    /* during load() the protocol is the running stream's (as _pickle.c: it tracks PROTO) */
    int proto = u->active != NULL ? u->active->proto : u->proto;
    return fj_default_find_class(st, proto, u->fix_imports, args[0], args[1]);
}

/* ---------------------------------------------------------------------------------------------
 * Unpickler.memo: a live proxy like _pickle.c's UnpicklerMemoProxy. copy() gives {index: obj};
 * assigning a proxy or such a dict replaces the memo. During load() the memo lives in the engine
 * (self->active), and the proxy works on it there. */

typedef struct {
    PyObject_HEAD
    UnpicklerObject *unpickler; /* strong */
} UnpicklerMemoProxy;

/* Pointers to the memo fields of an Unpickler: its own, or the running engine's. */
typedef struct {
    PyObject ***items;
    Py_ssize_t *cap, *count;
    PyObject **dict;
} memo_fields;

static memo_fields
unpickler_memo_fields(UnpicklerObject *self)
{
    memo_fields f;
    if (self->active != NULL) {
        f.items = &self->active->memo;
        f.cap = &self->active->memo_cap;
        f.count = &self->active->memo_count;
        f.dict = &self->active->memo_dict;
    }
    else {
        f.items = &self->memo;
        f.cap = &self->memo_cap;
        f.count = &self->memo_count;
        f.dict = &self->memo_dict;
    }
    return f;
}

/* Replace the memo with (items, cap, count, dict) (owned, moved in) and release the old one. */
static void
unpickler_memo_replace(UnpicklerObject *self, PyObject **items, Py_ssize_t cap, Py_ssize_t count, PyObject *dict)
{
    memo_fields f = unpickler_memo_fields(self);
    PyObject **old = *f.items;
    Py_ssize_t old_cap = *f.cap;
    PyObject *old_dict = *f.dict;
    *f.items = items;
    *f.cap = cap;
    *f.count = count;
    *f.dict = dict;
    /* released last: destructors may run code that looks at the memo */
    for (Py_ssize_t i = 0; i < old_cap; i++) {
        Py_XDECREF(old[i]);
    }
    PyMem_Free(old);
    Py_XDECREF(old_dict);
}

static PyObject *
unpickler_memo_copy(UnpicklerObject *self)
{
    PyObject *d = PyDict_New();
    if (d == NULL || self == NULL) {
        return d;
    }
    memo_fields f = unpickler_memo_fields(self);
    /* snapshot first: PyDict_SetItem on int keys runs no Python code, but stay defensive */
    for (Py_ssize_t i = 0; i < *f.cap; i++) {
        PyObject *v = (*f.items)[i];
        if (v == NULL) {
            continue;
        }
        PyObject *k = PyLong_FromSsize_t(i);
        int r = k == NULL ? -1 : PyDict_SetItem(d, k, v);
        Py_XDECREF(k);
        if (r < 0) {
            Py_DECREF(d);
            return NULL;
        }
    }
    if (*f.dict != NULL && PyDict_Update(d, *f.dict) < 0) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

static int
umemoproxy_traverse(UnpicklerMemoProxy *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->unpickler);
    return 0;
}

static int
umemoproxy_clear_refs(UnpicklerMemoProxy *self)
{
    Py_CLEAR(self->unpickler);
    return 0;
}

static void
umemoproxy_dealloc(UnpicklerMemoProxy *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    umemoproxy_clear_refs(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
umemoproxy_copy(UnpicklerMemoProxy *self, PyObject *Py_UNUSED(ignored))
{
    return unpickler_memo_copy(self->unpickler);
}

static PyObject *
umemoproxy_clear(UnpicklerMemoProxy *self, PyObject *Py_UNUSED(ignored))
{
    if (self->unpickler != NULL) {
        unpickler_memo_replace(self->unpickler, NULL, 0, 0, NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *
umemoproxy_reduce(UnpicklerMemoProxy *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *copy = unpickler_memo_copy(self->unpickler);
    if (copy == NULL) {
        return NULL;
    }
    return Py_BuildValue("(O(N))", (PyObject *)&PyDict_Type, copy);
}

static PyMethodDef umemoproxy_methods[] = {
    {"clear", (PyCFunction)umemoproxy_clear, METH_NOARGS, "Remove all items from memo."},
    {"copy", (PyCFunction)umemoproxy_copy, METH_NOARGS, "Copy the memo to a new object."},
    {"__reduce__", (PyCFunction)umemoproxy_reduce, METH_NOARGS, "Implement pickling support."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot umemoproxy_slots[] = {
    {Py_tp_dealloc, umemoproxy_dealloc},
    {Py_tp_traverse, umemoproxy_traverse},
    {Py_tp_clear, umemoproxy_clear_refs},
    {Py_tp_methods, umemoproxy_methods},
    {Py_tp_hash, PyObject_HashNotImplemented},
    {Py_tp_doc, "UnpicklerMemoProxy: the live memo of an Unpickler"},
    {0, NULL},
};

static PyType_Spec umemoproxy_spec = {
    .name = "fastjoblib._core.UnpicklerMemoProxy",
    .basicsize = sizeof(UnpicklerMemoProxy),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = umemoproxy_slots,
};

static PyObject *
unpickler_get_memo(UnpicklerObject *self, void *closure)
{
    fj_state *st = fj_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        return NULL;
    }
    UnpicklerMemoProxy *proxy = PyObject_GC_New(UnpicklerMemoProxy, (PyTypeObject *)st->up.MemoProxy_type);
    if (proxy == NULL) {
        return NULL;
    }
    proxy->unpickler = (UnpicklerObject *)Py_NewRef(self);
    PyObject_GC_Track(proxy);
    return (PyObject *)proxy;
}

static int
unpickler_set_memo(UnpicklerObject *self, PyObject *value, void *closure)
{
    fj_state *st = fj_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        return -1;
    }
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "attribute deletion is not supported");
        return -1;
    }
    PyObject *d = NULL;
    if (Py_IS_TYPE(value, (PyTypeObject *)st->up.MemoProxy_type)) {
        UnpicklerObject *other = ((UnpicklerMemoProxy *)value)->unpickler;
        if (other == self) {
            return 0;
        }
        d = unpickler_memo_copy(other);
    }
    else if (PyDict_Check(value)) {
        d = PyDict_Copy(value); /* a snapshot */
    }
    else {
        PyErr_Format(PyExc_TypeError, "'memo' attribute must be an UnpicklerMemoProxy object or dict, not %.200s",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    if (d == NULL) {
        return -1;
    }
    /* build the new memo in a scratch engine (memo_put only touches the memo fields) */
    fj_up tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.st = st;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(d, &pos, &k, &v)) {
        long long idx = PyLong_Check(k) ? PyLong_AsLongLong(k) : -1;
        if (idx == -1 && PyErr_Occurred()) {
            goto error;
        }
        if (idx < 0) {
            PyErr_SetString(PyExc_ValueError, "memo key must be positive integers.");
            goto error;
        }
        if (memo_put(&tmp, (uint64_t)idx, v) < 0) {
            goto error;
        }
    }
    Py_DECREF(d);
    unpickler_memo_replace(self, tmp.memo, tmp.memo_cap, tmp.memo_count, tmp.memo_dict);
    return 0;
error:
    Py_DECREF(d);
    fj_up_clear(&tmp);
    return -1;
}

static PyGetSetDef unpickler_getset[] = {
    {"memo", (getter)unpickler_get_memo, (setter)unpickler_set_memo, "the unpickler's memo (a live proxy)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef unpickler_methods[] = {
    {"load", (PyCFunction)unpickler_load, METH_NOARGS,
     "load()\n--\n\nRead a pickled object representation from the open file and return it."},
    {"find_class", (PyCFunction)(void (*)(void))unpickler_find_class, METH_FASTCALL,
     "find_class($self, module_name, global_name, /)\n--\n\nReturn an object from a specified module."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef unpickler_members[] = {
    {"__dictoffset__", T_PYSSIZET, offsetof(UnpicklerObject, dict), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot unpickler_slots[] = {
    {Py_tp_dealloc, unpickler_dealloc},
    {Py_tp_traverse, unpickler_traverse},
    {Py_tp_clear, unpickler_clear},
    {Py_tp_init, unpickler_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_methods, unpickler_methods},
    {Py_tp_members, unpickler_members},
    {Py_tp_getset, unpickler_getset},
    {Py_tp_doc, "Unpickler(file, *, fix_imports=True, encoding='ASCII', errors='strict', buffers=None)\n--\n\n"
                "Pickle-compatible unpickler (C engine of fastjoblib)."},
    {0, NULL},
};

static PyType_Spec unpickler_spec = {
    .name = "fastjoblib._core.Unpickler",
    .basicsize = sizeof(UnpicklerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = unpickler_slots,
};

/* ---------------------------------------------------------------------------------------------
 * Module functions */

/* Common keyword parsing of loads / load_pickle. */
static int
parse_pickle_kw(PyObject *kwnames, PyObject *const *kwv, int *fix_imports, const char **encoding,
                const char **errors, PyObject **buffers, PyObject **find_class)
{
    Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nk; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        PyObject *v = kwv[i];
        if (PyUnicode_CompareWithASCIIString(key, "fix_imports") == 0) {
            int t = PyObject_IsTrue(v);
            if (t < 0) {
                return -1;
            }
            *fix_imports = t;
        }
        else if (PyUnicode_CompareWithASCIIString(key, "encoding") == 0 ||
                 PyUnicode_CompareWithASCIIString(key, "errors") == 0) {
            if (!PyUnicode_Check(v)) {
                PyErr_Format(PyExc_TypeError, "%U must be str, not %.200s", key, Py_TYPE(v)->tp_name);
                return -1;
            }
            const char *c = PyUnicode_AsUTF8(v);
            if (c == NULL) {
                return -1;
            }
            if (PyUnicode_CompareWithASCIIString(key, "encoding") == 0) {
                *encoding = c;
            }
            else {
                *errors = c;
            }
        }
        else if (PyUnicode_CompareWithASCIIString(key, "buffers") == 0) {
            *buffers = v == Py_None ? NULL : v;
        }
        else if (PyUnicode_CompareWithASCIIString(key, "find_class") == 0) {
            *find_class = v == Py_None ? NULL : v;
        }
        else {
            PyErr_Format(PyExc_TypeError, "unexpected keyword argument %R", key);
            return -1;
        }
    }
    return 0;
}

/* A find_class policy's optional check_build attribute: 0 (*cb new ref or NULL) / -1. */
static int
policy_check_build(fj_state *st, PyObject *find_class, PyObject **cb)
{
    *cb = NULL;
    if (lookup_attr(find_class, st->up.str_check_build, cb) < 0) {
        return -1;
    }
    if (*cb == Py_None) {
        Py_CLEAR(*cb);
    }
    return 0;
}

static PyObject *
run_pickle_load(fj_state *st, fj_source *src, int fix_imports, const char *encoding, const char *errors,
                PyObject *buffers, PyObject *find_class)
{
    PyObject *it = NULL, *res = NULL, *cb = NULL;
    fj_up u;
    if (buffers != NULL && (it = PyObject_GetIter(buffers)) == NULL) {
        return NULL;
    }
    if (find_class != NULL && policy_check_build(st, find_class, &cb) < 0) {
        Py_XDECREF(it);
        return NULL;
    }
    fj_up_init(&u, st, src);
    u.fix_imports = fix_imports;
    u.encoding = encoding;
    u.errors = errors;
    u.buffers = it;
    if (find_class == NULL || fj_up_restrict(&u, find_class, cb) == 0) {
        res = fj_up_load(&u);
        if (res == NULL && u.restricted) {
            strip_error_traceback();
        }
    }
    fj_up_clear(&u);
    if (res != NULL && fj_source_finish(src) < 0) {
        Py_CLEAR(res);
    }
    Py_XDECREF(it);
    Py_XDECREF(cb);
    return res;
}

static PyObject *
core_loads(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    fj_state *st = fj_state_from_module(module);
    int fix_imports = 1;
    const char *encoding = "ASCII", *errors = "strict";
    PyObject *buffers = NULL, *find_class = NULL;
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "loads() takes exactly 1 positional argument (%zd given)", nargs);
        return NULL;
    }
    if (parse_pickle_kw(kwnames, args + nargs, &fix_imports, &encoding, &errors, &buffers, &find_class) < 0) {
        return NULL;
    }
    PyObject *data = args[0];
    if (PyUnicode_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "Can't load pickle from unicode string");
        return NULL;
    }
    fj_source src;
    if (fj_source_init_mem(&src, data) < 0) {
        fj_source_release(&src);
        return NULL;
    }
    PyObject *res = run_pickle_load(st, &src, fix_imports, encoding, errors, buffers, find_class);
    fj_source_release(&src);
    return res;
}

static PyObject *
core_load_pickle(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    fj_state *st = fj_state_from_module(module);
    int fix_imports = 1;
    const char *encoding = "ASCII", *errors = "strict";
    PyObject *buffers = NULL, *find_class = NULL;
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "load_pickle() takes exactly 1 positional argument (%zd given)", nargs);
        return NULL;
    }
    if (parse_pickle_kw(kwnames, args + nargs, &fix_imports, &encoding, &errors, &buffers, &find_class) < 0) {
        return NULL;
    }
    PyObject *file = args[0];
    fj_source src;
    int r;
    if (PyLong_Check(file)) {
        int fd = PyLong_AsLong(file);
        if (fd == -1 && PyErr_Occurred()) {
            return NULL;
        }
        r = fj_source_init_fd(&src, fd);
    }
    else {
        if (check_file_attrs(file) < 0) {
            return NULL;
        }
        r = fj_source_init_pyfile(&src, file);
    }
    if (r < 0) {
        fj_source_release(&src);
        return NULL;
    }
    PyObject *res = run_pickle_load(st, &src, fix_imports, encoding, errors, buffers, find_class);
    fj_source_release(&src);
    return res;
}

/* In-memory fj_reader (only used under a codec). */
typedef struct {
    fj_reader base;
    Py_buffer view;
    Py_ssize_t pos;
} mem_reader;

static Py_ssize_t
mem_reader_read(fj_reader *self, char *buf, Py_ssize_t len)
{
    mem_reader *m = (mem_reader *)self;
    Py_ssize_t n = m->view.len - m->pos;
    if (n > len) {
        n = len;
    }
    memcpy(buf, (char *)m->view.buf + m->pos, (size_t)n);
    m->pos += n;
    return n;
}

static void
mem_reader_free(fj_reader *self)
{
    mem_reader *m = (mem_reader *)self;
    PyBuffer_Release(&m->view);
    PyMem_Free(m);
}

static fj_reader *
mem_reader_new(PyObject *obj)
{
    mem_reader *m = PyMem_Calloc(1, sizeof(mem_reader));
    if (m == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    if (PyObject_GetBuffer(obj, &m->view, PyBUF_SIMPLE) < 0) {
        PyMem_Free(m);
        return NULL;
    }
    m->base.read = mem_reader_read;
    m->base.free = mem_reader_free;
    return &m->base;
}

/* Size of the container as stored: bytes from the current position to the end of `file` (an int
 * fd, a file object or a bytes-like object), or -1 when unknown. Never raises, never seeks. */
static int64_t
container_size(PyObject *file)
{
    struct stat stt;
    if (PyLong_Check(file)) {
        int fd = PyLong_AsLong(file);
        if (fd == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
        off_t cur = lseek(fd, 0, SEEK_CUR);
        if (cur < 0 || fstat(fd, &stt) != 0 || !S_ISREG(stt.st_mode) || stt.st_size < cur) {
            return -1;
        }
        return (int64_t)(stt.st_size - cur);
    }
    int has_read = fj_has_attr_string(file, "read");
    if (has_read < 0) {
        PyErr_Clear(); /* never raises: the size is then unknown */
        return -1;
    }
    if (!has_read) {
        Py_buffer v;
        if (PyObject_GetBuffer(file, &v, PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            return -1;
        }
        int64_t n = (int64_t)v.len;
        PyBuffer_Release(&v);
        return n;
    }
    int64_t size = -1, pos = -1;
    PyObject *r = PyObject_CallMethod(file, "tell", NULL);
    if (r != NULL) {
        pos = PyLong_AsLongLong(r);
        Py_DECREF(r);
    }
    if (pos < 0) {
        PyErr_Clear();
        return -1;
    }
    r = PyObject_CallMethod(file, "fileno", NULL);
    if (r != NULL) {
        int fd = PyLong_AsLong(r);
        Py_DECREF(r);
        if (fd >= 0 && fstat(fd, &stt) == 0 && S_ISREG(stt.st_mode)) {
            size = (int64_t)stt.st_size;
        }
    }
    PyErr_Clear();
    if (size < 0) { /* io.BytesIO */
        r = PyObject_CallMethod(file, "getbuffer", NULL);
        if (r != NULL) {
            Py_buffer v;
            if (PyObject_GetBuffer(r, &v, PyBUF_SIMPLE) == 0) {
                size = (int64_t)v.len;
                PyBuffer_Release(&v);
            }
            Py_DECREF(r);
        }
        PyErr_Clear();
    }
    return size >= pos ? size - pos : -1;
}

static PyObject *
core_load(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"file", "mmap_mode", "filename", "ensure_native", "codec", "find_class", "progress",
                             "trailer", "replace_globals", "size", NULL};
    fj_state *st = fj_state_from_module(module);
    PyObject *file, *mmap_obj = Py_None, *filename = Py_None, *codec = Py_None, *find_class = Py_None;
    PyObject *progress = Py_None, *trailer = Py_None, *replace_globals = Py_None;
    int ensure_native = 0, has_read = 0;
    long long size_hint = -1; /* bytes left in a Python file, when its fileno() cannot tell */
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$OOpOOOOOL:load", kwlist, &file, &mmap_obj, &filename,
                                     &ensure_native, &codec, &find_class, &progress, &trailer,
                                     &replace_globals, &size_hint)) {
        return NULL;
    }
    if (replace_globals != Py_None && !PyDict_Check(replace_globals)) {
        PyErr_SetString(PyExc_TypeError, "replace_globals must be None or a dict");
        return NULL;
    }
    if (trailer != Py_None && !PyList_Check(trailer)) {
        PyErr_SetString(PyExc_TypeError, "trailer must be None or a list");
        return NULL;
    }
    fj_progress prog = {0};
    if (progress != Py_None) {
        if (!PyCallable_Check(progress)) {
            PyErr_SetString(PyExc_TypeError, "progress must be None or a callable");
            return NULL;
        }
        if (fj_progress_init(&prog, progress, size_hint >= 0 ? (int64_t)size_hint : container_size(file)) < 0) {
            return NULL;
        }
    }
    const char *mmap_mode = NULL;
    if (mmap_obj != Py_None) {
        if (!PyUnicode_Check(mmap_obj)) {
            PyErr_SetString(PyExc_TypeError, "mmap_mode must be None or a str");
            return NULL;
        }
        const char *m = PyUnicode_AsUTF8(mmap_obj);
        if (m == NULL) {
            return NULL;
        }
        if (strcmp(m, "r") == 0 || strcmp(m, "readonly") == 0) {
            mmap_mode = "r";
        }
        else if (strcmp(m, "r+") == 0 || strcmp(m, "readwrite") == 0 || strcmp(m, "w+") == 0 ||
                 strcmp(m, "write") == 0) {
            mmap_mode = "r+"; /* never truncate the file being read */
        }
        else if (strcmp(m, "c") == 0 || strcmp(m, "copyonwrite") == 0) {
            mmap_mode = "c";
        }
        else {
            PyErr_Format(PyExc_ValueError, "mode must be one of ['r', 'c', 'r+', 'w+', 'readonly', "
                                           "'copyonwrite', 'readwrite', 'write'] (got %R)", mmap_obj);
            return NULL;
        }
    }
    if (filename != Py_None) {
        if (PyBytes_Check(filename)) {
            filename = PyUnicode_DecodeFSDefaultAndSize(PyBytes_AS_STRING(filename), PyBytes_GET_SIZE(filename));
        }
        else {
            filename = PyOS_FSPath(filename);
        }
        if (filename == NULL) {
            return NULL;
        }
        if (!PyUnicode_Check(filename)) {
            Py_DECREF(filename);
            PyErr_SetString(PyExc_TypeError, "filename must be a str or os.PathLike");
            return NULL;
        }
    }
    else {
        filename = NULL;
    }
    PyObject *res = NULL, *check_build = NULL;
    fj_source src;
    int r = -1;
    int src_made = 0;
    const char *codec_name = NULL;
    if (codec != Py_None) {
        if (!PyUnicode_Check(codec) || (codec_name = PyUnicode_AsUTF8(codec)) == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "codec must be None or a str");
            }
            goto done;
        }
        fj_reader *inner;
        if (PyLong_Check(file)) {
            int fd = PyLong_AsLong(file);
            if (fd == -1 && PyErr_Occurred()) {
                goto done;
            }
            inner = fj_reader_fd(fd);
        }
        else if ((has_read = fj_has_attr_string(file, "read")) != 0) {
            if (has_read < 0) {
                goto done;
            }
            inner = fj_reader_pyfile(file);
        }
        else {
            inner = mem_reader_new(file);
        }
        if (inner == NULL) {
            goto done;
        }
        if (prog.cb != NULL && (inner = fj_progress_reader(inner, &prog)) == NULL) { /* owns inner */
            goto done;
        }
        /* A restricted load decodes on one thread: memory beyond its budget stays that of one
         * streaming decoder (the parallel readers hold segments, and the multithreaded xz decoder
         * a whole block of the size its header declares, before the budget sees a byte). */
        fj_reader *outer = fj_codec_reader_threads(codec_name, find_class != Py_None ? 1 : 0,
                                                   inner); /* owns inner */
        if (outer == NULL) {
            goto done;
        }
        r = fj_source_init_reader(&src, outer);
        src.total = -1;
    }
    else if (PyLong_Check(file)) {
        int fd = PyLong_AsLong(file);
        if (fd == -1 && PyErr_Occurred()) {
            goto done;
        }
        r = fj_source_init_fd(&src, fd);
    }
    else if ((has_read = fj_has_attr_string(file, "read")) != 0) {
        if (has_read < 0) {
            goto done;
        }
        r = fj_source_init_pyfile(&src, file);
        if (r == 0 && src.total < 0 && size_hint >= 0 && size_hint <= INT64_MAX - src.base) {
            /* known length: arrays are read straight into their final memory, claims beyond
             * the end fail before any allocation */
            src.total = src.base + (int64_t)size_hint;
        }
    }
    else if (PyObject_CheckBuffer(file)) {
        r = fj_source_init_mem(&src, file);
    }
    else {
        PyErr_Format(PyExc_TypeError, "load() file must be an int fd, a file object or a bytes-like object, not %.200s",
                     Py_TYPE(file)->tp_name);
        goto done;
    }
    src_made = 1;
    if (r < 0) {
        goto done;
    }
    if (prog.cb != NULL && codec_name == NULL) {
        fj_source_set_progress(&src, &prog);
    }
    fj_up u;
    fj_up_init(&u, st, &src);
    u.joblib = 1;
    u.mmap_mode = codec_name == NULL ? mmap_mode : NULL; /* compressed streams cannot be mapped */
    u.filename = filename;
    u.ensure_native = ensure_native;
    u.trailer = trailer == Py_None ? NULL : trailer; /* provenance */
    u.replace_globals = replace_globals == Py_None ? NULL : replace_globals;
    if (find_class != Py_None) {
        if (policy_check_build(st, find_class, &check_build) < 0) {
            fj_up_clear(&u);
            goto done;
        }
        if (fj_up_restrict(&u, find_class, check_build) < 0) {
            fj_up_clear(&u);
            goto done;
        }
    }
    res = fj_up_load(&u);
    if (res == NULL && u.restricted) {
        strip_error_traceback();
    }
    int compat = u.compat_mode;
    fj_up_clear(&u);
    if (res != NULL && fj_source_finish(&src) < 0) {
        Py_CLEAR(res);
    }
    if (res != NULL && prog.cb != NULL) { /* the final call */
        if (codec_name == NULL) {
            prog.done = fj_source_progress_count(&src);
        }
        if (fj_progress_report(&prog) < 0) {
            Py_CLEAR(res);
        }
    }
    if (res != NULL && compat) {
        if (PyErr_WarnFormat(PyExc_DeprecationWarning, 1,
                             "The file '%S' has been generated with a joblib version less than 0.10. "
                             "Please regenerate this pickle file.",
                             filename ? filename : Py_None) < 0) {
            Py_CLEAR(res);
        }
    }
done:
    if (src_made) {
        fj_source_release(&src);
    }
    Py_XDECREF(filename);
    Py_XDECREF(check_build);
    fj_progress_clear(&prog);
    return res;
}

static PyMethodDef core_methods[] = {
    {"loads", (PyCFunction)(void (*)(void))core_loads, METH_FASTCALL | METH_KEYWORDS,
     "loads(data, /, *, fix_imports=True, encoding='ASCII', errors='strict', buffers=None, find_class=None)\n--\n\n"
     "Read a pickled object from a bytes-like object (pickle.loads compatible).\n"
     "find_class: a policy callable(module, name) used for every global (restricted loading)."},
    {"load_pickle", (PyCFunction)(void (*)(void))core_load_pickle, METH_FASTCALL | METH_KEYWORDS,
     "load_pickle(file, /, *, fix_imports=True, encoding='ASCII', errors='strict', buffers=None, find_class=None)\n--\n\n"
     "Read a pickled object from a file object or fd (pickle.load compatible)."},
    {"load", (PyCFunction)(void (*)(void))core_load, METH_VARARGS | METH_KEYWORDS,
     "load(file, *, mmap_mode=None, filename=None, ensure_native=False, codec=None, find_class=None,\n"
     "     progress=None, trailer=None, replace_globals=None, size=-1)\n--\n\n"
     "Read one joblib (or plain pickle) stream. progress: None or callable(done_bytes, total_bytes).\n"
     "trailer: None or a list; the object of a POP right before the final STOP is appended to it\n"
     "(provenance). replace_globals: None or {(module, name): obj}: a global that resolved\n"
     "(find_class accepted it) is replaced by obj. size: for a Python file object whose fileno()\n"
     "gives no size, the bytes left from its position (-1: unknown)."},
    {NULL, NULL, 0, NULL},
};

/* ---------------------------------------------------------------------------------------------
 * Part hooks */

static PyObject *
make_placeholder(const char *name)
{
    return PyObject_CallFunction((PyObject *)&PyType_Type, "s(O){ss}", name, (PyObject *)&PyBaseObject_Type,
                                 "__module__", "fastjoblib._core");
}

static PyObject *
attr_of(const char *mod_name, const char *attr)
{
    PyObject *mod = PyImport_ImportModule(mod_name);
    if (mod == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_GetAttrString(mod, attr);
    Py_DECREF(mod);
    return r;
}

#define INTERN(field, text)                                                                          \
    do {                                                                                             \
        if ((up->field = PyUnicode_InternFromString(text)) == NULL)                                  \
            return -1;                                                                               \
    } while (0)

int
fj_unpickler_exec(PyObject *module, fj_state *st)
{
    fj_unpickler_state *up = &st->up;
    INTERN(str_find_class, "find_class");
    INTERN(str_check_build, "check_build");
    INTERN(str_persistent_load, "persistent_load");
    INTERN(str_append, "append");
    INTERN(str_extend, "extend");
    INTERN(str_add, "add");
    INTERN(str_setstate, "__setstate__");
    INTERN(str_dict, "__dict__");
    INTERN(str_new, "__new__");
    INTERN(str_getinitargs, "__getinitargs__");
    INTERN(str_subclass, "subclass");
    INTERN(str_shape, "shape");
    INTERN(str_order, "order");
    INTERN(str_dtype, "dtype");
    INTERN(str_allow_mmap, "allow_mmap");
    INTERN(str_alignment, "numpy_array_alignment_bytes");
    INTERN(str_filename, "filename");
    INTERN(str_init_args, "init_args");
    INTERN(str_state, "state");
    if ((up->name_mapping = attr_of("_compat_pickle", "NAME_MAPPING")) == NULL ||
        (up->import_mapping = attr_of("_compat_pickle", "IMPORT_MAPPING")) == NULL ||
        (up->ext_registry = attr_of("copyreg", "_inverted_registry")) == NULL ||
        (up->ext_cache = attr_of("copyreg", "_extension_cache")) == NULL) {
        return -1;
    }
    if ((up->NumpyArrayWrapper = make_placeholder("NumpyArrayWrapper")) == NULL ||
        (up->NDArrayWrapper = make_placeholder("NDArrayWrapper")) == NULL ||
        (up->ZNDArrayWrapper = make_placeholder("ZNDArrayWrapper")) == NULL) {
        return -1;
    }
    up->Unpickler_type = PyType_FromModuleAndSpec(module, &unpickler_spec, NULL);
    if (up->Unpickler_type == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "Unpickler", up->Unpickler_type) < 0) {
        return -1;
    }
    up->MemoProxy_type = PyType_FromModuleAndSpec(module, &umemoproxy_spec, NULL);
    if (up->MemoProxy_type == NULL) {
        return -1;
    }
    if (PyModule_AddFunctions(module, fj_budget_methods) < 0 ||
        PyModule_AddFunctions(module, fj_pdhash_methods) < 0) {
        return -1;
    }
    if (PyModule_AddFunctions(module, core_methods) < 0) {
        return -1;
    }
    return 0;
}

int
fj_unpickler_traverse(fj_state *st, visitproc visit, void *arg)
{
    fj_unpickler_state *up = &st->up;
    Py_VISIT(up->Unpickler_type);
    Py_VISIT(up->MemoProxy_type);
    Py_VISIT(up->NumpyArrayWrapper);
    Py_VISIT(up->NDArrayWrapper);
    Py_VISIT(up->ZNDArrayWrapper);
    Py_VISIT(up->name_mapping);
    Py_VISIT(up->import_mapping);
    Py_VISIT(up->ext_registry);
    Py_VISIT(up->ext_cache);
    return 0;
}

void
fj_unpickler_clear(fj_state *st)
{
    fj_unpickler_state *up = &st->up;
    Py_CLEAR(up->Unpickler_type);
    Py_CLEAR(up->MemoProxy_type);
    Py_CLEAR(up->NumpyArrayWrapper);
    Py_CLEAR(up->NDArrayWrapper);
    Py_CLEAR(up->ZNDArrayWrapper);
    Py_CLEAR(up->name_mapping);
    Py_CLEAR(up->import_mapping);
    Py_CLEAR(up->ext_registry);
    Py_CLEAR(up->ext_cache);
    Py_CLEAR(up->str_find_class);
    Py_CLEAR(up->str_check_build);
    Py_CLEAR(up->str_persistent_load);
    Py_CLEAR(up->str_append);
    Py_CLEAR(up->str_extend);
    Py_CLEAR(up->str_add);
    Py_CLEAR(up->str_setstate);
    Py_CLEAR(up->str_dict);
    Py_CLEAR(up->str_new);
    Py_CLEAR(up->str_getinitargs);
    Py_CLEAR(up->str_subclass);
    Py_CLEAR(up->str_shape);
    Py_CLEAR(up->str_order);
    Py_CLEAR(up->str_dtype);
    Py_CLEAR(up->str_allow_mmap);
    Py_CLEAR(up->str_alignment);
    Py_CLEAR(up->str_filename);
    Py_CLEAR(up->str_init_args);
    Py_CLEAR(up->str_state);
}
