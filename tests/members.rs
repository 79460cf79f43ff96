//! Membership changes on a lab of six nodes, on one etcd-binary-yaml cluster
//! built on node-1..3: 3 -> 5 (etcd-member-add, learners promoted) -> 3
//! (etcd-member-remove, the leader among the removed) while a client writes
//! and reads through the original members' endpoints; then a member whose
//! node is powered off for good is replaced by node-6 (etcd-member-replace).
//! Runs are killed (CAIRN_FAULT_KILL) inside and between steps and resumed by
//! id, some again inside their resumes (add at 4 points, remove at 5, replace
//! at 4: after the removal, inside the install, once started as a learner,
//! once promoted): every resumed run ends verified. Last, node-3 loses its
//! data and is replaced by itself. Refusals (an even size, a removal that
//! would lose quorum) change nothing.

mod common;

use common::{cairn, cairn_kill, lab, load, text};

use std::path::{Path, PathBuf};
use std::time::Instant;

const CLUSTER: &str = "etcd-cluster-1";

/// A run that must succeed; its output.
fn ok(ws: &Path, args: &[&str]) -> String {
    let o = cairn(ws, args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "cairn {}:\n{t}", args.join(" "));
    t
}

/// A run killed at `point`, then `cairn resume ID`: the resumed run must succeed.
fn killed_and_resumed(ws: &Path, args: &[&str], point: &str) -> String {
    killed_again_and_resumed(ws, args, &[(point, "")])
}

/// The kind of the last step run `id` journaled done (`cairn runs show`).
fn last_done(ws: &Path, id: &str) -> String {
    let show = text(&cairn(ws, &["runs", "show", id]));
    show.lines()
        .filter_map(|l| l.strip_prefix("  done  "))
        .next_back()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no done step in:\n{show}"))
        .to_string()
}

/// A run killed at the first point, resumed by its id and killed again at
/// each further point (the counts start again in each resume: replayed steps
/// are not counted), then resumed once more: that resume must succeed. Each
/// point comes with the kind of the last step journaled done before it (the
/// phase the kill landed in; "" for any). The output of every resume, in order.
fn killed_again_and_resumed(ws: &Path, args: &[&str], points: &[(&str, &str)]) -> String {
    let (first, _) = points[0];
    let killed = cairn_kill(ws, args, Some(first));
    assert_eq!(
        killed.status.code(),
        None,
        "cairn {} was not killed at {first}:\n{}",
        args.join(" "),
        text(&killed)
    );
    let out = text(&killed);
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("Run ")?.split_once(": ").map(|(id, _)| id))
        .unwrap_or_else(|| panic!("no run id in:\n{out}"));
    let mut all = String::new();
    for (i, (point, before)) in points.iter().enumerate() {
        if i > 0 {
            let again = cairn_kill(ws, &["resume", id], Some(point));
            all.push_str(&text(&again));
            assert_eq!(
                again.status.code(),
                None,
                "resume {id} of cairn {} was not killed at {point} (kills {points:?}):\n{all}",
                args.join(" "),
            );
        }
        if !before.is_empty() {
            assert_eq!(&last_done(ws, id), before, "kill at {point}");
        }
    }
    let resumed = cairn(ws, &["resume", id]);
    all.push_str(&text(&resumed));
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "resume {id} after kills at {points:?} of cairn {} failed:\n{all}",
        args.join(" ")
    );
    all
}

/// `cairn run RUNBOOK --lab LAB --var k=v ...`
fn run_args<'a>(runbook: &'a str, lab: &'a str, vars: &'a [String]) -> Vec<&'a str> {
    let mut a = vec!["run", runbook, "--lab", lab];
    for v in vars {
        a.push("--var");
        a.push(v);
    }
    a
}

fn vars(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The member list as node `node` sees it: (name, is_learner), sorted.
fn members(l: &lab::LabHandle, node: &str) -> Vec<(String, bool)> {
    let out = l.ssh_ok(
        node,
        &format!(
            "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/pki/etcd-ca.crt \
             --cert=/etc/etcd/pki/{node}.crt --key=/etc/etcd/pki/{node}.key member list"
        ),
    );
    let mut v: Vec<(String, bool)> = out
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(", ").collect();
            assert_eq!(f.len(), 6, "member list line `{line}`");
            assert_eq!(f[1], "started", "member not started: {line}");
            (f[2].to_string(), f[5].trim() == "true")
        })
        .collect();
    v.sort();
    v
}

