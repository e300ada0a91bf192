/* pyver.h: the one place where the running interpreter's version selects behaviour.
 *
 * The pickle-compatible API behaves like the stdlib pickle of the interpreter it is built for
 * (the extension is compiled per interpreter, so these are compile-time switches). Each switch
 * names the stdlib behaviour it follows; code elsewhere tests the switch, never PY_VERSION_HEX.
 * The Python layer has no version tests: where an error text comes from a stdlib module (e.g.
 * lzma's preset converter, reworded in 3.14) it lets that module raise it.
 */
#ifndef FJ_PYVER_H
#define FJ_PYVER_H

#include <Python.h>

/* ---- semantics of stdlib pickle ------------------------------------------------------------ */

/* 3.13: a bad copyreg extension registry entry raises TypeError (not an int: PyLong_AsLong's) or
 * RuntimeError("extension code %ld is out of range"); before, PicklingError("Can't pickle %R:
 * extension code ... isn't an integer / is out of range"). PickleBuffer under protocol < 5:
 * "can only be pickled" (before: "can only pickled"). */
#if PY_VERSION_HEX >= 0x030D0000
#define FJ_PICKLE_313_ERRORS 1
#else
#define FJ_PICKLE_313_ERRORS 0
#endif

/* 3.14 (gh-122311, gh-118614 and neighbours): pickle's errors were reworked.
 *  - Unpickler.find_class: a name without '.' (or protocol < 4) is a plain getattr with its own
 *    AttributeError text; a dotted name (protocol >= 4) walks getattr and, on AttributeError,
 *    raises AttributeError("Can't resolve path %R on module %R") chained to the original;
 *    '<locals>' is no longer refused by name.
 *    Before 3.14: AttributeError("Can't get attribute %R on %R") for both forms, and
 *    "Can't pickle local attribute %R on %R" for a '<locals>' component (protocol >= 4; 3.13:
 *    "Can't get local attribute %R on %R").
 *  - Pickler.save_global: a local object raises PicklingError("Can't pickle local object %R")
 *    with the object's repr (3.13: AttributeError("Can't get local object %R") with its name;
 *    3.11: "Can't pickle local object %R"); an import that fails raises PicklingError("Can't
 *    pickle %R: <the import error>") and a name that does not resolve PicklingError("Can't
 *    pickle %R: it's not found as M.N"), both chained to the original (before: "import of module
 *    %R failed" / "attribute lookup N on M failed", replacing it). */
#if PY_VERSION_HEX >= 0x030E0000
#define FJ_PICKLE_314_ERRORS 1
#else
#define FJ_PICKLE_314_ERRORS 0
#endif

/* 3.14 (gh-122213 and neighbours): the pickler attaches exception notes on the way out of a
 * nested failure, innermost first: "when serializing list item 1", "... dict item 'a'" (on the
 * value only), "... tuple item 0", "... set element", "... X object" (around a reduce value),
 * "... X reconstructor", "... X reconstructor arguments", "... X class", "... X __new__
 * arguments", "... X state", "... X state setter", "... X item N" / "... X item 'k'" (reduce list
 * / dict items), where X is the type's fully qualified name (%T). They are added with
 * BaseException.add_note (not an override: as the C pickler), only on the error path.
 * The same release reworded the reduce protocol's errors (under FJ_PICKLE_314_ERRORS):
 * "__reduce__ must return a string or tuple, not T", "first item of the tuple returned by
 * __reduce__ must be callable, not T", "second item ... must be a tuple, not T", "fourth/fifth
 * item ... must be an iterator, not T", "sixth item ... must be callable, not T", "__newobj__
 * expected at least 1 argument, got N", "first argument to __newobj__() must be a class, not T" /
 * "must be C, not C'", "__newobj_ex__ expected 3 arguments, got N", "first/second/third argument
 * to __newobj_ex__() must be a class/tuple/dict, not T" (and no longer checks __newobj_ex__'s
 * class against the object's), "can't pickle module identifier %R" / "can't pickle global
 * identifier %R" (each alone, chained to the UnicodeEncodeError).
 * Before 3.14: no notes and the older texts. */
