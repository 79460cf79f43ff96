//! `build_engine`: the one Rhai engine used by the CLI and by tests.
//!
//! It registers every primitive family, the core functions (`hosts`, `on`,
//! `env`, `fail`), resolves `import "etcd"` from the embedded stdlib and
//! `import "./x"` from the runbook's folder, sets limits, and stops a script
//! when Ctrl-C is pressed.

use crate::executor::{script_error, Executor};
use crate::host::Host;
use crate::runbook::{stdlib_module, Runbook};
use crate::secrets::{Secrets, MASK};
use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FnPtr, ImmutableString, Map, Module, ModuleResolver,
    NativeCallContext, Position, Scope, Shared,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A `secret` parameter's value: prints as `********`; `reveal()` gives the text.
#[derive(Clone)]
pub struct Secret(pub Arc<str>);

/// What a script sees besides primitives.
pub struct ScriptInputs {
    pub hosts: Vec<Host>,
    pub params: BTreeMap<String, toml::Value>,
    /// Names of parameters whose values are secret.
    pub secret_params: Vec<String>,
    /// Every parameter the manifest declares (reading another is an error).
    pub declared: Vec<String>,
    /// `cairn check`: the hosts are placeholders that stand for any group.
    pub any_group: bool,
    /// How many hosts an `on(...)` runs at once unless it says (`max_parallel`).
    pub max_parallel: usize,
}

/// Options of `hosts(...)`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsOptions {
    /// An empty selection is fine (default: an error).
    #[serde(default)]
    allow_empty: bool,
}

/// The hosts of `group` (all hosts: `None`); empty is an error unless allowed.
fn select_hosts(
    context: &NativeCallContext,
    all: &[Host],
    group: Option<&str>,
    any_group: bool,
    options: Map,
) -> Result<Array, Box<EvalAltResult>> {
    let call = match group {
        Some(g) => format!("hosts({g:?})"),
        None => "hosts()".to_string(),
    };
    let options: HostsOptions = crate::args::parse(context, &call, options)?;
    let picked: Array = all
        .iter()
        .filter(|h| match group {
            Some(g) => any_group || h.groups.iter().any(|x| x == g),
            None => true,
        })
        .cloned()
        .map(Dynamic::from)
        .collect();
    if picked.is_empty() && !options.allow_empty {
        let why = match group {
            _ if all.is_empty() => {
                "the inventory has no hosts (give --inventory FILE or --lab)".to_string()
            }
            Some(g) => {
                let mut groups: Vec<&str> = all
                    .iter()
                    .flat_map(|h| h.groups.iter().map(String::as_str))
                    .collect();
                groups.sort();
                groups.dedup();
                format!(
                    "no host of the inventory is in group `{g}` (its groups: {})",
                    if groups.is_empty() {
                        "none".to_string()
                    } else {
                        groups.join(", ")
                    }
                )
            }
            None => unreachable!("all hosts are picked"),
        };
        let allow = match group {
            Some(g) => format!("hosts({g:?}, #{{ allow_empty: true }})"),
            None => "hosts(#{ allow_empty: true })".to_string(),
        };
        return Err(script_error(format!(
            "{call} selects no host: {why}; if that is fine, say so with {allow}"
        )));
    }
    Ok(picked)
}

struct Resolver {
    runbook: Arc<Runbook>,
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let not_found = || Box::new(EvalAltResult::ErrorModuleNotFound(path.into(), pos));
        let escapes = || {
            Box::new(EvalAltResult::ErrorRuntime(
                format!(
                    "module path `{path}` escapes the runbook folder \
                     (import the runbook's own modules as `./NAME`, from inside it)"
                )
                .into(),
                pos,
            ))
        };
        if path.starts_with('/') || path == ".." || path.starts_with("../") {
            return Err(escapes());
        }
        let (name, text) = if let Some(rel) = path.strip_prefix("./") {
            let rel = format!("{rel}.rhai");
            crate::bundle::Bundle::check_path(&rel).map_err(|_| escapes())?;
            let bytes = self.runbook.bundle.read(&rel).map_err(|_| not_found())?;
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| not_found())?;
            (rel, text)
        } else {
            let text = stdlib_module(path).ok_or_else(not_found)?;
            (format!("stdlib/{path}.rhai"), text.to_string())
        };
        let mut ast = engine.compile(&text).map_err(|e| {
            Box::new(EvalAltResult::ErrorInModule(
                name.clone(),
                Box::new(e.into()),
                pos,
            ))
        })?;
        ast.set_source(name.clone());
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(name, e, pos)))?;
        Ok(module.into())
    }
}