fn voting(names: &[&str]) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = names.iter().map(|n| (n.to_string(), false)).collect();
    v.sort();
    v
}

/// The hex id of member `name`, as node `node` lists it.
fn member_id(l: &lab::LabHandle, node: &str, name: &str) -> String {
    let out = l.ssh_ok(
        node,
        &format!(
            "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/pki/etcd-ca.crt \
             --cert=/etc/etcd/pki/{node}.crt --key=/etc/etcd/pki/{node}.key member list"
        ),
    );
    out.lines()
        .find(|l| l.split(", ").nth(2) == Some(name))
        .and_then(|l| l.split(", ").next())
        .unwrap_or_else(|| panic!("no member {name} in:\n{out}"))
        .to_string()
}

/// The load client's view of the cluster through `nodes`' endpoints.
fn target(l: &lab::LabHandle, ws: &Path, nodes: &[&str]) -> load::Target {
    let pki: PathBuf = ws.join(".cairn/pki");
    load::Target {
        endpoints: nodes
            .iter()
            .map(|n| format!("https://{}:2379", l.node(n).address))
            .collect(),
        ca: pki.join(format!("{CLUSTER}-etcd-ca.crt")),
        cert: pki.join(format!("{CLUSTER}-operator.crt")),
        key: pki.join(format!("{CLUSTER}-operator.key")),
    }
}

/// No etcd on `node` at all (a refused run changed nothing there).
fn assert_untouched(l: &lab::LabHandle, node: &str) {
    let out = l.ssh_ok(
        node,
        "for p in /usr/local/bin/etcd /opt/etcd /etc/etcd /var/lib/etcd /etc/cairn/owner.json; do \
         test -e $p && echo \"$p exists\"; done; true",
    );
    assert_eq!(out.trim(), "", "{node} was changed");
}

/// etcd stopped and disabled on `node`, its data dir moved aside, not deleted.
fn assert_retired(l: &lab::LabHandle, node: &str) {
    let out = l.ssh_ok(
        node,
        "systemctl is-active etcd; systemctl is-enabled etcd; \
         test -e /var/lib/etcd && echo 'data dir still there'; \
         test -d /var/lib/etcd.removed/member/snap && echo kept; true",
    );
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["inactive", "disabled", "kept"],
        "{node}"
    );
}

