#!/bin/bash
# Coverage-guided fuzzing with atheris:
#   bash tests/fuzz/run-atheris.sh [SECONDS] [select|parsers] [libFuzzer args]
# select (default): the C walk, tests/fuzz/select_atheris.py; needs clang
# (apt-get install clang): an instrumented _select.c is built under $BUILD (never
# over the in-place module) and run with AddressSanitizer preloaded.
# parsers: the Python parsers of untrusted input, tests/fuzz/parsers_atheris.py.
# Needs atheris in the venv (pip install atheris). The corpus of each target is
# kept in $BUILD/corpus-TARGET between runs; crashes land in $BUILD/.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN=${1:-120}
TARGET=${2:-select}
shift $(( $# < 2 ? $# : 2 ))
PY=${PY:-.venv/bin/python}
BUILD=${BUILD:-/var/tmp/prioomd-atheris}
mkdir -p "$BUILD/corpus-$TARGET"
LIBFUZZER_ARGS=(-max_total_time="$SECONDS_TO_RUN" -max_len=2048 -artifact_prefix="$BUILD/"
                -print_final_stats=1)
if [ "$TARGET" = parsers ]; then
    exec "$PY" tests/fuzz/parsers_atheris.py "${LIBFUZZER_ARGS[@]}" "$@" "$BUILD/corpus-$TARGET"
fi
INC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
ATHERIS=$("$PY" -c 'import atheris; print(atheris.path())')
clang -shared -fPIC -g -O1 -std=c11 -Wall -Wextra -fsanitize=fuzzer-no-link,address \
    -I"$INC" prioomd/_select.c -o "$BUILD/_select_fuzz.so"
export PRIOOMD_FUZZ_SELECT_SO="$BUILD/_select_fuzz.so"
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:quarantine_size_mb=32
LD_PRELOAD="$ATHERIS/asan_with_fuzzer.so" "$PY" tests/fuzz/select_atheris.py \
    "${LIBFUZZER_ARGS[@]}" "$@" "$BUILD/corpus-$TARGET"
