//! The functions a runbook can call, as registered (names, signatures and
//! the doc comments given at registration): `cairn functions` prints them,
//! and a test fails when one has no documentation.

use crate::engine::{build_engine, ScriptInputs};
use crate::executor::{Executor, ExecutorSetup, Mode};
use crate::report::Reporter;
use crate::runbook::Runbook;
use crate::secrets::Secrets;
use crate::ssh::Pool;
use crate::step::Ctx;
use crate::workspace::Workspace;
use serde::Deserialize;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// One registered function.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Function {
    pub name: String,
    pub signature: String,
    #[serde(default)]
    pub doc_comments: Vec<String>,
}

impl Function {
    /// Property getters, setters, indexers, operators and the `to_string`,
    /// `to_debug` and `print` of handle types: documented with their type,
    /// not one by one.
    pub fn is_accessor(&self) -> bool {
        self.name.starts_with("get$")
            || self.name.starts_with("set$")
            || self.name.starts_with("index$")
            || matches!(
                self.name.as_str(),
                "to_string" | "to_debug" | "print" | "debug"
            )
            || !self
                .name
                .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
    }

    /// The doc comment as text, `///` markers removed.
    pub fn doc(&self) -> String {
        self.doc_comments
            .iter()
            .flat_map(|c| c.lines())
            .map(|l| {
                l.trim_start()
                    .trim_start_matches(crate::registration::DOC_LINE)
                    .trim_start_matches("/**")
                    .trim_end_matches("*/")
            })
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_string()
    }
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    functions: Vec<Function>,
}

/// Every function cairn registers for runbooks (not Rhai's own), sorted by
/// name then signature.
pub fn functions() -> Vec<Function> {
    with_executor(|exec, runbook| {
        let inputs = ScriptInputs {
            hosts: Vec::new(),
            params: Default::default(),
            secret_params: Vec::new(),
            declared: Vec::new(),
            any_group: true,
            max_parallel: crate::fanout::DEFAULT_MAX_PARALLEL,
        };
        let mut all = metadata(&build_engine(exec, runbook, &inputs));
        all.sort_by(|a, b| (&a.name, &a.signature).cmp(&(&b.name, &b.signature)));
        all
    })
}

/// Each primitive family (see [`crate::primitives::FAMILIES`]) with the
/// names of the functions it registers, in registration order.
pub fn family_names() -> Vec<(&'static str, Vec<String>)> {
    with_executor(|exec, _| {
        crate::primitives::FAMILIES
            .iter()
            .map(|(family, register)| {
                let mut engine = rhai::Engine::new_raw();
                register(&mut engine, exec);
                let names = metadata(&engine).into_iter().map(|f| f.name).collect();
                (*family, names)
            })
            .collect()
    })
}

fn metadata(engine: &rhai::Engine) -> Vec<Function> {
    let json = engine
        .gen_fn_metadata_to_json(false)
        .expect("function metadata");
    serde_json::from_str::<Metadata>(&json)
        .expect("function metadata is JSON")
        .functions
}

/// An offline executor to register functions with (nothing runs).
fn with_executor<T>(f: impl FnOnce(&Arc<Executor>, &Arc<Runbook>) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = std::env::temp_dir();
    let workspace = Workspace::new(&dir);
    let runbook = Arc::new(Runbook::builtin("etcd-cert-audit").expect("a shipped runbook"));
    let ctx = Ctx {
        ssh: Pool::new(workspace.known_hosts()),
        workspace,
        http: reqwest::Client::new(),
        bundle: runbook.bundle.clone(),
        env: Default::default(),
    };
    let exec = Arc::new(Executor::new(ExecutorSetup {
        mode: Mode::Offline,
        ctx,
        handle: rt.handle().clone(),
        journal: None,
        replay: Default::default(),
        force: false,
        secrets: Secrets::default(),
        reporter: Arc::new(Reporter::quiet()),
        cancel: Arc::new(AtomicBool::new(false)),
        approved: None,
        limit: None,
    }));
    f(&exec, &runbook)
}

/// `cairn functions [FILTER]`: every function (whose name contains
/// `filter`) with its signature and documentation, as Markdown.
pub fn print(filter: Option<&str>) -> crate::error::Success {
    let mut last = String::new();
    for f in functions()
        .into_iter()
        .filter(|f| !f.is_accessor())
        .filter(|f| filter.is_none_or(|x| f.name.contains(x)))
    {
        let signature = f.signature.split(" -> Result<").next().unwrap_or_default();
        println!("### `{signature}`\n");
        let doc = f.doc();
        if doc != last {
            println!("{doc}\n");
            last = doc;
        }
    }
    crate::error::Success::Done
}
