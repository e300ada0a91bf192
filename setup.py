"""Build script for the fastjoblib C extension.

Set FASTJOBLIB_SANITIZE=1 to build with AddressSanitizer + UndefinedBehaviorSanitizer
(-O1 -g); run the tests with LD_PRELOAD pointing at libasan (see README, "Sanitizer build").
Set FASTJOBLIB_DEBUG=1 for -O0 -g without sanitizers (valgrind).
"""
import glob
import os

import numpy
from setuptools import Extension, setup

extra_compile_args = ["-Wall", "-Wextra", "-Wno-unused-parameter",
                      "-Wno-missing-field-initializers", "-std=gnu11",
                      "-fvisibility=hidden"]
extra_link_args = []
define_macros = [("NPY_NO_DEPRECATED_API", "NPY_1_21_API_VERSION")]

if os.environ.get("FASTJOBLIB_SANITIZE"):
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
             "-fno-sanitize-recover=undefined", "-O1", "-g"]
    extra_compile_args += flags
    extra_link_args += ["-fsanitize=address,undefined"]
elif os.environ.get("FASTJOBLIB_DEBUG"):
    extra_compile_args += ["-O0", "-g"]
else:
    extra_compile_args += ["-O2"]

ext = Extension(
    "fastjoblib._core",
    sources=sorted(glob.glob(os.path.join("csrc", "*.c"))),
    depends=sorted(glob.glob(os.path.join("csrc", "*.h"))),
    include_dirs=["csrc", numpy.get_include()],
    libraries=["z", "bz2", "lzma", "pthread"],
    define_macros=define_macros,
    extra_compile_args=extra_compile_args,
    extra_link_args=extra_link_args,
)

setup(ext_modules=[ext])
