#!/usr/bin/env bash
# Builds and runs Warren's libFuzzer targets. See docs/FUZZING.md.
#
#   tools/fuzz/run.sh build                    build FuzzFrame, FuzzEngine, FuzzEnvelope
#   tools/fuzz/run.sh TARGET [libFuzzer args]  build, then fuzz TARGET with its corpus
#   tools/fuzz/run.sh all SECONDS              build, then fuzz each target for SECONDS in turn
#   tools/fuzz/run.sh check [RUNS]             build, then a bounded campaign: RUNS inputs per
#                                              target (default 100,000), exit 1 on any failure
#
# The corpus of TARGET lives in $WARREN_FUZZ_DIR/corpus/TARGET (default tools/fuzz/.work, not
# committed); it starts from the seeds that seeds.py writes from the repository's test vectors.
# Crashes are written to $WARREN_FUZZ_DIR/artifacts/. Instrumented with -sanitize=fuzzer,address.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${WARREN_FUZZ_DIR:-$here/.work}"
targets=(FuzzFrame FuzzEngine FuzzEnvelope)

flags=(-c release --package-path "$here" --build-path "$here/.build"
       -Xswiftc -sanitize=fuzzer,address -Xswiftc -g -Xswiftc -use-ld=lld)

build() {
    swift build "${flags[@]}" >&2
    bin="$(swift build "${flags[@]}" --show-bin-path)"
}

prepare() {
    mkdir -p "$work/artifacts"
    python3 "$here/seeds.py" "$work/seeds" >/dev/null
    for t in "${targets[@]}"; do mkdir -p "$work/corpus/$t"; done
}

fuzz() {   # TARGET, libFuzzer args…
    local t="$1"; shift
    "$bin/$t" "$work/corpus/$t" "$work/seeds/$t" -artifact_prefix="$work/artifacts/$t-" \
        -max_len=4096 -print_final_stats=1 "$@"
}

cmd="${1:-}"
case "$cmd" in
    build) build; echo "$bin" ;;
    all)
        secs="${2:?usage: run.sh all SECONDS}"
        build; prepare
        for t in "${targets[@]}"; do fuzz "$t" -max_total_time="$secs"; done ;;
    check)
        runs="${2:-100000}"
        build; prepare
        for t in "${targets[@]}"; do fuzz "$t" -runs="$runs"; done ;;
    FuzzFrame|FuzzEngine|FuzzEnvelope)
        shift; build; prepare; fuzz "$cmd" "$@" ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
