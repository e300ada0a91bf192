"""Restricted loading: which globals a file may name, and how a name becomes an object.

Trust model
-----------
A pickle stream (a joblib file is one) builds objects by naming globals ("module.qualname") and then
calling them (REDUCE, NEWOBJ, INST/OBJ) or handing them state (BUILD). Whoever controls the file
controls the names and the arguments, so an unrestricted load runs arbitrary code: that is why
``joblib.load`` and ``fastjoblib.load`` are for trusted files only.

``make_find_class(trusted)`` builds the policy that a restricted load hands to the unpickler. The
unpickler calls it for every global in the stream, nested object-array streams included, and it:

* accepts only EXACT names: ``DEFAULT_TRUSTED`` (constructors of plain data: builtins containers and
  scalars, numpy arrays/dtypes/scalars, collections, datetime, decimal, fractions, uuid, pathlib,
  pandas frames/series/indexes/blocks/extension arrays) plus the exact names the caller lists. No
  prefix or module wildcards: a module-wide allowance admits gadgets such as
  ``numpy.testing._private.utils.runstring`` or ``numpy.load``;
* decides BEFORE importing anything: a refused name is never imported, so importing a module (and
  running its import-time code) is not an attack surface either;
* refuses a hard DENYLIST even when the caller lists the name (``make_find_class`` raises
  ``ValueError`` at construction, and the check is repeated on every call): loaders that would run
  a second, unrestricted load (``pickle.loads``, ``joblib.load``, ``numpy.load``, ``torch.load``,
  dill/cloudpickle, fastjoblib itself), code execution and attribute gadgets (``eval``, ``exec``,
  ``compile``, ``getattr``, ``setattr``, ``__import__``, ``open``, ``operator.attrgetter`` ...),
  whole modules that have no business in a data file and hold process, file, network or
  interpreter gadgets (``os``, ``posix``, ``subprocess``, ``sys``, ``importlib``, ``marshal``,
  ``runpy``, ``code``, ``ctypes``, ``shutil``, ``socket``, ``pty``, ``webbrowser``, profilers,
  debuggers, archive and compression modules, ...), gadget leaf names wherever they are
  re-exported (``*.load``, ``*.loads``, ``*.eval``, ``*.system`` ...), dunder steps and gadget
  modules as inner components (``numpy.ndarray.__init__.__globals__``, ``pathlib.os.system``);
* resolves an accepted name conservatively: the imported module must really be that module
  (``sys.modules`` aliases such as ``os.path`` -> ``posixpath`` are re-checked under their real
  name), qualname steps may not be dunders (except the few listed constructors such as
  ``copyreg.__newobj__``) nor land on a module, and the resolved object is checked again by
  identity and by its ``__module__`` against the denylist (a user-trusted alias of ``os.system``
  is still refused).

Some trusted names resolve to stand-ins rather than the real objects:

* ``fractions.Fraction`` / ``decimal.Decimal``: only what they pickle as (``Fraction(int, int)``,
  ``Decimal(str)``), ints of at most 100,000 bits: ``Fraction('1e9999999')`` runs for minutes.

* ``pyarrow.lib.type_for_alias`` / ``py_buffer`` / ``_restore_array`` (what a pandas string column
  backed by pyarrow pickles as): per-load stand-ins (``_arrow_shims``) that accept only Arrow
  string types, bytes/bytearray contents (copied, charged) and string-array descriptions whose
  offsets, bitmap and null count are checked before pyarrow reads them, then fully validated.

* ``codecs.encode`` / ``_codecs.encode`` (what protocols 0-2 use for ``bytes``): a shim that only
  performs ``str.encode('latin1')``; the real function runs any registered codec.
* ``numpy.memmap``: joblib files name it as the ``subclass`` of arrays dumped from memmaps, but
  calling it opens, creates or truncates any file (mode 'w+'); the stand-in refuses to be called.
  (Plain pickles of a ``numpy.memmap`` object therefore do not load in restricted mode.)

``functools.partial`` is neither trusted by default nor denied: it only binds callables that
themselves passed this policy (REDUCE can already call those), but it is not data, so a caller who
needs it (e.g. a FunctionTransformer) lists it explicitly.

What this does NOT prevent (read before trusting a name):

* A trusted class runs its own code on load: ``__new__``, ``__init__`` (via REDUCE),
  ``__setstate__``, ``__setitem__`` / ``extend`` / ``append`` (SETITEMS, APPENDS), ``__reduce__``
  helpers. A class whose ``__setstate__`` opens files or evaluates strings is a gadget, whatever
  its name; trusting a name is trusting that code with attacker-chosen arguments.
* Trusted callables are called with attacker-chosen arguments (e.g. very large shapes: memory
  exhaustion is not prevented by this policy; the C loader bounds array sizes by the input).
* BUILD on an object that is not an instance created by this load (a class, a module, a
  function, a global singleton obtained from ``find_class``) would ``setattr`` on shared
  interpreter state (protectai/modelscan#85). ``find_class`` cannot see BUILD: the unpickler must
  call ``find_class.check_build(inst)`` before every BUILD (``RestrictedUnpickler`` below does;
  the rule is ``check_build_target``).
* EXT1/EXT2/EXT4 opcodes name globals through copyreg's extension registry: the unpickler must
  pass the registered (module, name) to find_class on every use, never answer from a cache
  (stdlib ``pickle`` caches them in ``copyreg._extension_cache`` and then skips find_class).
* Denial of service by this policy alone: trusted constructors accept huge sizes
  (``bytes(10**12)``, an ndarray shape). The C engine and ``_guard`` bound them (the load's memory
  budget, hash-flooding detection, the Fraction/Decimal stand-ins below); docs/SECURITY.md is the
  whole threat model of ``trusted=``, of which this module is the name part.

``builtins.getattr`` itself stays denied, but a stream that names it gets a stand-in (see
``_PolicyGetattr``): ``getattr(X, 'attr')`` is answered only when ``X`` is a global this policy
handed out during this load, and then exactly as the global ``X.attr`` would be, through this same
policy (allow-list, denylist, no dunders). That is how ``zoneinfo.ZoneInfo`` (tz-aware pandas
data) pickles: ``getattr(ZoneInfo, '_unpickle')``; both names are trusted by default.

Known gaps in what loads: ``functools.partial``, user classes, enums, namedtuples and estimators must be listed by name
(``fastjoblib.inspect(path)['needs_trusted']`` prints them).

``RestrictedUnpickler`` is a pure-Python reference implementation (stdlib ``pickle._Unpickler``
plus this policy plus the BUILD rule) for plain pickle streams; the C loader applies the same
policy through ``_core.load(..., find_class=make_find_class(trusted))``.
"""
import _compat_pickle
import copyreg
import functools
import io
import pickle
import re
import sys
import types

__all__ = [
    "UntrustedGlobalError",
    "DEFAULT_TRUSTED",
    "DENIED_NAMES",
    "DENIED_MODULES",
    "is_denied",
    "make_find_class",
    "check_build_target",
    "RestrictedUnpickler",
    "restricted_loads",
]


NOT_TRUSTED = "not in the trusted set"
# Opcodes the refusal path may walk to list every refused global (beyond: the first one only).
_EXPLAIN_MAX_OPS = 1 << 20


