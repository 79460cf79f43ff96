//! `on(hosts, |h| ...)` and `on(hosts, #{ options }, |h| ...)`: a closure run
//! for every host, each branch on a thread of its own with its own step scope.
//!
//! Hosts run in batches (`serial`, default: all in one batch), one batch after
//! the other; inside a batch at most `max_parallel` hosts run at once (default:
//! the run's cap, [`DEFAULT_MAX_PARALLEL`] unless `--max-parallel` or
//! `CAIRN_MAX_PARALLEL` says otherwise), from a pool of that many threads, so
//! hosts connect as they start. After each batch an optional `gate` closure
//! must pass. The first batch with a failed host or a failed gate stops the
//! call: later hosts are never started, and the error names what failed and
//! the hosts not started.
//!
//! Step keys stay what they were without batches: a branch's steps are keyed
//! under its host's scope (`node-1/...`), whatever batch or thread runs it;
//! the gate's steps and the `order` closure's run in the caller's scope, in
//! batch order, so their occurrence numbers are the same on every run. A
//! killed run therefore resumes batch by batch: the done hosts' steps are
//! replayed, their checks and the gates run again.
//!
//! Under `--limit` (see [`crate::limit`]) a host outside the limit runs no
//! branch: batches, `serial` percentages and `max_parallel` count only the
//! hosts inside it, and the host's slot in the result is an
//! [`crate::limit::OutsideLimit`], which is an error to use.
//!
//! Plans run every batch. A gate that fails while planning (its checks see
//! placeholders, or the state before the changes planned) is a warning, not
//! an error: the plan goes on as if it passed, so it still shows every batch.

use crate::error::{BranchFailure, OnFailure};
use crate::executor::{current_scope, script_error, with_scope, Executor, Mode};
use crate::host::Host;
use rhai::{Array, Dynamic, EvalAltResult, FnPtr, ImmutableString, Map, NativeCallContext};
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

/// How many hosts an `on(...)` runs at once when neither the call
/// (`max_parallel`) nor the run (`--max-parallel`, `CAIRN_MAX_PARALLEL`) says.
pub const DEFAULT_MAX_PARALLEL: usize = 32;

/// The option keys of `on(hosts, #{...}, f)`, as the error for an unknown one lists them.
const KEYS: [&str; 4] = ["serial", "max_parallel", "gate", "order"];

/// Batch size: a number of hosts, or a percentage of them (rounded up).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Serial {
    Hosts(usize),
    Percent(usize),
}

impl Serial {
    /// Hosts per batch out of `n` (at least 1).
    fn size(self, n: usize) -> usize {
        match self {
            Serial::Hosts(k) => k,
            Serial::Percent(p) => (n * p).div_ceil(100),
        }
        .max(1)
    }
}

/// The order hosts are taken in.
enum Order {
    /// Host names, every host once.
    Names(Vec<String>),
    /// A closure `|h| key`: hosts sorted by key (stable).
    Key(FnPtr),
}

/// Options of `on(hosts, #{...}, f)`.
#[derive(Default)]
struct Options {
    serial: Option<Serial>,
    max_parallel: Option<usize>,
    gate: Option<FnPtr>,
    order: Option<Order>,
}

fn bad(msg: String) -> Box<EvalAltResult> {
    script_error(format!("on: bad arguments: {msg}"))
}

/// A value as an error shows it: integers and strings as written, other
/// values by their kind.
fn shown(v: &Dynamic) -> String {
    if let Ok(i) = v.as_int() {
        return i.to_string();
    }
    if let Some(s) = v.read_lock::<ImmutableString>() {
        return format!("{:?}", s.as_str());
    }
    match v.type_name() {
        "bool" => "a bool".into(),
        "array" => "an array".into(),
        "map" => "a map".into(),
        "()" => "() (nothing)".into(),
        "f64" | "f32" | "decimal" => format!("a number ({v})"),
        "Fn" => "a closure".into(),
        other => format!("a {}", other.rsplit("::").next().unwrap_or(other)),
    }
}