#[test]
fn grow_shrink_and_replace_under_load() {
    if lab::skip() {
        return;
    }
    let t0 = Instant::now();
    let l = lab::start(&lab::unique_name("members"), 6);
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let name = l.name.as_str();

    // The cluster: etcd-binary-yaml on node-1..3.
    #[derive(serde::Serialize)]
    struct Inventory<'a> {
        hosts: &'a [cairn::host::Host],
    }
    let three = w.join("three.toml");
    std::fs::write(
        &three,
        toml::to_string(&Inventory {
            hosts: &l.hosts()[..3],
        })
        .unwrap(),
    )
    .unwrap();
    ok(
        w,
        &[
            "run",
            "etcd-binary-yaml",
            "--lab",
            name,
            "--inventory",
            three.to_str().unwrap(),
        ],
    );
    let original = target(&l, w, &["node-1", "node-2", "node-3"]);
    eprintln!("cluster built at {:.0?}", t0.elapsed());

    // ---- 3 -> 5 under load: no failed request -----------------------------
    let load = load::Load::start(original.clone(), 20);
    // an even result is refused, before anything changes
    let refused = cairn(
        w,
        &run_args("etcd-member-add", name, &vars(&["member=node-4"])),
    );
    let r = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{r}");
    assert!(
        r.contains("adding node-4 makes 4 voting members: quorum 3")
            && r.contains("--var step_toward_odd=true"),
        "{r}"
    );
    assert_untouched(&l, "node-4");
    // killed right after the learner was added (before it was journaled)
    let add4 = vars(&["member=node-4", "step_toward_odd=true"]);
    let out = killed_and_resumed(w, &run_args("etcd-member-add", name, &add4), "applied:2");
    assert!(out.contains("4 voting members, verified"), "{out}");
    assert!(
        out.contains("already a learner: node-4") || out.contains("already a learner: https://"),
        "the resumed run found the learner the killed one added:\n{out}"
    );
    // killed right after etcd was started on node-5
    let add5 = vars(&["member=node-5"]);
    let out = killed_and_resumed(w, &run_args("etcd-member-add", name, &add5), "applied:16");
    assert!(out.contains("5 voting members, verified"), "{out}");
    let grow = load.stop();
    let report = &grow;
    eprintln!(
        "load during 3 -> 5: {} requests, {} failed {:?}",
        report.sent,
        report.failed,
        report.first_errors()
    );
    assert!(report.sent > 0);
    assert_eq!(report.failed, 0, "{:?}", report.first_errors());
    report.check_data(&original);
    let five = voting(&["node-1", "node-2", "node-3", "node-4", "node-5"]);
    assert_eq!(members(&l, "node-1"), five);
    assert_eq!(members(&l, "node-5"), five);
    // a rerun plans nothing
    let plan = cairn(
        w,
        &[
            "plan",
            "etcd-member-add",
            "--lab",
            name,
            "--var",
            "member=node-5",
        ],
    );
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    // a sixth member is refused (even), node-6 untouched
    let refused = cairn(
        w,
        &run_args("etcd-member-add", name, &vars(&["member=node-6"])),
    );
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert_untouched(&l, "node-6");
    eprintln!("3 -> 5 done at {:.0?}", t0.elapsed());

    // ---- 5 -> 3 under load, node-5 leading: failures counted --------------
    let id5 = member_id(&l, "node-1", "node-5");
    let all: Vec<String> = ["node-1", "node-2", "node-3", "node-4", "node-5"]
        .iter()
        .map(|n| format!("https://{}:2379", l.node(n).address))
        .collect();
    l.ssh_ok(
        "node-1",
        &format!(
            "etcdctl --endpoints={} --cacert=/etc/etcd/pki/etcd-ca.crt \
             --cert=/etc/etcd/pki/node-1.crt --key=/etc/etcd/pki/node-1.key move-leader {id5}",
            all.join(",")
        ),
    );
    let load = load::Load::start(original.clone(), 20);
    let rm5 = vars(&["member=node-5", "step_toward_odd=true"]);
    let out = ok(w, &run_args("etcd-member-remove", name, &rm5));
    assert!(
        out.contains("~ change etcd leadership to node-1"),
        "leadership moved away first:\n{out}"
    );
    assert!(
        out.contains("- delete etcd member node-5")
            && out.contains("4 of the 4 remaining voting members healthy, quorum 3"),
        "{out}"
    );
    // killed right after the member was removed (before it was journaled);
    // its resume killed right after the data dir was moved (applied 1 stops
    // etcd, 2 moves); the next resume killed while verifying (done 1, 2 read
    // the layout and the members, 3, 4 find etcd stopped and the dir moved, 5
    // verifies the member list, before the health of the rest); then resumed
    // to the end
    let rm4 = vars(&["member=node-4"]);
    let out = killed_again_and_resumed(
        w,
        &run_args("etcd-member-remove", name, &rm4),
        &[
            ("applied:2", "etcd_status"),
            ("applied:2", "systemctl"),
            ("done:5", "etcd_members"),
        ],
    );
    assert!(out.contains("not a member"), "{out}");
    let shrink = load.stop();
    let report = &shrink;
    eprintln!(
        "load during 5 -> 3: {} requests, {} failed {:?}",
        report.sent,
        report.failed,
        report.first_errors()
    );
    assert!(report.sent > 0);
    report.check_data(&original);
    let three_members = voting(&["node-1", "node-2", "node-3"]);
    assert_eq!(members(&l, "node-1"), three_members);
    assert_retired(&l, "node-4");
    assert_retired(&l, "node-5");
    eprintln!("5 -> 3 done at {:.0?}", t0.elapsed());

    // ---- more kill points: node-4 in and out again -------------------------
    // (a re-added member's certificate, files and unit are there already:
    // inside its add, applied step 1 adds the learner, 2 makes the data dir,
    // 3 starts etcd and 4 promotes; inside a removal, 3 stops etcd and 4
    // moves the data dir aside)
    for (add_point, remove_point) in [("applied:3", "applied:3"), ("applied:4", "applied:4")] {
        let out = killed_and_resumed(w, &run_args("etcd-member-add", name, &add4), add_point);
        assert!(
            out.contains("4 voting members, verified"),
            "{add_point}: {out}"
        );
        assert_eq!(
            members(&l, "node-4"),
            voting(&["node-1", "node-2", "node-3", "node-4"]),
            "{add_point}"
        );
        killed_and_resumed(w, &run_args("etcd-member-remove", name, &rm4), remove_point);
        assert_eq!(members(&l, "node-1"), three_members, "{remove_point}");
        assert_retired(&l, "node-4");
    }
    // the earlier data dirs are kept too
    assert_eq!(
        l.ssh_ok("node-4", "ls -d /var/lib/etcd.removed*")
            .split_whitespace()
            .count(),
        3
    );
    eprintln!("kill points done at {:.0?}", t0.elapsed());

    // ---- node-2 powered off for good --------------------------------------
    lab::cairn_lab(&["node", "poweroff", "node-2", "--name", name]);
    // removing a healthy member now would lose quorum: refused, nothing changed
    let refused = cairn(
        w,
        &run_args(
            "etcd-member-remove",
            name,
            &vars(&["member=node-3", "step_toward_odd=true"]),
        ),
    );
    let r = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{r}");
    assert!(
        r.contains("would lose quorum: 1 of the 2 remaining voting members healthy, quorum 2")
            && r.contains("node-2"),
        "{r}"
    );
    assert_eq!(
        l.ssh_ok("node-3", "systemctl is-active etcd").trim(),
        "active"
    );
    // replaced by node-6: killed right after the dead member was removed
    // (applied 1 claims node-6, 2 removes); its resume killed inside the
    // install (1 adds the learner, 2 its certificate, 3 downloads etcd, 4
    // unpacks it, 5 installs the binaries); the next resume killed right
    // after etcd started on node-6 as a learner (1 the etcd user, 2, 3 dirs,
    // 4-6 certificates, 7 etcd.conf, 8 the unit, 9 daemon-reload, 10 start);
    // the next one right after it was promoted (its etcd runs: nothing more
    // to install, 1 promotes); then resumed to the end
    let replace = vars(&["dead=node-2", "member=node-6"]);
    let out = killed_again_and_resumed(
        w,
        &run_args("etcd-member-replace", name, &replace),
        &[
            ("applied:2", "etcd_member_health"),
            ("applied:5", "unpack"),
            ("applied:10", "systemctl"),
            ("applied:1", "etcd_member_health"),
        ],
    );
    assert!(
        out.contains("node-2 is not a member") && out.contains("node-6 has joined already"),
        "the resumes found the dead member removed and node-6's etcd started:\n{out}"
    );
    assert!(
        out.contains("node-2 replaced by node-6") && out.contains("verified"),
        "{out}"
    );
    let after = voting(&["node-1", "node-3", "node-6"]);
    assert_eq!(members(&l, "node-1"), after);
    assert_eq!(members(&l, "node-6"), after);
    let health = l.ssh_ok(
        "node-1",
        "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/pki/etcd-ca.crt \
         --cert=/etc/etcd/pki/node-1.crt --key=/etc/etcd/pki/node-1.key \
         endpoint health --cluster -w table",
    );
    assert_eq!(health.matches(" true ").count(), 3, "{health}");
    assert!(!health.contains(&l.node("node-2").address), "{health}");
    // what the client wrote, read back through the new member
    let six = target(&l, w, &["node-6"]);
    grow.check_data(&six);
    shrink.check_data(&six);
    // a rerun changes nothing
    let out = ok(w, &run_args("etcd-member-replace", name, &replace));
    assert!(
        out.contains("0 created, 0 changed, 0 deleted, 0 ran"),
        "{out}"
    );
    eprintln!("replace done at {:.0?}", t0.elapsed());

    // ---- node-3 loses its data: replaced by itself -------------------------
    l.ssh_ok(
        "node-3",
        "systemctl stop etcd && rm -rf /var/lib/etcd/member && (systemctl start etcd || true)",
    );
    let same = vars(&["dead=node-3", "member=node-3"]);
    let out = ok(w, &run_args("etcd-member-replace", name, &same));
    assert!(
        out.contains("member node-3 is unhealthy")
            && out.contains("- delete etcd member node-3")
            && out.contains("node-3 replaced by node-3"),
        "{out}"
    );
    assert_eq!(members(&l, "node-3"), after);
    assert_eq!(
        l.ssh_ok("node-3", "ls -d /var/lib/etcd.removed /var/lib/etcd/member")
            .split_whitespace()
            .count(),
        2
    );
    let three = target(&l, w, &["node-3"]);
    grow.check_data(&three);
    shrink.check_data(&three);
    let out = ok(w, &run_args("etcd-member-replace", name, &same));
    assert!(
        out.contains("member node-3 is healthy: replaced already"),
        "{out}"
    );
    assert!(
        out.contains("0 created, 0 changed, 0 deleted, 0 ran"),
        "{out}"
    );
    eprintln!("wall time {:.0?}", t0.elapsed());
}
