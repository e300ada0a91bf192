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
    /* importlib.util.find_spec(module).origin: imports the parent package only, not the
     * extension itself (zstandard._cffi would need the cffi package to initialise; its C
     * functions do not) */
    PyObject *util = PyImport_ImportModule("importlib.util");
    if (util == NULL) {
        rc = -1;
        goto done;
    }
    mod = PyObject_CallMethod(util, "find_spec", "s", module);
    Py_DECREF(util);
    if (mod == NULL) {
        if (PyErr_ExceptionMatches(PyExc_ImportError)) {
            PyErr_Clear();
        }
        else {
            rc = -1;
        }
        goto done;
    }
    if (mod == Py_None || (file = PyObject_GetAttrString(mod, "origin")) == NULL ||
        !PyUnicode_Check(file) || (path = PyUnicode_EncodeFSDefault(file)) == NULL) {
        PyErr_Clear();
        goto done;
    }
    h = dlopen(PyBytes_AS_STRING(path), RTLD_NOW | RTLD_NOLOAD);
    if (h == NULL) {
        h = dlopen(PyBytes_AS_STRING(path), RTLD_NOW | RTLD_LOCAL);
    }
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
