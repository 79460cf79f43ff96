//! Every function a runbook can call is documented where it is registered
//! (its doc comment is what `cairn functions` prints), and named in the
//! reference under docs/.

mod common;

use cairn::reference::functions;
use common::Cairn;

#[test]
fn every_registered_function_has_a_doc_comment() {
    let all = functions();
    assert!(
        all.iter().any(|f| f.name == "etcd_health"),
        "the list holds cairn's functions: {:?}",
        all.iter().map(|f| &f.name).collect::<Vec<_>>()
    );
    let missing: Vec<String> = all
        .iter()
        .filter(|f| !f.is_accessor() && f.doc().is_empty())
        .map(|f| f.signature.clone())
        .collect();
    assert!(
        missing.is_empty(),
        "{} registered function(s) without a doc comment (register them with \
         rhai::FuncRegistration::with_comments):\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}

#[test]
fn every_registered_function_is_named_in_the_docs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(root.join("docs/authoring.md")).unwrap();
    for e in std::fs::read_dir(root.join("docs/primitives")).unwrap() {
        text += &std::fs::read_to_string(e.unwrap().path()).unwrap();
    }
    let mut missing: Vec<String> = functions()
        .into_iter()
        .filter(|f| !f.is_accessor())
        .map(|f| f.name)
        .filter(|name| {
            !text.contains(&format!("`{name}("))
                && !text.contains(&format!("`{name}`"))
                && !text.contains(&format!(".{name}("))
        })
        .collect();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "function(s) named nowhere in docs/authoring.md or docs/primitives/: {}",
        missing.join(", ")
    );
}

#[test]
fn cairn_functions_prints_a_function_with_its_documentation() {
    let out = Cairn::detached()
        .args(["functions", "etcd_move_leader"])
        .output();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("### `etcd_move_leader(args: Map) -> String`\n\nHand raft leadership"),
        "{text}"
    );
    assert!(!text.contains("### `etcd_member("), "{text}");
}