fn parse_serial(v: &Dynamic) -> Result<Serial, Box<EvalAltResult>> {
    let wrong = || {
        bad(format!(
            "`serial` must be a number of hosts (an integer of at least 1) or a percentage \
             of them from \"1%\" to \"100%\", not {}",
            shown(v)
        ))
    };
    if let Ok(i) = v.as_int() {
        return usize::try_from(i)
            .ok()
            .filter(|n| *n >= 1)
            .map(Serial::Hosts)
            .ok_or_else(wrong);
    }
    let Some(text) = v.read_lock::<ImmutableString>() else {
        return Err(wrong());
    };
    text.trim()
        .strip_suffix('%')
        .and_then(|p| p.trim().parse::<usize>().ok())
        .filter(|p| (1..=100).contains(p))
        .map(Serial::Percent)
        .ok_or_else(wrong)
}

fn parse_options(map: Map) -> Result<Options, Box<EvalAltResult>> {
    let mut o = Options::default();
    for (key, v) in map {
        match key.as_str() {
            "serial" => o.serial = Some(parse_serial(&v)?),
            "max_parallel" => {
                let n = v
                    .as_int()
                    .ok()
                    .and_then(|i| usize::try_from(i).ok())
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        bad(format!(
                            "`max_parallel` must be an integer of at least 1, not {}",
                            shown(&v)
                        ))
                    })?;
                o.max_parallel = Some(n);
            }
            "gate" => {
                let shown = shown(&v);
                o.gate = Some(v.try_cast::<FnPtr>().ok_or_else(|| {
                    bad(format!(
                        "`gate` must be a closure `|batch| ...` run after each batch, not {shown}"
                    ))
                })?);
            }
            "order" => o.order = Some(parse_order(v)?),
            other => {
                let keys: Vec<String> = KEYS.iter().map(|k| format!("`{k}`")).collect();
                return Err(bad(format!(
                    "unknown option `{other}`, expected one of {}",
                    keys.join(", ")
                )));
            }
        }
    }
    Ok(o)
}

fn parse_order(v: Dynamic) -> Result<Order, Box<EvalAltResult>> {
    if v.is_array() {
        let mut names = Vec::new();
        for (i, item) in v.cast::<Array>().iter().enumerate() {
            match name_of(item) {
                Some(n) => names.push(n),
                None => {
                    return Err(bad(format!(
                        "item {i} of `order` must be a host or a host name, not {}",
                        shown(item)
                    )))
                }
            }
        }
        return Ok(Order::Names(names));
    }
    let shown = shown(&v);
    v.try_cast::<FnPtr>().map(Order::Key).ok_or_else(|| {
        bad(format!(
            "`order` must be an array of host names or a closure `|h| ...` giving each \
             host's sort key, not {shown}"
        ))
    })
}

/// A host's name: a `Host`'s, or the string itself.
fn name_of(v: &Dynamic) -> Option<String> {
    if let Some(h) = v.read_lock::<Host>() {
        return Some(h.name.clone());
    }
    v.read_lock::<ImmutableString>().map(|s| s.to_string())
}

/// The host names of `hosts`, each once.
fn host_names(hosts: &Array) -> Result<Vec<String>, Box<EvalAltResult>> {
    let mut names = Vec::with_capacity(hosts.len());
    for h in hosts {
        let Some(name) = name_of(h) else {
            return Err(script_error(format!(
                "on: expected an array of hosts, found a {}",
                h.type_name()
            )));
        };
        if names.contains(&name) {
            return Err(script_error(format!("on: host `{name}` appears twice")));
        }
        names.push(name);
    }
    Ok(names)
}

