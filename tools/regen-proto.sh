#!/usr/bin/env bash
# Regenerates the committed protobuf and gRPC code from Proto/:
#   Sources/WarrenCore/Generated/*.pb.swift           (messages; protoc-gen-swift)
#   Sources/WarrenGRPCClient/Generated/*.grpc.swift   (cunicu.signaling.Signaling; protoc-gen-grpc-swift-2)
# Uses Debian's protoc (apt-get install protobuf-compiler) and the two plugins built once from
# the package's dependencies (not the SwiftPM build plugins, which compile protoc from C++).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "need protoc: apt-get install protobuf-compiler" >&2; exit 1; }
SCRATCH=.build-gen
swift build -c release --scratch-path "$SCRATCH" --product protoc-gen-swift >&2
swift build -c release --scratch-path "$SCRATCH" --product protoc-gen-grpc-swift-2 >&2
BIN="$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)"
PROTOS=$(cd Proto && find . -name '*.proto' | sed 's|^\./||' | sort)

OUT=Sources/WarrenCore/Generated
rm -f "$OUT"/*.pb.swift
protoc --plugin=protoc-gen-swift="$BIN/protoc-gen-swift" \
    --swift_opt=Visibility=Public --swift_opt=FileNaming=PathToUnderscores \
    --swift_out="$OUT" -I Proto $PROTOS

GOUT=Sources/WarrenGRPCClient/Generated
mkdir -p "$GOUT"
rm -f "$GOUT"/*.grpc.swift
protoc --plugin=protoc-gen-grpc-swift-2="$BIN/protoc-gen-grpc-swift-2" \
    --grpc-swift-2_opt=Visibility=Public,Server=true,Client=true,FileNaming=PathToUnderscores \
    --grpc-swift-2_opt=ProtoPathModuleMappings=tools/proto-module-map.asciipb,ExtraModuleImports=WarrenCore \
    --grpc-swift-2_out="$GOUT" -I Proto cunicu/signaling/signaling.proto
ls "$OUT" "$GOUT"
