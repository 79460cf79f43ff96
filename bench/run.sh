#!/bin/bash
# Issue 7's benchmark. Run as root from anywhere (labs need root):
#
#   bash bench/run.sh [--rounds N] [--scale-rounds M] [--only etcd|scale|plan6] [--out DIR]
#
# 1. etcd (N rounds, default 3): tutorial 000's flow after the servers exist,
#    on a fresh 3-node lab each time, two ways on the same hosts (same lab
#    name, so the same node names and addresses): cairn running
#    bench/etcd-apt-inventory, and bench/tutorial-000.sh (the tutorial's own
#    method: openssl, scp and ssh per step, host after host). The order
#    alternates between rounds. Both must end with 3 started members, checked
#    from every node with `etcdctl member list` over ssh (outside the timing).
#    After cairn's run, on the healthy cluster: a no-op rerun, `cairn plan`
#    (connected) and `cairn plan --offline`.
# 2. scale (M rounds, default N): bench/flow-simple (upload a file, apt
#    install etcd-client from the lab mirror, render a config, restart a unit)
#    on a fresh lab of 3, 9 and 27 nodes; cairn's peak RSS (/usr/bin/time).
# 3. plan6: `cairn plan etcd-binary-yaml --offline` with a 6-host inventory
#    (--var allow_even_size=true), 5 times.
#
# Every cairn run gets a fresh --state-dir. Figures: medians; raw figures in
# DIR/results.tsv (default /tmp/cairn-bench-PID). CAIRN=path overrides the
# binary (default target/release/cairn, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rounds=3 scale_rounds= only= out=/tmp/cairn-bench-$$
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --scale-rounds) scale_rounds=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "usage: bench/run.sh [--rounds N] [--scale-rounds M] [--only etcd|scale|plan6] [--out DIR]" >&2; exit 1 ;;
    esac