class UntrustedGlobalError(pickle.UnpicklingError):
    """A restricted load met a global that the policy refuses.

    ``.name`` is the refused "module.qualname"; ``.reason`` says why.
    """

    def __init__(self, name, reason=NOT_TRUSTED, names=None, dangerous=()):
        self.name = name
        self.reason = reason
        #: every global the file needs that the policy refuses (the whole file, when it could be
        #: read again; else just ``name``), and those no trusted= list can allow
        self.names = list(names) if names else [name]
        self.dangerous = list(dangerous)
        super().__init__(self._text())

    def _text(self):
        if self.reason != NOT_TRUSTED:
            return f"refused global {self.name!r}: {self.reason}"
        names = self.names
        if len(names) == 1 and not self.dangerous:
            head = f"refused global {names[0]!r}: {NOT_TRUSTED}."
        else:
            head = (f"refused {len(names)} globals not in the trusted set: "
                    + ", ".join(names) + ".")
        suggest = public_names(names)
        text = (f"{head} If you trust this file's author and these types, load it with "
                f"trusted={suggest!r} (python -m fastjoblib inspect --trusted FILE prints this "
                "list; fastjoblib.inspect(FILE)['needs_trusted'] has it too)")
        if self.dangerous:
            text += (". The file also names globals that no trusted= list allows: "
                     + ", ".join(self.dangerous))
        return text

    def __reduce__(self):
        return (type(self), (self.name, self.reason, self.names, self.dangerous))



# ------------------------------------------------------------------------------------------------
# The allowlist. Derived by walking the globals of real pickles (pickle protocols 0-5 and
# joblib.dump protocols 2-5) of tests/corpus.py plus pandas/numpy/datetime/pathlib extras, on
# numpy 2.4, pandas 3.1, Python 3.11; then reviewed one by one: each entry is a data type or a
# constructor/reconstructor of data whose arguments are themselves plain data or globals that
# passed this same policy.

_BUILTINS = [
    # containers and scalars (REDUCE/NEWOBJ targets and copyreg bases)
    "builtins.object", "builtins.list", "builtins.tuple", "builtins.dict", "builtins.set",
    "builtins.frozenset", "builtins.bytearray", "builtins.bytes", "builtins.str", "builtins.int",
    "builtins.float", "builtins.complex", "builtins.bool", "builtins.slice", "builtins.range",
    "builtins.Ellipsis", "builtins.NotImplemented",
    # copyreg helpers used by the protocol-0/1/2 reduce paths: they call cls.__new__ / base.__init__
    # of a class that itself had to pass this policy.
    "copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__",
    # bytes for protocols < 3: resolved to a latin-1-only shim (see _restricted_encode)
    "_codecs.encode", "codecs.encode",
    "types.SimpleNamespace",
]

_STDLIB = [
    "collections.OrderedDict", "collections.defaultdict", "collections.deque",
    "collections.Counter", "collections.UserDict", "collections.UserList",
    "collections.UserString", "collections.ChainMap",
    "datetime.date", "datetime.datetime", "datetime.time", "datetime.timedelta",
    "datetime.timezone",
    # IANA zones (pandas tz-aware data): built from a key, which zoneinfo validates against path
    # traversal; pickled as builtins.getattr(ZoneInfo, '_unpickle')(key, flag), see _PolicyGetattr
    "zoneinfo.ZoneInfo", "zoneinfo.ZoneInfo._unpickle",
    "decimal.Decimal", "fractions.Fraction", "uuid.UUID", "uuid.SafeUUID",
    # path objects: constructing one does no I/O
    "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePath",
    "pathlib.PurePosixPath", "pathlib.PureWindowsPath",
]

_NUMPY = [
    "numpy.ndarray", "numpy.dtype", "numpy.matrix",
    # numpy.memmap: only as joblib's `subclass` marker; resolves to _RestrictedMemmap (no files)
    "numpy.memmap",
    "numpy.matrixlib.defmatrix.matrix",           # files from 2015-2016
    # array / scalar reconstructors, NumPy 2 names then NumPy 1 names
    "numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar",
    "numpy._core.numeric._frombuffer", "numpy._core._internal._convert_to_stringdtype_kwargs",
    "numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
    "numpy.core.numeric._frombuffer",
    # masked arrays
    "numpy.ma.MaskedArray", "numpy.ma.core.MaskedArray", "numpy.ma.core._mareconstruct",
    "numpy.ma.core.MaskedConstant",
    # random generators (estimators keep RandomState objects); ctors take a bit-generator name
    "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__generator_ctor",
    "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random.mtrand.RandomState", "numpy.random._generator.Generator",
    "numpy.random._mt19937.MT19937", "numpy.random._pcg64.PCG64",
    "numpy.random._pcg64.PCG64DXSM", "numpy.random._philox.Philox", "numpy.random._sfc64.SFC64",
    "numpy.random.bit_generator.SeedSequence",
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    # joblib's array placeholder: the C loader handles it internally; joblib's own unpickler asks
    # for it through find_class. Its BUILD only stores metadata. (The pre-0.10 NDArrayWrapper and
    # ZNDArrayWrapper are NOT trusted: they open companion files named by the stream.)
    "joblib.numpy_pickle.NumpyArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
    "sklearn.externals._joblib.numpy_pickle.NumpyArrayWrapper",
]

_ARROW_NAMES = ("pyarrow.lib.type_for_alias", "pyarrow.lib.py_buffer", "pyarrow.lib._restore_array")

_PANDAS = [
    "pandas.DataFrame", "pandas.Series", "pandas.Index", "pandas.RangeIndex",
    "pandas.MultiIndex", "pandas.CategoricalIndex", "pandas.DatetimeIndex",
    "pandas.TimedeltaIndex", "pandas.PeriodIndex", "pandas.IntervalIndex",
    "pandas.Categorical", "pandas.Timestamp", "pandas.Timedelta", "pandas.Period",
    "pandas.Interval", "pandas.NA",
    "pandas.CategoricalDtype", "pandas.DatetimeTZDtype", "pandas.PeriodDtype",
    "pandas.IntervalDtype", "pandas.SparseDtype", "pandas.StringDtype", "pandas.BooleanDtype",
    "pandas.Int8Dtype", "pandas.Int16Dtype", "pandas.Int32Dtype", "pandas.Int64Dtype",
    "pandas.UInt8Dtype", "pandas.UInt16Dtype", "pandas.UInt32Dtype", "pandas.UInt64Dtype",
    "pandas.Float32Dtype", "pandas.Float64Dtype",
    "pandas.arrays.DatetimeArray", "pandas.arrays.TimedeltaArray", "pandas.arrays.PeriodArray",
    "pandas.arrays.IntervalArray", "pandas.arrays.SparseArray", "pandas.arrays.StringArray",
    "pandas.arrays.BooleanArray", "pandas.arrays.IntegerArray", "pandas.arrays.FloatingArray",
    # string columns backed by pyarrow; its pyarrow names resolve to stand-ins (_arrow_shims)
    "pandas.arrays.ArrowStringArray", *_ARROW_NAMES,
    "pandas.core.internals.managers.BlockManager",
    "pandas.core.internals.managers.SingleBlockManager",
    "pandas.core.indexes.base._new_Index",
    "pandas.core.indexes.datetimes._new_DatetimeIndex",
    "pandas.core.indexes.timedeltas._new_TimedeltaIndex",
    "pandas.core.indexes.period._new_PeriodIndex",
    "pandas.core.indexes.interval._new_IntervalIndex",
    "pandas._libs.internals._unpickle_block",
    "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked",
    "pandas._libs.interval.__pyx_unpickle_IntervalMixin",
    "pandas._libs.sparse.IntIndex", "pandas._libs.sparse.BlockIndex",
    "pandas._libs.tslibs.nattype._nat_unpickle",
    "pandas._libs.tslibs.timestamps._unpickle_timestamp",
    "pandas._libs.tslibs.timedeltas._timedelta_unpickle",
] + [
    "pandas._libs.tslibs.offsets." + n for n in (
        "Day", "Hour", "Minute", "Second", "Milli", "Micro", "Nano", "Week", "MonthEnd",
        "MonthBegin", "QuarterEnd", "QuarterBegin", "YearEnd", "YearBegin", "BusinessDay",
        "BusinessMonthEnd", "BusinessMonthBegin", "DateOffset")
]