/// The indexes of `names` in the order given by `order`.
fn ordered(
    call: &NativeCallContext,
    hosts: &Array,
    names: &[String],
    order: Option<&Order>,
) -> Result<Vec<usize>, Box<EvalAltResult>> {
    match order {
        None => Ok((0..names.len()).collect()),
        Some(Order::Names(list)) => {
            let missing: Vec<&str> = names
                .iter()
                .filter(|n| !list.contains(n))
                .map(String::as_str)
                .collect();
            let mut extra: Vec<&str> = Vec::new();
            let mut twice: Vec<&str> = Vec::new();
            for (i, n) in list.iter().enumerate() {
                if !names.contains(n) {
                    if !extra.contains(&n.as_str()) {
                        extra.push(n);
                    }
                } else if list[..i].contains(n) && !twice.contains(&n.as_str()) {
                    twice.push(n);
                }
            }
            let mut wrong = Vec::new();
            if !missing.is_empty() {
                wrong.push(format!("missing {}", missing.join(", ")));
            }
            if !extra.is_empty() {
                wrong.push(format!("not among the hosts: {}", extra.join(", ")));
            }
            if !twice.is_empty() {
                wrong.push(format!("named twice: {}", twice.join(", ")));
            }
            if !wrong.is_empty() {
                return Err(bad(format!(
                    "`order` must name every host once ({})",
                    wrong.join("; ")
                )));
            }
            Ok(list
                .iter()
                .map(|n| names.iter().position(|x| x == n).unwrap_or_default())
                .collect())
        }
        Some(Order::Key(f)) => {
            let mut keys = Vec::with_capacity(names.len());
            for (h, name) in hosts.iter().zip(names) {
                let key = f.call_within_context::<Dynamic>(call, (h.clone(),))?;
                keys.push(SortKey::of(&key).ok_or_else(|| {
                    bad(format!(
                        "the `order` closure must give an integer, a string or a bool \
                         for each host, not {} (for {name})",
                        shown(&key)
                    ))
                })?);
            }
            if let Some(i) = keys.iter().position(|k| !k.same_kind(&keys[0])) {
                return Err(bad(format!(
                    "the `order` closure must give keys of one kind: {} for {}, {} for {}",
                    keys[0].kind(),
                    names[0],
                    keys[i].kind(),
                    names[i]
                )));
            }
            let mut idx: Vec<usize> = (0..names.len()).collect();
            idx.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
            Ok(idx)
        }
    }
}

/// A sort key from an `order` closure.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Bool(bool),
    Int(i64),
    Text(String),
}

impl SortKey {
    fn of(v: &Dynamic) -> Option<Self> {
        if let Ok(b) = v.as_bool() {
            return Some(SortKey::Bool(b));
        }
        if let Ok(i) = v.as_int() {
            return Some(SortKey::Int(i));
        }
        v.read_lock::<ImmutableString>()
            .map(|s| SortKey::Text(s.to_string()))
    }
    fn same_kind(&self, other: &SortKey) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
    fn kind(&self) -> &'static str {
        match self {
            SortKey::Bool(_) => "a bool",
            SortKey::Int(_) => "an integer",
            SortKey::Text(_) => "a string",
        }
    }
}

