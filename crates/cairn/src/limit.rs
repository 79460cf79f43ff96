//! `--limit NAMES|GROUPS`: the hosts a run, plan or resume may touch.
//!
//! The limit is a comma-separated list of inventory host names and group
//! names (as Ansible's `--limit`, without patterns); it selects every host
//! named and every host of every group named. An unknown name is an error
//! that lists the inventory's hosts and groups; a limit that selects nothing
//! is an error.
//!
//! What a runbook sees under a limit (docs/inventory.md, "Limiting a run"):
//! - `hosts()` and `hosts(group)` still give every inventory host: names,
//!   addresses, groups and labels are inventory data, not facts, so a config
//!   listing the whole cluster stays whole on the hosts the run does touch.
//! - `on(hosts, f)` runs `f` only for the hosts inside the limit; the others'
//!   branches do not run, and their slots in its result hold an
//!   [`OutsideLimit`] value: comparing it or reading a property of it is an
//!   error (the comparison's names the host and the limit), and printed it
//!   says what it is; it is never a guessed value.
//! - Every step aimed at a host outside the limit is refused before it runs,
//!   whether it would change something or only read a fact (the executor
//!   checks step targets; the ssh pool refuses connections, which covers
//!   steps that reach a host through a port forward).
//! - `in_limit(h)` tells a runbook whether a host is inside the limit (for a
//!   step over many hosts, like `claim_hosts`).
//! - Cloud steps that would create or delete servers are refused under a
//!   limit: a limited run changes only the limited hosts. Cloud reads run.

use crate::host::Host;
use std::collections::BTreeSet;

/// A resolved `--limit`: what was asked and the host names it selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    /// The names as given, trimmed and without repeats, in the given order.
    items: Vec<String>,
    /// Inventory hosts the limit selects.
    selected: BTreeSet<String>,
    /// Every inventory host name (to tell a host outside the limit from a
    /// target that is no host, like `local`).
    inventory: BTreeSet<String>,
}

/// Cloud step targets: under a limit their creates and deletes are refused.
pub const CLOUD_TARGETS: [&str; 2] = ["hetzner", "digitalocean"];

impl Limit {
    /// The items of a `--limit` value: trimmed, empty ones dropped, each once.
    pub fn items(spec: &str) -> Vec<String> {
        let mut items: Vec<String> = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !items.iter().any(|i| i == item) {
                items.push(item.to_string());
            }
        }
        items
    }

    /// The canonical text of a `--limit` value (as journaled and compared).
    pub fn canonical(spec: &str) -> String {
        Self::items(spec).join(",")
    }

    /// Resolve `spec` against the inventory's hosts. Errors name the unknown
    /// names and list the hosts and groups there are.
    pub fn resolve(spec: &str, hosts: &[Host]) -> Result<Limit, String> {
        let items = Self::items(spec);
        if items.is_empty() {
            return Err(format!(
                "--limit `{spec}` names no host or group (give host names and group names, \
                 comma-separated)"
            ));
        }
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        let mut groups: Vec<&str> = hosts
            .iter()
            .flat_map(|h| h.groups.iter().map(String::as_str))
            .collect();
        groups.sort();
        groups.dedup();
        let unknown: Vec<&str> = items
            .iter()
            .map(String::as_str)
            .filter(|i| !names.contains(i) && !groups.contains(i))
            .collect();
        if !unknown.is_empty() {
            let list = |v: &[&str]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(", ")
                }
            };
            return Err(format!(
                "--limit names {} not in the inventory: {}; its hosts: {}; its groups: {}",
                if unknown.len() == 1 {
                    "a host or group"
                } else {
                    "hosts or groups"
                },
                unknown.join(", "),
                list(&names),
                list(&groups)
            ));
        }
        let selected: BTreeSet<String> = hosts
            .iter()
            .filter(|h| {
                items
                    .iter()
                    .any(|i| *i == h.name || h.groups.iter().any(|g| g == i))
            })
            .map(|h| h.name.clone())
            .collect();
        if selected.is_empty() {
            // every item is known, so this takes an inventory without hosts
            return Err(format!("--limit {} selects no host", items.join(",")));
        }
        Ok(Limit {
            items,
            selected,
            inventory: names.iter().map(|n| n.to_string()).collect(),
        })
    }

    /// The limit as given, canonical (`node-1,etcd`).
    pub fn spec(&self) -> String {
        self.items.join(",")
    }

    /// Whether the host named `name` is inside the limit.
    pub fn contains(&self, name: &str) -> bool {
        self.selected.contains(name)
    }

    /// The selected host names, in name order.
    pub fn selected(&self) -> Vec<String> {
        self.selected.iter().cloned().collect()
    }

    /// One line for plan and run headers: the limit and what it selects.
    pub fn describe(&self) -> String {
        format!(
            "--limit {}: {} of {} hosts ({})",
            self.spec(),
            self.selected.len(),
            self.inventory.len(),
            self.selected().join(", ")
        )
    }

    /// Why `host` may not be touched.
    pub fn outside(&self, host: &str) -> String {
        format!(
            "{host} is outside --limit {} (it selects {}): a limited run neither connects to \
             nor reads from other hosts; add {host} to --limit if the runbook needs it",
            self.spec(),
            self.selected().join(", ")
        )
    }

    /// Whether a step aimed at `target` may run; `changes`: whether its
    /// intent changes something. `target` is a host name, a comma-separated
    /// list of them, `local`, `etcd` or a cloud provider.
    pub fn check_target(&self, target: &str, changes: bool) -> Result<(), String> {
        if CLOUD_TARGETS.contains(&target) {
            if changes {
                return Err(format!(
                    "under --limit {} no cloud step that creates or deletes servers runs: a \
                     limited run changes only the hosts it selects ({}); run without --limit \
                     to create them",
                    self.spec(),
                    self.selected().join(", ")
                ));
            }
            return Ok(());
        }
        if target == "local" || target == crate::primitives::etcd::maintenance::TARGET {
            // the operator's machine; etcd steps reach hosts through the pool
            return Ok(());
        }
        for name in target.split(',') {
            if !self.contains(name) {
                return Err(self.outside(name));
            }
        }
        Ok(())
    }
}

