#!/bin/bash
# Tutorial 000's flow after the servers exist, done the tutorial's way: the
# baseline of bench/run.sh. Usage: bench/tutorial-000.sh LAB WORKDIR
#
# Host after host, as written: openssl genrsa/req/x509 for the CA and for a
# server and a peer certificate per node (the tutorial's .conf template and
# sed), one scp per file into ~, then one ssh per step on each node: apt
# update + apt install, mkdir/mv/chown into /etc/etcd, /etc/default/etcd
# written with the tutorial's values (written whole, with the same content as
# the runbook's template, instead of edited by hand). The restarts are
# concurrent (`ssh NODE systemctl restart etcd &` then `wait`): a new
# cluster's members only report ready once they have a leader, so restarting
# them one after the other would hang on the first.
#
# etcd comes from the lab's newer repository (3.5.30, `deb [trusted=yes]
# $CAIRN_APT_MIRROR_NEWER ./` added in the same ssh as the apt-get update), the
# package cairn's bench runbook installs: both sides do the same apt work.
#
# One step the tutorial lacks: `apt install` starts a one-member etcd whose
# data dir makes etcd ignore ETCD_INITIAL_CLUSTER, so the tutorial as written
# ends with three 1-member clusters. Before the restart this script stops etcd
# and removes /var/lib/etcd/default on each node (one ssh per node), which is
# what it takes to reach one 3-member cluster.
#
# Verification: `etcdctl member list` over ssh on each node (the tutorial's
# command, with the v3 API), retried until it lists 3 started members (10 s
# deadline, 0.1 s apart). Exits non-zero unless every node sees 3 started
# members. The hosts are the lab inventory's `node-*`; member address = node
# address; ssh uses the lab's key and known_hosts.
set -euo pipefail
lab=${1:?usage: tutorial-000.sh LAB WORKDIR}
work=${2:?usage: tutorial-000.sh LAB WORKDIR}
envfile=/var/lib/cairn/labs/$lab/env
key=$(sed -n 's/^CAIRN_LAB_SSH_KEY=//p' "$envfile")
known=$(sed -n 's/^CAIRN_LAB_KNOWN_HOSTS=//p' "$envfile")
inventory=$(sed -n 's/^CAIRN_LAB_INVENTORY=//p' "$envfile")
# The same etcd as cairn's run (etcd-apt-inventory 1.1.0 pins 3.5.30 from the
# lab's newer repository): the same extra apt source, so both install the
# same package from the same place.
newer=$(sed -n 's/^CAIRN_APT_MIRROR_NEWER=//p' "$envfile")

# name address pairs from the inventory, in order
mapfile -t NODES < <(awk -F'"' '/^name = /{n=$2} /^address = /{print n}' "$inventory")
declare -A IP
while read -r n a; do IP[$n]=$a; done < <(awk -F'"' '/^name = /{n=$2} /^address = /{print n, $2}' "$inventory")

SSH_OPTS=(-i "$key" -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile="$known"
          -o StrictHostKeyChecking=yes -o LogLevel=ERROR)
rssh() { local n=$1; shift; ssh "${SSH_OPTS[@]}" "root@${IP[$n]}" "$@"; }
rscp() { scp -q "${SSH_OPTS[@]}" "$1" "root@${IP[$2]}:$3"; }

mkdir -p "$work"
cd "$work"

# ---- Provisioning a CA and Generating TLS Certificates --------------------
openssl genrsa -out etcd-ca.key 2048 2>/dev/null
openssl req -x509 -new -nodes -key etcd-ca.key -subj "/CN=etcd-ca" -days 5475 -out etcd-ca.crt

cat > etcd-server.conf.tpl <<'EOF'
[ req ]
default_bits = 2048
prompt = no
default_md = sha256
req_extensions = req_ext
distinguished_name = dn

[ dn ]
CN = <NODE_NAME>

[ req_ext ]
subjectAltName = @alt_names

[ alt_names ]
DNS.1 = <NODE_NAME>
DNS.2 = localhost
IP.1 = 127.0.0.1
IP.2 = <NODE_INTERNAL_IP>

[ v3_ext ]
subjectAltName=@alt_names
EOF

for NODE in "${NODES[@]}"; do
    for KIND in server peer; do
        INTERNAL_IP=${IP[$NODE]}
        openssl genrsa -out "${NODE}-etcd-${KIND}.key" 2048 2>/dev/null
        sed -e "s/<NODE_NAME>/${NODE}/" -e "s/<NODE_INTERNAL_IP>/${INTERNAL_IP}/" etcd-server.conf.tpl \
            > "${NODE}-etcd-${KIND}.conf"
        openssl req -new -key "${NODE}-etcd-${KIND}.key" -config "${NODE}-etcd-${KIND}.conf" \
            -out "${NODE}-etcd-${KIND}.csr"
        openssl x509 -req -in "${NODE}-etcd-${KIND}.csr" -CA etcd-ca.crt -CAkey etcd-ca.key \
            -sha256 -CAcreateserial -days 730 -extensions v3_ext -extfile "${NODE}-etcd-${KIND}.conf" \
            -out "${NODE}-etcd-${KIND}.crt" 2>/dev/null
    done
