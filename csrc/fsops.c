/* fsops.c: filesystem calls Python's os module does not have.
 *
 * _exchange(a, b): atomically swap the directory entries `a` and `b` (Linux renameat2 with
 * RENAME_EXCHANGE). The atomic replace of a path (python/fastjoblib/_target.py) exchanges the
 * complete temporary with the target and then unlinks the old file, now at the temporary's name:
 * unlike a rename over an existing file, this does not make ext4 (auto_da_alloc) or btrfs start
 * writeback of the whole new file and wait for it. Raises OSError (errno set by the kernel:
 * EINVAL/EOPNOTSUPP where the filesystem cannot exchange, ENOSYS where the kernel or the
 * platform has no such call, ENOENT when either name is missing); the caller falls back to a
 * plain rename.
 */
#include "fj.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static int
exchange_paths(const char *a, const char *b)
{
#if defined(__linux__) && defined(SYS_renameat2)
    /* the raw system call: no dependency on the C library's version (glibc >= 2.28 wraps it) */
    return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
#else
    (void)a;
    (void)b;
    errno = ENOSYS;
    return -1;
#endif
}

static PyObject *
fsops_exchange(PyObject *module, PyObject *args)
{
    PyObject *a = NULL, *b = NULL, *result = NULL;
    int rc, err = 0;

    (void)module;
    if (!PyArg_ParseTuple(args, "O&O&:_exchange", PyUnicode_FSConverter, &a,
                          PyUnicode_FSConverter, &b)) {
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = exchange_paths(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b));
    if (rc != 0) {
        err = errno;
    }
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        errno = err;
        PyErr_SetFromErrnoWithFilenameObjects(PyExc_OSError, a, b);
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(a);
    Py_XDECREF(b);
    return result;
}

static PyMethodDef fsops_methods[] = {
    {"_exchange", (PyCFunction)fsops_exchange, METH_VARARGS,
     "_exchange(a, b) -> None\n\n"
     "Atomically exchange the directory entries a and b (renameat2 RENAME_EXCHANGE). OSError "
     "where the filesystem, kernel or platform cannot (EINVAL, EOPNOTSUPP, ENOSYS) or a name "
     "is missing (ENOENT)."},
    {NULL, NULL, 0, NULL},
};

int
fj_fsops_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, fsops_methods);
}