fn to_dynamic(v: &toml::Value) -> Dynamic {
    rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT)
}

/// An engine with cairn's limits and nothing registered: for compiling only
/// (`cairn check`, syntax checks before a run). `build_engine` starts from it.
pub fn compile_engine() -> Engine {
    let mut engine = Engine::new();
    engine.set_max_expr_depths(256, 128);
    engine.set_max_call_levels(128);
    engine.set_max_operations(0);
    engine.set_strict_variables(true);
    engine
}

/// Build the engine for `runbook`, with steps going through `exec`.
pub fn build_engine(exec: &Arc<Executor>, runbook: &Arc<Runbook>, inputs: &ScriptInputs) -> Engine {
    let mut engine = compile_engine();
    engine.set_module_resolver(Resolver {
        runbook: runbook.clone(),
    });

    let cancel = exec.clone();
    engine.on_progress(move |_| {
        cancel
            .cancelled()
            .then(|| Dynamic::from("interrupted (Ctrl-C)"))
    });
    let secrets = exec.secrets().clone();
    let printer = exec.clone();
    engine.on_print(move |text| printer.print(text));
    engine.on_debug(move |text, source, pos| {
        tracing::debug!("{}:{pos}: {}", source.unwrap_or("?"), secrets.redact(text));
    });

    register_core(&mut engine, exec, inputs);
    crate::primitives::register(&mut engine, exec);
    engine
}

/// The params map the script sees as the constant `params`.
pub fn params_map(inputs: &ScriptInputs, secrets: &Secrets) -> Map {
    let mut map = Map::new();
    for (name, value) in &inputs.params {
        let v = if inputs.secret_params.contains(name) {
            let text = value.as_str().unwrap_or_default();
            secrets.add(text);
            Dynamic::from(Secret(Arc::from(text)))
        } else {
            to_dynamic(value)
        };
        map.insert(name.as_str().into(), v);
    }
    map
}

