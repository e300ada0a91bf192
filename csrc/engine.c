/* engine.c: binding to C engines inside optional packages' extensions (see engine.h). */
#include "fj.h"
#include "engine.h"

#include <dlfcn.h>
#include <string.h>

int
fj_engine_bind(const char *module, const char *const *names, void **fns, size_t n,
               void **handle)
{
    PyObject *mod = NULL, *file = NULL, *path = NULL;
    void *h = NULL;
    int rc = 0;
    *handle = NULL;
    if ((mod = PyImport_ImportModule(module)) == NULL) {
        if (PyErr_ExceptionMatches(PyExc_ImportError)) {
            PyErr_Clear();
        }
        else {
            rc = -1;
        }
        goto done;
    }
    if ((file = PyObject_GetAttrString(mod, "__file__")) == NULL || !PyUnicode_Check(file) ||
        (path = PyUnicode_EncodeFSDefault(file)) == NULL) {
        PyErr_Clear();
        goto done;
    }
    /* the import loaded it: RTLD_NOLOAD finds that copy (a new reference on it) */
    h = dlopen(PyBytes_AS_STRING(path), RTLD_NOW | RTLD_NOLOAD);
    if (h == NULL) {
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if ((fns[i] = dlsym(h, names[i])) == NULL) {
            dlclose(h);
            memset(fns, 0, n * sizeof(void *));
            goto done;
        }
    }
    *handle = h;
    rc = 1;
done:
    Py_XDECREF(path);
    Py_XDECREF(file);
    Py_XDECREF(mod);
    return rc;
}