/// What `on(...)` gives for a host outside the limit: its branch did not run.
/// Using it is an error naming the host and the limit.
#[derive(Clone, Debug)]
pub struct OutsideLimit {
    pub host: String,
    pub limit: String,
}

impl OutsideLimit {
    /// As text: what it is.
    pub fn shown(&self) -> String {
        format!(
            "({} is outside --limit {}: its branch did not run)",
            self.host, self.limit
        )
    }

    /// The error for any use of this value.
    pub fn error(&self) -> String {
        format!(
            "{} is outside --limit {}: on(...) did not run its branch, so it has no value \
             here; add {} to --limit if the runbook needs it",
            self.host, self.limit, self.host
        )
    }
}

/// Register [`OutsideLimit`] (comparisons are errors; as text it says what
/// it is: Rhai shows a failing `to_string` as the type name, so it cannot
/// fail there) and `in_limit(host)` for the run's `limit`.
pub fn register(engine: &mut rhai::Engine, limit: Option<std::sync::Arc<Limit>>) {
    crate::registration::function!(
        engine,
        /// Whether `host` is inside the run's `--limit` (always true without one).
        /// `hosts()` lists every host under a limit; a step on a host outside it is
        /// an error, so a step over many hosts can be given only those inside it.
        ///
        /// ```rhai
        /// claim_hosts(#{ hosts: nodes.filter(|h| in_limit(h)), cluster: c, ca: ca });
        /// ```
        fn "in_limit"("host: Host") -> "bool" =
        move |h: Host| limit.as_ref().is_none_or(|l| l.contains(&h.name))
    );
    use rhai::{Dynamic, EvalAltResult};
    type R<T> = Result<T, Box<EvalAltResult>>;
    let err = |o: &OutsideLimit| -> Box<EvalAltResult> { o.error().into() };
    engine
        .register_type_with_name::<OutsideLimit>("a host outside --limit (its branch did not run)")
        .register_fn("to_string", |o: &mut OutsideLimit| o.shown())
        .register_fn("print", |o: &mut OutsideLimit| o.shown())
        .register_fn("to_debug", |o: &mut OutsideLimit| {
            format!("OutsideLimit({})", o.host)
        })
        .register_fn("==", move |o: OutsideLimit, _: Dynamic| -> R<bool> {
            Err(err(&o))
        })
        .register_fn("!=", move |o: OutsideLimit, _: Dynamic| -> R<bool> {
            Err(err(&o))
        })
        .register_fn("==", move |_: Dynamic, o: OutsideLimit| -> R<bool> {
            Err(err(&o))
        })
        .register_fn("!=", move |_: Dynamic, o: OutsideLimit| -> R<bool> {
            Err(err(&o))
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Vec<Host> {
        let mut hosts = Vec::new();
        for (name, groups) in [
            ("node-1", vec!["etcd"]),
            ("node-2", vec!["etcd"]),
            ("node-3", vec!["etcd", "backup"]),
            ("lb", vec![]),
        ] {
            let mut h = Host::new(name.to_string(), "192.0.2.1".to_string());
            h.groups = groups.into_iter().map(String::from).collect();
            hosts.push(h);
        }
        hosts
    }

    #[test]
    fn names_and_groups_select_their_hosts() {
        let l = Limit::resolve(" node-1 , backup,node-1", &inv()).unwrap();
        assert_eq!(l.spec(), "node-1,backup");
        assert_eq!(l.selected(), ["node-1", "node-3"]);
        let l = Limit::resolve("etcd", &inv()).unwrap();
        assert_eq!(l.selected(), ["node-1", "node-2", "node-3"]);
        assert!(!l.contains("lb"));
    }

    #[test]
    fn unknown_names_and_empty_limits_are_errors() {
        let e = Limit::resolve("node-1,nodes-2,web", &inv()).unwrap_err();
        assert_eq!(
            e,
            "--limit names hosts or groups not in the inventory: nodes-2, web; its hosts: \
             node-1, node-2, node-3, lb; its groups: backup, etcd"
        );
        assert!(Limit::resolve(" , ", &inv())
            .unwrap_err()
            .contains("names no host or group"));
        assert!(Limit::resolve("node-1", &[])
            .unwrap_err()
            .contains("its hosts: none; its groups: none"));
    }

    #[test]
    fn targets_outside_the_limit_are_refused() {
        let l = Limit::resolve("node-1", &inv()).unwrap();
        assert!(l.check_target("node-1", true).is_ok());
        assert!(l.check_target("local", true).is_ok());
        assert!(l.check_target("hetzner", false).is_ok());
        let e = l.check_target("node-1,node-2", false).unwrap_err();
        assert!(
            e.starts_with("node-2 is outside --limit node-1 (it selects node-1)"),
            "{e}"
        );
        // a host made by host(...) from a cloud step is no inventory host
        assert!(l.check_target("etcd-7", false).is_err());
        assert!(l
            .check_target("hetzner", true)
            .unwrap_err()
            .contains("creates or deletes servers"));
    }
}
