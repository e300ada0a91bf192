#!/usr/bin/env bash
# Build the extension in place (python/fastjoblib/_core*.so) for development in this checkout.
# Then run tests with: PYTHONPATH=python python -m pytest
#   FASTJOBLIB_SANITIZE=1 tools/devbuild.sh   -> ASan+UBSan build; run python with
#   LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" ASAN_OPTIONS=detect_leaks=0
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f python/fastjoblib/_core*.so
# --force: the sanitizer and normal builds share build/lib, so without it switching flavours
# silently reuses the other flavour's .so (observed).
python setup.py -q build_ext --force --inplace --build-temp "build/tmp-${FASTJOBLIB_SANITIZE:+asan}" 2>&1 | grep -v "^$" || true
ls python/fastjoblib/_core*.so >/dev/null
