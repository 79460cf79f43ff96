//! Remote primitives: commands, files, directories, packages, units, downloads
//! and archives on hosts reached over ssh ([`crate::ssh::Pool`]).
//!
//! Each primitive is a [`crate::step::Step`] that gathers the facts it needs in
//! one round trip per host (a small shell script printing what it found),
//! decides actions from them, and applies only what differs.

pub mod file;
pub mod put;
pub mod run;

pub use crate::ssh::CommandOutput as CommandResult;
pub use file::{File, FileArgs, Upload, UploadArgs};
pub use put::FileResult;
pub use run::{Fact, FactOptions, Run, RunOptions};

use crate::args;
use crate::executor::Executor;
use crate::host::Host;
use crate::step::Step;
use rhai::{
    Dynamic, Engine, EvalAltResult, FuncRegistration, ImmutableString, Map, NativeCallContext,
};
use std::sync::Arc;

type Res<T> = Result<T, Box<EvalAltResult>>;

/// A step with a host and an options map, built from Rhai arguments.
fn build<A: serde::de::DeserializeOwned, S: Step>(
    what: &str,
    options: Map,
    make: impl FnOnce(A) -> S,
) -> Res<S> {
    let parsed: A = args::parse(what, options)?;
    Ok(make(parsed))
}

/// Register `name(host, options)` as a step made by `make`.
fn register_step<A, S>(
    engine: &mut Engine,
    exec: &Arc<Executor>,
    name: &'static str,
    params: &[&str],
    doc: &[&str],
    make: fn(Host, A) -> S,
) where
    A: serde::de::DeserializeOwned + 'static,
    S: Step + 'static,
{
    let x = exec.clone();
    FuncRegistration::new(name)
        .with_params_info(params)
        .with_comments(doc)
        .register_into_engine(
            engine,
            move |call: NativeCallContext, host: Host, options: Map| -> Res<S::Output> {
                let step = build(name, options, |a| make(host, a))?;
                x.exec(&call, step)
            },
        );
}

/// Register the `Host` type, the result types and every remote primitive.
pub fn register(engine: &mut Engine, exec: &Arc<Executor>) {
    register_types(engine);

    let x = exec.clone();
    FuncRegistration::new("run")
        .with_params_info(["host: Host", "cmd: &str", "CommandResult"])
        .with_comments([run::DOC_RUN])
        .register_into_engine(
            engine,
            move |call: NativeCallContext,
                  host: Host,
                  cmd: ImmutableString|
                  -> Res<CommandResult> {
                x.exec(&call, Run::new(host, cmd.as_str(), RunOptions::default()))
            },
        );
    let x = exec.clone();
    FuncRegistration::new("run")
        .with_params_info(["host: Host", "cmd: &str", "options: Map", "CommandResult"])
        .with_comments([run::DOC_RUN])
        .register_into_engine(
            engine,
            move |call: NativeCallContext,
                  host: Host,
                  cmd: ImmutableString,
                  options: Map|
                  -> Res<CommandResult> {
                let opts: RunOptions = args::parse("run", options)?;
                x.exec(&call, Run::new(host, cmd.as_str(), opts))
            },
        );
    let x = exec.clone();
    FuncRegistration::new("fact")
        .with_params_info(["host: Host", "cmd: &str", "CommandResult"])
        .with_comments([run::DOC_FACT])
        .register_into_engine(
            engine,
            move |call: NativeCallContext,
                  host: Host,
                  cmd: ImmutableString|
                  -> Res<CommandResult> {
                x.exec(&call, Fact::new(host, cmd.as_str(), FactOptions::default()))
            },
        );
    let x = exec.clone();
    FuncRegistration::new("fact")
        .with_params_info(["host: Host", "cmd: &str", "options: Map", "CommandResult"])
        .with_comments([run::DOC_FACT])
        .register_into_engine(
            engine,
            move |call: NativeCallContext,
                  host: Host,
                  cmd: ImmutableString,
                  options: Map|
                  -> Res<CommandResult> {
                let opts: FactOptions = args::parse("fact", options)?;
                x.exec(&call, Fact::new(host, cmd.as_str(), opts))
            },
        );

    let opts = ["host: Host", "options: Map"];
    register_step(
        engine,
        exec,
        "file",
        &[opts[0], opts[1], "FileResult"],
        &[file::DOC_FILE],
        |host, args| File { host, args },
    );
    register_step(
        engine,
        exec,
        "upload",
        &[opts[0], opts[1], "FileResult"],
        &[file::DOC_UPLOAD],
        |host, args| Upload { host, args },
    );
    register_step(
        engine,
        exec,
        "scp",
        &[opts[0], opts[1], "FileResult"],
        &[file::DOC_UPLOAD],
        |host, args| Upload { host, args },
    );
}

/// `Host` and the result types, with getters and readable printing.
pub fn register_types(engine: &mut Engine) {
    args::register_handle(args::handle_of::<Host>);
    engine
        .register_type_with_name::<Host>("Host")
        .register_get("name", |h: &mut Host| h.name.clone())
        .register_get("address", |h: &mut Host| h.address.clone())
        .register_get("private_address", |h: &mut Host| {
            opt(h.private_address.clone())
        })
        .register_get("internal_address", |h: &mut Host| {
            h.internal_address().to_string()
        })
        .register_get("fqdn", |h: &mut Host| opt(h.fqdn.clone()))
        .register_get("user", |h: &mut Host| h.user.clone())
        .register_get("port", |h: &mut Host| h.port as rhai::INT)
        .register_get("labels", |h: &mut Host| {
            h.labels
                .iter()
                .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
                .collect::<Map>()
        })
        .register_get("groups", |h: &mut Host| {
            h.groups
                .iter()
                .cloned()
                .map(Dynamic::from)
                .collect::<rhai::Array>()
        })
        .register_fn("to_string", |h: &mut Host| host_line(h))
        .register_fn("to_debug", |h: &mut Host| host_line(h));

    engine
        .register_type_with_name::<CommandResult>("CommandResult")
        .register_get("code", |r: &mut CommandResult| r.code as rhai::INT)
        .register_get("stdout", |r: &mut CommandResult| r.stdout.clone())
        .register_get("stderr", |r: &mut CommandResult| r.stderr.clone())
        .register_get("ok", |r: &mut CommandResult| r.code == 0)
        .register_fn("to_string", |r: &mut CommandResult| command_line(r))
        .register_fn("to_debug", |r: &mut CommandResult| command_line(r));

    engine
        .register_type_with_name::<FileResult>("FileResult")
        .register_get("path", |r: &mut FileResult| r.path.clone())
        .register_get("changed", |r: &mut FileResult| r.changed)
        .register_get("created", |r: &mut FileResult| r.created)
        .register_fn("to_string", |r: &mut FileResult| r.to_string())
        .register_fn("to_debug", |r: &mut FileResult| r.to_string());
}

fn opt(value: Option<String>) -> Dynamic {
    value.map(Dynamic::from).unwrap_or(Dynamic::UNIT)
}

fn host_line(h: &Host) -> String {
    if h.port == 22 {
        format!("{} ({}@{})", h.name, h.user, h.address)
    } else {
        format!("{} ({}@{}:{})", h.name, h.user, h.address, h.port)
    }
}

fn command_line(r: &CommandResult) -> String {
    format!("exit {}: {}", r.code, crate::ssh::tail(&r.stdout, 200))
}
