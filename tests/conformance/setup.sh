#!/bin/sh
# Installs the official cloud clients the conformance test
# (tests/cloud_conformance.rs) drives, idempotently:
# - Debian's `hcloud` CLI (package hcloud-cli, 1.30.x in bookworm) and zsh
#   (tutorial 000's shell, in which its commands run verbatim);
# - hcloud-python and pydo, pinned with all their dependencies in
#   requirements.txt, into a venv at /var/cache/cairn/conformance/venv
#   (python3-venv from Debian makes it)
#   (nothing goes into the system's Python). A second run installs nothing.
set -eu
cd "$(dirname "$0")"

missing=""
for p in hcloud-cli zsh python3-venv; do
    if ! dpkg-query -W -f '${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii'; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends $missing
fi

venv=/var/cache/cairn/conformance/venv
stamp="$venv/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r requirements.txt
    echo "$want" > "$stamp"
fi
"$venv/bin/python" -c 'import hcloud, pydo; print("conformance clients: hcloud-python", hcloud.__version__, "pydo", pydo.__version__)'
hcloud version >/dev/null 2>&1 || true
