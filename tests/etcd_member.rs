//! `etcd_member(host)` on a lab, checked field by field against members made
//! by the five shipped runbooks (etcd-binary-yaml, etcd-debian-binary,
//! etcd-static-pods on plain nodes; etcd-hetzner-apt and etcd-do-discovery on
//! the emulated clouds) and by hand, with plain ssh commands, the way
//! tutorials describe them: 003 (release binary, ETCD_* in
//! /etc/etcd/options.env), 000 (the Debian package's own unit, ETCD_* in
//! /etc/default/etcd overriding the unit's `Environment=ETCD_NAME=%H`, a
//! `--wal-dir` flag through `$DAEMON_ARGS`), 004 (YAML config file, unit in
//! /lib/systemd/system, root), 002 (etcd-members written by a oneshot
//! unit, no data dir: etcd's default) and 001 (kubeadm's static-pod
//! manifest; the lab has no kubelet, so `systemd-run` starts its command). Discovery runs in a plan (it is
//! read-only). What it reports is cross-checked against the running members:
//! the name and peer URLs the member itself reports, the data and WAL
//! folders on disk, the certificate files, the process id. Units whose files
//! cannot be read or interpreted must fail naming the file and line.
//!
//! One lab of eight nodes plus the clouds' servers `hz-1` and `do-0`; every
//! member is made once, all concurrently.

mod common;

use common::{cairn, lab, text};

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

/// An inventory of the one lab host `node`, written into `ws`.
fn one_host_inventory(l: &lab::LabHandle, ws: &Path, node: &str) -> String {
    #[derive(serde::Serialize)]
    struct Inventory {
        hosts: Vec<cairn::host::Host>,
    }
    let hosts = l.hosts().into_iter().filter(|h| h.name == node).collect();
    let path = ws.join("hosts.toml");
    std::fs::write(&path, toml::to_string(&Inventory { hosts }).unwrap()).unwrap();
    path.to_string_lossy().into_owned()
}

/// Runs shipped runbook `runbook` on lab node `node` alone (its own workspace).
fn run_runbook(l: &lab::LabHandle, runbook: &str, node: &str, extra: &[&str]) {
    let ws = tempfile::tempdir().unwrap();
    let inv = one_host_inventory(l, ws.path(), node);
    let mut args = vec!["run", runbook, "--lab", &l.name, "--inventory", &inv];
    args.extend(extra);
    let out = cairn(ws.path(), &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{runbook} on {node}:\n{}",
        text(&out)
    );
}

