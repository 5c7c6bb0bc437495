#!/bin/sh
# Reproduces docs/SIMULATION.md: builds warren (release), runs the sweep, plots it.
#   tools/sim/sweep.sh [DIR]        (default docs/plots)
set -eu
DIR=${1:-docs/plots}
swift build -c release --product warren
BIN=$(swift build -c release --show-bin-path)/warren
"$BIN" simulate --sweep --out "$DIR"
"$(dirname "$0")/plot.sh" "$DIR"
