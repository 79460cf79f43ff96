#!/usr/bin/env bash
# Does a `cairn` binary honour the test-only kill hook CAIRN_FAULT_KILL?
# Usage: bench/fault-hooks.sh [BINARY]   (default target/debug/cairn)
# Prints "hooks: yes" (killed by SIGKILL after the first step) or "hooks: no"
# (the run went through: the binary has no fault hooks, as `cargo build` makes it).
set -euo pipefail
bin=$(realpath "${1:-target/debug/cairn}")
ws=$(mktemp -d)
trap 'rm -rf "$ws"' EXIT
mkdir -p "$ws/rb"
chmod 700 "$ws"
printf 'name = "hooks"\nversion = "0.1.0"\ndescription = "three local files"\n' >"$ws/rb/runbook.toml"
printf 'for i in 0..3 { local_file(#{ path: `f/${i}.txt`, content: `file ${i}` }); }\n' >"$ws/rb/main.rhai"
cd "$ws"
set +e
env -i PATH="$PATH" HOME="$HOME" CAIRN_STATE_DIR=.cairn CAIRN_FAULT_KILL=done:1 "$bin" run rb >out.txt 2>&1
code=$?
set -e
echo "exit status: $code ($(grep -c . out.txt) lines of output)"
if [ "$code" -eq 137 ]; then echo "hooks: yes"; else echo "hooks: no"; fi
echo "CAIRN_FAULT_KILL in the binary's strings: $(grep -c -a CAIRN_FAULT_KILL "$bin" || true)"
