#!/bin/bash
# Issue 16's fleet figures. Run as root from anywhere (labs need root):
#
#   bash bench/fleet.sh [--sizes "3 27 100"] [--rounds N] [--max-parallel N] [--out DIR]
#
# For each size S (default 3, 27 and 100): a fresh lab of S nodes (`cairn lab
# up --nodes S` waits until every node's systemd says running), then
# bench/flow-simple on all of them with a fresh --state-dir (upload a unit
# file, apt install etcd-client from the lab mirror, render a config, restart
# the unit), N rounds (default 1), each on a fresh lab. Measured per run:
# - wall time;
# - cairn's peak RSS and its own CPU seconds (user + sys), from /usr/bin/time
#   (the cairn process and the children it waited for: not the ssh masters,
#   which run detached), and CPU seconds per host;
# - the lab nodes' CPU seconds meanwhile (cgroup cpu.stat of the lab);
# - the peak number of cairn's threads and of live ssh masters (sampled every
#   0.1 s from /proc: masters are `ssh` processes whose control socket lies in
#   this bench's private $XDG_RUNTIME_DIR/cairn-ssh); the thread names at the
#   peak go to DIR/threads-SIZE-ROUND.txt; and the masters still up when the
#   run has ended (kept for the next run: at most the cap on masters,
#   CAIRN_SSH_MAX_MASTERS, default twice the on() cap).
# The on() cap is cairn's default (32) unless --max-parallel is given.
# Raw figures: DIR/fleet.tsv (default /tmp/cairn-fleet-PID); logs and journals
# in DIR. CAIRN=path overrides the binary (default target/release/cairn).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
sizes="3 27 100" rounds=1 cap= out=/tmp/cairn-fleet-$$
while [ $# -gt 0 ]; do
    case $1 in
        --sizes) sizes=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --max-parallel) cap=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "usage: bench/fleet.sh [--sizes \"3 27 100\"] [--rounds N] [--max-parallel N] [--out DIR]" >&2; exit 1 ;;
    esac
done
cairn=${CAIRN:-$root/target/release/cairn}
if [ ! -x "$cairn" ]; then cargo build --release --bin cairn; fi
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null
mkdir -p "$out"
results=$out/fleet.tsv
[ -s "$results" ] || printf 'hosts\tround\twall_s\tmax_rss_kib\tcairn_cpu_s\tcpu_per_host_ms\tnodes_cpu_s\tpeak_threads\tpeak_ssh_masters\tend_ssh_masters\tload1\tup_s\tmem_used_mib\n' > "$results"
lab=fleet-$$
trap '"$cairn" lab down --name "$lab" >/dev/null 2>&1 || true' EXIT

