//! Every shipped runbook, stdlib module and example compiles and has a valid
//! manifest; the stdlib's helpers compute what they promise.

mod common;

use common::Cairn;
use std::path::Path;

fn folders(dir: &str) -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

#[test]
fn every_example_and_shipped_runbook_checks() {
    let mut checked = 0;
    for dir in folders("examples").into_iter().chain(folders("runbooks")) {
        let rb = cairn::runbook::Runbook::folder(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let n = cairn::catalog::check_runbook(&rb).unwrap_or_else(|e| panic!("{e}"));
        assert!(n > cairn::runbook::stdlib_modules().len());
        // `cairn check` also runs the script offline, with placeholders
        let steps = cairn::launch::check_offline(rb).unwrap_or_else(|e| panic!("{e}"));
        assert!(steps > 0, "{}: no step planned", dir.display());
        assert!(
            dir.join("README.md").exists(),
            "{} has no README.md",
            dir.display()
        );
        checked += 1;
    }
    assert!(checked >= 4, "examples missing");
}

#[test]
fn shipped_runbooks_are_embedded_and_match_their_folders() {
    for dir in folders("runbooks") {
        let name = dir.file_name().unwrap().to_str().unwrap();
        let embedded = cairn::runbook::Runbook::builtin(name).unwrap();
        let disk = cairn::runbook::Runbook::folder(&dir).unwrap();
        assert_eq!(
            embedded.manifest.name, name,
            "folder and manifest name differ"
        );
        assert_eq!(embedded.script, disk.script);
    }
}

#[test]
fn stdlib_modules_compile() {
    let engine = cairn::engine::compile_engine();
    let modules = cairn::runbook::stdlib_modules();
    assert!(modules.iter().any(|(n, _)| n == "stdlib/etcd.rhai"));
    for (name, text) in modules {
        engine
            .compile(text)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn stdlib_etcd_helpers() {
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("rb");
    std::fs::create_dir_all(&rb).unwrap();
    std::fs::write(
        rb.join("runbook.toml"),
        "name = \"s\"\nversion = \"0.1.0\"\ndescription = \"d\"\n",
    )
    .unwrap();
    std::fs::write(
        rb.join("main.rhai"),
        r#"
import "etcd" as etcd;
let m = [#{ name: "a", address: "10.0.0.1" }, #{ name: "b", address: "10.0.0.2" }, #{ name: "c", address: "10.0.0.3" }];
print(etcd::initial_cluster(m));
print(etcd::endpoints(m));
print(etcd::node_names("node", 3));
etcd::check_cluster_size(3);
etcd::check_cluster_size(6);
"#,
    )
    .unwrap();
    let o = Cairn::new(dir.path()).args(["plan", "rb"]).output();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        out.contains("a=https://10.0.0.1:2380,b=https://10.0.0.2:2380,c=https://10.0.0.3:2380"),
        "{out}{err}"
    );
    assert!(
        out.contains(
            "[\"https://10.0.0.1:2379\", \"https://10.0.0.2:2379\", \"https://10.0.0.3:2379\"]"
        ),
        "{out}"
    );
    assert!(
        out.contains("[\"node-1\", \"node-2\", \"node-3\"]"),
        "{out}"
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("a cluster of 6 members is refused: quorum is 4, so it tolerates only 2 failed member(s), the same as 5 members"), "{err}");
    assert!(err.contains("--> stdlib/etcd.rhai:"), "{err}");
    assert!(
        err.contains("= in call to `check_cluster_size` at rb/main.rhai:8:7"),
        "{err}"
    );
}

#[test]
fn stdlib_etcd_check_version_refuses_3_5_0_to_3_5_2_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("rb");
    std::fs::create_dir_all(&rb).unwrap();
    std::fs::write(
        rb.join("runbook.toml"),
        "name = \"s\"\nversion = \"0.1.0\"\ndescription = \"d\"\n",
    )
    .unwrap();
    let plan = |script: &str| {
        std::fs::write(rb.join("main.rhai"), script).unwrap();
        let o = Cairn::new(dir.path()).args(["plan", "rb"]).output();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // Passed: later 3.5 releases, other series, suffixes after a safe patch.
    let (code, out, err) = plan(
        r#"
import "etcd" as etcd;
for v in ["3.5.3", "v3.5.30", "3.5.16", "3.4.23", "v3.6.0", "3.5.10-rc.0", "v3.4.1"] {
    etcd::check_version(v, false);
    print(`passed ${v}`);
}
"#,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.matches("passed ").count(), 7, "{out}{err}");
    assert!(!out.contains("warning"), "{out}");
    // Refused, each of them, with the reason and the way out.
    for v in ["3.5.0", "v3.5.1", "3.5.2", "v3.5.2-rc.1"] {
        let (code, out, err) = plan(&format!(
            "import \"etcd\" as etcd;\netcd::check_version(\"{v}\", false);\nprint(\"not refused\");\n"
        ));
        assert_eq!(code, Some(1), "{v}: {out}{err}");
        assert!(!out.contains("not refused"), "{v}: {out}");
        let bare = v.trim_start_matches('v');
        assert!(
            err.contains(&format!(
                "etcd {bare} is refused: 3.5.0-3.5.2 can become inconsistent after a crash (etcd-io/etcd#13766)"
            )),
            "{v}: {err}"
        );
        assert!(
            err.contains("or --var allow_unsafe_version=true to install it anyway"),
            "{v}: {err}"
        );
        assert!(
            err.contains("= in call to `check_version` at rb/main.rhai:2:7"),
            "{v}: {err}"
        );
    }
    // Allowed explicitly: a warning, and the script goes on.
    let (code, out, err) = plan(
        "import \"etcd\" as etcd;\netcd::check_version(\"v3.5.1\", true);\nprint(\"went on\");\n",
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("warning: etcd 3.5.1 is unfit for production"),
        "{out}{err}"
    );
    assert!(out.contains("went on"), "{out}");
}

// ---- stdlib/etcd.rhai: the helpers the building runbooks share ----------

/// `cairn plan rb [extra...]` of a one-file runbook `script`, in a fresh
/// workspace (with a one-host inventory `hosts.toml`): (exit code, stdout, stderr).
fn plan_script(script: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("rb");
    std::fs::create_dir_all(&rb).unwrap();
    std::fs::write(
        rb.join("runbook.toml"),
        "name = \"s\"\nversion = \"0.1.0\"\ndescription = \"d\"\n",
    )
    .unwrap();
    std::fs::write(rb.join("main.rhai"), script).unwrap();
    std::fs::write(
        dir.path().join("hosts.toml"),
        "[[hosts]]\nname = \"node-1\"\naddress = \"10.9.0.11\"\n",
    )
    .unwrap();
    let o = Cairn::new(dir.path())
        .args(["plan", "rb"])
        .args(extra)
        .output();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const SUMS: &str = r#"
import "etcd" as etcd;
let a = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
let b = "FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210";
let r = etcd::release("http://mirror.test//", "3.5.30");
"#;

#[test]
fn stdlib_etcd_release_sha256_has_one_behaviour() {
    // the release folder, with or without `v` and trailing slashes
    let (code, out, err) = plan_script(
        &format!(
            r#"{SUMS}
print(`url=${{r.url}} version=${{r.version}}`);
print(`same=${{etcd::release("https://github.com", "v3.5.30") == #{{ url: "https://github.com/etcd-io/etcd/releases/download/v3.5.30", version: "3.5.30" }}}}`);
// sha256sum's text and binary (`*`) lines; a file listed twice with one hash
let sums = a + "  etcd-v3.5.30-linux-amd64.tar.gz\n" + b + " *etcd-v3.5.30-linux-arm64.tar.gz\n\n" + a + "  etcd-v3.5.30-linux-amd64.tar.gz\n";
print(`amd64=${{etcd::sha256_listed(sums, r, "etcd-v3.5.30-linux-amd64.tar.gz")}}`);
print(`arm64=${{etcd::sha256_listed(sums, r, "etcd-v3.5.30-linux-arm64.tar.gz")}}`);
// a sha256 given by the runbook's parameter wins; no host is asked
print(`given=${{etcd::release_sha256((), r, "etcd-v3.5.30-linux-amd64.tar.gz", b)}}`);
"#
        ),
        &[],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let a = "0123456789abcdef".repeat(4);
    let b = "FEDCBA9876543210".repeat(4);
    for line in [
        "url=http://mirror.test/etcd-io/etcd/releases/download/v3.5.30 version=3.5.30".to_string(),
        "same=true".into(),
        format!("amd64={a}"),
        format!("arm64={}", b.to_lowercase()),
        format!("given={b}"),
    ] {
        assert!(out.contains(&line), "`{line}` missing in:\n{out}{err}");
    }

    // a missing entry, two hashes for one file, a malformed hash: errors that
    // name the file, the SHA256SUMS URL and the version, at the call site
    let listing =
        "http://mirror.test/etcd-io/etcd/releases/download/v3.5.30/SHA256SUMS (etcd 3.5.30)";
    for (sums, problem) in [
        (
            r#"a + "  etcd-v3.5.30-linux-amd64.tar.gz\n""#,
            "lists no etcd-v3.5.30-linux-ppc64le.tar.gz".to_string(),
        ),
        (
            r#"a + "  etcd-v3.5.30-linux-ppc64le.tar.gz\n" + b + "  etcd-v3.5.30-linux-ppc64le.tar.gz\n""#,
            format!(
                "lists etcd-v3.5.30-linux-ppc64le.tar.gz twice, with different sha256 ({a} and {})",
                b.to_lowercase()
            ),
        ),
        (
            r#""abc123  etcd-v3.5.30-linux-ppc64le.tar.gz\n""#,
            "lists etcd-v3.5.30-linux-ppc64le.tar.gz with abc123, which is not a sha256 (64 hex digits)".to_string(),
        ),
    ] {
        let (code, out, err) = plan_script(
            &format!(
                "{SUMS}etcd::sha256_listed({sums}, r, \"etcd-v3.5.30-linux-ppc64le.tar.gz\");\nprint(\"not refused\");\n"
            ),
            &[],
        );
        assert_eq!(code, Some(1), "{problem}: {out}{err}");
        assert!(!out.contains("not refused"), "{out}");
        assert!(
            err.contains(&format!("error: {listing} {problem}")),
            "{problem}:\n{err}"
        );
        assert!(
            err.contains("= in call to `sha256_listed` at rb/main.rhai:6:7"),
            "{err}"
        );
    }
}

#[test]
fn stdlib_etcd_restart_if_changed_restarts_only_after_a_change() {
    let (code, out, err) = plan_script(
        r#"
import "etcd" as etcd;
let h = hosts()[0];
let a = etcd::restart_if_changed(h, "unit-a", [#{ changed: false }, false]);
let b = etcd::restart_if_changed(h, "unit-b", [#{ changed: false }, true]);
let c = etcd::restart_if_changed(h, "unit-c", [#{ changed: true }]);
print(`returns ${type_of(a)}`);
"#,
        &["--offline", "--inventory", "hosts.toml"],
    );
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.contains("returns UnitResult"), "{out}");
    assert!(out.contains("~ change start unit unit-a"), "{out}");
    assert!(!out.contains("restart unit unit-a"), "{out}");
    assert!(out.contains("> run restart unit unit-b"), "{out}");
    assert!(out.contains("> run restart unit unit-c"), "{out}");
    assert!(!out.contains("change start unit unit-b"), "{out}");
}

#[test]
fn stdlib_etcd_verify_refuses_bad_options() {
    for (args, error) in [
        (
            "#{ member: [], ca: 1, cert: 2 }",
            "verify: unknown option `member`; expected one of: members, hosts, ca, cert, write_cert, read_cert, health_certs, wait_seconds",
        ),
        (
            r#"#{ members: [#{ name: "a", address: "10.0.0.1" }], cert: 2 }"#,
            "verify: option `ca` is required",
        ),
        ("#{ members: [], ca: 1, cert: 2 }", "verify: `members` is empty"),
        (
            r#"#{ members: [#{ name: "a", address: "10.0.0.1" }], hosts: [1, 2], ca: 1, cert: 2 }"#,
            "verify: 1 member(s) and 2 host(s): give one host per member",
        ),
        (
            r#"#{ members: [#{ name: "a", address: "10.0.0.1" }], health_certs: [], ca: 1, cert: 2 }"#,
            "verify: 0 health_certs for 1 members: give one per member",
        ),
    ] {
        let (code, out, err) = plan_script(
            &format!("import \"etcd\" as etcd;\netcd::verify({args});\n"),
            &[],
        );
        assert_eq!(code, Some(1), "{args}: {out}{err}");
        assert!(err.contains(&format!("error: {error}")), "{args}:\n{err}");
        assert!(
            err.contains("= in call to `verify` at rb/main.rhai:2:7"),
            "{err}"
        );
    }
}
