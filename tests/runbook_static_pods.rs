//! etcd-static-pods end to end on labs (tutorial 001): kubeadm's etcd PKI
//! made by cairn, the static pod manifest `kubeadm init phase etcd local`
//! writes, and — labs have no kubelet or container runtime — the runbook's
//! documented `kubelet=lab-standin` mode: a unit that runs the manifest's own
//! etcd command with the default 3.5.30 release binary from the lab's mirror. The
//! runbook's own verification must pass. The manifest is checked against the
//! Pod schema's required fields and types; the PKI against kubeadm's
//! specification. Then: a rerun changes nothing and keeps data and
//! processes; a run killed mid-way resumes to the same healthy end. The real
//! mode (containerd and kubelet from the Kubernetes apt repo) is planned.

mod common;

use common::{cairn, cairn_env, lab, text};

use serde_json::{json, Map, Value};
use std::path::Path;
use std::process::{Command, Output};

const RUNBOOK: &str = "etcd-static-pods";
/// The lab has no kubelet; its release mirror has the default etcd v3.5.30.
const STANDIN: [&str; 2] = ["--var", "kubelet=lab-standin"];

/// `VERB etcd-static-pods --lab LAB` in the stand-in mode.
fn standin<'a>(verb: &'a str, l: &'a lab::LabHandle) -> Vec<&'a str> {
    let mut args = vec![verb, RUNBOOK, "--lab", l.name.as_str()];
    args.extend(STANDIN);
    args
}