DEFAULT_TRUSTED = frozenset(_BUILTINS + _STDLIB + _NUMPY + _PANDAS)

# Names in DEFAULT_TRUSTED whose qualname has a dunder step (allowed only for these exact names).
_DUNDER_OK = frozenset({"copyreg.__newobj__", "copyreg.__newobj_ex__"})

# ------------------------------------------------------------------------------------------------
# The denylist: refused even when the caller lists them.

# Any member of these modules, or of their submodules, is refused.
DENIED_MODULES = frozenset({
    "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "_posixsubprocess", "sys",
    "importlib", "imp", "pkgutil", "zipimport", "marshal", "runpy", "code", "codeop", "shutil",
    "socket", "_socket", "ssl", "ctypes", "_ctypes", "cffi", "webbrowser", "pty", "tty", "timeit",
    "profile", "cProfile", "_lsprof", "pdb", "bdb", "trace", "pickle", "_pickle", "pickletools",
    "shelve", "dbm", "multiprocessing", "concurrent", "threading", "_thread",
    "signal", "asyncio", "urllib", "http", "ftplib", "smtplib", "telnetlib", "xmlrpc", "tempfile",
    "glob", "fileinput", "io", "_io", "operator", "_operator", "inspect",
    "gc", "weakref", "_weakref", "dill", "cloudpickle", "joblib", "fastjoblib", "torch._C",
    "IPython", "idlelib", "tkinter", "turtle", "venv", "ensurepip", "distutils", "setuptools",
    "pip", "site", "sysconfig", "platform", "resource", "fcntl", "mmap", "select", "selectors",
    "_winapi", "winreg", "msvcrt",
})
# Exact names outside those modules.
DENIED_NAMES = frozenset({
    "builtins.eval", "builtins.exec", "builtins.compile", "builtins.getattr", "builtins.setattr",
    "builtins.delattr", "builtins.__import__", "builtins.open", "builtins.input",
    "builtins.breakpoint", "builtins.globals", "builtins.locals", "builtins.vars",
    "builtins.help", "builtins.exit", "builtins.quit", "builtins.type",
    "builtins.super", "builtins.classmethod", "builtins.staticmethod", "builtins.property",
    "builtins.apply", "builtins.execfile", "builtins.reload", "builtins.file",
    "builtins.hasattr",
    "types.FunctionType", "types.LambdaType", "types.CodeType", "types.MethodType",
    "types.BuiltinFunctionType", "types.BuiltinMethodType", "types.ModuleType",
    "types.CellType", "types.FrameType", "types.GeneratorType", "types.new_class",
    "types.MethodWrapperType", "types.WrapperDescriptorType", "types.MethodDescriptorType",
    "numpy.load", "numpy.loads", "numpy.fromfile", "numpy.loadtxt", "numpy.genfromtxt",
    "numpy.save", "numpy.savez", "numpy.savez_compressed", "numpy.fromregex",
    "numpy.testing._private.utils.runstring", "numpy.f2py", "numpy.distutils",
    "numpy.ctypeslib.load_library", "numpy.lib.format.read_array",
    "numpy.lib.format.open_memmap",
    "torch.load", "torch.hub.load", "torch.serialization.load", "torch.jit.load",
    "pandas.read_pickle", "pandas.io.pickle.read_pickle", "pandas.eval",
    "pandas.core.computation.eval.eval", "pandas.read_csv",
    "functools.reduce", "codecs.open", "codecs.decode", "_codecs.decode", "codecs.lookup",
    "builtins.reduce",
})
# Module prefixes that are denied only for some members (module, every name under it).
_DENIED_MODULE_PREFIX_NAMES = frozenset({
    "numpy.lib.npyio", "numpy.lib._npyio_impl", "numpy.testing", "numpy.f2py",
    "numpy.distutils", "numpy.ctypeslib", "torch.serialization", "torch.hub",
    "pandas.io", "keras.models", "tensorflow.io", "dill._dill", "logging", "pydoc",
    "numpy.ma.mrecords", "numpy.rec.fromfile", "linecache", "netrc", "mailbox", "mimetypes",
    "poplib", "imaplib", "nntplib", "socketserver", "wave", "aifc", "sunau", "sndhdr", "imghdr",
    "filecmp", "zipapp", "xml", "plistlib", "atexit", "faulthandler", "tracemalloc", "warnings",
    "locale", "configparser", "sched", "pandas.plotting", "matplotlib", "readline", "rlcompleter",
    "copyreg", "codecs", "_codecs", "random", "numpy.random.mtrand.seed",
    # file, network and process access in the scientific stack
    "scipy.io", "scipy.datasets", "scipy.misc", "sklearn.datasets", "sklearn.utils._testing",
    "pandas.util._tester", "numpy._pytesttester", "h5py", "tables", "netCDF4", "zarr",
    "pyarrow.parquet", "pyarrow.fs", "pyarrow.csv", "pyarrow.feather", "pyarrow.dataset",
    "pyarrow.orc", "pyarrow.json", "fsspec", "s3fs", "gcsfs", "adlfs", "boto3", "botocore",
    "paramiko", "psutil", "docker", "sqlalchemy", "yaml", "jsonpickle", "PIL", "imageio",
    "skimage.io", "cv2", "dateutil.tz.tzfile", "dateutil.zoneinfo", "tensorflow", "keras",
    "torch.utils.data", "torch.hub", "uuid.getnode", "uuid.uuid1", "uuid._unix_getnode",
    "doctest", "zipfile", "tarfile", "sqlite3", "gzip", "bz2", "lzma", "zlib", "cgi", "urllib3",
    "requests", "torch.storage", "torch.hub", "numpy.lib._datasource", "numpy.lib.format",
})
# A last component with one of these names is refused wherever it lives (loaders and executors
# re-exported under other modules: sklearn.externals.joblib.load, pandas.eval, mypkg.system ...).
_GADGET_LEAVES = frozenset({
    "load", "loads", "load_pickle", "read_pickle", "unpickle", "eval", "exec", "execfile",
    "system", "popen", "spawn", "spawnv", "spawnl", "run_path", "run_module", "import_module",
    "__import__", "compile", "getattr", "setattr", "delattr", "attrgetter", "methodcaller",
    "open_memmap", "fromfile", "loadtxt", "genfromtxt", "runstring", "call_subprocess",
    # file, network and process access under any name (methods reached through getattr on a
    # listed class too: pathlib.Path.write_text, ConfigParser.read ...)
    "open", "urlopen", "urlretrieve", "read", "readlines", "write", "writelines", "read_text",
    "read_bytes", "write_text", "write_bytes", "touch", "mkdir", "makedirs", "rmdir", "unlink",
    "remove", "rename", "replace", "symlink_to", "hardlink_to", "link_to", "chmod", "lchmod",
    "chown", "iterdir", "glob", "rglob", "walk", "stat", "lstat", "exists", "is_file", "is_dir",
    "readlink", "resolve", "expanduser", "absolute", "samefile", "owner", "group", "tofile",
    "dump", "dumps", "save", "savez", "savez_compressed", "savetxt", "fromregex", "memmap",
    "DataSource", "fromtextfile", "openfile", "parse", "getLogger", "basicConfig",
    "is_fifo", "is_socket", "is_symlink", "is_mount", "is_block_device", "is_char_device",
    "imread", "imwrite", "imsave", "savemat", "loadmat", "test", "fetch_openml", "clear_data_home",
    "unsafe_load", "full_load", "gettz", "tzfile",
    # process-wide state: seeds, options, registries, hooks
    "seed", "set_state", "setstate", "manual_seed", "set_printoptions", "seterr", "seterrcall",
    "setbufsize", "set_option", "reset_option", "setrecursionlimit", "register",
    "unregister", "setlocale", "simplefilter", "filterwarnings", "resetwarnings", "settrace",
    "setprofile", "setdefaulttimeout", "putenv", "unsetenv", "chdir", "add_extension",
    "remove_extension", "clear_extension_cache", "update_wrapper", "set_default_dtype",
    "set_num_threads", "install", "enable",
    # functions that write into an argument (a shared object handed to them would change)
    "copyto", "place", "put", "putmask", "fill_diagonal", "put_along_axis", "shuffle",
    "update", "setdefault", "move_to_end",
})
# Leaf prefixes refused wherever they live: pandas' and others' readers and writers.
_GADGET_LEAF_PREFIXES = ("read_", "to_", "write_", "save_", "load_", "open_", "from_file")
# The longest entry a dotted prefix can match (see _prefix_denied).
_DENY_PREFIX_MAX = max(map(len, DENIED_MODULES | _DENIED_MODULE_PREFIX_NAMES | DENIED_NAMES))


