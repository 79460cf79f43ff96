#!/bin/sh
# Reproduce the figures in crates/cairn-lab/README.md: warm `lab up` of 3 nodes (3
# runs), `lab up` of 27 nodes with memory per node, and the 48 stop/start
# cycles test. Run as root after .ci/lab-prereqs.sh; uses lab name `bench`.
set -eu
cd "$(dirname "$0")/.."
cairn=${CAIRN:-target/debug/cairn}
lab="$cairn lab"

$lab down --name bench >/dev/null
for i in 1 2 3; do
    $lab up --nodes 3 --name bench | head -n1
    $lab down --name bench
done

sync; echo 3 > /proc/sys/vm/drop_caches
before=$(free -m | awk '/^Mem:/ {print $3}')
$lab up --nodes 27 --name bench | head -n1
after=$(free -m | awk '/^Mem:/ {print $3}')
$lab status --name bench | awk '
    / mem / { for (i = 1; i <= NF; i++) if ($i == "mem") { s += $(i+1); n++ } }
    END { printf "memory cgroups: %d nodes, %.1f MiB per node on average\n", n, s / n }'
echo "free -m used: $before -> $after MiB ($(( (after - before) / 27 )) MiB per node)"
$lab down --name bench

cargo test --test lab stop_start_cycles_across_nodes_never_fail 2>&1 | grep 'test result'
