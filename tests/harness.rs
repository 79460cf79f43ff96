//! The harness's environment policy (`tests/common/mod.rs`), checked through
//! the real binary: a developer's `CAIRN_*`, cloud tokens and `SSH_AUTH_SOCK`
//! never reach a `cairn` child; a test's own `Cairn::env` does; the state
//! folder is `.cairn` in the test's workspace.

mod common;

use common::{text, Cairn};

/// Variables a developer may have set, with values a child must not see.
const LEAKS: [(&str, &str); 5] = [
    ("CAIRN_STATE_DIR", "/nonexistent/cairn-harness-leak"),
    ("CAIRN_FAULT_KILL", "done:1"),
    ("HCLOUD_TOKEN", "harness-leak-token"),
    ("DIGITALOCEAN_TOKEN", "harness-leak-token"),
    ("SSH_AUTH_SOCK", "/nonexistent/agent.sock"),
];

const SCRIPT: &str = r#"
for name in ["CAIRN_STATE_DIR", "CAIRN_FAULT_KILL", "HCLOUD_TOKEN", "DIGITALOCEAN_TOKEN", "SSH_AUTH_SOCK", "HARNESS_SET_BY_TEST"] {
    print(`${name} ${if env(name) == () { "unset" } else { "set" }}`);
}
"#;

/// The only test of this binary: it sets the process environment, which
/// the harness must keep from the child.
#[test]
fn a_developers_environment_never_reaches_cairn() {
    for (k, v) in LEAKS {
        std::env::set_var(k, v);
    }
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    std::fs::create_dir_all(w.join("rb")).unwrap();
    std::fs::write(
        w.join("rb/runbook.toml"),
        "name = \"rb\"\nversion = \"0.1.0\"\ndescription = \"prints what it sees\"\n",
    )
    .unwrap();
    std::fs::write(w.join("rb/main.rhai"), SCRIPT).unwrap();

    let out = Cairn::new(w)
        .args(["run", "rb"])
        .env("HARNESS_SET_BY_TEST", "1")
        .output();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    // `set` or `unset`, as the runbook saw them
    for (k, _) in LEAKS {
        let want = if k == "CAIRN_STATE_DIR" {
            "set"
        } else {
            "unset"
        };
        assert!(t.contains(&format!("{k} {want}\n")), "{k}: {t}");
    }
    assert!(t.contains("HARNESS_SET_BY_TEST set\n"), "{t}");
    // the state folder is the workspace's, not the developer's
    assert!(
        w.join(".cairn/runs").is_dir(),
        "no run journal in {w:?}: {t}"
    );
    assert!(!std::path::Path::new(LEAKS[0].1).exists());
}
