#!/usr/bin/env bash
# Regenerates Sources/WarrenCore/Generated/*.pb.swift from Proto/.
# Uses Debian's protoc (apt-get install protobuf-compiler) and protoc-gen-swift built
# once from the swift-protobuf dependency (not the SwiftPM build plugin).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "need protoc: apt-get install protobuf-compiler" >&2; exit 1; }
swift build -c release --product protoc-gen-swift >&2
PLUGIN="$(swift build -c release --show-bin-path)/protoc-gen-swift"
OUT=Sources/WarrenCore/Generated
rm -f "$OUT"/*.pb.swift
protoc --plugin=protoc-gen-swift="$PLUGIN" \
    --swift_opt=Visibility=Public --swift_opt=FileNaming=PathToUnderscores \
    --swift_out="$OUT" -I Proto $(cd Proto && find . -name '*.proto' | sed 's|^\./||' | sort)
ls "$OUT"