def _prefix_denied(dotted, names_too):
    """True if a dotted prefix of `dotted` ("a", "a.b", ..., `dotted` itself) is a denied module
    or module prefix (or, with `names_too`, a DENIED_NAMES entry). Only prefixes no longer than
    the longest denylist entry can match, so only those are looked at: the work is bounded by
    that length, not quadratic in the number of dots (a 4096-dot name would join 16M chars)."""
    end = -1
    while True:
        end = dotted.find(".", end + 1)
        stop = len(dotted) if end < 0 else end
        if stop > _DENY_PREFIX_MAX:
            return False
        prefix = dotted[:stop]
        if (prefix in DENIED_MODULES or prefix in _DENIED_MODULE_PREFIX_NAMES
                or (names_too and prefix in DENIED_NAMES)):
            return True
        if end < 0:
            return False


def _module_denied(module):
    return _prefix_denied(module, False)


# Module names that may not appear as an inner component of a dotted name either (only names that
# no data module would use as a submodule: "io", "code", "signal" ... are left out on purpose).
_GADGET_COMPONENTS = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "importlib", "marshal",
    "pickle", "cPickle", "ctypes", "shutil", "socket", "runpy", "pty", "webbrowser",
    "cloudpickle", "dill",
})

# Trusted names that live in an otherwise denied module.
_ARRAY_WRAPPERS = frozenset({
    "joblib.numpy_pickle.NumpyArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
    "sklearn.externals._joblib.numpy_pickle.NumpyArrayWrapper",
})
_DENY_EXEMPT = _ARRAY_WRAPPERS | {"types.SimpleNamespace", "copyreg._reconstructor",
                                   "copyreg.__newobj__", "copyreg.__newobj_ex__",
                                   "codecs.encode", "_codecs.encode",
                                   # resolve to stand-ins that refuse to be called (_SHIMS)
                                   "numpy.memmap", "numpy.core.memmap.memmap",
                                   "numpy._core.memmap.memmap"}


def is_denied(fullname):
    """True if "module.qualname" is on the hard denylist (any split of the dots)."""
    if fullname in _DENY_EXEMPT:
        return False
    if fullname in DENIED_NAMES:
        return True
    # every prefix of the dotted name may be the module part
    if _prefix_denied(fullname, True):
        return True
    parts = fullname.split(".")
    if parts[0] == "types":
        return True
    # walking through a dunder (numpy.ndarray.__init__.__globals__) or through a module attribute
    # named like a gadget module (pathlib.os.system): refused whatever the prefix
    if fullname not in _DUNDER_OK and any(p.startswith("__") and p.endswith("__")
                                          for p in parts[1:]):
        return True
    if any(p in _GADGET_COMPONENTS for p in parts[1:]):
        return True
    if parts[-1] in _GADGET_LEAVES or parts[-1].startswith(_GADGET_LEAF_PREFIXES):
        return True
    return False


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_dotted(fullname):
    if not isinstance(fullname, str):
        raise TypeError(f"trusted names must be str, got {type(fullname).__name__}")
    parts = fullname.split(".")
    if len(parts) < 2 or not all(_IDENT.match(p) for p in parts):
        if "*" in fullname:
            raise ValueError(f"trusted name {fullname!r}: wildcards are not supported; list exact "
                             "'module.qualname' names")
        raise ValueError(f"trusted name {fullname!r} is not a 'module.qualname' dotted name")


def _compat_name(module, name):
    """Map Python 2 names (protocols 0-2) to their Python 3 equivalents, as pickle does."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    if module in _compat_pickle.IMPORT_MAPPING:
        return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


class _WrapperName(str):
    """Returned for joblib's array-wrapper global when joblib itself is not importable."""


def _restricted_encode(obj, encoding="utf-8", errors="strict"):
    """Stand-in for codecs.encode in restricted loads: latin-1 str -> bytes only."""
    if type(obj) is not str or encoding not in ("latin1", "latin-1", "iso-8859-1") \
            or errors != "strict":
        raise UntrustedGlobalError("_codecs.encode",
                                   f"only encode(str, 'latin1') is allowed, got encoding "
                                   f"{encoding!r}")
    return obj.encode("latin-1")


class _RestrictedMemmap:
    """Stand-in for numpy.memmap in restricted loads.

    joblib files name ``numpy.memmap`` as the ``subclass`` of an array dumped from a memmap, and
    fastjoblib's loader only compares that value with ``numpy.matrix``; but calling the real class
    (REDUCE/NEWOBJ) opens, creates or truncates any file the stream names (mode 'w+'), so it is
    never handed out.
    """

    def __new__(cls, *args, **kwargs):
        raise UntrustedGlobalError("numpy.memmap", "constructing a memmap opens files")

    def __repr__(self):
        return "<restricted numpy.memmap>"


_MAX_INT_BITS = 100_000


def _small_int(x, what):
    if type(x) is not int or x.bit_length() > _MAX_INT_BITS:
        raise UntrustedGlobalError(what, f"only ints of at most {_MAX_INT_BITS} bits are allowed "
                                         "(what it pickles as); a string or a huge int can take "
                                         "minutes to convert")
    return x


def _restricted_fraction(numerator=0, denominator=None):
    """Stand-in for fractions.Fraction: Fraction(int, int), what a Fraction pickles as. The same
    pair again (the memo hands a stream the same big ints as often as it likes; each Fraction
    of two 100,000-bit ints costs a ~13 ms gcd) gets the Fraction already made: they are
    immutable, so sharing one is invisible."""
    _small_int(numerator, "fractions.Fraction")
    if denominator is not None:
        _small_int(denominator, "fractions.Fraction")
    return _fraction(numerator, denominator)


@functools.lru_cache(maxsize=64)
def _fraction(numerator, denominator):
    import fractions
    return fractions.Fraction(numerator, denominator)


_MAX_DECIMAL_DIGITS = 4300  # digits and exponent of a Decimal: CPython's int <-> str limit


