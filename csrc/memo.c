/* memo.c: the pickler's memo table (see memo.h). Same idea as CPython's PyMemoTable: the hash is
 * the address shifted right by 3, dict-style perturbed probing, grow at 2/3 full. */
#include "memo.h"

#include <string.h>

#define MEMO_MIN_SIZE 64

void
fj_memo_init(fj_memo *m)
{
    m->mask = 0;
    m->used = 0;
    m->table = NULL;
}

/* Slot for key in a table that has at least one free slot. */
static fj_memo_entry *
find_slot(fj_memo_entry *table, size_t mask, PyObject *key)
{
    size_t h = (size_t)key >> 3;
    size_t i = h & mask;
    size_t perturb = h;
    for (;;) {
        fj_memo_entry *e = &table[i];
        if (e->key == key || e->key == NULL) {
            return e;
        }
        perturb >>= 5;
        i = (i * 5 + perturb + 1) & mask;
    }
}

static int
resize_table(fj_memo *m, size_t min_size)
{
    size_t size = MEMO_MIN_SIZE;
    while (size < min_size) {
        if (size > ((size_t)PY_SSIZE_T_MAX / sizeof(fj_memo_entry)) / 2) {
            PyErr_NoMemory();
            return -1;
        }
        size <<= 1;
    }
    fj_memo_entry *table = PyMem_Calloc(size, sizeof(fj_memo_entry));
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (m->table != NULL) {
        for (size_t i = 0; i <= m->mask; i++) {
            fj_memo_entry *old = &m->table[i];
            if (old->key != NULL) {
                *find_slot(table, size - 1, old->key) = *old;
            }
        }
        PyMem_Free(m->table);
    }
    m->table = table;
    m->mask = size - 1;
    return 0;
}

int
fj_memo_set(fj_memo *m, PyObject *key, Py_ssize_t value)
{
    if (m->table == NULL && resize_table(m, MEMO_MIN_SIZE) < 0) {
        return -1;
    }
    fj_memo_entry *e = find_slot(m->table, m->mask, key);
    if (e->key != NULL) {
        e->value = value;
        return 0;
    }
    e->key = Py_NewRef(key);
    e->value = value;
    m->used++;
    if (m->used * 3 >= (m->mask + 1) * 2) {
        /* grow to 4x the used count, 2x once large (like CPython) */
        size_t want = m->used > 50000 ? m->used * 2 : m->used * 4;
        if (resize_table(m, want) < 0) {
            return -1;
        }
    }
    return 0;
}

void
fj_memo_clear(fj_memo *m)
{
    if (m->table == NULL) {
        return;
    }
    /* Detach first: a key's destructor may run arbitrary code. */
    fj_memo_entry *table = m->table;
    size_t n = m->mask + 1;
    m->table = NULL;
    m->mask = 0;
    m->used = 0;
    for (size_t i = 0; i < n; i++) {
        Py_XDECREF(table[i].key);
    }
    PyMem_Free(table);
}

void
fj_memo_free(fj_memo *m)
{
    fj_memo_clear(m);
}