/// `on(hosts, f)` (`options`: `None`) and `on(hosts, #{...}, f)`: see the
/// module documentation. `cap` is the run's default for `max_parallel`.
pub fn on_hosts(
    call: &NativeCallContext,
    exec: &Executor,
    cap: usize,
    hosts: Array,
    options: Option<Map>,
    f: FnPtr,
) -> Result<Array, Box<EvalAltResult>> {
    let names = host_names(&hosts)?;
    let opts = match options {
        Some(map) => parse_options(map)?,
        None => Options::default(),
    };
    let mut order = ordered(call, &hosts, &names, opts.order.as_ref())?;
    // --limit: hosts outside it run no branch; their results say why.
    let mut results: Vec<Option<Dynamic>> = vec![None; names.len()];
    if let Some(limit) = exec.limit() {
        order.retain(|i| {
            let outside = hosts[*i].is::<Host>() && !limit.contains(&names[*i]);
            if outside {
                results[*i] = Some(Dynamic::from(crate::limit::OutsideLimit {
                    host: names[*i].clone(),
                    limit: limit.spec(),
                }));
            }
            !outside
        });
    }
    let size = opts
        .serial
        .map_or(order.len(), |s| s.size(order.len()))
        .max(1);
    let cap = opts.max_parallel.unwrap_or(cap).max(1);
    // A per-call cap above the run's cap on ssh masters: the branches would
    // close each other's masters between commands (see `CAIRN_SSH_MAX_MASTERS`).
    if let Some(masters) = exec.ctx().ssh.max_masters() {
        let at_once = cap.min(size);
        if at_once > masters && opts.max_parallel.is_some() {
            return Err(script_error(format!(
                "on(#{{max_parallel: {cap}}}) would run {at_once} hosts at once, more than the \
                 run's cap on ssh masters ({masters}, CAIRN_SSH_MAX_MASTERS or twice \
                 --max-parallel): their masters would close each other between commands; \
                 lower this max_parallel to {masters} or raise CAIRN_SSH_MAX_MASTERS"
            )));
        }
    }
    let batches: Vec<&[usize]> = order.chunks(size).collect();
    let count = batches.len();
    let list = |idx: &[usize]| -> String {
        let shown: Vec<&str> = idx.iter().map(|i| names[*i].as_str()).collect();
        if shown.is_empty() {
            "none".into()
        } else {
            shown.join(", ")
        }
    };
    for (b, batch) in batches.iter().enumerate() {
        let later: Vec<usize> = batches[b + 1..].concat();
        let this = format!("batch {} of {count} ({})", b + 1, list(batch));
        if b > 0 && exec.cancelled() {
            return Err(script_error(format!(
                "interrupted (Ctrl-C): stopped before {this}; not started: {}",
                list(&batches[b..].concat())
            )));
        }
        if count > 1 {
            exec.print(&format!("on: {this}"));
        }
        let outcome = run_batch(call, &hosts, &names, batch, cap, &f);
        let mut failures = Vec::new();
        for (i, r) in batch.iter().zip(outcome) {
            match r {
                Ok(v) => results[*i] = Some(v),
                Err(e) => failures.push((names[*i].clone(), e)),
            }
        }
        if !failures.is_empty() {
            return Err(if count > 1 {
                batch_failed(failures, &this, &list(&later))
            } else {
                branches_failed(failures, names.len())
            });
        }
        if let Some(gate) = &opts.gate {
            let batch_hosts: Array = batch.iter().map(|i| hosts[*i].clone()).collect();
            let failed = match gate.call_within_context::<Dynamic>(call, (batch_hosts,)) {
                Ok(v) if v.as_bool() == Ok(false) => Some((None, "returned false".to_string())),
                Ok(_) => None,
                Err(mut e) => {
                    let msg = crate::diagnostic::message_of(&mut e);
                    Some((Some(e), format!("failed: {msg}")))
                }
            };
            if let Some((err, why)) = failed {
                if exec.mode() != Mode::Apply {
                    exec.warn(&format!(
                        "on: the gate after {this} did not pass in the plan ({why}); the plan \
                         goes on as if it passed, a run stops there if it fails"
                    ));
                    continue;
                }
                let msg = format!(
                    "on: the gate after {this} {why}; not started: {}",
                    list(&later)
                );
                return Err(match err {
                    Some(e) => {
                        let gate = crate::diagnostic::step_failure(&e);
                        let failure = OnFailure {
                            shown: msg,
                            hosts: Vec::new(),
                            gate,
                        };
                        raise_at(*e, failure)
                    }
                    None => script_error(msg),
                });
            }
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Dynamic::UNIT))
        .collect())
}

/// What a host's branch gave: the closure's value or its error.
type Branch = Result<Dynamic, Box<EvalAltResult>>;

/// Run `f` for the hosts `batch` (indexes into `hosts`), at most `cap` at
/// once, each in its host's step scope; results in batch order.
fn run_batch(
    call: &NativeCallContext,
    hosts: &Array,
    names: &[String],
    batch: &[usize],
    cap: usize,
    f: &FnPtr,
) -> Vec<Branch> {
    #[allow(deprecated)]
    let store = call.store_data();
    let engine = call.engine();
    let parent = current_scope();
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Branch>>> = batch.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..cap.min(batch.len()))
            .map(|_| {
                let (store, parent, next, slots) = (&store, &parent, &next, &slots);
                s.spawn(move || loop {
                    let j = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(i) = batch.get(j) else {
                        break;
                    };
                    let h = hosts[*i].clone();
                    let r = with_scope(parent, &names[*i], || {
                        #[allow(deprecated)]
                        let ctx = NativeCallContext::from_stored_data(engine, store);
                        f.call_within_context::<Dynamic>(&ctx, (h,))
                    });
                    *slots[j].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                })
            })
            .collect();
        for w in workers {
            // a panicked branch leaves its slot empty: reported below
            let _ = w.join();
        }
    });
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(script_error("on: a host's branch panicked")))
        })
        .collect()
}

