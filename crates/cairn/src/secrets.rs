//! Secret values known to a run (tokens, `secret` parameters), scrubbed from
//! everything cairn prints or writes: plans, journals, logs, errors.

use std::sync::{Arc, RwLock};

/// What a secret is replaced with.
pub const MASK: &str = "********";

/// The set of secret values of a run. Cheap to clone; shared.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    values: Arc<RwLock<Vec<String>>>,
}

impl Secrets {
    /// Remember a value as secret (values shorter than 4 bytes are not masked:
    /// they would mask ordinary text).
    pub fn add(&self, value: &str) {
        if value.len() < 4 {
            return;
        }
        let mut values = self.values.write().unwrap_or_else(|e| e.into_inner());
        if !values.iter().any(|v| v == value) {
            values.push(value.to_string());
            // longest first, so a secret containing another is masked whole
            values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// Replace every secret in `text` by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        let values = self.values.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }

    /// Redact every string inside a JSON value.
    pub fn redact_json(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.redact(&s)),
            Value::Array(a) => Value::Array(a.into_iter().map(|v| self.redact_json(v)).collect()),
            Value::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, v)| (k, self.redact_json(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_and_nested_json() {
        let s = Secrets::default();
        s.add("tok-123456");
        s.add("ab");
        assert_eq!(
            s.redact("a tok-123456 b tok-123456"),
            "a ******** b ********"
        );
        assert_eq!(s.redact("ab stays"), "ab stays");
        let v = s.redact_json(serde_json::json!({"x": ["Bearer tok-123456"]}));
        assert_eq!(v, serde_json::json!({"x": ["Bearer ********"]}));
    }
}
