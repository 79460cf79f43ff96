//! `params`: the parameters a script sees, declared ones only.
//!
//! `params.nodes` reads a parameter of `runbook.toml`. Reading one the
//! manifest does not declare (`params.treshold`) is an error at that
//! position, not a silent `()`. A declared optional parameter without a value
//! reads as `()`; `"name" in params` says whether it has one.

use crate::executor::script_error;
use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map};
use std::sync::Arc;

/// The value of the script constant `params`.
#[derive(Clone)]
pub struct Params {
    values: Map,
    /// Every name the manifest declares, in order.
    declared: Arc<Vec<String>>,
}

impl Params {
    /// `values` (by name) of the parameters `declared` in the manifest.
    pub fn new(values: Map, declared: Vec<String>) -> Self {
        Params {
            values,
            declared: Arc::new(declared),
        }
    }

    /// `params.NAME` / `params["NAME"]`.
    fn get(&self, name: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        if let Some(v) = self.values.get(name) {
            return Ok(v.clone());
        }
        if self.declared.iter().any(|d| d == name) {
            return Ok(Dynamic::UNIT);
        }
        let known = if self.declared.is_empty() {
            "it declares none".to_string()
        } else {
            format!("it declares {}", self.declared.join(", "))
        };
        Err(script_error(format!(
            "`params.{name}`: no parameter `{name}` in runbook.toml ({known})"
        )))
    }
}

/// Register the `Params` type: property and index access, `in`, `keys`.
/// `declared` get a getter each, so no built-in property (every value has a
/// `tag`) shadows a parameter of that name; other names reach the indexer,
/// which refuses them.
pub fn register(engine: &mut Engine, declared: &[String]) {
    for name in declared.iter().map(String::as_str).chain(["tag"]) {
        let n = name.to_string();
        engine.register_get(name, move |p: &mut Params| p.get(&n));
    }
    engine
        .register_type_with_name::<Params>("Params")
        .register_indexer_get(|p: &mut Params, name: ImmutableString| p.get(&name))
        .register_fn("to_string", |p: &mut Params| {
            format!("params({})", p.declared.join(", "))
        })
        .register_fn("to_debug", |p: &mut Params| {
            format!("params({})", p.declared.join(", "))
        });
    crate::registration::function!(
        engine,
        /// Whether the runbook was given a value for the parameter `name`
        /// (`"name" in params` says the same).
        fn "contains"("params: Params", "name: &str") -> "bool" =
        |p: &mut Params, name: ImmutableString| p.values.contains_key(name.as_str())
    );
    crate::registration::function!(
        engine,
        /// The names of the parameters that have a value, sorted.
        fn "keys"("params: Params") -> "Array" =
        |p: &mut Params| -> rhai::Array {
            p.values.keys().map(|k| Dynamic::from(k.clone())).collect()
        }
    );
}
