//! Remote primitives: commands, files, directories, packages, units, downloads
//! and archives on hosts reached over ssh ([`crate::ssh::Pool`]).
//!
//! Each primitive is a [`crate::step::Step`] that gathers the facts it needs in
//! one round trip per host (a small shell script printing what it found),
//! decides actions from them, and applies only what differs.

pub mod apt;
pub mod dir;
pub mod download;
pub mod fetch;
pub mod file;
pub mod put;
pub mod run;
pub mod systemctl;
pub mod unpack;

pub use crate::ssh::CommandOutput as CommandResult;
pub use apt::{Apt, AptArgs, AptResult, AptUpdate};
pub use dir::{Dir, DirArgs};
pub use download::{Download, DownloadArgs};
pub use fetch::{Fetch, FetchArgs, FetchResult};
pub use file::{File, FileArgs, Upload, UploadArgs};
pub use put::FileResult;
pub use run::{Fact, FactOptions, Run, RunOptions};
pub use systemctl::{Systemctl, SystemctlArgs, UnitResult};
pub use unpack::{Unpack, UnpackArgs};

use crate::args;
use crate::executor::Executor;
use crate::host::Host;
use crate::registration::Documented;
use crate::step::Step;
use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map, NativeCallContext};
use std::sync::Arc;

type Res<T> = Result<T, Box<EvalAltResult>>;

/// A step with a host and an options map, built from Rhai arguments.
fn build<A: serde::de::DeserializeOwned, S: Step>(
    call: &NativeCallContext,
    what: &str,
    options: Map,
    make: impl FnOnce(A) -> S,
) -> Res<S> {
    let parsed: A = args::parse(call, what, options)?;
    Ok(make(parsed))
}

/// Register `name(host, options)` as a step made by `make`, documented by
/// the step's doc comment; `result` is the result type `cairn docs` shows.
fn register_step<A, S>(
    engine: &mut Engine,
    exec: &Arc<Executor>,
    name: &'static str,
    result: &str,
    make: fn(Host, A) -> S,
) where
    A: serde::de::DeserializeOwned + 'static,
    S: Step + Documented + 'static,
{
    let x = exec.clone();
    crate::registration::register(
        engine,
        name,
        ["host: Host", "options: Map", result],
        S::DOC,
        move |call: NativeCallContext, host: Host, options: Map| -> Res<S::Output> {
            let step = build(&call, name, options, |a| make(host, a))?;
            x.exec(&call, step)
        },
    );
}

/// Register the result types and every remote primitive.
pub fn register(engine: &mut Engine, exec: &Arc<Executor>) {
    register_types(engine);

    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "run"("host: Host", "cmd: &str") -> "CommandResult" as run::DOC_RUN =
        move |call: NativeCallContext, host: Host, cmd: ImmutableString| -> Res<CommandResult> {
            x.exec(&call, Run::new(host, cmd.as_str(), RunOptions::default()))
        }
    );
    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "run"("host: Host", "cmd: &str", "options: Map") -> "CommandResult" as run::DOC_RUN =
        move |call: NativeCallContext,
              host: Host,
              cmd: ImmutableString,
              options: Map|
              -> Res<CommandResult> {
            let opts: RunOptions = args::parse(&call, "run", options)?;
            x.exec(&call, Run::new(host, cmd.as_str(), opts))
        }
    );
    // ---- connect(hosts): ssh connections opened in the background ----
    let x = exec.clone();
    crate::registration::function!(
        engine,
        /// Start opening the ssh connections to `hosts` in the background and return
        /// at once, so the first step on each host does not wait for its handshake
        /// (make certificates or call cloud APIs meanwhile). Not a step: nothing is
        /// planned or journaled. A host that cannot be reached is reported by its
        /// first step, as without `connect`. Opens at most as many connections as the
        /// run's cap on connections leaves room for (`CAIRN_SSH_MAX_MASTERS`); the
        /// others open when their host's first step runs. Does nothing in an offline
        /// plan.
        ///
        /// ```rhai
        /// connect(hosts());
        /// ```
        fn "connect"("hosts: Array") -> "()" =
        move |hosts: rhai::Array| {
            if x.mode() == crate::executor::Mode::Offline {
                return;
            }
            for host in hosts.into_iter().filter_map(|h| h.try_cast::<Host>()) {
                let y = x.clone();
                x.handle()
                    .spawn(async move { y.ctx().ssh.open_early(&host).await });
            }
        }
    );
    crate::registration::function!(
        engine,
        fn "apt_upstream_version"("version: &str") -> "String" as apt::DOC_UPSTREAM =
        |version: ImmutableString| -> String { apt::upstream_version(&version).to_string() }
    );
    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "fact"("host: Host", "cmd: &str") -> "CommandResult" as run::DOC_FACT =
        move |call: NativeCallContext, host: Host, cmd: ImmutableString| -> Res<CommandResult> {
            x.exec(&call, Fact::new(host, cmd.as_str(), FactOptions::default()))
        }
    );
    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "fact"("host: Host", "cmd: &str", "options: Map") -> "CommandResult" as run::DOC_FACT =
        move |call: NativeCallContext,
              host: Host,
              cmd: ImmutableString,
              options: Map|
              -> Res<CommandResult> {
            let opts: FactOptions = args::parse(&call, "fact", options)?;
            x.exec(&call, Fact::new(host, cmd.as_str(), opts))
        }
    );

    register_argv(engine, exec);

    // `name(host, options)`: runbook name, result type, step (documented by
    // its struct's doc comment), built as `Step { host, args: options }`.
    macro_rules! steps {
        ($($name:literal -> $result:literal: $step:ident,)*) => {$(
            register_step(engine, exec, $name, $result, |host, args| $step { host, args });
        )*};
    }
    steps! {
        "file" -> "FileResult": File,
        "upload" -> "FileResult": Upload,
        "scp" -> "FileResult": Upload,
        "dir" -> "FileResult": Dir,
        "apt" -> "AptResult": Apt,
        "systemctl" -> "UnitResult": Systemctl,
        "download" -> "FileResult": Download,
        "fetch" -> "FetchResult": Fetch,
        "unpack" -> "FileResult": Unpack,
    }
}

