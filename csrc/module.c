/* module.c: the fastjoblib._core module: definition, multi-phase init, module state.
 *
 * The entry points themselves (dump/load/dumps/loads, Pickler/Unpickler types) are added to the
 * module by each part's exec hook (pickler.c, unpickler.c, codec.c, fsops.c).
 */
#define FJ_IMPORT_ARRAY
#include "fj.h"

static int
import_numpy(void)
{
    /* import_array() is a macro that returns NULL on failure; wrap it in a function returning int. */
    if (_import_array() < 0) {
        return -1;
    }
    return 0;
}

static PyObject *
get_attr_from(const char *module_name, const char *attr)
{
    PyObject *mod = PyImport_ImportModule(module_name);
    if (mod == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_GetAttrString(mod, attr);
    Py_DECREF(mod);
    return res;
}

static int
module_exec(PyObject *m)
{
    fj_state *st = (fj_state *)PyModule_GetState(m);
    if (import_numpy() < 0) {
        return -1;
    }
    if ((st->PickleError = get_attr_from("pickle", "PickleError")) == NULL ||
        (st->PicklingError = get_attr_from("pickle", "PicklingError")) == NULL ||
        (st->UnpicklingError = get_attr_from("pickle", "UnpicklingError")) == NULL) {
        return -1;
    }
    if ((st->np_ndarray = get_attr_from("numpy", "ndarray")) == NULL ||
        (st->np_matrix = get_attr_from("numpy", "matrix")) == NULL ||
        (st->np_memmap = get_attr_from("numpy", "memmap")) == NULL) {
        return -1;
    }
    if (fj_pickler_exec(m, st) < 0 || fj_unpickler_exec(m, st) < 0 || fj_codec_exec(m, st) < 0 ||
        fj_fsops_exec(m) < 0) {
        return -1;
    }
    return 0;
}

static int
module_traverse(PyObject *m, visitproc visit, void *arg)
{
    fj_state *st = (fj_state *)PyModule_GetState(m);
    if (st == NULL) {
        return 0;
    }
    Py_VISIT(st->PickleError);
    Py_VISIT(st->PicklingError);
    Py_VISIT(st->UnpicklingError);
    Py_VISIT(st->np_ndarray);
    Py_VISIT(st->np_matrix);
    Py_VISIT(st->np_memmap);
    int r;
    if ((r = fj_pickler_traverse(st, visit, arg)) != 0) {
        return r;
    }
    if ((r = fj_unpickler_traverse(st, visit, arg)) != 0) {
        return r;
    }
    return fj_codec_traverse(st, visit, arg);
}

static int
module_clear(PyObject *m)
{
    fj_state *st = (fj_state *)PyModule_GetState(m);
    if (st == NULL) {
        return 0;
    }
    Py_CLEAR(st->PickleError);
    Py_CLEAR(st->PicklingError);
    Py_CLEAR(st->UnpicklingError);
    Py_CLEAR(st->np_ndarray);
    Py_CLEAR(st->np_matrix);
    Py_CLEAR(st->np_memmap);
    fj_pickler_clear(st);
    fj_unpickler_clear(st);
    fj_codec_clear(st);
    return 0;
}

static void
module_free(void *m)
{
    module_clear((PyObject *)m);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

PyModuleDef fj_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fastjoblib._core",
    .m_doc = "C core of fastjoblib: pickler, unpickler, joblib array records, codecs.",
    .m_size = sizeof(fj_state),
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

fj_state *
fj_state_from_type(PyTypeObject *type)
{
    PyObject *m = PyType_GetModuleByDef(type, &fj_module_def); /* borrowed */
    if (m == NULL) {
        return NULL;
    }
    return (fj_state *)PyModule_GetState(m);
}

fj_state *
fj_state_from_module(PyObject *module)
{
    return (fj_state *)PyModule_GetState(module);
}

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&fj_module_def);
}
