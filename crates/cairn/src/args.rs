//! Turning a primitive's Rhai arguments into typed Rust structs.
//!
//! Arguments are object maps deserialized with `deny_unknown_fields`, so a
//! misspelt or missing key is an error at the call site. Handles (custom types
//! like `Host` or `Cert`) inside the map are turned into their serde form first.

use rhai::serde::DynamicDeserializer;
use rhai::{Dynamic, EvalAltResult, Map, NativeCallContext, Position, TypeBuilder};
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess};

/// The name of the engine function that turns a handle into its serde form.
/// A `$` keeps it out of reach of scripts and out of the reference.
const TO_ARGUMENT: &str = "$argument";

/// Let handles of type `T` (custom types like `Host` or `Cert`) appear inside
/// argument maps, as their serde form. The engine owns the converters: each
/// handle type registers its own where the type itself is registered, with
/// `#[rhai_type(extra = crate::args::argument)]` on its derive, and [`parse`]
/// asks the engine of the call. There is
/// no list to keep in step with the types and nothing process-global.
pub fn argument<T: serde::Serialize + rhai::Variant + Clone>(builder: &mut TypeBuilder<T>) {
    builder.with_fn(TO_ARGUMENT, to_argument::<T>);
}

fn to_argument<T: serde::Serialize>(value: &mut T) -> Dynamic {
    rhai::serde::to_dynamic(&*value).unwrap_or(Dynamic::UNIT)
}

/// `value` with every handle inside it (at any depth of maps and arrays)
/// replaced by its serde form, by the converters of the engine of `call`.
pub fn lower(call: &NativeCallContext, value: Dynamic) -> Dynamic {
    if value.is_map() {
        let map = value.cast::<Map>();
        let lowered: Map = map.into_iter().map(|(k, v)| (k, lower(call, v))).collect();
        return Dynamic::from_map(lowered);
    }
    if value.is_array() {
        let array = value.cast::<rhai::Array>();
        return Dynamic::from_array(array.into_iter().map(|v| lower(call, v)).collect());
    }
    let plain = value.is_string()
        || value.is_int()
        || value.is_bool()
        || value.is_unit()
        || value.is_float()
        || value.is_char()
        || value.is_fnptr();
    if !plain {
        if let Ok(v) = call.call_native_fn::<Dynamic>(TO_ARGUMENT, (value.clone(),)) {
            return lower(call, v);
        }
    }
    value
}

/// Deserialize an argument map into `T`, rejecting unknown and missing keys.
/// `what` names the primitive for the message (`gen_cert`); a value of the
/// wrong type names its key (`` `days` must be an integer (u32), not a string ``).
pub fn parse<T: DeserializeOwned>(
    call: &NativeCallContext,
    what: &str,
    map: Map,
) -> Result<T, Box<EvalAltResult>> {
    let map: Map = map.into_iter().map(|(k, v)| (k, lower(call, v))).collect();
    let mut fields = Fields {
        iter: map.iter(),
        current: None,
        failed: None,
    };
    let result = T::deserialize(MapAccessDeserializer::new(&mut fields));
    let failed = fields.failed;
    result.map_err(|e| {
        let msg = match (failed, *e) {
            (Some((key, value)), EvalAltResult::ErrorMismatchOutputType(wanted, got, _)) => {
                let (want, found) = (wanted_kind(&wanted), got_kind(&got));
                // `got` is the type of the value itself, or of something inside it
                if value.is_array() && got != "array" {
                    format!("an item of `{key}` must be {want}, not {found}")
                } else if value.is_map() && got != "map" {
                    format!("a value in `{key}` must be {want}, not {found}")
                } else {
                    format!("`{key}` must be {want}, not {found}")
                }
            }
            (Some((key, _)), other) => format!("`{key}`: {}", message(&other)),
            (None, other) => message(&other),
        };
        Box::new(EvalAltResult::ErrorRuntime(
            format!("{what}: bad arguments: {msg}").into(),
            Position::NONE,
        ))
    })
}

/// The top level of an argument map, remembering which key's value failed.
struct Fields<'a> {
    iter: <&'a Map as IntoIterator>::IntoIter,
    current: Option<(&'a str, &'a Dynamic)>,
    failed: Option<(&'a str, &'a Dynamic)>,
}

impl<'de> MapAccess<'de> for Fields<'de> {
    type Error = Box<EvalAltResult>;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((key, value)) = self.iter.next() else {
            return Ok(None);
        };
        self.current = Some((key.as_str(), value));
        seed.deserialize(key.as_str().into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let (key, value) = self
            .current
            .take()
            .expect("serde asks for a value after its key");
        seed.deserialize(DynamicDeserializer::new(value))
            .inspect_err(|_| self.failed = Some((key, value)))
    }
}

/// A Rhai error's text without Rhai's `(line N, position M)` suffix.
fn message(e: &EvalAltResult) -> String {
    let msg = match e {
        EvalAltResult::ErrorParsing(t, _) => t.to_string(),
        other => other.to_string(),
    };
    msg.trim_end_matches(&format!(" ({})", Position::NONE))
        .to_string()
}

fn is_integer(t: &str) -> bool {
    matches!(
        t,
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64" | "i128"
    )
}

/// A Rust type as a runbook author knows it: `an integer (u32)`, `an array`.
fn wanted_kind(rust: &str) -> String {
    let rust = rust
        .strip_prefix("core::option::Option<")
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(rust);
    let outer = rust.split('<').next().unwrap_or(rust);
    let name = outer.rsplit("::").next().unwrap_or(outer);
    match name {
        t if is_integer(t) => format!("an integer ({t})"),
        "f32" | "f64" => "a number".into(),
        "String" | "string" | "str" | "&str" | "char" | "ImmutableString" => "a string".into(),
        "bool" => "true or false".into(),
        "Vec" | "array" | "Array" | "VecDeque" | "BTreeSet" | "HashSet" => "an array".into(),
        "BTreeMap" | "HashMap" | "map" | "Map" => "a map".into(),
        other => format!("a {other}"),
    }
}

/// A Rhai value's type as a runbook author knows it: `a string`, `an integer`.
fn got_kind(rhai: &str) -> String {
    match rhai {
        t if is_integer(t) => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "string" | "String" | "char" => "a string".into(),
        "bool" => "a bool".into(),
        "array" => "an array".into(),
        "map" => "a map".into(),
        "()" => "() (nothing)".into(),
        other => format!("a {}", other.rsplit("::").next().unwrap_or(other)),
    }
}

/// Deserialize a single value (not necessarily a map) into `T`.
pub fn parse_value<T: DeserializeOwned>(
    call: &NativeCallContext,
    what: &str,
    value: Dynamic,
) -> Result<T, Box<EvalAltResult>> {
    let value = lower(call, value);
    rhai::serde::from_dynamic::<T>(&value).map_err(|e| {
        Box::new(EvalAltResult::ErrorRuntime(
            format!("{what}: {e}").into(),
            Position::NONE,
        ))
    })
}

/// A script value as JSON (handles in their serde form), for inspection.
pub fn to_json(call: &NativeCallContext, value: Dynamic) -> serde_json::Value {
    rhai::serde::from_dynamic::<serde_json::Value>(&lower(call, value))
        .unwrap_or(serde_json::Value::Null)
}