/// An argument list from Rhai as one shell line (see [`run::argv_line`]):
/// strings and integers; anything else is an error naming the item.
fn argv_of(what: &str, argv: rhai::Array) -> Res<String> {
    let mut words = Vec::with_capacity(argv.len());
    for (i, item) in argv.into_iter().enumerate() {
        if item.is_string() {
            words.push(item.into_string().unwrap_or_default());
        } else if item.is_int() {
            words.push(item.as_int().unwrap_or_default().to_string());
        } else {
            return Err(format!(
                "{what}: item {i} of the command list is {}, not a string",
                item.type_name()
            )
            .into());
        }
    }
    run::argv_line(words).map_err(|e| format!("{what}: bad command list: {e}").into())
}

/// `run(host, [argv...])`, `fact(host, [argv...])` and their forms with
/// options: each item is one argument, whatever it holds.
fn register_argv(engine: &mut Engine, exec: &Arc<Executor>) {
    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "run"("host: Host", "argv: Array") -> "CommandResult" as run::DOC_RUN_ARGV =
        move |call: NativeCallContext, host: Host, argv: rhai::Array| -> Res<CommandResult> {
            let line = argv_of("run", argv)?;
            x.exec(&call, Run::new(host, &line, RunOptions::default()))
        }
    );
    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "run"("host: Host", "argv: Array", "options: Map") -> "CommandResult"
            as run::DOC_RUN_ARGV =
        move |call: NativeCallContext,
              host: Host,
              argv: rhai::Array,
              options: Map|
              -> Res<CommandResult> {
            let line = argv_of("run", argv)?;
            let opts: RunOptions = args::parse(&call, "run", options)?;
            x.exec(&call, Run::new(host, &line, opts))
        }
    );
    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "fact"("host: Host", "argv: Array") -> "CommandResult" as run::DOC_FACT_ARGV =
        move |call: NativeCallContext, host: Host, argv: rhai::Array| -> Res<CommandResult> {
            let line = argv_of("fact", argv)?;
            x.exec(&call, Fact::new(host, &line, FactOptions::default()))
        }
    );
    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "fact"("host: Host", "argv: Array", "options: Map") -> "CommandResult"
            as run::DOC_FACT_ARGV =
        move |call: NativeCallContext,
              host: Host,
              argv: rhai::Array,
              options: Map|
              -> Res<CommandResult> {
            let line = argv_of("fact", argv)?;
            let opts: FactOptions = args::parse(&call, "fact", options)?;
            x.exec(&call, Fact::new(host, &line, opts))
        }
    );
}

/// The result types, with getters and readable printing. (`Host` itself is
/// registered by the engine; it is made usable inside argument maps here too.)
pub fn register_types(engine: &mut Engine) {
    engine
        .build_type::<CommandResult>()
        .register_get("code", |r: &mut CommandResult| r.code as rhai::INT)
        .register_get("ok", |r: &mut CommandResult| r.code == 0)
        .register_fn("to_string", |r: &mut CommandResult| command_line(r))
        .register_fn("to_debug", |r: &mut CommandResult| command_line(r));

    engine
        .build_type::<FileResult>()
        .register_fn("to_string", |r: &mut FileResult| r.to_string())
        .register_fn("to_debug", |r: &mut FileResult| r.to_string());

    engine
        .build_type::<FetchResult>()
        .register_get("size", |r: &mut FetchResult| r.size as i64)
        .register_fn("to_string", |r: &mut FetchResult| r.to_string())
        .register_fn("to_debug", |r: &mut FetchResult| r.to_string());

    engine
        .build_type::<AptResult>()
        .register_get("installed", |r: &mut AptResult| {
            r.installed
                .iter()
                .cloned()
                .map(Dynamic::from)
                .collect::<rhai::Array>()
        })
        .register_get("versions", |r: &mut AptResult| {
            r.versions
                .iter()
                .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
                .collect::<Map>()
        })
        .register_fn("to_string", |r: &mut AptResult| r.to_string())
        .register_fn("to_debug", |r: &mut AptResult| r.to_string());

    engine
        .build_type::<UnitResult>()
        .register_fn("to_string", |r: &mut UnitResult| r.to_string())
        .register_fn("to_debug", |r: &mut UnitResult| r.to_string());
}

fn command_line(r: &CommandResult) -> String {
    format!("exit {}: {}", r.code, crate::ssh::tail(&r.stdout, 200))
}
