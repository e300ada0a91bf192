/* budget.h: the memory budget of a restricted load (trusted=, max_bytes=).
 *
 * One budget per load, held by a capsule ("fastjoblib.budget") that the Python policy creates and
 * the C engine finds as the policy's `budget` attribute. It counts, against one limit:
 *   - NumPy array data allocated while the load runs, through a NumPy memory handler installed in
 *     the loading thread's context for the duration of the load (net: frees give bytes back);
 *   - explicit charges: the joblib record reader's growing buffers, long byte/str opcodes, a
 *     fixed cost per opcode, and what the Python policy charges before calling a callable.
 * Going over the limit refuses the allocation before it is made: a MemoryError whose text names
 * the limit, and `exceeded` is set so the Python layer can re-raise its own error type. */
#ifndef FJ_BUDGET_H
#define FJ_BUDGET_H

#include "fj.h"

typedef struct fj_budget fj_budget;

/* The budget inside a capsule made by _core._budget(), or NULL with TypeError. Borrowed. */
fj_budget *fj_budget_from(PyObject *capsule);
/* Count n bytes; -1 with MemoryError when over the limit (GIL held). */
int fj_budget_charge(fj_budget *b, int64_t n);
/* Note how far into its (decompressed) stream the load is (the pandas call limit follows it). */
void fj_budget_set_read(fj_budget *b, int64_t pos);
/* Install the budget's NumPy handler in this context; *old gets the previous one (new ref). */
int fj_budget_install(PyObject *capsule, PyObject **old);
/* Put `old` back (steals it); keeps any exception that is set. */
void fj_budget_uninstall(PyObject *old);

/* Elements that hashing or comparing `key` walks: an int beyond 64 bits one per 64 bits of it (int
 * hashes are not cached), a tuple item by item (nested tuples included,
 * CPython caches no tuple hash), a frozenset item by item (hashes are cached, but comparing two
 * frozensets of one hash looks up every item; exact frozensets only); 0 for other keys. Stops counting past `cap`.
 * -1 with an exception on failure. */
Py_ssize_t fj_key_size(PyObject *key, Py_ssize_t cap);

/* The slot of hash h in one of the guard's own open-addressing tables (mask = capacity - 1): h
 * mixed with a per-process random seed, so that a file cannot aim its keys' hashes (ints hash to
 * themselves) at one slot or one run of slots. */
uint64_t fj_table_seed(void);
static inline size_t
fj_table_slot(uint64_t h, size_t mask)
{
    uint64_t z = h ^ fj_table_seed();
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (size_t)(z ^ (z >> 31)) & mask;
}

/* Module-level functions (_budget, _budget_charge, _budget_state, _budget_set_limit, _key_size). */
extern PyMethodDef fj_budget_methods[];
/* pdhash.c: _pd_hash_flood (the check of values pandas puts in its own hash tables). */
extern PyMethodDef fj_pdhash_methods[];

#endif