/// Hosts of the only batch failed: each is named with its error, shown at the
/// first failed host's failing call inside the closure.
fn branches_failed(
    failures: Vec<(String, Box<EvalAltResult>)>,
    total: usize,
) -> Box<EvalAltResult> {
    hosts_failed(failures, |hosts| match hosts {
        [one] if one.names_its_host() => one.message.clone(),
        [one] => format!("on {}: {}", one.host, one.message),
        _ => format!("{} of {total} hosts failed:\n{}", hosts.len(), lines(hosts)),
    })
}

/// Hosts of one of several batches failed: the batch, the hosts not started,
/// and each failed host with its error.
fn batch_failed(
    failures: Vec<(String, Box<EvalAltResult>)>,
    batch: &str,
    not_started: &str,
) -> Box<EvalAltResult> {
    hosts_failed(failures, |hosts| {
        format!(
            "on: {batch} failed; not started: {not_started}\n{}",
            lines(hosts)
        )
    })
}

/// The failed branches as one typed [`OnFailure`] whose text `shown` words,
/// raised at the first failed host's failing call.
fn hosts_failed(
    failures: Vec<(String, Box<EvalAltResult>)>,
    shown: impl FnOnce(&[BranchFailure]) -> String,
) -> Box<EvalAltResult> {
    let mut first = None;
    let mut hosts = Vec::new();
    for (host, mut e) in failures {
        hosts.push(BranchFailure {
            host,
            message: crate::diagnostic::message_of(&mut e),
            step: crate::diagnostic::step_failure(&e),
        });
        first.get_or_insert(*e);
    }
    let first = first.expect("on() reports failures only when a host failed");
    let shown = shown(&hosts);
    raise_at(
        first,
        OnFailure {
            shown,
            hosts,
            gate: None,
        },
    )
}

/// One line per failed host: `  name: message`.
fn lines(hosts: &[BranchFailure]) -> String {
    hosts
        .iter()
        .map(|h| format!("  {}: {}", h.host, h.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `failure` raised where `err` happened (the failing call) and through the
/// calls that led there: `err`'s innermost value replaced by the typed
/// failure.
fn raise_at(err: EvalAltResult, failure: OnFailure) -> Box<EvalAltResult> {
    match err {
        EvalAltResult::ErrorInFunctionCall(f, src, inner, pos) => Box::new(
            EvalAltResult::ErrorInFunctionCall(f, src, raise_at(*inner, failure), pos),
        ),
        EvalAltResult::ErrorInModule(m, inner, pos) => Box::new(EvalAltResult::ErrorInModule(
            m,
            raise_at(*inner, failure),
            pos,
        )),
        other => Box::new(EvalAltResult::ErrorRuntime(
            Dynamic::from(failure),
            other.position(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up_and_give_at_least_one_host() {
        assert_eq!(Serial::Percent(34).size(3), 2);
        assert_eq!(Serial::Percent(33).size(3), 1);
        assert_eq!(Serial::Percent(1).size(3), 1);
        assert_eq!(Serial::Percent(100).size(7), 7);
        assert_eq!(Serial::Percent(50).size(5), 3);
        assert_eq!(Serial::Hosts(2).size(5), 2);
    }

    #[test]
    fn serial_accepts_integers_and_percent_strings_only() {
        let ok = |v: Dynamic| parse_serial(&v).map_err(|e| e.to_string());
        assert_eq!(ok(Dynamic::from(3_i64)), Ok(Serial::Hosts(3)));
        assert_eq!(ok(Dynamic::from("25%")), Ok(Serial::Percent(25)));
        for v in [
            Dynamic::from(0_i64),
            Dynamic::from(-1_i64),
            Dynamic::from("0%"),
            Dynamic::from("150%"),
            Dynamic::from("25"),
            Dynamic::from("x%"),
            Dynamic::from(true),
        ] {
            assert!(ok(v.clone()).is_err(), "{v:?} accepted");
        }
    }
}