log() { printf '%s  %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }
nodes_cpu() {
    local f=/sys/fs/cgroup/unified/cairn-$lab/cpu.stat
    [ -r "$f" ] || f=/sys/fs/cgroup/cairn-$lab/cpu.stat
    if [ -r "$f" ]; then awk '/^usage_usec/ { printf "%.3f", $2 / 1e6 }' "$f"; else echo 0; fi
}

# masters XDG: live ssh masters of a run, as distinct control sockets of
# `ssh ... -M` processes under XDG/cairn-ssh (not the short-lived `ssh -S ...
# -O exit` clients, and a master forking into the background counts once).
masters() {
    { pgrep -af -- "-S $1/cairn-ssh/" || true; } | { grep -- ' -M ' || true; } \
        | sed -E 's/.* -S ([^ ]+) .*/\1/' | sort -u | wc -l
}

# sample PID XDG FILE: until PID exits, write "peak_threads peak_masters" to FILE,
# and every sample ("epoch masters") to FILE.masters.
sample() {
    local pid=$1 xdg=$2 f=$3 th=0 ms=0 t c cp
    while kill -0 "$pid" 2>/dev/null; do
        # the cairn process is /usr/bin/time's child
        cp=$(pgrep -P "$pid" -x cairn | head -n1 || true)
        if [ -n "$cp" ]; then
            t=$(awk '/^Threads:/ { print $2 }' "/proc/$cp/status" 2>/dev/null || echo 0)
            if [ "${t:-0}" -gt "$th" ]; then
                th=$t
                # thread names at the peak: what the threads are
                cat /proc/"$cp"/task/*/comm 2>/dev/null | sort | uniq -c | sort -rn > "$f.threads" || true
            fi
        fi
        c=$(masters "$xdg")
        echo "$EPOCHREALTIME $c" >> "$f.masters"
        [ "${c:-0}" -gt "$ms" ] && ms=$c
        sleep 0.1
    done
    echo "$th $ms" > "$f"
}

log "cairn $("$cairn" --version); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); sizes: $sizes; results in $out"
for n in $sizes; do
    for r in $(seq 1 "$rounds"); do
        free -m | awk '/^Mem:/ { print "mem before lab: used " $3 " MiB, available " $7 " MiB" }' >&2
        "$cairn" lab down --name "$lab" >/dev/null 2>&1 || true
        t0=$EPOCHREALTIME
        "$cairn" lab up --nodes "$n" --name "$lab" --timeout 1800 > "$out/lab-up-$n-$r.log" 2>&1 \
            || { log "lab up failed for $n nodes"; tail -n 20 "$out/lab-up-$n-$r.log" >&2; exit 1; }
        up=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
        mem=$(free -m | awk '/^Mem:/ { print $3 }')
        log "lab of $n nodes up in $up s; memory used $mem MiB; load $(load1)"
        st=$(mktemp -d "$out/state-$n-$r-XXXX")
        xdg=$(mktemp -d "$out/xdg-$n-$r-XXXX")
        chmod 700 "$xdg"
        args=(run "$root/bench/flow-simple" --lab "$lab" --state-dir "$st")
        rm -f "$out/.sample.masters"
        [ -n "$cap" ] && args+=(--max-parallel "$cap")
        c0=$(nodes_cpu)
        t0=$EPOCHREALTIME
        rc=0
        XDG_RUNTIME_DIR=$xdg /usr/bin/time -f '%M %U %S' -o "$out/.time" "$cairn" "${args[@]}" \
            > "$out/flow-$n-$r.log" 2>&1 &
        tpid=$!
        sample "$tpid" "$xdg" "$out/.sample" &
        spid=$!
        wait "$tpid" || rc=$?
        t1=$EPOCHREALTIME
        wait "$spid" || true
        c1=$(nodes_cpu)
        if [ "$rc" != 0 ]; then log "FAILED ($rc): flow on $n hosts"; tail -n 30 "$out/flow-$n-$r.log" >&2; exit 1; fi
        grep -q 'succeeded' "$out/flow-$n-$r.log" || { log "no success line"; exit 1; }
        read -r rss u s < <(tail -n1 "$out/.time")
        read -r threads masters < "$out/.sample"
        # masters left up for the next run (at most the cap on masters)
        endm=$(masters "$xdg")
        mv "$out/.sample.masters" "$out/masters-$n-$r.txt" 2>/dev/null || true
        cp "$out/.sample.threads" "$out/threads-$n-$r.txt" 2>/dev/null || true
        wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
        cpu=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
        perhost=$(awk -v c="$cpu" -v n="$n" 'BEGIN { printf "%.1f", c * 1000 / n }')
        ncpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", b - a }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$r" "$wall" "$rss" "$cpu" "$perhost" "$ncpu" \
            "$threads" "$masters" "${endm:-0}" "$(load1)" "$up" "$mem" >> "$results"
        log "$n hosts round $r: $wall s, max RSS $((rss / 1024)) MiB, cairn cpu $cpu s ($perhost ms/host), nodes cpu $ncpu s, peak threads $threads, peak ssh masters $masters, $endm at the end (load $(load1))"
        cp "$st"/runs/*/journal.jsonl "$out/journal-$n-$r.jsonl" 2>/dev/null || true
        # the masters outlive the run (120 s idle): end them with the lab
        "$cairn" lab down --name "$lab" >/dev/null
        for sock in "$xdg"/cairn-ssh/*; do [ -S "$sock" ] && ssh -S "$sock" -O exit x >/dev/null 2>&1; done || true
    done
done
column -t "$results" >&2