/// The lines of a run's output that are not no-ops, for failure messages.
fn changes(o: &Output) -> String {
    text(o)
        .lines()
        .filter(|l| !l.contains("= ok"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// etcdctl on a member over its loopback client URL, with the node's
/// healthcheck-client certificate (as kubeadm's etcd checks do).
fn etcdctl(l: &lab::LabHandle, node: &str, args: &str) -> String {
    l.ssh_ok(
        node,
        &format!(
            "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt \
             --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt \
             --key=/etc/kubernetes/pki/etcd/healthcheck-client.key {args}"
        ),
    )
    .trim()
    .to_string()
}

/// Nothing of the runbook on `node`.
fn assert_untouched(l: &lab::LabHandle, node: &str) {
    let out = l.ssh_ok(
        node,
        "for p in /etc/kubernetes /var/lib/etcd /opt/etcd /usr/local/bin/etcd /usr/local/bin/etcdctl \
         /etc/modules-load.d/k8s.conf /etc/sysctl.d/k8s.conf /etc/systemd/system/kubelet.service.d \
         /etc/systemd/system/etcd-static-pod.service /usr/local/sbin/etcd-static-pod \
         /etc/apt/sources.list.d/kubernetes.list /etc/containerd; do test -e $p && echo \"$p exists\"; done; true",
    );
    assert_eq!(out.trim(), "", "{node} was changed");
}

fn main_pid(l: &lab::LabHandle, node: &str) -> String {
    l.ssh_ok(node, "systemctl show -p MainPID --value etcd-static-pod")
        .trim()
        .to_string()
}

// ---- The static pod manifest, read as YAML --------------------------------

/// A YAML scalar as JSON: null, booleans, integers, `{}`, quoted and plain strings.
fn scalar(s: &str) -> Value {
    match s {
        "null" | "~" => Value::Null,
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "{}" => Value::Object(Map::new()),
        "[]" => Value::Array(vec![]),
        _ if s.starts_with('"') => {
            assert!(s.len() >= 2 && s.ends_with('"'), "unterminated `{s}`");
            Value::String(s[1..s.len() - 1].replace("\\\"", "\""))
        }
        _ => match s.parse::<i64>() {
            Ok(n) => json!(n),
            Err(_) => {
                assert!(
                    !s.starts_with(['{', '[', '&', '*', '!', '|', '>', '\'']),
                    "YAML construct outside the block subset kubeadm writes: `{s}`"
                );
                Value::String(s.to_string())
            }
        },
    }
}

/// Block-style YAML (what kubeadm writes: maps, sequences, scalars, no flow
/// collections but `{}`) as JSON. Anything else fails the test. `- x` items
/// become a `-` marker and `x` two columns in, so that a sequence item's map
/// is a plain nested map.
fn parse_yaml(doc: &str) -> Value {
    let mut lines: Vec<(usize, String)> = Vec::new();
    for raw in doc.lines() {
        let t = raw.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        assert!(!raw.contains('\t'), "tab in `{raw}`");
        let mut indent = raw.len() - t.len();
        let mut rest = t;
        while let Some(item) = rest
            .strip_prefix("- ")
            .or(if rest == "-" { Some("") } else { None })
        {
            lines.push((indent, "-".into()));
            indent += 2;
            rest = item;
            if rest.is_empty() {
                break;
            }
        }
        if !rest.is_empty() {
            lines.push((indent, rest.to_string()));
        }
    }
    let mut at = 0;
    let v = block(&lines, &mut at, 0);
    assert_eq!(at, lines.len(), "trailing lines from {:?}", lines.get(at));
    v
}

fn block(lines: &[(usize, String)], at: &mut usize, indent: usize) -> Value {
    let (first_indent, first) = &lines[*at];
    assert_eq!(*first_indent, indent, "bad indentation at `{first}`");
    if first == "-" {
        let mut items = Vec::new();
        while *at < lines.len() && lines[*at].0 == indent && lines[*at].1 == "-" {
            *at += 1;
            items.push(block(lines, at, indent + 2));
        }
        return Value::Array(items);
    }
    if !first.contains(": ") && !first.ends_with(':') {
        *at += 1;
        return scalar(first);
    }
    let mut map = Map::new();
    while *at < lines.len() && lines[*at].0 == indent && lines[*at].1 != "-" {
        let line = &lines[*at].1;
        let (key, value) = match line.split_once(": ") {
            Some((k, v)) => (k.to_string(), v.trim().to_string()),
            None => (
                line.strip_suffix(':')
                    .unwrap_or_else(|| panic!("not a map entry: `{line}`"))
                    .to_string(),
                String::new(),
            ),
        };
        *at += 1;
        let v = if !value.is_empty() {
            scalar(&value)
        } else if *at < lines.len() && lines[*at].0 > indent {
            block(lines, at, lines[*at].0)
        } else if *at < lines.len() && lines[*at].0 == indent && lines[*at].1 == "-" {
            block(lines, at, indent)
        } else {
            Value::Null
        };
        assert!(
            map.insert(key.clone(), v).is_none(),
            "duplicate key `{key}`"
        );
    }
    Value::Object(map)
}

/// The same document read by PyYAML, when the host's python3 has it: the
/// subset parser above must agree with a real YAML parser.
fn pyyaml(doc: &str) -> Option<Value> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.as_bytes())
        .unwrap();
    let out = child.wait_with_output().ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn string<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{path} is not a string: {v}"))
}

/// The manifest of `node` (with address `ip`): Pod schema's required fields
/// and their types, kubeadm's flags, probes and volumes. Returns its command.
fn check_manifest(doc: &str, node: &str, ip: &str, cluster: &str) -> Vec<String> {
    let pod = parse_yaml(doc);
    match pyyaml(doc) {
        Some(py) => assert_eq!(py, pod, "PyYAML reads the manifest differently"),
        None => {
            eprintln!("python3 has no PyYAML: the manifest is read by the block-subset parser only")
        }
    }
    assert_eq!(string(&pod, "/apiVersion"), "v1");
    assert_eq!(string(&pod, "/kind"), "Pod");
    assert_eq!(string(&pod, "/metadata/name"), "etcd");
    assert_eq!(string(&pod, "/metadata/namespace"), "kube-system");
    assert_eq!(
        pod["metadata"]["labels"],
        json!({"component": "etcd", "tier": "control-plane"})
    );
    assert_eq!(
        string(
            &pod,
            "/metadata/annotations/kubeadm.kubernetes.io~1etcd.advertise-client-urls"
        ),
        format!("https://{ip}:2379")
    );
    for (k, v) in pod["metadata"]["annotations"].as_object().unwrap() {
        assert!(v.is_string(), "annotation {k} must be a string: {v}");
    }
    let spec = &pod["spec"];
    assert_eq!(spec["hostNetwork"], json!(true));
    assert_eq!(spec["priorityClassName"], json!("system-node-critical"));
    assert_eq!(
        spec["securityContext"],
        json!({"seccompProfile": {"type": "RuntimeDefault"}})
    );
    let containers = spec["containers"].as_array().expect("spec.containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(string(c, "/name"), "etcd");
    assert_eq!(string(c, "/image"), "registry.k8s.io/etcd:3.5.30-0");
    assert_eq!(string(c, "/imagePullPolicy"), "IfNotPresent");
    let command: Vec<String> = c["command"]
        .as_array()
        .expect("command is a list")
        .iter()
        .map(|a| a.as_str().expect("command items are strings").to_string())
        .collect();
    let expected = [
        "etcd".to_string(),
        format!("--advertise-client-urls=https://{ip}:2379"),
        "--cert-file=/etc/kubernetes/pki/etcd/server.crt".into(),
        "--client-cert-auth=true".into(),
        "--data-dir=/var/lib/etcd".into(),
        "--experimental-initial-corrupt-check=true".into(),
        "--experimental-watch-progress-notify-interval=5s".into(),
        format!("--initial-advertise-peer-urls=https://{ip}:2380"),
        format!("--initial-cluster={cluster}"),
        "--initial-cluster-state=new".into(),
        "--key-file=/etc/kubernetes/pki/etcd/server.key".into(),
        format!("--listen-client-urls=https://127.0.0.1:2379,https://{ip}:2379"),
        "--listen-metrics-urls=http://127.0.0.1:2381".into(),
        format!("--listen-peer-urls=https://{ip}:2380"),
        format!("--name={node}"),
        "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt".into(),
        "--peer-client-cert-auth=true".into(),
        "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key".into(),
        "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt".into(),
        "--snapshot-count=10000".into(),
        "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt".into(),
    ];
    assert_eq!(command, expected);
    for (probe, path) in [
        ("livenessProbe", "/health?exclude=NOSPACE&serializable=true"),
        ("startupProbe", "/health?serializable=false"),
    ] {
        let get = &c[probe]["httpGet"];
        assert_eq!(
            *get,
            json!({"host": "127.0.0.1", "path": path, "port": 2381, "scheme": "HTTP"}),
            "{probe}"
        );
        for field in [
            "failureThreshold",
            "initialDelaySeconds",
            "periodSeconds",
            "timeoutSeconds",
        ] {
            assert!(c[probe][field].is_u64(), "{probe}.{field}: {}", c[probe]);
        }
    }
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "100m", "memory": "100Mi"}})
    );
    // every volumeMount names a volume; every volume is a hostPath at the
    // same path (so the stand-in's paths are the pod's)
    let volumes = spec["volumes"].as_array().expect("spec.volumes");
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    assert_eq!(volumes.len(), 2);
    assert_eq!(mounts.len(), 2);
    for (name, path) in [
        ("etcd-data", "/var/lib/etcd"),
        ("etcd-certs", "/etc/kubernetes/pki/etcd"),
    ] {
        let m: Vec<&Value> = mounts.iter().filter(|m| m["name"] == name).collect();
        assert_eq!(m.len(), 1, "mount {name}");
        assert_eq!(string(m[0], "/mountPath"), path);
        let v: Vec<&Value> = volumes.iter().filter(|v| v["name"] == name).collect();
        assert_eq!(v.len(), 1, "volume {name}");
        assert_eq!(
            v[0]["hostPath"],
            json!({"path": path, "type": "DirectoryOrCreate"})
        );
    }
    assert_eq!(pod["status"], json!({}));
    command
}

