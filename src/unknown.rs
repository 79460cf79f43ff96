//! Placeholders for values not known at plan time.
//!
//! In a plan, a value that only exists after an action runs (the address of a
//! server not yet created) is a string `(known after create: node-1.ipv4)`. It
//! flows through the script like any string; a step whose arguments contain
//! one is planned from intent, without facts.

const PREFIX: &str = "(known after ";

/// The placeholder for `what`, known after `event` (e.g. `create`).
pub fn placeholder(event: &str, what: &str) -> String {
    format!("{PREFIX}{event}: {what})")
}

/// Whether a string holds a placeholder anywhere in it.
pub fn is_unknown(s: &str) -> bool {
    s.contains(PREFIX)
}

/// Whether any string inside a JSON value holds a placeholder.
pub fn contains_unknown(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => is_unknown(s),
        serde_json::Value::Array(a) => a.iter().any(contains_unknown),
        serde_json::Value::Object(o) => o.values().any(contains_unknown),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_inside_composed_strings() {
        let p = placeholder("create", "node-1.ipv4");
        assert_eq!(p, "(known after create: node-1.ipv4)");
        let url = format!("https://{p}:2380");
        assert!(is_unknown(&url));
        assert!(!is_unknown("https://10.0.0.1:2380"));
        let v = serde_json::json!({"a": [1, {"b": url}]});
        assert!(contains_unknown(&v));
        assert!(!contains_unknown(&serde_json::json!({"a": [1, "x"]})));
    }
}
