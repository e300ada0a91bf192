/* unpickler_impl.h: the unpickler engine shared by unpickler.c and ndarray_load.c. */
#ifndef FJ_UNPICKLER_IMPL_H
#define FJ_UNPICKLER_IMPL_H

#include "fj.h"
#include "memo.h"
#include "source.h"
#include "budget.h"

/* What a restricted load adds beyond find_class / check_build: optional hooks of the policy
 * object (owned references) and the load's memory budget. Shared with nested object-array
 * streams. */
typedef struct {
    PyObject *filter_state;  /* callable(inst, state) -> state to BUILD with, or NULL */
    PyObject *check_object;  /* callable(obj): raises if obj may not enter the load, or NULL */
    PyObject *before_call;   /* callable(func, args, kwargs): raises to refuse the call, or NULL */
    PyObject *budget_cap;    /* capsule of the budget, or NULL */
    PyObject *old_handler;   /* NumPy memory handler to restore after the load, or NULL */
    fj_budget *budget;       /* inside budget_cap, or NULL */
    /* objects whose memo slot a stream reused (pickle never does): the reference held here
     * stands in for the memo's, so the change rule (guard_unshared) still sees every other
     * reference to them */
    fj_memo pinned;
    int64_t key_work;        /* tuple-key elements hashed so far (CPython does not cache them) */
    /* hash-flooding guard: full hash -> number of distinct keys inserted with it */
    Py_hash_t *hkeys;
    uint32_t *hcounts;
    size_t hmask, hused;
} fj_policy;

struct fj_up {
    fj_state *st;
    fj_source *src;
    PyObject **stack;        /* owned references [0, sp) */
    Py_ssize_t sp, scap;
    Py_ssize_t fence;        /* stack index of the innermost MARK (0 when none) */
    Py_ssize_t *marks;       /* saved outer fences */
    Py_ssize_t nmarks, mcap;
    PyObject **memo;         /* flat memo, owned references or NULL */
    Py_ssize_t memo_cap;
    Py_ssize_t memo_count;   /* number of distinct memo keys (MEMOIZE uses it) */
    PyObject *memo_dict;     /* sparse high indices (rare), or NULL */
    int proto;
    int fix_imports;
    const char *encoding;    /* for py2 STRING; "bytes" keeps bytes */
    const char *errors;
    PyObject *buffers;       /* iterator or NULL (borrowed for the load) */
    PyObject *find_class;    /* callable or NULL for the built-in policy (borrowed) */
    /* Restricted loading (a find_class policy from _core.load/loads/load_pickle, or an Unpickler
     * declaring check_build): before every BUILD, check_build(inst) is called when given, then
     * the built-in rule refuses targets that are types, modules, functions, methods, descriptors
     * or objects find_class returned during this load (`seen`). Off: one branch per BUILD. */
    int restricted;
    PyObject *check_build;   /* callable or NULL (borrowed) */
    fj_memo *seen;           /* objects find_class returned (strong refs); shared with nested
                              * object-array streams; points at seen_own in the outermost engine */
    fj_memo seen_own;
    fj_policy *pol;          /* restricted loads: hooks and budget (points at pol_own at the top) */
    fj_policy pol_own;
    uint32_t ops;            /* opcodes run (the budget charges a fixed cost per 1024) */
    PyObject *persistent_load; /* callable or NULL (borrowed) */
    PyObject *replace_globals; /* dict {(module, name): obj} or NULL (borrowed; _core.load
                                * replace_globals=): a global that resolved (through the policy)
                                * is replaced by obj; shared with nested object-array streams */
    /* joblib array hook */
    int joblib;
    const char *mmap_mode;   /* NULL, "r", "r+", "c" */
    PyObject *filename;      /* str or NULL (borrowed) */
    int ensure_native;
    int compat_mode;         /* an NDArrayWrapper was seen */
    int depth;               /* nesting of object-array streams */
    /* provenance (_core.load trailer=): a list (borrowed) or NULL; outermost engine only. The
     * object dropped by the last POP waits in trailer_pending (owned) with the offset after that
     * POP; a STOP right there appends it to the list. */
    PyObject *trailer;
    PyObject *trailer_pending;
    int64_t trailer_at;
    /* frames checked as the reading stdlib does (pyver.h FJ_PICKLE_STRICT_FRAMES; always in
     * joblib mode): the absolute end of the current frame, -1 outside frames / unchecked */
    int64_t frame_end;
};

/* Initialise / clear an engine over `src` (borrowed). */
void fj_up_init(fj_up *u, fj_state *st, fj_source *src);
void fj_up_clear(fj_up *u);
/* Turn restricted loading on with `find_class` (borrowed) and an optional check_build callable
 * (borrowed, may be NULL). The policy object's optional filter_state, check_object, before_call
 * and budget attributes are looked up too (and the budget's NumPy handler installed for the
 * load). 0 / -1 with an exception (the engine must still be cleared). */
int fj_up_restrict(fj_up *u, PyObject *find_class, PyObject *check_build);
/* A nested engine (object-array stream) under the same policy as `parent`. */
void fj_up_inherit_policy(fj_up *sub, const fj_up *parent);
/* Run the opcode loop until STOP. New reference or NULL. */
PyObject *fj_up_load(fj_up *u);
/* An array record's payload follows (it is never inside a frame): 0, or -1 with UnpicklingError
 * when the current frame has not ended yet. */
int fj_up_leave_frame(fj_up *u);
/* The global (module, name) through the engine's policy (find_class hook or the built-in one). */
PyObject *fj_up_find_class(fj_up *u, PyObject *module, PyObject *name);
/* The built-in find_class policy of stdlib pickle. */
PyObject *fj_default_find_class(fj_state *st, int proto, int fix_imports, PyObject *module, PyObject *name);

/* ndarray_load.c: the BUILD of a joblib wrapper `inst` (type is one of the placeholders) with
 * `state`. Returns the array (new reference) or NULL. */
PyObject *fj_ndarray_build(fj_up *u, PyObject *inst, PyObject *state);
/* Restricted loads with a budget: count n bytes the file asks for. 0 / -1 (MemoryError). */
static inline int
fj_up_charge(fj_up *u, int64_t n)
{
    return (u->pol != NULL && u->pol->budget != NULL) ? fj_budget_charge(u->pol->budget, n) : 0;
}

#endif
