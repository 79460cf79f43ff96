//! Turning a primitive's Rhai arguments into typed Rust structs.
//!
//! Arguments are object maps deserialized with `deny_unknown_fields`, so a
//! misspelt or missing key is an error at the call site. Handles (custom types
//! like `Host` or `Cert`) inside the map are turned into their serde form first.

use rhai::{Dynamic, EvalAltResult, Map, Position};
use serde::de::DeserializeOwned;

/// A custom type that can appear inside argument maps.
pub type HandleToArg = fn(&Dynamic) -> Option<Dynamic>;

static HANDLES: std::sync::RwLock<Vec<HandleToArg>> = std::sync::RwLock::new(Vec::new());

/// Register a converter for a handle type (called by each family's `register`).
pub fn register_handle(f: HandleToArg) {
    let mut handles = HANDLES.write().unwrap_or_else(|e| e.into_inner());
    if !handles.iter().any(|h| std::ptr::fn_addr_eq(*h, f)) {
        handles.push(f);
    }
}

/// Convert a handle `T` to its serde form, for use with [`register_handle`].
pub fn handle_of<T: serde::Serialize + Clone + 'static>(value: &Dynamic) -> Option<Dynamic> {
    value
        .read_lock::<T>()
        .and_then(|v| rhai::serde::to_dynamic(&*v).ok())
}

fn lower(value: Dynamic) -> Dynamic {
    if value.is_map() {
        let map = value.cast::<Map>();
        let lowered: Map = map.into_iter().map(|(k, v)| (k, lower(v))).collect();
        return Dynamic::from_map(lowered);
    }
    if value.is_array() {
        let array = value.cast::<rhai::Array>();
        return Dynamic::from_array(array.into_iter().map(lower).collect());
    }
    let handles = HANDLES.read().unwrap_or_else(|e| e.into_inner());
    for h in handles.iter() {
        if let Some(v) = h(&value) {
            return lower(v);
        }
    }
    value
}

/// Deserialize an argument map into `T`, rejecting unknown and missing keys.
/// `what` names the primitive for the message (`gen_cert`).
pub fn parse<T: DeserializeOwned>(what: &str, map: Map) -> Result<T, Box<EvalAltResult>> {
    let value = lower(Dynamic::from_map(map));
    rhai::serde::from_dynamic::<T>(&value).map_err(|e| {
        let msg = match *e {
            EvalAltResult::ErrorParsing(ref t, _) => t.to_string(),
            ref other => other.to_string(),
        };
        let msg = msg
            .trim_end_matches(&format!(" ({})", Position::NONE))
            .to_string();
        Box::new(EvalAltResult::ErrorRuntime(
            format!("{what}: bad arguments: {msg}").into(),
            Position::NONE,
        ))
    })
}

/// Deserialize a single value (not necessarily a map) into `T`.
pub fn parse_value<T: DeserializeOwned>(
    what: &str,
    value: Dynamic,
) -> Result<T, Box<EvalAltResult>> {
    let value = lower(value);
    rhai::serde::from_dynamic::<T>(&value).map_err(|e| {
        Box::new(EvalAltResult::ErrorRuntime(
            format!("{what}: {e}").into(),
            Position::NONE,
        ))
    })
}

/// A script value as JSON (handles in their serde form), for inspection.
pub fn to_json(value: Dynamic) -> serde_json::Value {
    rhai::serde::from_dynamic::<serde_json::Value>(&lower(value)).unwrap_or(serde_json::Value::Null)
}
