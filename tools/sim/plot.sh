#!/bin/sh
# Plots the CSV files written by `warren simulate --sweep --out DIR` (default docs/plots)
# as PNG with gnuplot (Debian: apt-get install gnuplot-nox):
#   rmr.png       RMR against N, one line per degree
#   hops.png      last-delivery hop (max hops at delivery) and mean hops against N, per degree
#   state.png     engine state per node against N, per degree
#   loss.png      delivery ratio against loss (and with 5 %/min churn), per N
#   resilience.png  delivery ratio by 5-s bucket of publish time, flood / views / routing, under
#                 churn, loss, a kill of half the nodes and a 2-minute partition (resilience-timeline.csv)
set -eu
DIR=${1:-docs/plots}
command -v gnuplot >/dev/null || { echo "gnuplot not found: apt-get install gnuplot-nox" >&2; exit 1; }
cd "$DIR"
# Column numbers of sweep.csv / faults.csv (see SimulationReport.csvHeader).
col() { head -1 "$1" | tr ',' '\n' | grep -nx "$2" | cut -d: -f1; }
N=$(col sweep.csv nodes); D=$(col sweep.csv degree); RMR=$(col sweep.csv rmr)
HOP=$(col sweep.csv bcast_last_hop); MHOP=$(col sweep.csv max_hops); MEAN=$(col sweep.csv mean_hops); ST=$(col sweep.csv state_bytes_mean)
FN=$(col faults.csv nodes); FL=$(col faults.csv loss); FC=$(col faults.csv churn_pct_min)
FR=$(col faults.csv delivery_ratio); FB=$(col faults.csv bcast_ratio)
DEGREES=$(tail -n +2 sweep.csv | cut -d, -f"$D" | sort -n | uniq | tr '\n' ' ')
FNODES=$(tail -n +2 faults.csv | cut -d, -f"$FN" | sort -n | uniq | tr '\n' ' ')
gnuplot <<GP
set datafile separator ","
set terminal pngcairo size 900,560 noenhanced
set key outside right
set grid
set logscale x
set xlabel "nodes (N)"
degrees = "$DEGREES"
set output "rmr.png"
set title "Relative message redundancy of flooding: frames / (N - 1) - 1"
set ylabel "RMR"
plot for [d in degrees] "< awk -F, 'NR > 1 && \$$D == ".d."' sweep.csv" using $N:$RMR with linespoints title "degree ".d
set output "hops.png"
set title "Hops at delivery: last-delivery hop (max over the stream and the broadcast, solid), mean (dashed)"
set ylabel "hops"
plot for [d in degrees] "< awk -F, 'NR > 1 && \$$D == ".d."' sweep.csv" using $N:(\$$MHOP > \$$HOP ? \$$MHOP : \$$HOP) with linespoints linecolor d title "degree ".d, \
     for [d in degrees] "< awk -F, 'NR > 1 && \$$D == ".d."' sweep.csv" using $N:$MEAN with lines dashtype 2 linecolor d notitle
set output "state.png"
set title "Engine state per node (GossipEngine.countedStateBytes, mean)"
set ylabel "bytes"
plot for [d in degrees] "< awk -F, 'NR > 1 && \$$D == ".d."' sweep.csv" using $N:$ST with linespoints title "degree ".d
unset logscale x
set key inside left bottom
set output "loss.png"
set title "Delivery ratio against per-frame loss (no churn / 5 %/min churn)"
set xlabel "loss per frame (%)"
set ylabel "delivery ratio"
set yrange [0:1.02]
fnodes = "$FNODES"
plot for [n in fnodes] "< awk -F, 'NR > 1 && \$$FN == ".n." && \$$FC == 0' faults.csv" using (100*\$$FL):$FR with linespoints title "point-to-point, N ".n, \
     for [n in fnodes] "< awk -F, 'NR > 1 && \$$FN == ".n." && \$$FC == 0' faults.csv" using (100*\$$FL):$FB with linespoints dashtype 2 title "broadcast, N ".n, \
     for [n in fnodes] "< awk -F, 'NR > 1 && \$$FN == ".n." && \$$FC > 0' faults.csv" using (100*\$$FL):$FR with linespoints pointsize 2 title "point-to-point + churn 5 %/min, N ".n
GP
echo "wrote $DIR/rmr.png hops.png state.png loss.png"
[ -f resilience-timeline.csv ] || exit 0
# The fault's start and end (s) from resilience.csv (fault_start_ms, fault_end_ms of the kill / the partition).
RF=$(col resilience.csv fault); RS=$(col resilience.csv fault_start_ms); RE=$(col resilience.csv fault_end_ms)
KILL_AT=$(awk -F, -v f="$RF" -v s="$RS" 'NR > 1 && $f == "kill50" { print $s / 1000; exit }' resilience.csv)
CUT_FROM=$(awk -F, -v f="$RF" -v s="$RS" 'NR > 1 && $f == "partition120" { print $s / 1000; exit }' resilience.csv)
CUT_TO=$(awk -F, -v f="$RF" -v e="$RE" 'NR > 1 && $f == "partition120" { print $e / 1000; exit }' resilience.csv)
gnuplot <<GP
set datafile separator ","
set terminal pngcairo size 1000,760 noenhanced
set output "resilience.png"
set grid
set key inside left bottom
set yrange [0:1.05]
set xlabel "publish time from the stream's start (s)"
set ylabel "delivery ratio (5-s buckets)"
modes = "flood views routing"
set multiplot layout 2,2 title "Point-to-point delivery under faults: flood (no views), views, views + routing"
set title "churn 5 %/min"
plot for [m in modes] "< awk -F, 'NR > 1 && \$1 == \"".m."\" && \$2 == \"churn5\"' resilience-timeline.csv" using (\$3 + 2.5):6 with linespoints pointsize 0.6 title m
set title "loss 20 % per frame"
plot for [m in modes] "< awk -F, 'NR > 1 && \$1 == \"".m."\" && \$2 == \"loss20\"' resilience-timeline.csv" using (\$3 + 2.5):6 with linespoints pointsize 0.6 title m
set title "50 % of the nodes killed at once at ${KILL_AT} s (dotted line)"
set arrow 1 from ${KILL_AT}, graph 0 to ${KILL_AT}, graph 1 nohead dashtype 3
plot for [m in modes] "< awk -F, 'NR > 1 && \$1 == \"".m."\" && \$2 == \"kill50\"' resilience-timeline.csv" using (\$3 + 2.5):6 with linespoints pointsize 0.6 title m
unset arrow 1
set title "partition into halves from ${CUT_FROM} s to ${CUT_TO} s (dotted lines)"
set arrow 2 from ${CUT_FROM}, graph 0 to ${CUT_FROM}, graph 1 nohead dashtype 3
set arrow 3 from ${CUT_TO}, graph 0 to ${CUT_TO}, graph 1 nohead dashtype 3
plot for [m in modes] "< awk -F, 'NR > 1 && \$1 == \"".m."\" && \$2 == \"partition120\"' resilience-timeline.csv" using (\$3 + 2.5):6 with linespoints pointsize 0.6 title m
unset multiplot
GP
echo "wrote $DIR/resilience.png"
