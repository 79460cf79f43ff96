# Tutorial 000's provisioning with Debian's `hcloud` CLI against the lab's
# Hetzner emulation. The lines between `# verbatim` and `# end verbatim`
# are the tutorial's own (/work/shared/seeds/000_*.txt, "Provision Servers"
# and the hcloud calls of the certificate loops), unchanged. It runs under
# zsh, the tutorial's shell (macOS, brew): `for node in ${NODES}` walks every
# element there (bash would take only the first). Instead of
# `hcloud context create`, HCLOUD_TOKEN and HCLOUD_ENDPOINT come from the
# lab's env file. Run by tests/cloud_conformance.rs with HOME set to a
# scratch folder holding ~/.ssh/id_rsa(.pub).
set -e
set -o pipefail

# verbatim: Provision Servers
NETWORK_NAME=network-1
hcloud network create --name ${NETWORK_NAME} --ip-range 10.1.0.0/16

hcloud network add-subnet ${NETWORK_NAME} --network-zone us-east --type server --ip-range 10.1.1.0/24

hcloud ssh-key create --name ssh-key-1 --public-key-from-file ~/.ssh/id_rsa.pub

NODES=(node-1 node-2 node-3)

for node in ${NODES}; do
  hcloud server create \
    --name ${node} \
    --network ${NETWORK_NAME} \
    --image ubuntu-22.04 \
    --type cpx11 \
    --ssh-key ssh-key-1 \
    --location ash \
    --label etcd=true \
    --label cluster=cluster-1
done
# end verbatim

echo "== members"
# verbatim: the hcloud calls of "For each member (Peer Cert)"
for NODE in $(hcloud server list --selector cluster=cluster-1 --selector etcd=true -o noheader -o columns=name); do
  EXTERNAL_IP=$(hcloud server describe ${NODE} -o format='{{.PublicNet.IPv4.IP}}')
  INTERNAL_IP=$(hcloud server describe ${NODE} -o format='{{ (index .PrivateNet 0).IP}}')
# end verbatim
  echo "member ${NODE} ${INTERNAL_IP} ${EXTERNAL_IP}"
  # "SSH to Node", with the key the servers were created with
  echo "ssh ${NODE} $(ssh -i ~/.ssh/id_rsa -o IdentitiesOnly=yes -o BatchMode=yes \
      -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=$HOME/.ssh/known_hosts \
      root@$(hcloud server describe ${NODE} -o format='{{.PublicNet.IPv4.IP}}') hostname)"
done

echo "== initial cluster"
# verbatim: "I wrote this script to provide value of ETCD_INITIAL_CLUSTER"
ARRAY=()
for NODE in $(hcloud server list --selector cluster=cluster1 --selector etcd=true -o noheader -o columns=name); do
  ARRAY+=("${NODE}=https://$(hcloud server describe ${NODE} -o format='{{ (index .PrivateNet 0).IP}}'):2380")
done

ETCD_INITIAL_CLUSTER=$(printf ",%s" "${ARRAY[@]}")
ETCD_INITIAL_CLUSTER=${ETCD_INITIAL_CLUSTER:1}
echo $ETCD_INITIAL_CLUSTER
# end verbatim

echo "== list"
hcloud server list --selector cluster=cluster-1 -o columns=name,status,ipv4,private_net,datacenter,labels
echo "== sorted"
hcloud server list --selector cluster=cluster-1 --sort name:desc -o noheader -o columns=name

echo "== cleanup"
for node in ${NODES}; do
  hcloud server delete ${node}
done
hcloud network delete ${NETWORK_NAME}
hcloud ssh-key delete ssh-key-1
echo "== left"
hcloud server list --selector cluster=cluster-1 -o noheader -o columns=name
hcloud network list -o noheader -o columns=name | grep -x network-1 || true
hcloud ssh-key list -o noheader -o columns=name | grep -x ssh-key-1 || true
echo "== done"