def _restricted_decimal(value="0", context=None):
    """Stand-in for decimal.Decimal: Decimal(str), what a Decimal pickles as (or a small int),
    with at most 4300 digits and an exponent of at most 4300 (int(Decimal('1e400000')) is
    quadratic and has no digit limit of its own)."""
    import decimal
    if type(value) is not str:
        _small_int(value, "decimal.Decimal")
    if context is not None:
        raise UntrustedGlobalError("decimal.Decimal", "a context argument is not allowed")
    if type(value) is str and len(value) > 2 * _MAX_DECIMAL_DIGITS + 64:
        raise UntrustedGlobalError("decimal.Decimal", f"a string of {len(value)} characters")
    d = decimal.Decimal(value)
    if d.is_finite():
        t = d.as_tuple()
        if len(t.digits) > _MAX_DECIMAL_DIGITS or abs(t.exponent) > _MAX_DECIMAL_DIGITS:
            raise UntrustedGlobalError("decimal.Decimal", f"more than {_MAX_DECIMAL_DIGITS} "
                                       "digits or an exponent beyond that")
    return d


def _restricted_zoneinfo_unpickle(key, from_cache=1):
    """Stand-in for zoneinfo.ZoneInfo._unpickle: always the cached zone. ``from_cache=0`` (a
    ZoneInfo.no_cache zone) would read and parse the time-zone file again at every call."""
    from zoneinfo import ZoneInfo
    if type(key) is not str:
        raise UntrustedGlobalError("zoneinfo.ZoneInfo._unpickle", "the key must be a str")
    return ZoneInfo(key)


_BIT_GENERATORS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")


def _rng_ctor(which):
    """Stand-ins for numpy.random._pickle's constructors: they call the `bit_generator_ctor` they
    are given with the name they are given (bytearray(3 * 10**9), set(flood) ...); here the name
    must be a bit generator (its class name, the class, or an instance this load made) and the
    constructor NumPy's own."""
    def ctor(bit_generator_name="MT19937", bit_generator_ctor=None):
        import numpy.random as npr
        from numpy.random import _pickle as real
        bg = bit_generator_name
        ok_name = (isinstance(bg, str) and str(bg) in _BIT_GENERATORS) or (
            isinstance(bg, type) and bg.__name__ in _BIT_GENERATORS
            and getattr(npr, bg.__name__, None) is bg) or isinstance(bg, npr.BitGenerator)
        if not ok_name or bit_generator_ctor not in (None, real.__bit_generator_ctor, _RNG_SHIMS[2]):
            raise UntrustedGlobalError(f"numpy.random._pickle.{which}",
                                       "only NumPy's bit generators and constructor are allowed")
        if isinstance(bg, str):
            bg = str(bg)
        f = getattr(real, which)
        return f(bg) if which == "__bit_generator_ctor" else f(bg, real.__bit_generator_ctor)
    ctor.__qualname__ = ctor.__name__ = f"restricted{which}"
    return ctor


_RNG_SHIMS = [_rng_ctor(n) for n in ("__randomstate_ctor", "__generator_ctor",
                                     "__bit_generator_ctor")]

def _restricted_frombuffer(buf, dtype, shape, order, axis_order=None):
    """Stand-in for numpy's _frombuffer (protocol-5 arrays): a copy, not a view of `buf`: two
    arrays over one bytearray (or over a caller's out-of-band buffer) would let a later call that
    writes into one change the other after it was checked."""
    from numpy._core.numeric import _frombuffer
    view = (_frombuffer(buf, dtype, shape, order) if axis_order is None
            else _frombuffer(buf, dtype, shape, order, axis_order))
    out = view.copy(order="K")
    if not view.flags.writeable:
        out.flags.writeable = False
    return out


# pyarrow: what a pandas string column backed by Arrow (pandas.arrays.ArrowStringArray) pickles as.
# These three names are trusted by default but always resolve to the per-load stand-ins below,
# never to pyarrow's own functions (``_restore_array`` trusts every number and buffer it is given;
# ``py_buffer`` wraps any buffer-like object; ``type_for_alias`` names any Arrow type).
_ARROW_STRING_ALIASES = ("string", "large_string")  # what pandas writes (str(pa.string()) ...)
_ARROW_MAX_INT = 1 << 62


def _arrow_shims(budget_of):
    """Stand-ins for the pyarrow callables of a pandas string column, for one load.

    Returns (made, shims): ``made`` maps id -> object for every Arrow type, buffer and array
    these stand-ins made during this load (strong references, so ids stay unique); ``_guard``
    accepts an ArrowStringArray's ``_pa_array`` only from there. ``budget_of()`` is the load's
    Budget.

    * ``type_for_alias(name)``: only ``'string'`` / ``'large_string'``.
    * ``py_buffer(obj)``: only ``bytes`` (immutable: wrapped as is) or ``bytearray`` (copied
      into a new ``bytes``, charged to the budget), never memoryviews or objects exposing foreign
      memory.
    * ``_restore_array(data)``: ``data`` must be exactly what pyarrow pickles for a string array:
      (type from the stand-in, length, null_count, offset, [validity or None, offsets, values]
      each from the ``py_buffer`` stand-in, [], None). Before pyarrow sees anything, the offsets
      buffer must hold ``offset + length + 1`` offsets, non-decreasing from >= 0 to at most the
      values buffer's size, the validity bitmap must cover ``offset + length`` bits, and
      ``null_count`` must equal the number of clear bits (or be -1, then it is computed here).
      The array is then built and ``validate(full=True)`` (which also checks UTF-8 value by
      value) runs before it is returned.
    """
    made = {}

    def refuse(name, why):
        return UntrustedGlobalError(f"pyarrow.lib.{name}", why)

    def pyarrow(name):
        try:
            import pyarrow as pa
        except ImportError as exc:
            raise refuse(name, f"cannot import module 'pyarrow': {exc}") from None
        return pa

    def type_for_alias(name):
        pa = pyarrow("type_for_alias")
        if type(name) is not str or name not in _ARROW_STRING_ALIASES:
            raise refuse("type_for_alias", f"only the Arrow string types {_ARROW_STRING_ALIASES} "
                                           f"are allowed (pandas string columns), got {name!r}")
        t = pa.string() if name == "string" else pa.large_string()
        made[id(t)] = t
        return t

    def py_buffer(obj):
        pa = pyarrow("py_buffer")
        if type(obj) is bytearray:
            budget_of().charge(len(obj))
            obj = bytes(obj)
        elif type(obj) is not bytes:
            raise refuse("py_buffer", "only bytes or bytearray contents are allowed, got "
                                      f"{type(obj).__name__}")
        buf = pa.py_buffer(obj)
        budget_of().charge(256)  # (the Buffer this load keeps)
        made[id(buf)] = buf
        return buf

    def mine(x, cls):
        return made.get(id(x)) is x and isinstance(x, cls)

    def restore_array(data):
        import numpy as np
        name = "_restore_array"
        pa = pyarrow(name)
        if type(data) is not tuple or len(data) != 7:
            raise refuse(name, "the array description must be a 7-tuple")
        dtype, length, null_count, offset, buffers, children, dictionary = data
        if not mine(dtype, pa.DataType):
            raise refuse(name, "the type must come from the type_for_alias stand-in")
        for what, v, lo in (("length", length, 0), ("null_count", null_count, -1),
                            ("offset", offset, 0)):
            if type(v) is not int or not lo <= v < _ARROW_MAX_INT:
                raise refuse(name, f"{what} must be an int in {lo}..2**62, got {v!r}")
        if type(children) not in (list, tuple) or len(children) or dictionary is not None:
            raise refuse(name, "a string array has no children and no dictionary")
        if type(buffers) not in (list, tuple) or len(buffers) != 3 or not all(
                b is None or mine(b, pa.Buffer) for b in buffers):
            raise refuse(name, "a string array has 3 buffers (validity or None, offsets, "
                               "values), each from the py_buffer stand-in")
        validity, offsets, values = buffers
        if offsets is None:
            raise refuse(name, "the offsets buffer is missing")
        if values is None:
            values = pa.py_buffer(b"")
        width = 4 if dtype.equals(pa.string()) else 8
        if offsets.size // width < offset + length + 1:
            raise refuse(name, f"the offsets buffer ({offsets.size} bytes) is shorter than "
                               f"offset + length + 1 = {offset + length + 1} offsets")
        offs = np.frombuffer(offsets, dtype=f"<i{width}", count=length + 1, offset=offset * width)
        if length <= 32:  # (a few strings: through a list, 5x quicker than NumPy's any())
            o = offs.tolist()
            unsorted = any(b < a for a, b in zip(o, o[1:]))
        else:
            unsorted = bool((offs[1:] < offs[:-1]).any())
        if int(offs[0]) < 0 or int(offs[-1]) > values.size or unsorted:
            raise refuse(name, "offsets must be non-decreasing, from >= 0 to at most the values "
                               f"buffer's size ({values.size})")
        # The checks below and validate() scan these bytes: charged to the load's budget like an
        # allocation, so a file cannot have the same buffers validated again and again for free
        # (one small REDUCE per call) beyond what its budget allows.
        # (4 bytes a byte scanned: ~1 ns a byte here, so a repeated call reaches the budget in
        # a fraction of a second; plus the array this load keeps. Each call also counts one
        # pandas call unit (before_call): an empty array's call costs ~9 us)
        budget_of().charge(512 + 4 * ((length + 1) * width + int(offs[-1]) - int(offs[0])
                                      + ((offset + length + 7) // 8 if validity is not None
                                         else 0)))
        nulls = 0
        if validity is not None:
            nbytes = (offset + length + 7) // 8
            if validity.size < nbytes:
                raise refuse(name, f"the validity bitmap ({validity.size} bytes) covers fewer "
                                   f"than offset + length = {offset + length} entries")
            bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8, count=nbytes),
                                 bitorder="little")[offset:offset + length]
            nulls = length - int(np.count_nonzero(bits))
        if null_count not in (-1, nulls):
            raise refuse(name, f"null_count {null_count} but the validity bitmap has {nulls} "
                               "nulls")
        arr = pa.lib._restore_array((dtype, length, nulls, offset,
                                     [validity, offsets, values], [], None))
        try:
            arr.validate(full=True)
        except (pa.ArrowException, ValueError) as exc:
            raise refuse(name, f"invalid Arrow string array: {exc}") from None
        made[id(arr)] = arr
        return arr

    type_for_alias.__qualname__ = "restricted_type_for_alias"
    py_buffer.__qualname__ = "restricted_py_buffer"
    restore_array.__qualname__ = "restricted_restore_array"
    return made, dict(zip(_ARROW_NAMES, (type_for_alias, py_buffer, restore_array)))


