/* memo.h: pointer-keyed open-addressing table (object address -> memo index) for the pickler.
 * Keys hold strong references (an address cannot be reused while it is in the table). No
 * deletion; lookups are a short probe loop. */
#ifndef FJ_MEMO_H
#define FJ_MEMO_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject *key;     /* strong reference, NULL = empty slot */
    Py_ssize_t value;  /* memo index */
} fj_memo_entry;

typedef struct {
    size_t mask;          /* table size - 1 (size is a power of two), 0 when not allocated */
    size_t used;          /* number of keys */
    fj_memo_entry *table; /* PyMem_Malloc'd, NULL until the first insert */
} fj_memo;

void fj_memo_init(fj_memo *m);
/* Pointer to the stored index, or NULL when absent. Never fails. */
static inline Py_ssize_t *
fj_memo_get(fj_memo *m, PyObject *key)
{
    if (m->used == 0) {
        return NULL;
    }
    size_t mask = m->mask;
    size_t h = (size_t)key >> 3;
    size_t i = h & mask;
    size_t perturb = h;
    for (;;) {
        fj_memo_entry *e = &m->table[i];
        if (e->key == key) {
            return &e->value;
        }
        if (e->key == NULL) {
            return NULL;
        }
        perturb >>= 5;
        i = (i * 5 + perturb + 1) & mask;
    }
}
/* Insert (new strong ref on key) or overwrite. 0 / -1 (MemoryError). */
int fj_memo_set(fj_memo *m, PyObject *key, Py_ssize_t value);
/* Drop every key, keep the table allocated. */
void fj_memo_clear(fj_memo *m);
/* Drop every key and the table. */
void fj_memo_free(fj_memo *m);

#endif