fn days(info: &cairn::primitives::pki::CertInfo) -> i64 {
    use time::format_description::well_known::Rfc3339;
    let from = time::OffsetDateTime::parse(&info.not_before, &Rfc3339).unwrap();
    let to = time::OffsetDateTime::parse(&info.not_after, &Rfc3339).unwrap();
    (to - from).whole_days()
}

/// The certificates on `node` are kubeadm's.
fn check_pki(l: &lab::LabHandle, ws: &Path, node: &str) {
    let n = l.node(node);
    let cert = |path: &str| {
        let pem = l.ssh_ok(node, &format!("cat /etc/kubernetes/pki/{path}"));
        cairn::primitives::pki::inspect(&pem, ws).unwrap()
    };
    let ca = cert("etcd/ca.crt");
    assert_eq!(
        (ca.cn.as_str(), ca.is_ca, days(&ca)),
        ("etcd-ca", true, 3650)
    );
    for kind in ["server", "peer"] {
        let c = cert(&format!("etcd/{kind}.crt"));
        assert_eq!(c.cn, node, "{kind}");
        assert_eq!(c.dns, vec![node.to_string(), "localhost".into()], "{kind}");
        assert_eq!(
            c.ips,
            vec![n.address.clone(), "127.0.0.1".into(), "::1".into()],
            "{kind}"
        );
        assert_eq!(c.usages, vec!["server", "client"], "{kind}");
        assert_eq!((c.key.as_str(), days(&c)), ("rsa2048", 365), "{kind}");
        assert_eq!(c.issuer, ca.subject, "{kind}");
    }
    for (path, cn) in [
        (
            "etcd/healthcheck-client.crt",
            "kube-etcd-healthcheck-client",
        ),
        ("apiserver-etcd-client.crt", "kube-apiserver-etcd-client"),
    ] {
        let c = cert(path);
        assert_eq!((c.cn.as_str(), c.o.as_str()), (cn, "system:masters"));
        assert_eq!(c.usages, vec!["client"], "{path}");
        assert!(c.dns.is_empty() && c.ips.is_empty(), "{path}");
        assert_eq!(days(&c), 365, "{path}");
    }
}

