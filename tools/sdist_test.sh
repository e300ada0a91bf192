#!/usr/bin/env bash
# Install an sdist as a user would and run its test suite from the unpacked sdist.
#
#   tools/sdist_test.sh PYTHON SDIST WORKDIR [PYTEST ARG...]
#
# Creates WORKDIR/venv with PYTHON, pip installs "SDIST[test]" into it (the C extension is built
# from the sdist), unpacks SDIST into WORKDIR and runs `python -m pytest ARGS` there: the tests
# import the installed package (the unpacked python/ directory is not on sys.path).
# Knobs: FASTJOBLIB_VENV_ARGS (extra `python -m venv` arguments, e.g. --system-site-packages),
# FASTJOBLIB_PIP_EXTRA (extra packages to install before the sdist, space-separated).
# Used by .ci/run inside the Debian chroots of tools/pyenvs.sh; works on any machine.
set -euo pipefail
PY="$1" SDIST="$2" WORK="$3"
shift 3
rm -rf "$WORK/venv" "$WORK/src"
mkdir -p "$WORK/src"
# shellcheck disable=SC2086
"$PY" -m venv ${FASTJOBLIB_VENV_ARGS:-} "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -q --upgrade pip
if [[ -n "${FASTJOBLIB_PIP_EXTRA:-}" ]]; then
    # shellcheck disable=SC2086
    "$VPY" -m pip install -q ${FASTJOBLIB_PIP_EXTRA}
fi
"$VPY" -m pip install -q "$SDIST[test]"
tar -C "$WORK/src" --strip-components=1 -xzf "$SDIST"
cd "$WORK/src"
"$VPY" -c 'import sys, numpy, fastjoblib._core as c
print("sdist-test: python", sys.version.split()[0], "numpy", numpy.__version__, "|", c.__file__)'
export PYTHONFAULTHANDLER=1
rc=0
"$VPY" -m pytest "$@" || rc=$?
if [[ $rc -eq 5 ]]; then
    echo "sdist-test: FAILED: pytest collected no tests ($*)" >&2
    exit 1
fi
exit $rc