done

# ---- Copy Certificates to servers ------------------------------------------
for NODE in "${NODES[@]}"; do
    rscp etcd-ca.crt "$NODE" '~/'
    rscp "${NODE}-etcd-server.key" "$NODE" '~/etcd-server.key'
    rscp "${NODE}-etcd-server.crt" "$NODE" '~/etcd-server.crt'
    rscp "${NODE}-etcd-peer.key" "$NODE" '~/etcd-peer.key'
    rscp "${NODE}-etcd-peer.crt" "$NODE" '~/etcd-peer.crt'
done

# ETCD_INITIAL_CLUSTER, computed on the operator's machine
ARRAY=()
for NODE in "${NODES[@]}"; do ARRAY+=("${NODE}=https://${IP[$NODE]}:2380"); done
ETCD_INITIAL_CLUSTER=$(printf ",%s" "${ARRAY[@]}")
ETCD_INITIAL_CLUSTER=${ETCD_INITIAL_CLUSTER:1}

# ---- Install, Configure (host after host, one ssh per step) ----------------
for NODE in "${NODES[@]}"; do
    INTERNAL_IP=${IP[$NODE]}
    # Install etcd (Debian 12 / Ubuntu 22.04 name the packages etcd-server and etcd-client)
    # (plus the repository with etcd 3.5.30, as cairn's run: see `newer` above)
    rssh "$NODE" "echo 'deb [trusted=yes] $newer ./' > /etc/apt/sources.list.d/etcd.list
export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq etcd-server etcd-client >/dev/null"
    rssh "$NODE" 'mkdir -p /etc/etcd
mv ~/etcd-ca.crt /etc/etcd/ca.crt
mv ~/etcd-server.key /etc/etcd/server.key
mv ~/etcd-server.crt /etc/etcd/server.crt
mv ~/etcd-peer.key /etc/etcd/peer.key
mv ~/etcd-peer.crt /etc/etcd/peer.crt
chown -R etcd /etc/etcd'
    rssh "$NODE" 'cat > /etc/default/etcd' <<EOF
ETCD_NAME="${NODE}"
ETCD_DATA_DIR="/var/lib/etcd/default"
ETCD_INITIAL_CLUSTER="${ETCD_INITIAL_CLUSTER}"
ETCD_INITIAL_CLUSTER_STATE="new"
ETCD_INITIAL_CLUSTER_TOKEN="cluster-1"
ETCD_INITIAL_ADVERTISE_PEER_URLS="https://${INTERNAL_IP}:2380"
ETCD_LISTEN_PEER_URLS="https://${INTERNAL_IP}:2380"
ETCD_LISTEN_CLIENT_URLS="https://${INTERNAL_IP}:2379,https://127.0.0.1:2379"
ETCD_ADVERTISE_CLIENT_URLS="https://${INTERNAL_IP}:2379"
ETCD_CLIENT_CERT_AUTH="true"
ETCD_PEER_CLIENT_CERT_AUTH="true"
ETCD_TRUSTED_CA_FILE="/etc/etcd/ca.crt"
ETCD_CERT_FILE="/etc/etcd/server.crt"
ETCD_KEY_FILE="/etc/etcd/server.key"
ETCD_PEER_TRUSTED_CA_FILE="/etc/etcd/ca.crt"
ETCD_PEER_CERT_FILE="/etc/etcd/peer.crt"
ETCD_PEER_KEY_FILE="/etc/etcd/peer.key"
EOF
    # Not in the tutorial: drop the package's single-member data dir (see the header).
    rssh "$NODE" 'systemctl stop etcd && rm -rf /var/lib/etcd/default'
done

# ---- Restart (concurrently) --------------------------------------------------
pids=()
for NODE in "${NODES[@]}"; do
    rssh "$NODE" 'systemctl restart etcd.service' & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

# ---- Verify: member list on each server -------------------------------------
want=${#NODES[@]}
for NODE in "${NODES[@]}"; do
    deadline=$((SECONDS + 10))
    while :; do
        out=$(rssh "$NODE" 'ETCDCTL_API=3 etcdctl member list --endpoints=https://127.0.0.1:2379 \
            --cacert=/etc/etcd/ca.crt --cert=/etc/etcd/server.crt --key=/etc/etcd/server.key' 2>&1) || true
        started=$(grep -c ', started, ' <<<"$out" || true)
        [ "$started" = "$want" ] && break
        if [ $SECONDS -ge $deadline ]; then
            echo "tutorial-000: $NODE lists $started started members, want $want:" >&2
            echo "$out" >&2
            exit 1
        fi
        sleep 0.1
    done
done
echo "tutorial-000: $want started members seen from every node"