#[test]
fn plan_run_verify_rerun() {
    if lab::skip() {
        return;
    }
    let l = lab::start(&lab::unique_name("spods"), 3);
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let mirror = l.var("CAIRN_RELEASE_MIRROR").to_string();
    let ips: Vec<String> = l.nodes.iter().map(|n| n.address.clone()).collect();
    let initial_cluster = l
        .nodes
        .iter()
        .map(|n| format!("{}=https://{}:2380", n.name, n.address))
        .collect::<Vec<_>>()
        .join(",");

    // 1. plans on a fresh lab: every action listed, nothing changed anywhere
    let plan = cairn(w, &[standin("plan", &l), vec!["--show-unchanged"]].concat());
    let p = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{p}");
    for expect in [
        "kubelet = lab-standin: no kubelet or container runtime".to_string(),
        format!("= ok read `curl -fsSL -- {mirror}/etcd-io/etcd/releases/download/v3.5.30/SHA256SUMS`"),
        "= ok run `sed -i '/^[^#].*[[:space:]]swap[[:space:]]/ s/^/#/' /etc/fstab`".into(),
        "+ create file /etc/modules-load.d/k8s.conf (0644 root:root)".into(),
        "+br_netfilter".into(),
        "+ create file /etc/sysctl.d/k8s.conf (0644 root:root)".into(),
        "+net.bridge.bridge-nf-call-ip6tables = 1".into(),
        "+ create file /etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf".into(),
        "+ExecStart=/usr/bin/kubelet --address=127.0.0.1 --pod-manifest-path=/etc/kubernetes/manifests".into(),
        format!("+ create file /opt/etcd/etcd-v3.5.30-linux-amd64.tar.gz (0644) (from {mirror}/etcd-io/etcd/releases/download/v3.5.30/etcd-v3.5.30-linux-amd64.tar.gz)"),
        "> run `install -v -m 0755 -o root -g root -- /opt/etcd/etcd-v3.5.30-linux-amd64/etcd /opt/etcd/etcd-v3.5.30-linux-amd64/etcdctl /usr/local/bin/`".into(),
        "+ create CA certificate external-etcd-etcd-ca".into(),
        "(CN=etcd-ca; CA; rsa2048; 3650 days; self-signed)".into(),
        "(CN=kube-apiserver-etcd-client, O=system:masters; usage client; rsa2048; 365 days; signed by external-etcd-etcd-ca".into(),
        format!("(CN=node-2; DNS node-2 localhost; IP {} 127.0.0.1 ::1; usage server,client; rsa2048; 365 days; signed by external-etcd-etcd-ca", ips[1]),
        "+ create file /etc/kubernetes/pki/etcd/peer.key (0600 root:root)".into(),
        "+ create file /etc/kubernetes/pki/etcd/healthcheck-client.key (0600 root:root)".into(),
        "+ create file /etc/kubernetes/pki/apiserver-etcd-client.key (0600 root:root)".into(),
        "+ create file /etc/kubernetes/pki/etcd/ca.key (0600 root:root)".into(),
        "+ create file /etc/kubernetes/manifests/etcd.yaml (0600 root:root)".into(),
        format!("+    - --initial-cluster={initial_cluster}\n"),
        "+    image: registry.k8s.io/etcd:3.5.30-0".into(),
        "+ create file /usr/local/sbin/etcd-static-pod (0755 root:root)".into(),
        "+ExecStart=/usr/local/sbin/etcd-static-pod".into(),
        "> run restart unit etcd-static-pod".into(),
        "? verify etcd members are node-1, node-2, node-3".into(),
        format!("? verify etcd https://{}:2380 via node-1 refuses a client without a certificate", ips[0]),
        "+ create file".into(),
    ] {
        assert!(p.contains(&expect), "plan lacks `{expect}`:\n{p}");
    }
    // real mode, planned: the runtime and the kubelet from the Kubernetes repo
    let real = cairn(w, &["plan", RUNBOOK, "--lab", &l.name]);
    let r = text(&real);
    assert_eq!(real.status.code(), Some(2), "{r}");
    for expect in [
        "> run `modprobe overlay; modprobe br_netfilter`",
        "> run `sysctl --system`",
        "> run `curl -fsSL -o /etc/apt/keyrings/kubernetes-apt-keyring.asc -- https://pkgs.k8s.io/core:/stable:/v1.27/deb/Release.key",
        "+deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.27/deb /",
        "+ create apt package containerd",
        "+ create apt package kubelet",
        "> run `apt-mark hold kubelet`",
        "+    SystemdCgroup = true",
        "> run restart unit containerd",
        "> run restart unit kubelet",
    ] {
        assert!(r.contains(expect), "real-mode plan lacks `{expect}`:\n{r}");
    }
    assert!(
        !r.contains("+ create file /usr/local/sbin/etcd-static-pod")
            && !r.contains("restart unit etcd-static-pod"),
        "{r}"
    );
    assert!(!w.join(".cairn").exists(), "plan wrote the workspace");
    for n in ["node-1", "node-2", "node-3"] {
        assert_untouched(&l, n);
    }

    // 2. run: a verified cluster, and the control plane's etcd.external block
    let run = cairn(w, &standin("run", &l));
    let out = text(&run);
    assert_eq!(run.status.code(), Some(0), "{out}");
    assert!(
        out.contains("etcd cluster external-etcd: 3 members, verified"),
        "{out}"
    );
    let external = format!(
        "kind: ClusterConfiguration\netcd:\n  external:\n    endpoints:\n    - https://{}:2379\n    - https://{}:2379\n    - https://{}:2379\n    \
         caFile: /etc/kubernetes/pki/etcd/ca.crt\n    certFile: /etc/kubernetes/pki/apiserver-etcd-client.crt\n    \
         keyFile: /etc/kubernetes/pki/apiserver-etcd-client.key\n",
        ips[0], ips[1], ips[2]
    );
    assert!(out.contains(&external), "{out}");
    let snippet =
        std::fs::read_to_string(w.join(".cairn/files/external-etcd-kubeadm-etcd-external.yaml"))
            .unwrap();
    assert!(snippet.contains(&external), "{snippet}");
    let client = cairn::primitives::pki::inspect(
        "pki/external-etcd-apiserver-etcd-client.crt",
        &w.join(".cairn"),
    )
    .unwrap();
    assert_eq!(client.cn, "kube-apiserver-etcd-client");
    assert!(w
        .join(".cairn/pki/external-etcd-apiserver-etcd-client.key")
        .exists());

    // the manifest on every node is a kubeadm etcd Pod, and the running etcd
    // is exactly its command
    for n in &l.nodes {
        let doc = l.ssh_ok(&n.name, "cat /etc/kubernetes/manifests/etcd.yaml");
        let command = check_manifest(&doc, &n.name, &n.address, &initial_cluster);
        let args = l.ssh_ok(&n.name, "ps -o args= -C etcd");
        assert_eq!(
            args.trim(),
            format!("/usr/local/bin/etcd {}", command[1..].join(" ")),
            "{}",
            n.name
        );
        check_pki(&l, &w.join(".cairn"), &n.name);
    }
    // keys 0600, the CA key on the first host only
    let modes = l.ssh_ok(
        "node-1",
        "cd /etc/kubernetes && stat -c '%n %a %U' pki/etcd/ca.key pki/etcd/server.key pki/etcd/peer.key \
         pki/etcd/healthcheck-client.key pki/apiserver-etcd-client.key manifests/etcd.yaml /var/lib/etcd",
    );
    assert_eq!(
        modes.trim(),
        "pki/etcd/ca.key 600 root\npki/etcd/server.key 600 root\npki/etcd/peer.key 600 root\n\
         pki/etcd/healthcheck-client.key 600 root\npki/apiserver-etcd-client.key 600 root\n\
         manifests/etcd.yaml 600 root\n/var/lib/etcd 700 root"
    );
    for n in ["node-2", "node-3"] {
        assert_eq!(
            l.ssh_ok(n, "ls /etc/kubernetes/pki/etcd").trim(),
            "ca.crt\nhealthcheck-client.crt\nhealthcheck-client.key\npeer.crt\npeer.key\nserver.crt\nserver.key",
            "{n} must not have ca.key"
        );
    }

    // as the tutorial checks it (S3-13), on the nodes themselves
    let health = etcdctl(&l, "node-2", "endpoint health --cluster");
    assert_eq!(health.matches(" is healthy").count(), 3, "{health}");
    let members = etcdctl(&l, "node-3", "member list");
    assert_eq!(members.lines().count(), 3, "{members}");
    for n in &l.nodes {
        let line = format!(
            "started, {}, https://{a}:2380, https://{a}:2379, false",
            n.name,
            a = n.address
        );
        assert!(members.lines().any(|m| m.ends_with(&line)), "{members}");
    }
    let metrics = l.ssh_ok(
        "node-1",
        "curl -fsS 'http://127.0.0.1:2381/health?serializable=false'",
    );
    assert!(metrics.contains(r#""health":"true""#), "{metrics}");

    // 3. data written before a rerun survives it; the rerun changes nothing
    // and restarts nothing
    etcdctl(&l, "node-1", "put precious data-before-rerun");
    let pids: Vec<String> = l.nodes.iter().map(|n| main_pid(&l, &n.name)).collect();
    let plan = cairn(w, &standin("plan", &l));
    assert_eq!(
        plan.status.code(),
        Some(0),
        "plan after run must be empty:\n{}",
        changes(&plan)
    );
    let rerun = cairn(w, &standin("run", &l));
    assert_eq!(rerun.status.code(), Some(0), "{}", changes(&rerun));
    assert!(
        text(&rerun).contains(" 0 created, 0 changed, 0 deleted, 0 ran"),
        "{}",
        changes(&rerun)
    );
    assert_eq!(
        etcdctl(&l, "node-3", "get precious --print-value-only"),
        "data-before-rerun"
    );
    let after: Vec<String> = l.nodes.iter().map(|n| main_pid(&l, &n.name)).collect();
    assert_eq!(pids, after, "a rerun restarted etcd");
}

#[test]
fn killed_run_resumes() {
    if lab::skip() {
        return;
    }
    let l = lab::start(&lab::unique_name("spods-kill"), 3);
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let killed = cairn_env(
        w,
        &standin("run", &l),
        &[("CAIRN_FAULT_KILL", "applied:40")],
    );
    assert_eq!(
        killed.status.code(),
        None,
        "must die by SIGKILL: {}",
        text(&killed)
    );
    let resumed = cairn(w, &["resume"]);
    let r = text(&resumed);
    assert_eq!(resumed.status.code(), Some(0), "{r}");
    assert!(
        r.contains("etcd cluster external-etcd: 3 members, verified"),
        "{r}"
    );
    let members = etcdctl(&l, "node-2", "member list");
    assert_eq!(members.matches(", started, ").count(), 3, "{members}");

    // the resumed cluster is the runbook's end state: a rerun changes nothing
    let rerun = cairn(w, &standin("run", &l));
    assert_eq!(rerun.status.code(), Some(0), "{}", changes(&rerun));
    assert!(
        text(&rerun).contains(" 0 created, 0 changed, 0 deleted, 0 ran"),
        "{}",
        changes(&rerun)
    );
}
