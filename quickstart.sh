#!/usr/bin/env bash
# The quickstart's main job, on a fresh Debian 12 machine (as root): build
# cairn, prepare the lab (Debian packages, the base image), and run the shipped
# runbook etcd-hetzner-apt against the lab's Hetzner Cloud emulation, whose
# servers are real systemd hosts on this machine. Ends with the verified
# member list. No cloud account needed. Run it again: nothing changes.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --bin cairn
bash .ci/lab-prereqs.sh
./target/release/cairn lab up --nodes 0
./target/release/cairn run etcd-hetzner-apt --lab