_SHIMS = {"numpy._core.numeric._frombuffer": _restricted_frombuffer,
          "numpy.core.numeric._frombuffer": _restricted_frombuffer,
          "numpy.random._pickle.__randomstate_ctor": _RNG_SHIMS[0],
          "numpy.random._pickle.__generator_ctor": _RNG_SHIMS[1],
          "numpy.random._pickle.__bit_generator_ctor": _RNG_SHIMS[2],
          "fractions.Fraction": _restricted_fraction, "decimal.Decimal": _restricted_decimal,
          "zoneinfo.ZoneInfo._unpickle": _restricted_zoneinfo_unpickle,
          "_codecs.encode": _restricted_encode, "codecs.encode": _restricted_encode,
          "numpy.memmap": _RestrictedMemmap, "numpy.core.memmap.memmap": _RestrictedMemmap,
          "numpy._core.memmap.memmap": _RestrictedMemmap}

# Objects refused by identity after resolution (looked up lazily, only in already-imported
# modules, so checking never imports anything).
_IDENTITY_DENY = [
    ("builtins", n) for n in ("eval", "exec", "compile", "getattr", "setattr", "delattr",
                              "__import__", "open", "input", "breakpoint", "globals", "locals",
                              "vars")
] + [("numpy", "load"), ("numpy", "fromfile"), ("pickle", "loads"), ("pickle", "load"),
     ("joblib", "load"), ("torch", "load"), ("pandas", "read_pickle"), ("pandas", "eval"),
     ("functools", "reduce")]


def _identity_denied(obj):
    for mod, name in _IDENTITY_DENY:
        m = sys.modules.get(mod)
        if m is not None and getattr(m, name, None) is obj:
            return f"{mod}.{name}"
    return None


def _resolve(module, name, fullname):
    """Import `module` and walk `name`; only called once the name passed the policy."""
    try:
        __import__(module)
        mod = sys.modules[module]
    except Exception as exc:  # ImportError and anything import-time code raises
        raise UntrustedGlobalError(fullname, f"cannot import module {module!r}: {exc}") from None
    exempt = fullname in _DENY_EXEMPT
    real = getattr(mod, "__name__", module)
    if not isinstance(real, str) or (_module_denied(real) and not exempt):
        raise UntrustedGlobalError(fullname, f"module resolves to denied module {real!r}")
    obj = mod
    for step in name.split("."):
        if step.startswith("__") and step.endswith("__") and fullname not in _DUNDER_OK:
            raise UntrustedGlobalError(fullname, f"dunder attribute {step!r} is not allowed")
        try:
            obj = getattr(obj, step)
        except AttributeError:
            raise UntrustedGlobalError(fullname, f"{step!r} not found") from None
        if isinstance(obj, types.ModuleType):
            raise UntrustedGlobalError(fullname, "resolves to a module")
    hit = _identity_denied(obj)
    if hit is not None:
        raise UntrustedGlobalError(fullname, f"resolves to denied {hit}")
    owner = getattr(obj, "__module__", None)
    if isinstance(owner, str) and _module_denied(owner) and not exempt:
        raise UntrustedGlobalError(fullname, f"defined in denied module {owner!r}")
    return obj


def resolve_listed(fullname):
    """The object a user-listed "module.qualname" names: the longest module prefix that
    imports, then attribute steps (never the whole name as a module), through ``_resolve`` (its
    denied-module, dunder and identity checks). Raises UntrustedGlobalError."""
    parts = fullname.split(".")
    last = None
    for i in range(len(parts) - 1, 0, -1):
        module, name = ".".join(parts[:i]), ".".join(parts[i:])
        try:
            return _resolve(module, name, fullname)
        except UntrustedGlobalError as exc:
            last = exc
            if not exc.reason.startswith("cannot import module"):
                raise
    raise last if last is not None else UntrustedGlobalError(fullname, "not a dotted name")


def _module_file(dotted):
    """The source file of module `dotted` (its __init__.py for a package), found on sys.path
    without importing anything; None if not found as plain source."""
    import importlib.machinery

    path = None
    spec = None
    for part in dotted.split("."):
        spec = importlib.machinery.PathFinder.find_spec(part if spec is None else
                                                        f"{spec.name}.{part}", path)
        if spec is None:
            return None
        path = spec.submodule_search_locations
    origin = getattr(spec, "origin", None)
    if not isinstance(origin, str) or not origin.endswith(".py"):
        return None
    return origin


