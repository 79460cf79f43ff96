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