/// Tutorial 003 by hand: the release binary, a CA and a member certificate
/// made with openssl, /etc/etcd/options.env and the tutorial's unit.
fn hand_build_003(l: &lab::LabHandle, node: &str) {
    let ip = &l.node(node).address;
    let mirror = l.var("CAIRN_RELEASE_MIRROR");
    let script = format!(
        r#"set -eu
cd /tmp
curl -fsSL -O {mirror}/etcd-io/etcd/releases/download/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz
tar -xzf etcd-v3.5.1-linux-amd64.tar.gz
cp etcd-v3.5.1-linux-amd64/etcd /usr/local/bin/etcd
cp etcd-v3.5.1-linux-amd64/etcdctl /usr/local/bin/etcdctl
chmod 755 /usr/local/bin/etcd /usr/local/bin/etcdctl
useradd --system --home-dir /opt/etcd --shell /usr/sbin/nologin etcd
mkdir -p /opt/etcd/data /opt/etcd/wal /etc/ssl/etcd /etc/etcd
chown -R etcd:etcd /opt/etcd
chmod 700 /opt/etcd/data
cd /etc/ssl/etcd
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -subj /CN=root-ca -days 30 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout etcd.key -out etcd.csr -subj /CN={node} 2>/dev/null
printf 'subjectAltName=IP:{ip},IP:127.0.0.1,DNS:{node}\nextendedKeyUsage=clientAuth,serverAuth\n' > ext.cnf
openssl x509 -req -in etcd.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out etcd.crt -days 30 -extfile ext.cnf 2>/dev/null
chown etcd:etcd ca.crt etcd.crt etcd.key
chmod 600 etcd.key
cat > /etc/etcd/options.env << EOF
ETCD_NAME=$(hostname -s)
ETCD_DATA_DIR=/opt/etcd/data
ETCD_WAL_DIR=/opt/etcd/wal
ETCD_LISTEN_PEER_URLS=https://{ip}:2380
ETCD_INITIAL_ADVERTISE_PEER_URLS=https://{ip}:2380
ETCD_PEER_CERT_FILE=/etc/ssl/etcd/etcd.crt
ETCD_PEER_KEY_FILE=/etc/ssl/etcd/etcd.key
ETCD_PEER_TRUSTED_CA_FILE=/etc/ssl/etcd/ca.crt
ETCD_PEER_CLIENT_CERT_AUTH=true
ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:2379,https://{ip}:2379
ETCD_ADVERTISE_CLIENT_URLS=https://{ip}:2379
ETCD_CERT_FILE=/etc/ssl/etcd/etcd.crt
ETCD_KEY_FILE=/etc/ssl/etcd/etcd.key
ETCD_TRUSTED_CA_FILE=/etc/ssl/etcd/ca.crt
ETCD_CLIENT_CERT_AUTH=true
ETCD_INITIAL_CLUSTER=$(hostname -s)=https://{ip}:2380
ETCD_HEARTBEAT_INTERVAL=800
ETCD_ELECTION_TIMEOUT=4000
EOF
chown -R etcd:etcd /etc/etcd
cat > /etc/systemd/system/etcd.service << EOF
[Unit]
Description=etcd

[Service]
User=etcd
Type=notify
EnvironmentFile=/etc/etcd/options.env
ExecStart=/usr/local/bin/etcd
Restart=always
RestartSec=10s
LimitNOFILE=40000
TimeoutStartSec=0

[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload
systemctl enable etcd 2>/dev/null
systemctl start etcd
"#
    );
    l.ssh_ok(node, &script);
}

/// Tutorial 000 by hand: the Debian package (its own unit reads
/// /etc/default/etcd), the tutorial's ETCD_* values in that file (ETCD_NAME
/// differs from the unit's `%H` to show which wins), and a `--wal-dir` flag
/// through the unit's `$DAEMON_ARGS` (a `--name` there would clash with the
/// unit's ETCD_NAME: etcd refuses both).
fn hand_build_000(l: &lab::LabHandle, node: &str) {
    let ip = &l.node(node).address;
    let script = format!(
        r#"set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq etcd-server etcd-client >/dev/null
mkdir -p /etc/etcd
cd /etc/etcd
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -subj /CN=etcd-ca -days 30 2>/dev/null
for c in server peer; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $c.key -out $c.csr -subj /CN={node} 2>/dev/null
  printf 'subjectAltName=IP:{ip},IP:127.0.0.1\nextendedKeyUsage=clientAuth,serverAuth\n' > ext.cnf
  openssl x509 -req -in $c.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $c.crt -days 30 -extfile ext.cnf 2>/dev/null
done
chown etcd:etcd server.key peer.key
chmod 600 server.key peer.key
cat > /etc/default/etcd << EOF
# /etc/default/etcd as tutorial 000 says, and a flag in DAEMON_ARGS
DAEMON_ARGS="--wal-dir /var/lib/etcd/wal"
ETCD_NAME=n5-by-env-file
ETCD_INITIAL_CLUSTER="n5-by-env-file=https://{ip}:2380"
ETCD_INITIAL_ADVERTISE_PEER_URLS="https://{ip}:2380"
ETCD_LISTEN_PEER_URLS="https://{ip}:2380"
ETCD_LISTEN_CLIENT_URLS="https://{ip}:2379,https://127.0.0.1:2379"
ETCD_ADVERTISE_CLIENT_URLS="https://{ip}:2379"
ETCD_CLIENT_CERT_AUTH="true"
ETCD_PEER_CLIENT_CERT_AUTH="true"
ETCD_TRUSTED_CA_FILE="/etc/etcd/ca.crt"
ETCD_CERT_FILE="/etc/etcd/server.crt"
ETCD_KEY_FILE="/etc/etcd/server.key"
ETCD_PEER_TRUSTED_CA_FILE="/etc/etcd/ca.crt"
ETCD_PEER_CERT_FILE="/etc/etcd/peer.crt"
ETCD_PEER_KEY_FILE="/etc/etcd/peer.key"
EOF
systemctl stop etcd
rm -rf /var/lib/etcd/default /var/lib/etcd/wal
systemctl start etcd
"#
    );
    l.ssh_ok(node, &script);
}

/// The etcd 3.5.1 release binaries (etcd, etcdctl) into `dest`, from the
/// lab's release mirror, as the tutorials download them.
fn install_release(l: &lab::LabHandle, dest: &str) -> String {
    let mirror = l.var("CAIRN_RELEASE_MIRROR");
    format!(
        "cd /tmp
curl -fsSL -O {mirror}/etcd-io/etcd/releases/download/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz
tar -xzf etcd-v3.5.1-linux-amd64.tar.gz
cp etcd-v3.5.1-linux-amd64/etcd etcd-v3.5.1-linux-amd64/etcdctl {dest}/
"
    )
}

/// Tutorial 004 by hand: release binaries, /etc/etcd/etcd.conf (YAML) as the
/// tutorial writes it for one member, its unit in /lib/systemd/system (no
/// `User=`: root).
fn hand_build_004(l: &lab::LabHandle, node: &str) {
    let ip = &l.node(node).address;
    let script = format!(
        r#"set -eu
{install}
mkdir -p /etc/etcd/pki /var/lib/etcd
chmod 700 /var/lib/etcd
cd /etc/etcd/pki
ETCD_NAME=$(hostname -s)
ETCD_IP={ip}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout etcd-ca.key -out etcd-ca.crt -subj /CN=etcd-ca -days 30 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $ETCD_NAME.key -out $ETCD_NAME.csr -subj /CN=$ETCD_NAME 2>/dev/null
printf 'subjectAltName=IP:{ip},IP:127.0.0.1,DNS:{node}\nextendedKeyUsage=clientAuth,serverAuth\n' > ext.cnf
openssl x509 -req -in $ETCD_NAME.csr -CA etcd-ca.crt -CAkey etcd-ca.key -CAcreateserial -out $ETCD_NAME.crt -days 30 -extfile ext.cnf 2>/dev/null
chmod 600 /etc/etcd/pki/${{ETCD_NAME}}.key
cat <<CONF | tee /etc/etcd/etcd.conf > /dev/null
# Human-readable name for this member.
name: "${{ETCD_NAME}}"

# List of comma separated URLs to listen on for peer traffic.
listen-peer-urls: "https://${{ETCD_IP}}:2380"

# List of comma separated URLs to listen on for client traffic.
listen-client-urls: "https://${{ETCD_IP}}:2379,https://127.0.0.1:2379"

# List of additional URLs to listen on, will respond to /metrics and /health endpoints
listen-metrics-urls: "http://${{ETCD_IP}}:2381,http://127.0.0.1:2381"

# Initial cluster token for the etcd cluster during bootstrap.
initial-cluster-token: o3ZBeUqBgjAMArh8c5BQmuK

# Comma separated string of initial cluster configuration for bootstrapping.
initial-cluster: "${{ETCD_NAME}}=https://${{ETCD_IP}}:2380"

# List of this member's peer URLs to advertise to the rest of the cluster.
# The URLs needed to be a comma-separated list.
initial-advertise-peer-urls: "https://${{ETCD_IP}}:2380"

# List of this member's client URLs to advertise to the public.
# The URLs needed to be a comma-separated list.
advertise-client-urls: "https://${{ETCD_IP}}:2379,https://127.0.0.1:2379"

client-transport-security:
  # Path to the client server TLS cert file.
  cert-file: "/etc/etcd/pki/${{ETCD_NAME}}.crt"

  # Path to the client server TLS key file.
  key-file: "/etc/etcd/pki/${{ETCD_NAME}}.key"

  # Path to the client server TLS trusted CA cert file.
  trusted-ca-file: "/etc/etcd/pki/etcd-ca.crt"

  # Enable client cert authentication.
  client-cert-auth: true

peer-transport-security:
  # Path to the peer server TLS cert file.
  cert-file: "/etc/etcd/pki/${{ETCD_NAME}}.crt"

  # Path to the peer server TLS key file.
  key-file: "/etc/etcd/pki/${{ETCD_NAME}}.key"

  # Enable peer client cert authentication.
  client-cert-auth: true

  # Path to the peer server TLS trusted CA cert file.
  trusted-ca-file: "/etc/etcd/pki/etcd-ca.crt"

# Path to the data directory.
data-dir: "/var/lib/etcd"

# Initial cluster state ('new' or 'existing').
initial-cluster-state: 'new'
CONF
cat <<UNIT | tee /lib/systemd/system/etcd.service > /dev/null
[Unit]
Description=etcd is a strongly consistent, distributed key-value store database
Documentation=https://github.com/etcd-io/etcd
After=network.target
 
[Service]
Type=notify
ExecStart=/usr/local/bin/etcd --config-file /etc/etcd/etcd.conf
Restart=always
RestartSec=5s
LimitNOFILE=40000
 
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now etcd 2>/dev/null
"#,
        install = install_release(l, "/usr/local/bin")
    );
    l.ssh_ok(node, &script);
}

/// Tutorial 002 by hand: /etc/etcd/prepare_cluster.sh (run by the oneshot
/// preparecluster.service) writes /etc/etcd/etcd-members, which the etcd
/// unit reads; binaries in /usr/bin; a wildcard certificate for the domain;
/// no data dir set (etcd's default: the name plus `.etcd`, in `/`). The
/// droplet lookup of the tutorial is replaced by this one member.
fn hand_build_002(l: &lab::LabHandle, node: &str) {
    let n = l.node(node);
    let (ip, fqdn) = (&n.address, &n.fqdn);
    let domain = fqdn.split_once('.').map_or("", |(_, d)| d);
    let script = format!(
        r#"set -eu
{install}
mkdir -p /etc/etcd
cd /etc/etcd
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca-key.pem -out ca.pem -subj /CN=etcd-ca -days 30 2>/dev/null
for c in server peer; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $c-key.pem -out $c.csr -subj "/CN=etcd $c" 2>/dev/null
  printf 'subjectAltName=DNS:*.{domain}\nextendedKeyUsage=clientAuth,serverAuth\n' > ext.cnf
  openssl x509 -req -in $c.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out $c.pem -days 30 -extfile ext.cnf 2>/dev/null
done
cat > /etc/etcd/prepare_cluster.sh <<'SCRIPT'
#!/bin/bash
public_peer_hostname={fqdn}
public_peer_ip={ip}
ETCD_INITIAL_CLUSTER=",$public_peer_hostname=https://$public_peer_hostname:2380"

# remove leading ,
ETCD_INITIAL_CLUSTER=$(echo $ETCD_INITIAL_CLUSTER | cut -c 2-)

## List of all etcd environment variables
cat > "/etc/etcd/etcd-members" <<MEMBERS
ETCD_INITIAL_CLUSTER="$ETCD_INITIAL_CLUSTER"
ETCD_NAME="$public_peer_hostname"
ETCD_INITIAL_CLUSTER_STATE="new"
ETCD_INITIAL_CLUSTER_TOKEN="etcd-cluster-1"

ETCD_ADVERTISE_CLIENT_URLS="https://$public_peer_hostname:2379"
ETCD_ADVERTISE_PEER_URLS="https://$public_peer_hostname:2380"
ETCD_INITIAL_ADVERTISE_PEER_URLS="https://$public_peer_hostname:2380"

ETCD_LISTEN_CLIENT_URLS="https://$public_peer_ip:2379,https://127.0.1.1:2379"
ETCD_CLIENT_CERT_AUTH="true"
ETCD_CERT_FILE="/etc/etcd/server.pem"
ETCD_KEY_FILE="/etc/etcd/server-key.pem"
ETCD_TRUSTED_CA_FILE="/etc/etcd/ca.pem"

ETCD_LISTEN_PEER_URLS="https://$public_peer_ip:2380"
ETCD_PEER_CLIENT_CERT_AUTH=true
ETCD_PEER_CERT_FILE="/etc/etcd/peer.pem"
ETCD_PEER_KEY_FILE="/etc/etcd/peer-key.pem"
ETCD_PEER_TRUSTED_CA_FILE="/etc/etcd/ca.pem"
MEMBERS

exit 0
SCRIPT
chmod 755 /etc/etcd/prepare_cluster.sh
cat > /etc/systemd/system/preparecluster.service <<'UNIT'
[Unit]
Description=Find etcd members by digitalocean api
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/etc/etcd/prepare_cluster.sh
RemainAfterExit=true
StandardOutput=journal
UNIT
cat > /etc/systemd/system/etcd.service <<'UNIT'
[Unit]
Description=etcd
Requires=preparecluster.service
After=preparecluster.service

[Service]
EnvironmentFile=/etc/etcd/etcd-members
ExecStart=/usr/bin/etcd

Restart=always
RestartSec=15

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now etcd 2>/dev/null
"#,
        install = install_release(l, "/usr/bin")
    );
    l.ssh_ok(node, &script);
    // Type=simple: started is not ready; ask its /health until it answers
    // (with a deadline).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = l.ssh(
            node,
            &format!(
                "curl -fsS --cacert /etc/etcd/ca.pem --cert /etc/etcd/server.pem \
                 --key /etc/etcd/server-key.pem https://{fqdn}:2379/health"
            ),
        );
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("true") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{node}: etcd not healthy after 60s: {}",
            text(&out)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The etcd command line kubeadm writes into the static-pod manifest for
/// tutorial 001's kubeadmcfg.yaml (its `extraArgs` merged over kubeadm's
/// defaults: the client URL on the host's address only).
fn kubeadm_etcd_args(node: &str, ip: &str) -> Vec<String> {
    let pki = "/etc/kubernetes/pki/etcd";
    [
        format!("--advertise-client-urls=https://{ip}:2379"),
        format!("--cert-file={pki}/server.crt"),
        "--client-cert-auth=true".into(),
        "--data-dir=/var/lib/etcd".into(),
        "--experimental-initial-corrupt-check=true".into(),
        format!("--initial-advertise-peer-urls=https://{ip}:2380"),
        format!("--initial-cluster={node}=https://{ip}:2380"),
        "--initial-cluster-state=new".into(),
        format!("--key-file={pki}/server.key"),
        format!("--listen-client-urls=https://{ip}:2379"),
        "--listen-metrics-urls=http://127.0.0.1:2381".into(),
        format!("--listen-peer-urls=https://{ip}:2380"),
        format!("--name={node}"),
        format!("--peer-cert-file={pki}/peer.crt"),
        "--peer-client-cert-auth=true".into(),
        format!("--peer-key-file={pki}/peer.key"),
        format!("--peer-trusted-ca-file={pki}/ca.crt"),
        "--snapshot-count=10000".into(),
        format!("--trusted-ca-file={pki}/ca.crt"),
    ]
    .to_vec()
}

/// Tutorial 001 by hand: kubeadm's etcd PKI layout made with openssl (the
/// server and peer certificates name the host's address, as the tutorial's
/// serverCertSANs/peerCertSANs), the static-pod manifest `kubeadm init phase
/// etcd local` writes, and, as the lab has no kubelet or container runtime,
/// the manifest's command started by `systemd-run` the way the kubelet would
/// start the container (host network, the hostPath folders at the same paths).
fn hand_build_001(l: &lab::LabHandle, node: &str) {
    let ip = &l.node(node).address;
    let args = kubeadm_etcd_args(node, ip);
    let command: String = args.iter().map(|a| format!("    - {a}\n")).collect();
    let argv: Vec<String> = args.iter().map(|a| cairn::cmd::quote(a)).collect();
    let script = format!(
        r#"set -eu
{install}
mkdir -p /etc/kubernetes/pki/etcd /etc/kubernetes/manifests /var/lib/etcd
chmod 700 /var/lib/etcd
cd /etc/kubernetes/pki/etcd
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -subj /CN=etcd-ca -days 30 2>/dev/null
for c in server peer; do
  openssl req -new -newkey rsa:2048 -nodes -keyout $c.key -out $c.csr -subj /CN={node} 2>/dev/null
  printf 'subjectAltName=DNS:{node},DNS:localhost,IP:{ip},IP:127.0.0.1\nextendedKeyUsage=clientAuth,serverAuth\n' > ext.cnf
  openssl x509 -req -in $c.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $c.crt -days 30 -extfile ext.cnf 2>/dev/null
done
cat > /etc/kubernetes/manifests/etcd.yaml <<'MANIFEST'
apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://{ip}:2379
  creationTimestamp: null
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
{command}    image: registry.k8s.io/etcd:3.5.1-0
    imagePullPolicy: IfNotPresent
    name: etcd
    resources:
      requests:
        cpu: 100m
        memory: 100Mi
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
    - mountPath: /etc/kubernetes/pki/etcd
      name: etcd-certs
  hostNetwork: true
  priorityClassName: system-node-critical
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki/etcd
      type: DirectoryOrCreate
    name: etcd-certs
  - hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
    name: etcd-data
status: {{}}
MANIFEST
systemd-run --unit=kubelet-pod-etcd --property=Type=notify --quiet /usr/local/bin/etcd {argv}
"#,
        install = install_release(l, "/usr/local/bin"),
        argv = argv.join(" "),
    );
    l.ssh_ok(node, &script);
}

/// `cairn plan` of a one-file runbook running `script`, in a fresh workspace.
fn plan_script(l: &lab::LabHandle, script: &str) -> Output {
    let ws = tempfile::tempdir().unwrap();
    plan_script_in(l, ws.path(), script, &[])
}

/// `cairn plan` of a one-file runbook running `script` in workspace `ws`,
/// with `extra` arguments.
fn plan_script_in(l: &lab::LabHandle, ws: &Path, script: &str, extra: &[&str]) -> Output {
    let rb = ws.join("discover");
    let _ = std::fs::remove_dir_all(&rb);
    std::fs::create_dir(&rb).unwrap();
    std::fs::write(
        rb.join("runbook.toml"),
        "name = \"discover\"\nversion = \"1.0.0\"\ndescription = \"etcd_member\"\n",
    )
    .unwrap();
    std::fs::write(rb.join("main.rhai"), script).unwrap();
    let mut args = vec![
        "plan",
        rb.to_str().unwrap(),
        "--lab",
        &l.name,
        "--show-unchanged",
    ];
    args.extend(extra);
    cairn(ws, &args)
}

/// The layouts `etcd_member` reports in a plan of a one-line runbook over
/// every lab host, by host name.
fn discover(l: &lab::LabHandle, ws: &Path, extra: &[&str]) -> BTreeMap<String, Value> {
    let out = plan_script_in(
        l,
        ws,
        "for h in hosts() { let m = etcd_member(h); print(`LAYOUT ${m.to_json()}`); }\n",
        extra,
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "plan of etcd_member:\n{t}");
    assert!(
        t.contains("= ok read etcd member layout"),
        "discovery is a read-only no-op in the plan:\n{t}"
    );
    let mut found = BTreeMap::new();
    for line in t.lines() {
        if let Some(i) = line.find("LAYOUT ") {
            let v: Value = serde_json::from_str(&line[i + 7..])
                .unwrap_or_else(|e| panic!("bad layout json ({e}): {line}"));
            found.insert(v["host"].as_str().unwrap().to_string(), v);
        }
    }
    assert!(!found.is_empty(), "no layout printed:\n{t}");
    found
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Checks `layout` field by field against `want` (a JSON object of the
/// expected values; every field of the layout must be listed).
fn check(node: &str, layout: &Value, want: Value) {
    let got = layout.as_object().unwrap();
    let want = want.as_object().unwrap();
    let mut bad = Vec::new();
    for (k, v) in want {
        if got.get(k) != Some(v) {
            bad.push(format!(
                "  {k}: got {}, want {v}",
                got.get(k).unwrap_or(&Value::Null)
            ));
        }
    }
    for k in got.keys() {
        if !want.contains_key(k) {
            bad.push(format!("  {k}: not checked (got {})", got[k]));
        }
    }
    assert!(
        bad.is_empty(),
        "{node}:\n{}\nfull layout: {layout:#}",
        bad.join("\n")
    );
}

/// The facts of the running member that discovery must agree with: its name
/// as the member itself reports it, its data and WAL folders on disk, its
/// files, its process id.
fn cross_check(l: &lab::LabHandle, node: &str, ssh_address: &str, client_host: &str, m: &Value) {
    let run = |cmd: &str| -> String {
        let out = l.ssh_to(ssh_address, &l.key, cmd);
        assert!(out.status.success(), "on {node}: `{cmd}`: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let s = |k: &str| {
        let v = match k.split_once('.') {
            Some((a, b)) => &m[a][b],
            None => &m[k],
        };
        v.as_str()
            .unwrap_or_else(|| panic!("{node}: no {k}"))
            .to_string()
    };
    let (data, wal) = (s("data_dir"), s("wal_dir"));
    run(&format!(
        "test -d {data}/member/snap && test -n \"$(ls {wal}/*.wal)\""
    ));
    for f in [
        "client_tls.cert_file",
        "client_tls.key_file",
        "client_tls.trusted_ca_file",
        "peer_tls.cert_file",
        "peer_tls.key_file",
        "peer_tls.trusted_ca_file",
    ] {
        run(&format!("test -f {}", s(f)));
    }
    let comm = run(&format!("cat /proc/{}/comm", m["pid"]));
    assert_eq!(comm.trim(), "etcd", "{node}: pid {} is not etcd", m["pid"]);
    // The member's own name, asked with its own certificate.
    let url = format!("https://{client_host}:2379");
    let list = run(&format!(
        "curl -fsS --cacert {} --cert {} --key {} -X POST -d '{{}}' {url}/v3/cluster/member/list",
        s("client_tls.trusted_ca_file"),
        s("client_tls.cert_file"),
        s("client_tls.key_file")
    ));
    let list: Value = serde_json::from_str(&list).unwrap();
    let names: Vec<&str> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [s("name").as_str()], "{node}: member list {list}");
    assert_eq!(
        strs(&list["members"][0]["peerURLs"]),
        strs(&m["advertise_peer_urls"]),
        "{node}"
    );
}

#[test]
fn discovers_runbook_and_hand_built_members() {
    if lab::skip() {
        return;
    }
    let started = std::time::Instant::now();
    let l = lab::start(&lab::unique_name("member"), 8);
    let ip = |n: &str| l.node(n).address.clone();
    let hz_ws = tempfile::tempdir().unwrap();
    let do_ws = tempfile::tempdir().unwrap();

    // Members: three by the shipped runbooks (concurrently), two by hand.
    std::thread::scope(|s| {
        s.spawn(|| run_runbook(&l, "etcd-binary-yaml", "node-1", &[]));
        s.spawn(|| run_runbook(&l, "etcd-debian-binary", "node-2", &["--var", "nodes=1"]));
        s.spawn(|| {
            run_runbook(
                &l,
                "etcd-static-pods",
                "node-3",
                &["--var", "kubelet=lab-standin"],
            )
        });
        s.spawn(|| hand_build_003(&l, "node-4"));
        s.spawn(|| hand_build_000(&l, "node-5"));
        s.spawn(|| hand_build_004(&l, "node-6"));
        s.spawn(|| hand_build_002(&l, "node-7"));
        s.spawn(|| hand_build_001(&l, "node-8"));
        s.spawn(|| {
            let out = cairn(
                hz_ws.path(),
                &[
                    "run",
                    "etcd-hetzner-apt",
                    "--lab",
                    &l.name,
                    "--var",
                    "nodes=hz-1",
                    // (the distribution's 3.4.23, not the runbook's default)
                    "--var",
                    "etcd_version=distro",
                ],
            );
            assert_eq!(
                out.status.code(),
                Some(0),
                "etcd-hetzner-apt:\n{}",
                text(&out)
            );
        });
        s.spawn(|| {
            let out = cairn(
                do_ws.path(),
                &[
                    "run",
                    "etcd-do-discovery",
                    "--lab",
                    &l.name,
                    "--var",
                    "droplets=do-0",
                    "--var",
                    "discovery=operator",
                ],
            );
            assert_eq!(
                out.status.code(),
                Some(0),
                "etcd-do-discovery:\n{}",
                text(&out)
            );
        });
    });
    let built = started.elapsed();

    let plain_ws = tempfile::tempdir().unwrap();
    let found = discover(&l, plain_ws.path(), &[]);
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        [
            "do-0", "hz-1", "node-1", "node-2", "node-3", "node-4", "node-5", "node-6", "node-7",
            "node-8"
        ],
        "the Hetzner emulation's server joins the lab's inventory"
    );
    let pid = |n: &str| found[n]["pid"].clone();
    let default_origins = |extra: &[(&str, &str)]| -> Value {
        let mut o = serde_json::Map::new();
        for (k, v) in extra {
            o.insert(k.to_string(), Value::from(*v));
        }
        Value::Object(o)
    };

    // node-1: etcd-binary-yaml, everything in /etc/etcd/etcd.conf.
    let (i1, conf) = (ip("node-1"), "config file /etc/etcd/etcd.conf key");
    check(
        "node-1",
        &found["node-1"],
        serde_json::json!({
            "host": "node-1", "started_by": "systemd", "unit": "etcd.service",
            "unit_files": ["/etc/systemd/system/etcd.service"],
            "exec_start": ["/usr/local/bin/etcd", "--config-file", "/etc/etcd/etcd.conf"],
            "environment_files": [], "config_file": "/etc/etcd/etcd.conf", "manifest": "", "image": "",
            "user": "etcd", "name": "node-1", "data_dir": "/var/lib/etcd",
            "wal_dir": "/var/lib/etcd/member/wal",
            "listen_client_urls": [format!("https://{i1}:2379"), "https://127.0.0.1:2379".to_string()],
            "advertise_client_urls": [format!("https://{i1}:2379")],
            "listen_peer_urls": [format!("https://{i1}:2380")],
            "advertise_peer_urls": [format!("https://{i1}:2380")],
            "client_tls": {"cert_file": "/etc/etcd/pki/node-1.crt", "key_file": "/etc/etcd/pki/node-1.key",
                           "trusted_ca_file": "/etc/etcd/pki/etcd-ca.crt", "client_cert_auth": true},
            "peer_tls": {"cert_file": "/etc/etcd/pki/node-1.crt", "key_file": "/etc/etcd/pki/node-1.key",
                         "trusted_ca_file": "/etc/etcd/pki/etcd-ca.crt", "client_cert_auth": true},
            "binary": "/usr/local/bin/etcd", "binary_version": "3.5.30", "running": true, "pid": pid("node-1"),
            "running_version": "3.5.30", "running_version_from": "endpoint https://127.0.0.1:2379",
            "origins": default_origins(&[
                ("name", &format!("{conf} name")),
                ("data_dir", &format!("{conf} data-dir")),
                ("wal_dir", "default"),
                ("listen_client_urls", &format!("{conf} listen-client-urls")),
                ("advertise_client_urls", &format!("{conf} advertise-client-urls")),
                ("listen_peer_urls", &format!("{conf} listen-peer-urls")),
                ("advertise_peer_urls", &format!("{conf} initial-advertise-peer-urls")),
                ("client_tls.cert_file", &format!("{conf} client-transport-security.cert-file")),
                ("client_tls.key_file", &format!("{conf} client-transport-security.key-file")),
                ("client_tls.trusted_ca_file", &format!("{conf} client-transport-security.trusted-ca-file")),
                ("client_tls.client_cert_auth", &format!("{conf} client-transport-security.client-cert-auth")),
                ("peer_tls.cert_file", &format!("{conf} peer-transport-security.cert-file")),
                ("peer_tls.key_file", &format!("{conf} peer-transport-security.key-file")),
                ("peer_tls.trusted_ca_file", &format!("{conf} peer-transport-security.trusted-ca-file")),
                ("peer_tls.client_cert_auth", &format!("{conf} peer-transport-security.client-cert-auth")),
            ]),
        }),
    );

    // node-2: etcd-debian-binary, ETCD_* in /etc/etcd/options.env.
    let i2 = ip("node-2");
    let env2 = |var: &str, line: u32| format!("env {var} (/etc/etcd/options.env line {line})");
    check(
        "node-2",
        &found["node-2"],
        serde_json::json!({
            "host": "node-2", "started_by": "systemd", "unit": "etcd.service",
            "unit_files": ["/etc/systemd/system/etcd.service"],
            "exec_start": ["/usr/local/bin/etcd"],
            "environment_files": ["/etc/etcd/options.env"], "config_file": "", "manifest": "", "image": "",
            "user": "etcd", "name": "node-2", "data_dir": "/opt/etcd/data", "wal_dir": "/opt/etcd/wal",
            "listen_client_urls": ["http://127.0.0.1:2379".to_string(), format!("https://{i2}:2379")],
            "advertise_client_urls": [format!("https://{i2}:2379")],
            "listen_peer_urls": [format!("https://{i2}:2380")],
            "advertise_peer_urls": [format!("https://{i2}:2380")],
            "client_tls": {"cert_file": "/etc/ssl/etcd/etcd.crt", "key_file": "/etc/ssl/etcd/etcd.key",
                           "trusted_ca_file": "/etc/ssl/etcd/ca.crt", "client_cert_auth": true},
            "peer_tls": {"cert_file": "/etc/ssl/etcd/etcd.crt", "key_file": "/etc/ssl/etcd/etcd.key",
                         "trusted_ca_file": "/etc/ssl/etcd/ca.crt", "client_cert_auth": true},
            "binary": "/usr/local/bin/etcd", "binary_version": "3.5.30", "running": true, "pid": pid("node-2"),
            "running_version": "3.5.30", "running_version_from": "endpoint http://127.0.0.1:2379",
            "origins": default_origins(&[
                ("name", &env2("ETCD_NAME", 4)),
                ("data_dir", &env2("ETCD_DATA_DIR", 5)),
                ("wal_dir", &env2("ETCD_WAL_DIR", 6)),
                ("listen_peer_urls", &env2("ETCD_LISTEN_PEER_URLS", 7)),
                ("advertise_peer_urls", &env2("ETCD_INITIAL_ADVERTISE_PEER_URLS", 8)),
                ("peer_tls.cert_file", &env2("ETCD_PEER_CERT_FILE", 9)),
                ("peer_tls.key_file", &env2("ETCD_PEER_KEY_FILE", 10)),
                ("peer_tls.trusted_ca_file", &env2("ETCD_PEER_TRUSTED_CA_FILE", 11)),
                ("peer_tls.client_cert_auth", &env2("ETCD_PEER_CLIENT_CERT_AUTH", 12)),
                ("listen_client_urls", &env2("ETCD_LISTEN_CLIENT_URLS", 13)),
                ("advertise_client_urls", &env2("ETCD_ADVERTISE_CLIENT_URLS", 14)),
                ("client_tls.cert_file", &env2("ETCD_CERT_FILE", 15)),
                ("client_tls.key_file", &env2("ETCD_KEY_FILE", 16)),
                ("client_tls.trusted_ca_file", &env2("ETCD_TRUSTED_CA_FILE", 17)),
                ("client_tls.client_cert_auth", &env2("ETCD_CLIENT_CERT_AUTH", 18)),
            ]),
        }),
    );

    // node-3: etcd-static-pods, flags in the manifest's etcd container.
    let i3 = ip("node-3");
    let m3 = "/etc/kubernetes/manifests/etcd.yaml";
    let flag3 = |f: &str| format!("flag --{f} (command of {m3})");
    let pki = "/etc/kubernetes/pki/etcd";
    let n3 = &found["node-3"];
    check(
        "node-3",
        n3,
        serde_json::json!({
            "host": "node-3", "started_by": "static-pod", "unit": "", "unit_files": [],
            "exec_start": n3["exec_start"].clone(),
            "environment_files": [], "config_file": "", "manifest": m3,
            "image": n3["image"].clone(),
            "user": "", "name": "node-3", "data_dir": "/var/lib/etcd", "wal_dir": "/var/lib/etcd/member/wal",
            "listen_client_urls": ["https://127.0.0.1:2379".to_string(), format!("https://{i3}:2379")],
            "advertise_client_urls": [format!("https://{i3}:2379")],
            "listen_peer_urls": [format!("https://{i3}:2380")],
            "advertise_peer_urls": [format!("https://{i3}:2380")],
            "client_tls": {"cert_file": format!("{pki}/server.crt"), "key_file": format!("{pki}/server.key"),
                           "trusted_ca_file": format!("{pki}/ca.crt"), "client_cert_auth": true},
            "peer_tls": {"cert_file": format!("{pki}/peer.crt"), "key_file": format!("{pki}/peer.key"),
                         "trusted_ca_file": format!("{pki}/ca.crt"), "client_cert_auth": true},
            "binary": "/usr/local/bin/etcd", "binary_version": "3.5.30", "running": true, "pid": pid("node-3"),
            "running_version": "3.5.30", "running_version_from": "endpoint https://127.0.0.1:2379",
            "origins": default_origins(&[
                ("name", &flag3("name")),
                ("data_dir", &flag3("data-dir")),
                ("wal_dir", "default"),
                ("listen_client_urls", &flag3("listen-client-urls")),
                ("advertise_client_urls", &flag3("advertise-client-urls")),
                ("listen_peer_urls", &flag3("listen-peer-urls")),
                ("advertise_peer_urls", &flag3("initial-advertise-peer-urls")),
                ("client_tls.cert_file", &flag3("cert-file")),
                ("client_tls.key_file", &flag3("key-file")),
                ("client_tls.trusted_ca_file", &flag3("trusted-ca-file")),
                ("client_tls.client_cert_auth", &flag3("client-cert-auth")),
                ("peer_tls.cert_file", &flag3("peer-cert-file")),
                ("peer_tls.key_file", &flag3("peer-key-file")),
                ("peer_tls.trusted_ca_file", &flag3("peer-trusted-ca-file")),
                ("peer_tls.client_cert_auth", &flag3("peer-client-cert-auth")),
            ]),
        }),
    );
    let manifest = l.ssh_ok("node-3", &format!("cat {m3}"));
    assert!(
        manifest.contains(&format!("    image: {}\n", n3["image"].as_str().unwrap())),
        "node-3 image {} is the manifest's",
        n3["image"]
    );
    assert_eq!(n3["exec_start"][0], "etcd");
    for arg in strs(&n3["exec_start"]).iter().skip(1) {
        assert!(
            manifest.contains(&format!("    - {arg}\n")),
            "node-3: {arg} not in the manifest"
        );
    }

    // node-4: tutorial 003 by hand.
    let i4 = ip("node-4");
    let env4 = |var: &str, line: u32| format!("env {var} (/etc/etcd/options.env line {line})");
    check(
        "node-4",
        &found["node-4"],
        serde_json::json!({
            "host": "node-4", "started_by": "systemd", "unit": "etcd.service",
            "unit_files": ["/etc/systemd/system/etcd.service"],
            "exec_start": ["/usr/local/bin/etcd"],
            "environment_files": ["/etc/etcd/options.env"], "config_file": "", "manifest": "", "image": "",
            "user": "etcd", "name": "node-4", "data_dir": "/opt/etcd/data", "wal_dir": "/opt/etcd/wal",
            "listen_client_urls": ["http://127.0.0.1:2379".to_string(), format!("https://{i4}:2379")],
            "advertise_client_urls": [format!("https://{i4}:2379")],
            "listen_peer_urls": [format!("https://{i4}:2380")],
            "advertise_peer_urls": [format!("https://{i4}:2380")],
            "client_tls": {"cert_file": "/etc/ssl/etcd/etcd.crt", "key_file": "/etc/ssl/etcd/etcd.key",
                           "trusted_ca_file": "/etc/ssl/etcd/ca.crt", "client_cert_auth": true},
            "peer_tls": {"cert_file": "/etc/ssl/etcd/etcd.crt", "key_file": "/etc/ssl/etcd/etcd.key",
                         "trusted_ca_file": "/etc/ssl/etcd/ca.crt", "client_cert_auth": true},
            "binary": "/usr/local/bin/etcd", "binary_version": "3.5.1", "running": true, "pid": pid("node-4"),
            "running_version": "3.5.1", "running_version_from": "endpoint http://127.0.0.1:2379",
            "origins": default_origins(&[
                ("name", &env4("ETCD_NAME", 1)),
                ("data_dir", &env4("ETCD_DATA_DIR", 2)),
                ("wal_dir", &env4("ETCD_WAL_DIR", 3)),
                ("listen_peer_urls", &env4("ETCD_LISTEN_PEER_URLS", 4)),
                ("advertise_peer_urls", &env4("ETCD_INITIAL_ADVERTISE_PEER_URLS", 5)),
                ("peer_tls.cert_file", &env4("ETCD_PEER_CERT_FILE", 6)),
                ("peer_tls.key_file", &env4("ETCD_PEER_KEY_FILE", 7)),
                ("peer_tls.trusted_ca_file", &env4("ETCD_PEER_TRUSTED_CA_FILE", 8)),
                ("peer_tls.client_cert_auth", &env4("ETCD_PEER_CLIENT_CERT_AUTH", 9)),
                ("listen_client_urls", &env4("ETCD_LISTEN_CLIENT_URLS", 10)),
                ("advertise_client_urls", &env4("ETCD_ADVERTISE_CLIENT_URLS", 11)),
                ("client_tls.cert_file", &env4("ETCD_CERT_FILE", 12)),
                ("client_tls.key_file", &env4("ETCD_KEY_FILE", 13)),
                ("client_tls.trusted_ca_file", &env4("ETCD_TRUSTED_CA_FILE", 14)),
                ("client_tls.client_cert_auth", &env4("ETCD_CLIENT_CERT_AUTH", 15)),
            ]),
        }),
    );

    // node-5: tutorial 000 by hand, the Debian package's own unit: `%H` and
    // `%p` specifiers, an optional EnvironmentFile, `$DAEMON_ARGS`.
    let i5 = ip("node-5");
    let n5 = &found["node-5"];
    let unit5 = n5["unit_files"][0].as_str().unwrap().to_string();
    let unit5_text = l.ssh_ok("node-5", &format!("cat {unit5}"));
    let line_of = |needle: &str| -> usize {
        unit5_text
            .lines()
            .position(|l| l.trim() == needle)
            .unwrap_or_else(|| panic!("{unit5} has no line `{needle}`:\n{unit5_text}"))
            + 1
    };
    let env5 = |var: &str, line: u32| format!("env {var} (/etc/default/etcd line {line})");
    check(
        "node-5",
        n5,
        serde_json::json!({
            "host": "node-5", "started_by": "systemd", "unit": "etcd.service",
            "unit_files": [unit5.clone()],
            "exec_start": ["/usr/bin/etcd", "--wal-dir", "/var/lib/etcd/wal"],
            "environment_files": ["/etc/default/etcd"], "config_file": "", "manifest": "", "image": "",
            "user": "etcd", "name": "n5-by-env-file",
            "data_dir": "/var/lib/etcd/default", "wal_dir": "/var/lib/etcd/wal",
            "listen_client_urls": [format!("https://{i5}:2379"), "https://127.0.0.1:2379".to_string()],
            "advertise_client_urls": [format!("https://{i5}:2379")],
            "listen_peer_urls": [format!("https://{i5}:2380")],
            "advertise_peer_urls": [format!("https://{i5}:2380")],
            "client_tls": {"cert_file": "/etc/etcd/server.crt", "key_file": "/etc/etcd/server.key",
                           "trusted_ca_file": "/etc/etcd/ca.crt", "client_cert_auth": true},
            "peer_tls": {"cert_file": "/etc/etcd/peer.crt", "key_file": "/etc/etcd/peer.key",
                         "trusted_ca_file": "/etc/etcd/ca.crt", "client_cert_auth": true},
            "binary": "/usr/bin/etcd", "binary_version": "3.4.23", "running": true, "pid": pid("node-5"),
            "running_version": "3.4.23", "running_version_from": "endpoint https://127.0.0.1:2379",
            "origins": default_origins(&[
                ("name", &env5("ETCD_NAME", 3)),
                ("data_dir", &format!("env ETCD_DATA_DIR (Environment= in {unit5} line {})", line_of("Environment=ETCD_DATA_DIR=/var/lib/etcd/default"))),
                ("wal_dir", &format!("flag --wal-dir (ExecStart in {unit5} line {})", line_of("ExecStart=/usr/bin/etcd $DAEMON_ARGS"))),
                ("advertise_peer_urls", &env5("ETCD_INITIAL_ADVERTISE_PEER_URLS", 5)),
                ("listen_peer_urls", &env5("ETCD_LISTEN_PEER_URLS", 6)),
                ("listen_client_urls", &env5("ETCD_LISTEN_CLIENT_URLS", 7)),
                ("advertise_client_urls", &env5("ETCD_ADVERTISE_CLIENT_URLS", 8)),
                ("client_tls.client_cert_auth", &env5("ETCD_CLIENT_CERT_AUTH", 9)),
                ("peer_tls.client_cert_auth", &env5("ETCD_PEER_CLIENT_CERT_AUTH", 10)),
                ("client_tls.trusted_ca_file", &env5("ETCD_TRUSTED_CA_FILE", 11)),
                ("client_tls.cert_file", &env5("ETCD_CERT_FILE", 12)),
                ("client_tls.key_file", &env5("ETCD_KEY_FILE", 13)),
                ("peer_tls.trusted_ca_file", &env5("ETCD_PEER_TRUSTED_CA_FILE", 14)),
                ("peer_tls.cert_file", &env5("ETCD_PEER_CERT_FILE", 15)),
                ("peer_tls.key_file", &env5("ETCD_PEER_KEY_FILE", 16)),
            ]),
        }),
    );

    // node-6: tutorial 004 by hand (YAML config file, unit in /lib, root).
    let i6 = ip("node-6");
    let conf6 = "config file /etc/etcd/etcd.conf key";
    let c6 = |k: &str| format!("{conf6} {k}");
    check(
        "node-6",
        &found["node-6"],
        serde_json::json!({
            "host": "node-6", "started_by": "systemd", "unit": "etcd.service",
            "unit_files": ["/lib/systemd/system/etcd.service"],
            "exec_start": ["/usr/local/bin/etcd", "--config-file", "/etc/etcd/etcd.conf"],
            "environment_files": [], "config_file": "/etc/etcd/etcd.conf", "manifest": "", "image": "",
            "user": "root", "name": "node-6", "data_dir": "/var/lib/etcd",
            "wal_dir": "/var/lib/etcd/member/wal",
            "listen_client_urls": [format!("https://{i6}:2379"), "https://127.0.0.1:2379".to_string()],
            "advertise_client_urls": [format!("https://{i6}:2379"), "https://127.0.0.1:2379".to_string()],
            "listen_peer_urls": [format!("https://{i6}:2380")],
            "advertise_peer_urls": [format!("https://{i6}:2380")],
            "client_tls": {"cert_file": "/etc/etcd/pki/node-6.crt", "key_file": "/etc/etcd/pki/node-6.key",
                           "trusted_ca_file": "/etc/etcd/pki/etcd-ca.crt", "client_cert_auth": true},
            "peer_tls": {"cert_file": "/etc/etcd/pki/node-6.crt", "key_file": "/etc/etcd/pki/node-6.key",
                         "trusted_ca_file": "/etc/etcd/pki/etcd-ca.crt", "client_cert_auth": true},
            "binary": "/usr/local/bin/etcd", "binary_version": "3.5.1", "running": true, "pid": pid("node-6"),
            "running_version": "3.5.1", "running_version_from": "endpoint https://127.0.0.1:2379",
            "origins": {
                "name": c6("name"),
                "data_dir": c6("data-dir"),
                "wal_dir": "default",
                "listen_client_urls": c6("listen-client-urls"),
                "advertise_client_urls": c6("advertise-client-urls"),
                "listen_peer_urls": c6("listen-peer-urls"),
                "advertise_peer_urls": c6("initial-advertise-peer-urls"),
                "client_tls.cert_file": c6("client-transport-security.cert-file"),
                "client_tls.key_file": c6("client-transport-security.key-file"),
                "client_tls.trusted_ca_file": c6("client-transport-security.trusted-ca-file"),
                "client_tls.client_cert_auth": c6("client-transport-security.client-cert-auth"),
                "peer_tls.cert_file": c6("peer-transport-security.cert-file"),
                "peer_tls.key_file": c6("peer-transport-security.key-file"),
                "peer_tls.trusted_ca_file": c6("peer-transport-security.trusted-ca-file"),
                "peer_tls.client_cert_auth": c6("peer-transport-security.client-cert-auth"),
            },
        }),
    );

    // node-7: tutorial 002 by hand: no data dir set, so etcd's default
    // `${name}.etcd` in `/`; its wildcard certificate does not name
    // 127.0.1.1, so the running version comes from the process.
    let i7 = ip("node-7");
    let f7 = l.node("node-7").fqdn.clone();
    let env7 = |var: &str, line: u32| format!("env {var} (/etc/etcd/etcd-members line {line})");
    check(
        "node-7",
        &found["node-7"],
        serde_json::json!({
            "host": "node-7", "started_by": "systemd", "unit": "etcd.service",
            "unit_files": ["/etc/systemd/system/etcd.service"],
            "exec_start": ["/usr/bin/etcd"],
            "environment_files": ["/etc/etcd/etcd-members"], "config_file": "", "manifest": "", "image": "",
            "user": "root", "name": f7.clone(),
            "data_dir": format!("/{f7}.etcd"), "wal_dir": format!("/{f7}.etcd/member/wal"),
            "listen_client_urls": [format!("https://{i7}:2379"), "https://127.0.1.1:2379".to_string()],
            "advertise_client_urls": [format!("https://{f7}:2379")],
            "listen_peer_urls": [format!("https://{i7}:2380")],
            "advertise_peer_urls": [format!("https://{f7}:2380")],
            "client_tls": {"cert_file": "/etc/etcd/server.pem", "key_file": "/etc/etcd/server-key.pem",
                           "trusted_ca_file": "/etc/etcd/ca.pem", "client_cert_auth": true},
            "peer_tls": {"cert_file": "/etc/etcd/peer.pem", "key_file": "/etc/etcd/peer-key.pem",
                         "trusted_ca_file": "/etc/etcd/ca.pem", "client_cert_auth": true},
            "binary": "/usr/bin/etcd", "binary_version": "3.5.1", "running": true, "pid": pid("node-7"),
            "running_version": "3.5.1", "running_version_from": format!("process {}", pid("node-7")),
            "origins": {
                "name": env7("ETCD_NAME", 2),
                "data_dir": "default",
                "wal_dir": "default",
                "advertise_client_urls": env7("ETCD_ADVERTISE_CLIENT_URLS", 6),
                "advertise_peer_urls": env7("ETCD_INITIAL_ADVERTISE_PEER_URLS", 8),
                "listen_client_urls": env7("ETCD_LISTEN_CLIENT_URLS", 10),
                "client_tls.client_cert_auth": env7("ETCD_CLIENT_CERT_AUTH", 11),
                "client_tls.cert_file": env7("ETCD_CERT_FILE", 12),
                "client_tls.key_file": env7("ETCD_KEY_FILE", 13),
                "client_tls.trusted_ca_file": env7("ETCD_TRUSTED_CA_FILE", 14),
                "listen_peer_urls": env7("ETCD_LISTEN_PEER_URLS", 16),
                "peer_tls.client_cert_auth": env7("ETCD_PEER_CLIENT_CERT_AUTH", 17),
                "peer_tls.cert_file": env7("ETCD_PEER_CERT_FILE", 18),
                "peer_tls.key_file": env7("ETCD_PEER_KEY_FILE", 19),
                "peer_tls.trusted_ca_file": env7("ETCD_PEER_TRUSTED_CA_FILE", 20),
            },
        }),
    );

    // node-8: tutorial 001 by hand (kubeadm's manifest, client URL on the
    // host's address only: /version is asked there).
    let i8 = ip("node-8");
    let m8 = "/etc/kubernetes/manifests/etcd.yaml";
    let flag8 = |f: &str| format!("flag --{f} (command of {m8})");
    let mut exec8 = vec!["etcd".to_string()];
    exec8.extend(kubeadm_etcd_args("node-8", &i8));
    check(
        "node-8",
        &found["node-8"],
        serde_json::json!({
            "host": "node-8", "started_by": "static-pod", "unit": "", "unit_files": [],
            "exec_start": exec8,
            "environment_files": [], "config_file": "", "manifest": m8,
            "image": "registry.k8s.io/etcd:3.5.1-0",
            "user": "", "name": "node-8", "data_dir": "/var/lib/etcd", "wal_dir": "/var/lib/etcd/member/wal",
            "listen_client_urls": [format!("https://{i8}:2379")],
            "advertise_client_urls": [format!("https://{i8}:2379")],
            "listen_peer_urls": [format!("https://{i8}:2380")],
            "advertise_peer_urls": [format!("https://{i8}:2380")],
            "client_tls": {"cert_file": format!("{pki}/server.crt"), "key_file": format!("{pki}/server.key"),
                           "trusted_ca_file": format!("{pki}/ca.crt"), "client_cert_auth": true},
            "peer_tls": {"cert_file": format!("{pki}/peer.crt"), "key_file": format!("{pki}/peer.key"),
                         "trusted_ca_file": format!("{pki}/ca.crt"), "client_cert_auth": true},
            "binary": "/usr/local/bin/etcd", "binary_version": "3.5.1", "running": true, "pid": pid("node-8"),
            "running_version": "3.5.1", "running_version_from": format!("endpoint https://{i8}:2379"),
            "origins": {
                "name": flag8("name"),
                "data_dir": flag8("data-dir"),
                "wal_dir": "default",
                "listen_client_urls": flag8("listen-client-urls"),
                "advertise_client_urls": flag8("advertise-client-urls"),
                "listen_peer_urls": flag8("listen-peer-urls"),
                "advertise_peer_urls": flag8("initial-advertise-peer-urls"),
                "client_tls.cert_file": flag8("cert-file"),
                "client_tls.key_file": flag8("key-file"),
                "client_tls.trusted_ca_file": flag8("trusted-ca-file"),
                "client_tls.client_cert_auth": flag8("client-cert-auth"),
                "peer_tls.cert_file": flag8("peer-cert-file"),
                "peer_tls.key_file": flag8("peer-key-file"),
                "peer_tls.trusted_ca_file": flag8("peer-trusted-ca-file"),
                "peer_tls.client_cert_auth": flag8("peer-client-cert-auth"),
            },
        }),
    );

    // What the members themselves say agrees.
    for node in [
        "node-1", "node-2", "node-3", "node-4", "node-5", "node-6", "node-7", "node-8",
    ] {
        let a = ip(node);
        let client = if node == "node-7" {
            l.node(node).fqdn.clone()
        } else {
            a.clone()
        };
        cross_check(&l, node, &a, &client, &found[node]);
    }
    hetzner_member(&l, &found["hz-1"]);
    digitalocean_member(&l, &found["do-0"]);
    unreadable_facts_are_errors_naming_file_and_line(&l);
    eprintln!(
        "etcd_member lab test: members built in {:.1}s, whole test {:.1}s",
        built.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// On node-4 (tutorial 003 by hand), units that start etcd from files cairn
/// must refuse to read or to interpret: the error names the file and line.
/// On node-8 (tutorial 001), a manifest whose command no running etcd has is
/// refused rather than matched to the etcd that runs.
fn unreadable_facts_are_errors_naming_file_and_line(l: &lab::LabHandle) {
    l.ssh_ok(
        "node-8",
        "sed 's/--snapshot-count=10000/--snapshot-count=5000/' \
         /etc/kubernetes/manifests/etcd.yaml > /root/edited.yaml",
    );
    let pid = l.ssh_ok(
        "node-8",
        "systemctl show -p MainPID --value kubelet-pod-etcd",
    );
    let out = plan_script(
        l,
        "let h = hosts().filter(|h| h.name == \"node-8\")[0];\n\
         print(etcd_member(h, #{ manifest: \"/root/edited.yaml\" }).to_json());\n",
    );
    let t = text(&out);
    let expect = format!(
        "node-8: /root/edited.yaml: etcd runs (pid {}) but not with this manifest's command",
        pid.trim()
    );
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(t.contains(&expect), "no `{expect}` in:\n{t}");
    l.ssh_ok(
        "node-4",
        "set -e
cd /etc/systemd/system
printf 'ETCD_NAME=x\\nthis is not an assignment\\n' > /etc/etcd/broken.env
ln -sf /etc/etcd/options.env /etc/etcd/linked.env
for u in broken linked conflict; do
  e=/etc/etcd/$u.env; [ $u = conflict ] && e=/etc/etcd/options.env
  a=; [ $u = conflict ] && a=' --name other'
  printf '[Service]\\nEnvironmentFile=%s\\nExecStart=/usr/local/bin/etcd%s\\n' $e \"$a\" > etcd-$u.service
done
systemctl daemon-reload",
    );
    for (unit, expect) in [
        (
            "etcd-broken",
            "node-4: /etc/etcd/broken.env line 2: not a NAME=VALUE line".to_string(),
        ),
        (
            "etcd-linked",
            "node-4: /etc/etcd/linked.env: is a symbolic link (to /etc/etcd/options.env); cairn reads no links".to_string(),
        ),
        (
            "etcd-conflict",
            "node-4: /etc/etcd/options.env line 1: ETCD_NAME is set here and flag --name \
             (ExecStart in /etc/systemd/system/etcd-conflict.service line 3) too: etcd refuses to start with both"
                .to_string(),
        ),
    ] {
        let out = plan_script(
            l,
            &format!(
                "let h = hosts().filter(|h| h.name == \"node-4\")[0];\n\
                 print(etcd_member(h, #{{ unit: \"{unit}\" }}).to_json());\n"
            ),
        );
        let t = text(&out);
        assert_ne!(out.status.code(), Some(0), "{unit}: {t}");
        assert!(t.contains(&expect), "{unit}: no `{expect}` in:\n{t}");
        assert!(!t.contains("\"name\":"), "{unit}: a layout was printed:\n{t}");
    }
}

/// The emulated Hetzner server `hz-1` made by etcd-hetzner-apt (Debian's
/// package and unit, /etc/default/etcd written by the runbook); the
/// emulation adds it to the lab's inventory.
fn hetzner_member(l: &lab::LabHandle, m: &Value) {
    let out = Command::new("curl")
        .args(["-sf", "-H"])
        .arg(format!("Authorization: Bearer {}", l.var("HCLOUD_TOKEN")))
        .arg(format!("{}/servers?name=hz-1", l.var("HCLOUD_ENDPOINT")))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let public = v["servers"][0]["public_net"]["ipv4"]["ip"]
        .as_str()
        .unwrap_or_else(|| panic!("no server hz-1: {v}"))
        .to_string();
    let private = v["servers"][0]["private_net"][0]["ip"]
        .as_str()
        .unwrap_or_else(|| panic!("hz-1 has no private address: {v}"))
        .to_string();
    let env = |var: &str, line: u32| format!("env {var} (/etc/default/etcd line {line})");
    check(
        "hz-1",
        m,
        serde_json::json!({
            "host": "hz-1", "started_by": "systemd", "unit": "etcd.service",
            "unit_files": ["/lib/systemd/system/etcd.service"],
            "exec_start": ["/usr/bin/etcd"],
            "environment_files": ["/etc/default/etcd"], "config_file": "", "manifest": "", "image": "",
            "user": "etcd", "name": "hz-1",
            "data_dir": "/var/lib/etcd/default", "wal_dir": "/var/lib/etcd/default/member/wal",
            "listen_client_urls": [format!("https://{private}:2379"), "https://127.0.0.1:2379".to_string()],
            "advertise_client_urls": [format!("https://{private}:2379")],
            "listen_peer_urls": [format!("https://{private}:2380")],
            "advertise_peer_urls": [format!("https://{private}:2380")],
            "client_tls": {"cert_file": "/etc/etcd/server.crt", "key_file": "/etc/etcd/server.key",
                           "trusted_ca_file": "/etc/etcd/ca.crt", "client_cert_auth": true},
            "peer_tls": {"cert_file": "/etc/etcd/peer.crt", "key_file": "/etc/etcd/peer.key",
                         "trusted_ca_file": "/etc/etcd/ca.crt", "client_cert_auth": true},
            "binary": "/usr/bin/etcd", "binary_version": "3.4.23", "running": true, "pid": m["pid"].clone(),
            "running_version": "3.4.23", "running_version_from": "endpoint https://127.0.0.1:2379",
            "origins": {
                "name": env("ETCD_NAME", 3),
                "data_dir": env("ETCD_DATA_DIR", 4),
                "wal_dir": "default",
                "advertise_peer_urls": env("ETCD_INITIAL_ADVERTISE_PEER_URLS", 8),
                "listen_peer_urls": env("ETCD_LISTEN_PEER_URLS", 9),
                "listen_client_urls": env("ETCD_LISTEN_CLIENT_URLS", 10),
                "advertise_client_urls": env("ETCD_ADVERTISE_CLIENT_URLS", 11),
                "client_tls.client_cert_auth": env("ETCD_CLIENT_CERT_AUTH", 12),
                "peer_tls.client_cert_auth": env("ETCD_PEER_CLIENT_CERT_AUTH", 13),
                "client_tls.trusted_ca_file": env("ETCD_TRUSTED_CA_FILE", 14),
                "client_tls.cert_file": env("ETCD_CERT_FILE", 15),
                "client_tls.key_file": env("ETCD_KEY_FILE", 16),
                "peer_tls.trusted_ca_file": env("ETCD_PEER_TRUSTED_CA_FILE", 17),
                "peer_tls.cert_file": env("ETCD_PEER_CERT_FILE", 18),
                "peer_tls.key_file": env("ETCD_PEER_KEY_FILE", 19),
            },
        }),
    );
    cross_check(l, "hz-1", &public, &private, m);
}

/// The emulated DigitalOcean droplet `do-0` made by etcd-do-discovery
/// (operator discovery: cairn writes /etc/etcd/etcd-members, the unit reads
/// it, no `User=`); the emulation adds it to the lab's inventory.
fn digitalocean_member(l: &lab::LabHandle, m: &Value) {
    let address = l
        .hosts()
        .into_iter()
        .find(|h| h.name == "do-0")
        .expect("do-0 in the lab inventory")
        .address;
    let fqdn = format!("do-0.{}", l.var("CAIRN_LAB_DOMAIN"));
    let env = |var: &str, line: u32| format!("env {var} (/etc/etcd/etcd-members line {line})");
    check(
        "do-0",
        m,
        serde_json::json!({
            "host": "do-0", "started_by": "systemd", "unit": "etcd.service",
            "unit_files": ["/etc/systemd/system/etcd.service"],
            "exec_start": ["/usr/local/bin/etcd"],
            "environment_files": ["/etc/etcd/etcd-members"], "config_file": "", "manifest": "", "image": "",
            "user": "root", "name": fqdn.clone(),
            "data_dir": "/var/lib/etcd", "wal_dir": "/var/lib/etcd/member/wal",
            "listen_client_urls": [format!("https://{address}:2379"), "https://127.0.0.1:2379".to_string()],
            "advertise_client_urls": [format!("https://{fqdn}:2379")],
            "listen_peer_urls": [format!("https://{address}:2380")],
            "advertise_peer_urls": [format!("https://{fqdn}:2380")],
            "client_tls": {"cert_file": "/etc/etcd/server.pem", "key_file": "/etc/etcd/server-key.pem",
                           "trusted_ca_file": "/etc/etcd/ca.pem", "client_cert_auth": true},
            "peer_tls": {"cert_file": "/etc/etcd/peer.pem", "key_file": "/etc/etcd/peer-key.pem",
                         "trusted_ca_file": "/etc/etcd/ca.pem", "client_cert_auth": true},
            "binary": "/usr/local/bin/etcd", "binary_version": "3.5.30", "running": true, "pid": m["pid"].clone(),
            "running_version": "3.5.30", "running_version_from": "endpoint https://127.0.0.1:2379",
            "origins": {
                "name": env("ETCD_NAME", 5),
                "data_dir": env("ETCD_DATA_DIR", 8),
                "wal_dir": "default",
                "advertise_client_urls": env("ETCD_ADVERTISE_CLIENT_URLS", 10),
                "advertise_peer_urls": env("ETCD_INITIAL_ADVERTISE_PEER_URLS", 11),
                "listen_client_urls": env("ETCD_LISTEN_CLIENT_URLS", 13),
                "client_tls.client_cert_auth": env("ETCD_CLIENT_CERT_AUTH", 14),
                "client_tls.cert_file": env("ETCD_CERT_FILE", 15),
                "client_tls.key_file": env("ETCD_KEY_FILE", 16),
                "client_tls.trusted_ca_file": env("ETCD_TRUSTED_CA_FILE", 17),
                "listen_peer_urls": env("ETCD_LISTEN_PEER_URLS", 19),
                "peer_tls.client_cert_auth": env("ETCD_PEER_CLIENT_CERT_AUTH", 20),
                "peer_tls.cert_file": env("ETCD_PEER_CERT_FILE", 21),
                "peer_tls.key_file": env("ETCD_PEER_KEY_FILE", 22),
                "peer_tls.trusted_ca_file": env("ETCD_PEER_TRUSTED_CA_FILE", 23),
            },
        }),
    );
    // Its certificate names the droplet's DNS name only (as the tutorial's).
    cross_check(l, "do-0", &address, &fqdn, m);
}

/// Offline (no host reachable): the plan shows the read and placeholders for
/// what it would find; nothing is contacted.
#[test]
fn offline_plan_shows_the_read_with_placeholders() {
    let ws = tempfile::tempdir().unwrap();
    let rb = ws.path().join("discover");
    std::fs::create_dir(&rb).unwrap();
    std::fs::write(
        rb.join("runbook.toml"),
        "name = \"discover\"\nversion = \"1.0.0\"\ndescription = \"etcd_member\"\n",
    )
    .unwrap();
    std::fs::write(
        rb.join("main.rhai"),
        "let m = etcd_member(hosts()[0]); print(`NAME ${m.name} DATA ${m.data_dir}`);\n",
    )
    .unwrap();
    std::fs::write(
        ws.path().join("hosts.toml"),
        "[[hosts]]\nname = \"far-1\"\naddress = \"192.0.2.1\"\n",
    )
    .unwrap();
    let out = cairn(
        ws.path(),
        &[
            "plan",
            rb.to_str().unwrap(),
            "--offline",
            "--inventory",
            "hosts.toml",
            "--show-unchanged",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("= ok read etcd member layout"), "{t}");
    assert!(
        t.contains(
            "NAME (known after read: far-1: etcd name) DATA (known after read: far-1: etcd data_dir)"
        ),
        "{t}"
    );
}