# Parsed public packages: (origin, mtime_ns, size) -> frozenset of (source module, name) pairs
# that its ``from X import name`` statements re-export (bounded; cleared when full).
_PUBLIC_IMPORTS: dict = {}
_PUBLIC_IMPORTS_MAX = 256
# Source bytes that one public_names() call may parse (files not parsed yet); names beyond stay as
# they are (still exact trusted= entries). About 0.25 s a MiB of source.
_PUBLIC_PARSE_BUDGET = 512 << 10
# Names one public_names() call resolves to public spellings; the rest are listed as they are.
_PUBLIC_NAMES_MAX = 64


def _public_imports(public, budget=None):
    """The (source module, name) pairs that package `public`'s ``__init__.py`` re-exports with
    ``from X import name`` (no import: found on sys.path and parsed), cached per file. `budget`: a
    one-item list of source bytes the caller may still parse (a file not cached that is larger
    is not parsed: None is returned); None for no limit. None if not found as plain source."""
    import ast
    import os

    try:
        origin = _module_file(public)
        if origin is None:
            return None
        st = os.stat(origin)
        key = (origin, st.st_mtime_ns, st.st_size)
        found = _PUBLIC_IMPORTS.get(key)
        if found is not None:
            return found
        size = min(st.st_size, 1 << 20)
        if budget is not None:
            if size > budget[0]:
                return None
            budget[0] -= size
        with open(origin, "rb") as f:
            tree = ast.parse(f.read(1 << 20), origin)
    except (OSError, SyntaxError, ValueError, ImportError):
        return None
    pkg = public.split(".")
    pairs = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            src = node.module or ""
            if node.level:
                src = ".".join(pkg[: len(pkg) - node.level + 1] + ([src] if src else []))
            pairs.update((src, a.name) for a in node.names
                         if a.asname is None or a.asname == a.name)
    found = frozenset(pairs)
    if len(_PUBLIC_IMPORTS) >= _PUBLIC_IMPORTS_MAX:
        _PUBLIC_IMPORTS.clear()
    _PUBLIC_IMPORTS[key] = found
    return found


def public_name(fullname, _budget=None):
    """The public spelling of a global defined in a private module, where one exists, found
    statically (no import): for "sklearn.preprocessing._data.StandardScaler", the nearest
    public package ("sklearn.preprocessing") whose ``__init__.py`` imports StandardScaler from
    that private module. Else `fullname`. (A restricted load accepts the public name because it
    resolves to the same object: see make_find_class.) Each package's source is parsed once
    (cached per file); `_budget` as in ``_public_imports``."""
    module, _, name = fullname.rpartition(".")
    parts = module.split(".")
    private = [i for i, p in enumerate(parts) if p.startswith("_") and not p.startswith("__")]
    if not private or "." in name or name.startswith("_"):
        return fullname
    public = ".".join(parts[:private[0]])
    if not public:
        return fullname
    pairs = _public_imports(public, _budget)
    if pairs is not None and (module, name) in pairs:
        return f"{public}.{name}"
    return fullname


def public_names(names):
    """``public_name`` of each of `names`, for the first ``_PUBLIC_NAMES_MAX`` of them and within
    ``_PUBLIC_PARSE_BUDGET`` bytes of source parsed; the others as they are (a defining-module
    name is an exact trusted= entry too, so the list stays a correct suggestion)."""
    names = list(names)
    budget = [_PUBLIC_PARSE_BUDGET]
    return ([public_name(n, budget) for n in names[:_PUBLIC_NAMES_MAX]]
            + names[_PUBLIC_NAMES_MAX:])


def explain_refusal(exc, policy, source):
    """`exc` (a restricted load's UntrustedGlobalError) completed: when it is a "not in the
    trusted set" refusal and `source` (a path, bytes, or a seekable binary file positioned at
    the stream's start) can be read again, the static inspector lists every global of the file
    that `policy` refuses, and the error names them all. Otherwise `exc` itself."""
    if not isinstance(exc, UntrustedGlobalError) or exc.reason != NOT_TRUSTED or source is None:
        return exc
    try:
        from ._inspect import inspect

        # bounded: a refused load must not take long to say so (about 1 us an opcode)
        report = inspect(source, _max_ops=_EXPLAIN_MAX_OPS)
    except Exception:
        return exc
    is_allowed = getattr(policy, "is_allowed", None)
    if is_allowed is None:
        return exc
    refused = [n for n in report["needs_trusted"] if not is_allowed(n)]
    if exc.name not in refused:
        refused.append(exc.name)
    # (names a file makes up may be megabytes long: the message keeps their start)
    refused = [n if len(n) <= _NAME_SHOWN else f"{n[:_NAME_SHOWN]}...({len(n)} characters)"
               for n in refused]
    new = UntrustedGlobalError(exc.name, NOT_TRUSTED, refused, report["dangerous"])
    return new


_NAME_SHOWN = 256  # characters of a refused name an error message shows

# Distinct (module, name) answers one policy keeps (beyond: checked in full each time).
_CHECKED_MAX = 4096


