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
 *
 * _cachestat(fd) -> (pages cached, dirty, under writeback) of the whole file (Linux >= 6.5
 * cachestat(2)); OSError (ENOSYS) where the kernel or the platform has no such call.
 * _fs_magic(fd) -> the filesystem's f_type (fstatfs(2)); OSError where unavailable.
 * The atomic replace uses both to decide whether to drop the old file's clean cached pages before
 * writing the new file (_target._drop_clean_pages).
 */
#include "fj.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <sys/vfs.h>
#endif
#include <stdint.h>

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

#if defined(__linux__) && !defined(SYS_cachestat) && !defined(__alpha__)
/* older C library headers: 451 in the table shared by every architecture but alpha (6.5+) */
#define SYS_cachestat 451
#endif

struct fj_cachestat_range {
    uint64_t off;
    uint64_t len;
};

struct fj_cachestat {
    uint64_t nr_cache;
    uint64_t nr_dirty;
    uint64_t nr_writeback;
    uint64_t nr_evicted;
    uint64_t nr_recently_evicted;
};

static PyObject *
fsops_cachestat(PyObject *module, PyObject *arg)
{
    int fd, rc, err = 0;
    struct fj_cachestat_range range = {0, 0}; /* len 0: to the end of the file */
    struct fj_cachestat cs = {0, 0, 0, 0, 0};

    (void)module;
    fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0) {
        return NULL;
    }
#if defined(__linux__) && defined(SYS_cachestat)
    Py_BEGIN_ALLOW_THREADS
    rc = (int)syscall(SYS_cachestat, fd, &range, &cs, 0);
    if (rc != 0) {
        err = errno;
    }
    Py_END_ALLOW_THREADS
#else
    (void)range;
    rc = -1;
    err = ENOSYS;
#endif
    if (rc != 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return Py_BuildValue("(KKK)", (unsigned long long)cs.nr_cache,
                         (unsigned long long)cs.nr_dirty, (unsigned long long)cs.nr_writeback);
}

static PyObject *
fsops_fs_magic(PyObject *module, PyObject *arg)
{
    int fd;

    (void)module;
    fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0) {
        return NULL;
    }
#if defined(__linux__)
    {
        struct statfs sfs;
        int rc, err = 0;

        Py_BEGIN_ALLOW_THREADS
        rc = fstatfs(fd, &sfs);
        if (rc != 0) {
            err = errno;
        }
        Py_END_ALLOW_THREADS
        if (rc != 0) {
            errno = err;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return PyLong_FromUnsignedLongLong((unsigned long long)(unsigned long)sfs.f_type);
    }
#else
    errno = ENOSYS;
    return PyErr_SetFromErrno(PyExc_OSError);
#endif
}

static PyMethodDef fsops_methods[] = {
    {"_cachestat", (PyCFunction)fsops_cachestat, METH_O,
     "_cachestat(fd) -> (cached, dirty, writeback)\n\n"
     "Pages of the file in the page cache, dirty, and under writeback (Linux cachestat(2)). "
     "OSError where unavailable (ENOSYS)."},
    {"_fs_magic", (PyCFunction)fsops_fs_magic, METH_O,
     "_fs_magic(fd) -> int\n\nThe f_type of the filesystem holding fd (fstatfs(2))."},
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
