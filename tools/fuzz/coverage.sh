#!/usr/bin/env bash
# Source coverage of a corpus: rebuilds the fuzz targets with coverage mapping (no ASan) in
# tools/fuzz/.build-cov, replays each target's corpus once, and prints llvm-cov's per-file
# report for the code under test. See docs/FUZZING.md.
#
#   tools/fuzz/coverage.sh [CORPUS_DIR]     (default: $WARREN_FUZZ_DIR/corpus or tools/fuzz/.work/corpus)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
corpus="${1:-${WARREN_FUZZ_DIR:-$here/.work}/corpus}"
flags=(-c release --package-path "$here" --build-path "$here/.build-cov"
       -Xswiftc -sanitize=fuzzer -Xswiftc -profile-generate -Xswiftc -profile-coverage-mapping
       -Xswiftc -use-ld=lld)
swift build "${flags[@]}" >&2
bin="$(swift build "${flags[@]}" --show-bin-path)"
# The toolchain's own llvm tools: a distribution's may not read this compiler's profile format.
tool() { echo "$(dirname "$(readlink -f "$(command -v swift)")")/$1"; }
out="$here/.build-cov/profiles"
rm -rf "$out"; mkdir -p "$out"
declare -A files=(
    [FuzzFrame]="Sources/WarrenEngine/Frame+Codec.swift Sources/WarrenEngine/Frame.swift"
    [FuzzEngine]="Sources/WarrenEngine/GossipEngine.swift Sources/WarrenEngine/GossipEngine+Frames.swift Sources/WarrenEngine/GossipEngine+Membership.swift Sources/WarrenEngine/GossipEngine+Timers.swift Sources/WarrenEngine/SeenCache.swift Sources/WarrenEngine/KnownTable.swift Sources/WarrenEngine/Frame+Codec.swift"
    [FuzzEnvelope]="Sources/WarrenCore/EnvelopeCodec.swift Sources/WarrenCore/EnvelopeCodec+Wire.swift"
)
for t in FuzzFrame FuzzEngine FuzzEnvelope; do
    [ -d "$corpus/$t" ] || { echo "no corpus for $t in $corpus" >&2; continue; }
    LLVM_PROFILE_FILE="$out/$t.profraw" "$bin/$t" -runs=0 "$corpus/$t" >/dev/null 2>&1
    "$(tool llvm-profdata)" merge -sparse "$out/$t.profraw" -o "$out/$t.profdata"
    echo "== $t ($(ls "$corpus/$t" | wc -l) corpus inputs)"
    # shellcheck disable=SC2086
    (cd "$root" && "$(tool llvm-cov)" report "$bin/$t" -instr-profile="$out/$t.profdata" ${files[$t]} | sed 's#^/.*/Sources/#Sources/#')
done