def make_find_class(trusted=True, max_bytes=None):
    """Return ``find_class(module, name)`` enforcing the policy described in the module docstring.

    trusted: ``True`` for DEFAULT_TRUSTED; or an iterable of exact "module.qualname" strings added
    to DEFAULT_TRUSTED. max_bytes: the load's memory budget (None: 1 GiB + 1000 x the input's
    size, once the caller sets it with ``find_class.budget_obj.set_input_size``; see _guard). Raises ValueError for a malformed or denylisted name, TypeError for a
    non-iterable or a bare string.
    """
    extra = set()
    if trusted is True:
        allowed = DEFAULT_TRUSTED
    else:
        if isinstance(trusted, (str, bytes)) or trusted is None or trusted is False:
            raise TypeError("trusted must be True or an iterable of 'module.qualname' strings")
        for n in trusted:
            _check_dotted(n)
            if is_denied(n):
                raise ValueError(f"{n!r} can never be trusted: it is on fastjoblib's denylist of "
                                 "loaders and code-execution gadgets")
            extra.add(n)
        allowed = DEFAULT_TRUSTED | frozenset(extra)

    # Public names: a listed "sklearn.preprocessing.StandardScaler" also allows the object it
    # names under its defining path ("sklearn.preprocessing._data.StandardScaler"). Resolved
    # lazily, on a global that is otherwise refused, and only from the user's own list: the
    # listed name is imported (as loading an object of that name would), its object's
    # __module__.__qualname__ becomes a candidate, and the file's global is allowed only if it
    # resolves to that very object (identity). The file chooses nothing: it can only name a
    # path that leads to an object the user listed. The denylist is checked first, as always.
    pending = sorted(set(extra) - DEFAULT_TRUSTED) if trusted is not True else []
    aliases = {}  # defining "module.qualname" -> [listed objects claiming it]

    def alias_of(module, name, fullname):
        top = fullname.partition(".")[0]
        for listed in [n for n in pending if n.partition(".")[0] == top]:
            pending.remove(listed)
            obj = resolve_listed(listed)
            mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
            if isinstance(mod, str) and isinstance(qual, str):
                aliases.setdefault(f"{mod}.{qual}", []).append(obj)
        candidates = aliases.get(fullname)
        if not candidates:
            return None
        obj = _resolve(module, name, fullname)
        return obj if any(obj is c for c in candidates) else None

    def is_allowed(fullname):
        """Whether the policy allows `fullname` (public-name aliases included)."""
        if is_denied(fullname):
            return False
        if fullname in allowed:
            return True
        module, _, name = fullname.rpartition(".")
        try:
            return alias_of(module, name, fullname) is not None
        except UntrustedGlobalError:
            return False

    def find_class(module, name):
        if not isinstance(module, str) or not isinstance(name, str):
            raise UntrustedGlobalError(repr((module, name)), "global names must be str")
        # A stream may name one global again and again (memoised strings, 6 bytes a lookup):
        # the answer of the full check below is kept per (module, name) for this load, allowed
        # and refused alike. Exact str only (a str subclass could hash or compare as it likes).
        key = (module, name) if type(module) is str and type(name) is str else None
        if key is not None:
            hit = checked.get(key)
            if hit is not None:
                if hit[0]:
                    return hit[1]
                raise UntrustedGlobalError(*hit[1])
        try:
            obj = check(module, name)
        except UntrustedGlobalError as exc:
            if key is not None and len(checked) < _CHECKED_MAX:
                checked[key] = (False, (exc.name, exc.reason))
            raise
        if key is not None and len(checked) < _CHECKED_MAX:
            checked[key] = (True, obj)
        return obj

    def check(module, name):
        module, name = _compat_name(module, name)
        fullname = f"{module}.{name}"
        if fullname == "builtins.getattr":
            return policy_getattr
        if is_denied(fullname):
            raise UntrustedGlobalError(fullname, "on the denylist of loaders and code-execution "
                                                 "gadgets")
        if fullname not in allowed:
            obj = alias_of(module, name, fullname) if pending or aliases else None
            if obj is None:
                raise UntrustedGlobalError(fullname)
            returned[id(obj)] = obj
            names.setdefault(id(obj), (module, name))
            return obj
        shim = _SHIMS.get(fullname) or arrow_shims.get(fullname)
        if shim is not None:
            returned[id(shim)] = shim  # handed out (getattr may return it too)
            return shim
        if fullname in _ARRAY_WRAPPERS:
            # The C loader handles these records itself and discards what find_class returns;
            # joblib (or the long-gone sklearn.externals.joblib) need not be importable.
            try:
                obj = _resolve("joblib.numpy_pickle", "NumpyArrayWrapper", fullname)
            except UntrustedGlobalError:
                obj = _WrapperName(fullname)
        else:
            obj = _resolve(module, name, fullname)
        returned[id(obj)] = obj  # strong ref: ids stay unique
        names.setdefault(id(obj), (module, name))
        return obj

    returned = {}
    names = {}  # id -> (module, qualname) of what find_class handed out
    checked = {}  # (module, name) -> (True, object) or (False, (refused name, reason))
    find_class.checked = checked
    arrow_made, arrow_shims = _arrow_shims(lambda: find_class.budget_obj)
    find_class.arrow_made = arrow_made
    # The Arrow stand-ins accept only exact types (str, bytes / bytearray, a 7-tuple of their own
    # objects and ints), refuse anything else in O(1) without hashing, printing or walking it,
    # charge what they copy or scan, and write into no argument: the guard's generic argument
    # checks (before_call) are skipped for them.
    find_class.self_checked = {id(f): f for f in arrow_shims.values()}
    policy_getattr = _PolicyGetattr(find_class, returned, names)
    returned[id(policy_getattr)] = policy_getattr  # BUILD may not give it state

    def check_build(inst):
        """Call before every BUILD: raises UntrustedGlobalError if `inst` may not get state."""
        check_build_target(inst, returned)

    find_class.trusted = allowed
    find_class.is_allowed = is_allowed
    find_class.check_build = check_build
    from ._guard import attach
    return attach(find_class, returned, max_bytes)


class _PolicyGetattr:
    """What a restricted load gets for the global ``builtins.getattr`` (which is denied as such).

    ``getattr(obj, attr)`` is answered only when ``obj`` is an object that this load's find_class
    handed out as the global ``module.qualname``; the answer is then ``find_class(module,
    qualname + '.' + attr)``: the same allow-list, denylist and resolution rules, so nothing is
    reachable this way that the dotted global could not reach (``getattr(ZoneInfo, '_unpickle')``
    needs ``zoneinfo.ZoneInfo._unpickle`` to be trusted; dunder steps are refused).
    """

    __slots__ = ("_find_class", "_returned", "_names")

    def __init__(self, find_class, returned, names):
        self._find_class, self._returned, self._names = find_class, returned, names

    def __call__(self, obj, attr):
        key = id(obj)
        if self._returned.get(key) is not obj or key not in self._names:
            raise UntrustedGlobalError("builtins.getattr", "only attributes of globals that "
                                       "this load resolved can be looked up")
        if not isinstance(attr, str):
            raise UntrustedGlobalError("builtins.getattr", "attribute names must be str")
        module, name = self._names[key]
        return self._find_class(module, f"{name}.{attr}")

    def __repr__(self):
        return "<fastjoblib restricted getattr>"


# ------------------------------------------------------------------------------------------------
# BUILD rule and a pure-Python reference unpickler.

_NON_INSTANCE_TYPES = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
                       types.MethodType, types.BuiltinMethodType, types.MethodWrapperType,
                       types.WrapperDescriptorType, types.MethodDescriptorType,
                       types.ClassMethodDescriptorType, types.GetSetDescriptorType,
                       types.MemberDescriptorType, types.CodeType, classmethod, staticmethod,
                       property)


def check_build_target(inst, globals_seen):
    """Raise UntrustedGlobalError if BUILD may not apply state to `inst`.

    Refused: a type, module, function, builtin, method or descriptor, any function-like object
    (its type defines ``__get__``: Python functions, numpy's array-function dispatchers such as
    ``numpy.prod``, method descriptors, properties), and any object that a find_class call
    returned during this load (`globals_seen`: ids of those objects). State may be applied only to
    objects that NEWOBJ/REDUCE/OBJ/INST created during this load (or that a trusted constructor
    returned, e.g. numpy's builtin dtype singletons, whose own __setstate__ is trusted).
    """
    if (isinstance(inst, _NON_INSTANCE_TYPES) or hasattr(type(inst), "__get__")
            or id(inst) in globals_seen):
        what = getattr(inst, "__qualname__", None) or type(inst).__name__
        mod = getattr(inst, "__module__", None)
        name = f"{mod}.{what}" if isinstance(mod, str) else str(what)
        raise UntrustedGlobalError(name, "BUILD (setattr) on a global, not on an instance "
                                         "created by this load")


class RestrictedUnpickler(pickle._Unpickler):
    """Stdlib pure-Python unpickler with the trust policy and the BUILD rule (plain pickles)."""

    dispatch = pickle._Unpickler.dispatch.copy()

    def __init__(self, file, *, trusted=True, **kwargs):
        super().__init__(file, **kwargs)
        self._policy = make_find_class(trusted)

    def find_class(self, module, name):
        return self._policy(module, name)

    def load_build(self):
        self._policy.check_build(self.stack[-2])
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = load_build  # type: ignore[assignment]

    def get_extension(self, code):
        # pickle's own version answers from copyreg's _extension_cache without asking
        # find_class once any earlier load resolved the code: always ask the policy here.
        key = copyreg._inverted_registry.get(code)
        if not key:
            raise pickle.UnpicklingError(f"unregistered extension code {code}")
        self.append(self.find_class(*key))


def restricted_loads(data, *, trusted=True):
    """Load a plain pickle stream with the trust policy (pure Python reference)."""
    return RestrictedUnpickler(io.BytesIO(data), trusted=trusted).load()