fn register_core(engine: &mut Engine, exec: &Arc<Executor>, inputs: &ScriptInputs) {
    engine.build_type::<Host>();
    crate::limit::register(engine, exec.limit_arc());
    // A step's failure caught by `try { ... } catch (e)`: its text, as shown.
    engine
        .register_type_with_name::<crate::error::StepFailure>("StepFailure")
        .register_fn("to_string", |f: &mut crate::error::StepFailure| {
            f.to_string()
        })
        .register_fn("print", |f: &mut crate::error::StepFailure| f.to_string())
        .register_fn("to_debug", |f: &mut crate::error::StepFailure| {
            format!("StepFailure({f})")
        });
    // An `on()`'s failure caught by `try { ... } catch (e)`: its text, as shown.
    engine
        .register_type_with_name::<crate::error::OnFailure>("OnFailure")
        .register_fn("to_string", |f: &mut crate::error::OnFailure| f.to_string())
        .register_fn("print", |f: &mut crate::error::OnFailure| f.to_string())
        .register_fn("to_debug", |f: &mut crate::error::OnFailure| {
            format!("OnFailure({f})")
        });
    engine
        .register_type_with_name::<Secret>("Secret")
        .register_fn("to_string", |_: &mut Secret| MASK.to_string())
        .register_fn("print", |_: &mut Secret| MASK.to_string())
        .register_fn("to_debug", |_: &mut Secret| format!("Secret({MASK})"));
    crate::registration::function!(
        engine,
        /// The clear text of a secret parameter, for a primitive argument that needs it
        /// (a file's content, a cloud token). Printing or interpolating a `Secret` shows
        /// `********`; a revealed value is still redacted from plans, logs and journals.
        ///
        /// ```rhai
        /// file(h, #{ path: "/etc/app/token", content: params.token.reveal(), mode: "0600" });
        /// ```
        fn "reveal"("secret: Secret") -> "String" = |s: &mut Secret| s.0.to_string()
    );

    // hosts() / hosts(group) / hosts(#{ allow_empty }) / hosts(group, #{ allow_empty }):
    // an empty selection is an error unless `allow_empty: true`.
    crate::params::register(engine, &inputs.declared);
    let all = Arc::new(inputs.hosts.clone());
    let any = inputs.any_group;
    crate::registration::documented! {
        /// The inventory's (or lab's) hosts, in inventory order: all of them, or those of
        /// `group`. An empty selection is an error naming the group, unless
        /// `#{ allow_empty: true }` is given. Under `--limit` it still gives every host
        /// (names and addresses are inventory data): `on(...)` skips those outside the
        /// limit, and any step on one of them is an error naming it and the limit.
        ///
        /// ```rhai
        /// let nodes = hosts("etcd");
        /// let maybe = hosts("backup", #{ allow_empty: true });
        /// ```
        const HOSTS_DOC;
    }
    let a = all.clone();
    crate::registration::function!(
        engine,
        fn "hosts"() -> "Array" as HOSTS_DOC =
        move |call: NativeCallContext| select_hosts(&call, &a, None, any, Map::new())
    );
    let a = all.clone();
    crate::registration::function!(
        engine,
        fn "hosts"("options: Map") -> "Array" as HOSTS_DOC =
        move |call: NativeCallContext, options: Map| select_hosts(&call, &a, None, any, options)
    );
    let a = all.clone();
    crate::registration::function!(
        engine,
        fn "hosts"("group: &str") -> "Array" as HOSTS_DOC =
        move |call: NativeCallContext, group: &str| {
            select_hosts(&call, &a, Some(group), any, Map::new())
        }
    );
    let a = all.clone();
    crate::registration::function!(
        engine,
        fn "hosts"("group: &str", "options: Map") -> "Array" as HOSTS_DOC =
        move |call: NativeCallContext, group: &str, options: Map| {
            select_hosts(&call, &a, Some(group), any, options)
        }
    );
    crate::registration::function!(
        engine,
        /// A host from values, e.g. a server a cloud step just created:
        /// `#{name, address, internal_address?, user?, port?, groups?}`. Its arguments are
        /// checked as an inventory's are.
        ///
        /// ```rhai
        /// let h = host(#{ name: server.name, address: server.ipv4, user: "root" });
        /// ```
        fn "host"("args: Map") -> "Host" =
        |call: NativeCallContext, args: Map| -> Result<Host, Box<EvalAltResult>> {
            let host: Host = crate::args::parse(&call, "host", args)?;
            host.check()
                .map_err(|e| format!("host: bad arguments: {e}"))?;
            Ok(host)
        }
    );

    let x = exec.clone();
    crate::registration::function!(
        engine,
        /// A variable of cairn's environment (with the lab's env file laid over it), or
        /// `()` when it is not set.
        ///
        /// ```rhai
        /// let mirror = env("CAIRN_RELEASE_MIRROR") ?? "https://github.com";
        /// ```
        fn "env"("name: &str") -> "Dynamic" =
        move |name: &str| -> Dynamic {
            match x.ctx().env(name) {
                Some(v) => Dynamic::from(v.to_string()),
                None => Dynamic::UNIT,
            }
        }
    );
    crate::registration::function!(
        engine,
        /// False while planning when `value` (or anything in it) exists only after an
        /// earlier step runs, e.g. the address of a server not created yet; always true
        /// in a run. Use it to skip work a plan cannot do yet.
        ///
        /// ```rhai
        /// if is_known(sums.stdout) { sha = checksum_of(sums.stdout, file); }
        /// ```
        fn "is_known"("value: Dynamic") -> "bool" =
        |call: NativeCallContext, value: Dynamic| -> bool { is_known(&call, &value) }
    );
    crate::registration::function!(
        engine,
        /// Stop the runbook with an error: `message`, at this line's position. Nothing
        /// after it runs; a plan stops there too.
        ///
        /// ```rhai
        /// if nodes.len() % 2 == 0 { fail(`${nodes.len()} members: use an odd number`); }
        /// ```
        fn "fail"("message: &str") -> "()" =
        |msg: ImmutableString| -> Result<(), Box<EvalAltResult>> {
            Err(script_error(msg.to_string()))
        }
    );
    let x = exec.clone();
    crate::registration::function!(
        engine,
        /// A warning: shown under the host whose `on(...)` branch gave it (else
        /// `local`) in the plan or run output, and listed again in the summary at the
        /// end. Unlike `fail`, the runbook goes on and the exit code is unchanged.
        ///
        /// ```rhai
        /// if days_until(cert.not_after) < 30 { warn(`${h.name}: certificate expires soon`); }
        /// ```
        fn "warn"("message: &str") -> "()" = move |msg: ImmutableString| x.warn(&msg)
    );
    crate::clock::register(engine);
    crate::registration::function!(
        engine,
        /// Stop with `assertion failed: MESSAGE` (at this line's position) unless `ok`.
        ///
        /// ```rhai
        /// assert(members.len() == 3, `expected 3 members, found ${members.len()}`);
        /// ```
        fn "assert"("ok: bool", "message: &str") -> "()" =
        |ok: bool, msg: ImmutableString| -> Result<(), Box<EvalAltResult>> {
            if ok {
                Ok(())
            } else {
                Err(script_error(format!("assertion failed: {msg}")))
            }
        }
    );

    // on(hosts, |h| ...) and on(hosts, #{ options }, |h| ...): see crate::fanout
    let cap = inputs.max_parallel;
    let x = exec.clone();
    crate::registration::function!(
        engine,
        /// Run the closure for every host, concurrently (at most the run's cap at once:
        /// 32, or `--max-parallel N` / `CAIRN_MAX_PARALLEL`), each host's steps in its
        /// own scope. Returns the closure's results in the order of `hosts`. Every host
        /// finishes its branch; if any failed, the error names each failed host.
        /// Under `--limit`, hosts outside it run no branch; their result is a value
        /// that is an error to use (it names the host and the limit).
        ///
        /// ```rhai
        /// let kernels = on(hosts(), |h| fact(h, "uname -r").stdout);
        /// ```
        fn "on"("hosts: Array", "f: FnPtr") -> "Array" =
        move |call: NativeCallContext,
              hosts: Array,
              f: FnPtr|
              -> Result<Array, Box<EvalAltResult>> {
            crate::fanout::on_hosts(&call, &x, cap, hosts, None, f)
        }
    );
    let x = exec.clone();
    crate::registration::function!(
        engine,
        /// Run the closure for every host in batches, one batch after the other.
        ///
        /// Options (all optional):
        /// - `serial`: hosts per batch, an integer >= 1 or a percentage of the hosts
        ///   like `"34%"` (rounded up, at least 1). Default: all hosts in one batch.
        /// - `max_parallel`: at most this many hosts of a batch at once (integer >= 1).
        ///   Default: the run's cap (32, or `--max-parallel N` / `CAIRN_MAX_PARALLEL`).
        /// - `gate`: a closure `|batch| ...` called after each batch (the last one
        ///   too) with the array of that batch's hosts. It fails by throwing (a failed
        ///   check, `fail`, `assert`) or by returning `false`; any other value passes.
        /// - `order`: an array naming every host once, or a closure `|h| key` giving
        ///   each host a sort key (integers, strings or bools, all of one kind; hosts
        ///   sorted by it, ties in the order given: `|h| h.name == leader` puts the
        ///   leader last).
        ///
        /// Inside a batch every host finishes its branch. The first batch with a
        /// failed host or a failed gate stops the call: later hosts are never
        /// started, and the error names the failures and the hosts not started.
        /// Results come in the order of `hosts` as given, whatever `order` says.
        /// In a plan every batch is planned; a gate that fails there is a warning.
        /// Under `--limit`, hosts outside it are left out before batching (`serial`
        /// percentages count the hosts inside it); their result is as for `on(hosts, f)`.
        ///
        /// ```rhai
        /// on(members, #{ serial: 1, order: |h| h.name == leader,
        ///                gate: |batch| etcd_health(#{ endpoints: eps, ca: ca, cert: op, cert_key: key }) },
        ///    |h| { systemctl(h, #{ unit: "etcd", action: "restart" }); });
        /// ```
        fn "on"("hosts: Array", "options: Map", "f: FnPtr") -> "Array" =
        move |call: NativeCallContext,
              hosts: Array,
              options: Map,
              f: FnPtr|
              -> Result<Array, Box<EvalAltResult>> {
            crate::fanout::on_hosts(&call, &x, cap, hosts, Some(options), f)
        }
    );
}

/// Whether a value holds no placeholder: strings are checked directly,
/// arrays and maps element by element, custom types through their `to_string`.
fn is_known(call: &NativeCallContext, value: &Dynamic) -> bool {
    if let Some(s) = value.read_lock::<ImmutableString>() {
        return !crate::unknown::is_unknown(&s);
    }
    if let Some(a) = value.read_lock::<Array>() {
        return a.iter().all(|v| is_known(call, v));
    }
    if let Some(m) = value.read_lock::<Map>() {
        return m.values().all(|v| is_known(call, v));
    }
    match call.call_fn::<ImmutableString>("to_string", (value.clone(),)) {
        Ok(s) => !crate::unknown::is_unknown(&s),
        Err(_) => true,
    }
}