done
scale_rounds=${scale_rounds:-$rounds}
cairn=${CAIRN:-$root/target/release/cairn}
if [ ! -x "$cairn" ]; then cargo build --release --bin cairn; fi
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null
mkdir -p "$out"
results=$out/results.tsv
: > "$results"
lab=bench-$$
labs_up=()
cleanup() { for l in "${labs_up[@]}"; do "$cairn" lab down --name "$l" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT

log() { printf '%s  %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# CPU seconds the lab's nodes used so far (cgroup2 cpu.stat of cairn-LAB, all nodes), or 0.
nodes_cpu() {
    local f=/sys/fs/cgroup/unified/cairn-$lab/cpu.stat
    [ -r "$f" ] || f=/sys/fs/cgroup/cairn-$lab/cpu.stat
    if [ -r "$f" ]; then awk '/^usage_usec/ { printf "%.3f", $2 / 1e6 }' "$f"; else echo 0; fi
}

# timed METRIC ROUND CMD...: runs CMD, appends "metric round seconds maxrss_kb load1
# cairn_cpu_s nodes_cpu_s" to results (cairn_cpu: user+sys of CMD; nodes_cpu: what
# the lab's nodes (sshd, apt, dpkg, systemd, etcd...) used meanwhile).
# Output goes to $out/METRIC-ROUND.log. Exit codes 0 and 2 (plan: changes pending) count as success.
timed() {
    local metric=$1 round=$2; shift 2
    local logf=$out/$metric-$round.log tf=$out/.time rc=0 t0 t1 c0 c1
    c0=$(nodes_cpu)
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%M %U %S' -o "$tf" "$@" >"$logf" 2>&1 || rc=$?
    t1=$EPOCHREALTIME
    c1=$(nodes_cpu)
    if [ "$rc" != 0 ] && [ "$rc" != 2 ]; then
        log "FAILED ($rc): $metric round $round: $*"; tail -n 20 "$logf" >&2; exit 1
    fi
    local secs rss cpu ncpu u s
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    read -r rss u s < <(tail -n1 "$tf")
    cpu=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
    ncpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$metric" "$round" "$secs" "$rss" "$(load | cut -d' ' -f1)" "$cpu" "$ncpu" >> "$results"
    log "$metric round $round: $secs s, max RSS $((rss / 1024)) MiB, cpu: cairn/script $cpu s, lab nodes $ncpu s (load $(load))"
}

lab_up() { # NAME NODES
    "$cairn" lab down --name "$1" >/dev/null 2>&1 || true
    labs_up+=("$1")
    "$cairn" lab up --nodes "$2" --name "$1" >/dev/null
}
lab_down() { "$cairn" lab down --name "$1" >/dev/null; }

# Independent check, not timed: every node lists 3 started members and runs
# the same etcd on both sides (3.5.30 from the lab's newer repository).
check_cluster() {
    local l=$1 n out
    for n in node-1 node-2 node-3; do
        out=$("$cairn" lab ssh --name "$l" "$n" -- 'etcd --version')
        grep -q '^etcd Version: 3.5.30$' <<<"$out" || { log "$n does not run etcd 3.5.30:"; echo "$out" >&2; exit 1; }
        out=$("$cairn" lab ssh --name "$l" "$n" -- 'ETCDCTL_API=3 etcdctl member list --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/ca.crt --cert=/etc/etcd/server.crt --key=/etc/etcd/server.key')
        if [ "$(grep -c ', started, ' <<<"$out")" != 3 ]; then
            log "cluster check failed on $n:"; echo "$out" >&2; exit 1
        fi
    done
}

run_cairn() { # ROUND
    local r=$1 st
    st=$(mktemp -d "$out/state-cairn-$r-XXXX")
    lab_up "$lab" 3
    timed fresh-cairn "$r" "$cairn" run "$root/bench/etcd-apt-inventory" --lab "$lab" --state-dir "$st"
    check_cluster "$lab"
    timed noop-rerun "$r" "$cairn" run "$root/bench/etcd-apt-inventory" --lab "$lab" --state-dir "$st"
    grep -q ' 0 created, 0 changed, 0 deleted, 0 ran' "$out/noop-rerun-$r.log" || { log "no-op rerun changed something"; exit 1; }
    timed plan "$r" "$cairn" plan "$root/bench/etcd-apt-inventory" --lab "$lab" --state-dir "$st"
    timed plan-offline "$r" "$cairn" plan "$root/bench/etcd-apt-inventory" --lab "$lab" --state-dir "$st" --offline
    for j in "$st"/runs/*/journal.jsonl; do cp "$j" "$out/journal-cairn-$r-$(basename "$(dirname "$j")").jsonl"; done
    lab_down "$lab"
}

run_bash() { # ROUND
    local r=$1 w
    w=$(mktemp -d "$out/work-bash-$r-XXXX")
    lab_up "$lab" 3
    timed fresh-bash "$r" bash "$root/bench/tutorial-000.sh" "$lab" "$w"
    check_cluster "$lab"
    lab_down "$lab"
}

log "cairn $("$cairn" --version 2>/dev/null || echo "$cairn"); $(nproc) cores; load $(load); results in $out"

if [ -z "$only" ] || [ "$only" = etcd ]; then
    for r in $(seq 1 "$rounds"); do
        if [ $((r % 2)) = 1 ]; then run_cairn "$r"; run_bash "$r"; else run_bash "$r"; run_cairn "$r"; fi
    done
fi

if [ -z "$only" ] || [ "$only" = scale ]; then
    for r in $(seq 1 "$scale_rounds"); do
        for n in 3 9 27; do
            st=$(mktemp -d "$out/state-flow-$n-$r-XXXX")
            lab_up "$lab" "$n"
            timed "flow-$n" "$r" "$cairn" run "$root/bench/flow-simple" --lab "$lab" --state-dir "$st"
            for j in "$st"/runs/*/journal.jsonl; do cp "$j" "$out/journal-flow-$n-$r.jsonl"; done
            lab_down "$lab"
        done
    done
fi

if [ -z "$only" ] || [ "$only" = plan6 ]; then
    inv=$out/six-hosts.toml
    : > "$inv"
    for i in 1 2 3 4 5 6; do
        printf '[[hosts]]\nname = "k8s1etcd%d"\naddress = "10.0.0.%d"\nuser = "root"\n\n' "$i" "$((10 + i))" >> "$inv"
    done
    st=$(mktemp -d "$out/state-plan6-XXXX")
    for r in 1 2 3 4 5; do
        timed plan6-offline "$r" "$cairn" plan etcd-binary-yaml --offline --inventory "$inv" \
            --var allow_even_size=true --state-dir "$st"
    done
fi

# ---- Summary: medians against the targets ------------------------------------
python3 - "$results" <<'EOF'
import sys, statistics as st
from collections import defaultdict
secs, rss, loads, cpu, ncpu = defaultdict(list), defaultdict(list), [], defaultdict(list), defaultdict(list)
for line in open(sys.argv[1]):
    m, r, s, kb, l, c, nc = line.rstrip('\n').split('\t')
    secs[m].append(float(s)); rss[m].append(int(kb)); loads.append(float(l))
    cpu[m].append(float(c)); ncpu[m].append(float(nc))
med = {m: st.median(v) for m, v in secs.items()}
def row(name, value, target, ok):
    print(f"{name:48} {value:>22}  {target:>14}  {'met' if ok else 'NOT met'}")
print()
print("medians (n = rounds):")
for m in sorted(secs):
    v = secs[m]
    print(f"  {m:16} n={len(v):2}  median {med[m]:7.3f} s  (min {min(v):.3f}, max {max(v):.3f})  max RSS {st.median(rss[m])/1024:.1f} MiB  cpu: own {st.median(cpu[m]):.2f} s, lab nodes {st.median(ncpu[m]):.2f} s")
if loads:
    print(f"  load average (1 min) at the end of each measurement: median {st.median(loads):.2f}, max {max(loads):.2f}")
print()
print(f"{'target':48} {'measured':>22}  {'wanted':>14}")
if 'fresh-cairn' in med and 'fresh-bash' in med:
    ratio = med['fresh-cairn'] / med['fresh-bash']
    row("fresh 3-node run, cairn / bash tutorial method", f"{med['fresh-cairn']:.2f}/{med['fresh-bash']:.2f} = {ratio:.3f}x", "<= 0.28x", ratio <= 0.28)  # issue 16 (was 0.35x, issue 7)
if 'noop-rerun' in med:
    row("no-op rerun on 3 healthy nodes", f"{med['noop-rerun']:.3f} s", "< 0.6 s", med['noop-rerun'] < 0.6)
if 'flow-3' in med and 'flow-27' in med:
    ratio = med['flow-27'] / med['flow-3']
    row("simple flow, 27 hosts / 3 hosts", f"{med['flow-27']:.2f}/{med['flow-3']:.2f} = {ratio:.2f}x", "<= 2x", ratio <= 2)
if 'plan6-offline' in med:
    row("plan --offline etcd-binary-yaml, 6 hosts", f"{med['plan6-offline']:.3f} s", "< 0.2 s", med['plan6-offline'] < 0.2)
if 'flow-27' in rss:
    peak = st.median(rss['flow-27']) / 1024
    row("peak RSS of cairn, 27 hosts (simple flow)", f"{peak:.1f} MiB", "< 60 MB", peak * 1.048576 < 60)
EOF