#define FJ_PICKLE_NOTES FJ_PICKLE_314_ERRORS

/* 3.14 (gh-154848): frames are enforced on reading (PEP 3154): an opcode and its argument may
 * not cross the end of the frame they start in ("pickle exhausted before end of frame"), and a
 * FRAME may not begin before the current one ends ("beginning of a new frame before end of
 * current frame"). Before 3.14 only the pure-Python unpickler enforced this, and joblib reads with
 * that one: the joblib-compatible load (_core.load) enforces it on every version. */
#define FJ_PICKLE_STRICT_FRAMES FJ_PICKLE_314_ERRORS

/* 3.14: the text protocols' INT / LONG arguments are decimal (int(s) / strtol(s, 10)): "010" is
 * 10, "0x10" a ValueError. Before: base 0 as our engine always did ("010" a ValueError, "0x10" 16).
 */
#if FJ_PICKLE_314_ERRORS
#define FJ_PICKLE_TEXT_INT_BASE 10
#else
#define FJ_PICKLE_TEXT_INT_BASE 0
#endif

/* 3.13: a dotted name under protocol < 4 is written getattr(getattr(GLOBAL first, a1), a2)...
 * with the first component by name and nothing but the object memoized; before, the parent object
 * was saved (recursing forever on a class whose __qualname__ leads back to itself). */
#if PY_VERSION_HEX >= 0x030D0000
#define FJ_PICKLE_NESTED_BY_PATH 1
#else
#define FJ_PICKLE_NESTED_BY_PATH 0
#endif

/* ---- C-API availability -------------------------------------------------------------------- */

/* getattr without raising AttributeError when missing: 1 found (*res new ref), 0 missing, -1
 * error. Creating and clearing an exception per lookup would be slow (and feeds the cyclic GC). */
static inline int
fj_lookup_attr(PyObject *obj, PyObject *name, PyObject **res)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyObject_GetOptionalAttr(obj, name, res);
#else
    return _PyObject_LookupAttr(obj, name, res);
#endif
}

/* hasattr(obj, name) as Python's: 1 / 0, or -1 with the error set (PyObject_HasAttrString
 * swallows every error, and 3.13+ reports each one it swallowed as "Exception ignored"). */
static inline int
fj_has_attr_string(PyObject *obj, const char *name)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyObject_HasAttrStringWithError(obj, name);
#else
    PyObject *n = PyUnicode_FromString(name), *res = NULL;
    if (n == NULL) {
        return -1;
    }
    int r = _PyObject_LookupAttr(obj, n, &res);
    Py_DECREF(n);
    Py_XDECREF(res);
    return r;
#endif
}

/* Two's complement little-endian bytes of an int into buf[n] (n large enough): 0 / -1. */
static inline int
fj_long_as_le_bytes(PyObject *v, unsigned char *buf, size_t n)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyLong_AsNativeBytes(v, buf, (Py_ssize_t)n, Py_ASNATIVEBYTES_LITTLE_ENDIAN) < 0 ? -1 : 0;
#else
    return _PyLong_AsByteArray((PyLongObject *)v, buf, n, 1, 1);
#endif
}

#if PY_VERSION_HEX >= 0x030C0000
/* A new exception was just raised while handling `orig` (stolen): make orig its __context__, as
 * "raise X" inside "except" does in Python. */
static inline void
fj_set_context(PyObject *orig)
{
    PyObject *exc = PyErr_GetRaisedException();
    if (exc != NULL) {
        PyException_SetContext(exc, orig); /* steals orig */
        PyErr_SetRaisedException(exc);
    }
    else {
        Py_XDECREF(orig);
    }
}
#endif

#endif /* FJ_PYVER_H */
