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
         `cairn::registration::function!` and a doc comment):\n  {}",
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

/// `docs/primitives/` is what `cairn docs` generates now: a changed doc
/// comment or a new function needs `CAIRN_BLESS=1 cargo test --test
/// functions` (or `cairn docs`), and the diff reviewed like a golden plan.
#[test]
fn committed_primitive_docs_are_what_cairn_docs_generates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("docs/primitives");
    let pages = cairn::docs::pages(root);
    assert!(
        pages.contains_key("etcd.md") && pages.contains_key("remote.md"),
        "one page per family: {:?}",
        pages.keys().collect::<Vec<_>>()
    );
    if std::env::var_os("CAIRN_BLESS").is_some() {
        for e in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        for (name, text) in &pages {
            std::fs::write(dir.join(name), text).unwrap();
        }
        return;
    }
    let mut committed = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        committed.insert(name, std::fs::read_to_string(&p).unwrap());
    }
    let stale: std::collections::BTreeSet<&String> = pages
        .keys()
        .chain(committed.keys())
        .filter(|name| pages.get(*name) != committed.get(*name))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/primitives/ differs from what `cairn docs` generates in {stale:?}; \
         run `CAIRN_BLESS=1 cargo test --test functions` and review the diff"
    );
}

/// Every function enters the engine through `cairn::registration::register`
/// (name, parameters, doc comment): no other file builds a registration.
#[test]
fn functions_are_registered_in_one_place() {
    fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, found);
            } else if p.extension().is_some_and(|x| x == "rs")
                && std::fs::read_to_string(&p)
                    .unwrap()
                    .contains("FuncRegistration::new")
            {
                found.push(p.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut found = Vec::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["src", "crates/cairn/src", "crates/cairn-lab/src"] {
        walk(&root.join(dir), &mut found);
    }
    assert_eq!(
        found,
        ["registration.rs"],
        "files that call FuncRegistration::new"
    );
}

/// A runbook function's doc is written as Rust doc comments (`///` lines that
/// rustdoc shows too), which `registration::function!` and `documented!` turn
/// into Rhai's doc metadata; never as a string holding `///` lines, which
/// rustdoc does not see. Fails naming each string literal under crates/ whose
/// text starts with three slashes and goes on (also after a `\` line
/// continuation); the bare marker `"///"` the macros put before each line is
/// not doc text.
#[test]
fn docs_are_doc_comments_not_strings() {
    fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    walk(&p, found);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for (at, _) in text.match_indices('"') {
                    let rest = &text[at + 1..];
                    let rest = match rest.strip_prefix("\\\n") {
                        Some(r) => r.trim_start(),
                        None => rest,
                    };
                    if rest.starts_with("///") && !rest.starts_with("///\"") {
                        let line = text[..at].matches('\n').count() + 1;
                        found.push(format!("{}:{line}", p.display()));
                    }
                }
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    walk(&root.join("crates"), &mut found);
    assert!(
        found.is_empty(),
        "doc text written as a string of `///` lines (write doc comments in \
         `registration::function!` or `registration::documented!` instead):\n  {}",
        found.join("\n  ")
    );
}
