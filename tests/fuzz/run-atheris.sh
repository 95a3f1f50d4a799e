#!/bin/bash
# Coverage-guided fuzzing of the C walk: bash tests/fuzz/run-atheris.sh [SECONDS] [libFuzzer args]
# Needs clang (apt-get install clang) and atheris in the venv (pip install atheris).
# Builds an instrumented _select.c under $BUILD (not the in-place module) and runs
# tests/fuzz/select_atheris.py with AddressSanitizer preloaded; the corpus is kept
# in $BUILD/corpus between runs, crashes land in $BUILD/.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN=${1:-120}
shift || true
PY=${PY:-.venv/bin/python}
BUILD=${BUILD:-/var/tmp/prioomd-atheris}
mkdir -p "$BUILD/corpus"
INC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
ATHERIS=$("$PY" -c 'import atheris; print(atheris.path())')
clang -shared -fPIC -g -O1 -std=c11 -Wall -Wextra -fsanitize=fuzzer-no-link,address \
    -I"$INC" prioomd/_select.c -o "$BUILD/_select_fuzz.so"
export PRIOOMD_FUZZ_SELECT_SO="$BUILD/_select_fuzz.so"
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:quarantine_size_mb=32
LD_PRELOAD="$ATHERIS/asan_with_fuzzer.so" "$PY" tests/fuzz/select_atheris.py \
    -max_total_time="$SECONDS_TO_RUN" -max_len=2048 -artifact_prefix="$BUILD/" \
    -print_final_stats=1 \
    "$@" "$BUILD/corpus"
