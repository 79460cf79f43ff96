//! Placeholders for values not known at plan time.
//!
//! In a plan, a value that only exists after an action runs (the address of a
//! server not yet created) is a string `(known after create: node-1.ipv4)`. It
//! flows through the script like any string; a step whose arguments contain
//! one is planned from intent, without facts.
//!
//! The executor makes them for every step a plan will change ([`unsettle`]):
//! whatever its result says beyond what its arguments gave is known only after
//! the change (a re-issued certificate's file, a rendered file's content), and
//! its `changed` flags are true. So every value derived from a changing step
//! is unknown in the rest of the plan, whichever primitive it came from.

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

/// The first placeholder inside a JSON value, without its parentheses
/// (`known after create: node-1.ipv4`): what a step planned from intent waits for.
pub fn first_unknown(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => {
            let start = s.find(PREFIX)?;
            let rest = &s[start + 1..];
            Some(rest.find(')').map_or(rest, |end| &rest[..end]).to_string())
        }
        serde_json::Value::Array(a) => a.iter().find_map(first_unknown),
        serde_json::Value::Object(o) => o.values().find_map(first_unknown),
        _ => None,
    }
}

/// Every string inside a JSON value.
fn strings<'a>(value: &'a serde_json::Value, out: &mut std::collections::HashSet<&'a str>) {
    match value {
        serde_json::Value::String(s) => {
            out.insert(s);
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// The predicted result of a step a plan will change, as the rest of the plan
/// must see it: every non-empty string the arguments did not give becomes a
/// placeholder known after `event` (named by its field), and every `changed`
/// flag is true. Strings the arguments gave (names, paths, addresses asked
/// for) stay: the change does not alter what the caller chose.
pub fn unsettle(
    output: serde_json::Value,
    args: &serde_json::Value,
    event: &str,
) -> serde_json::Value {
    let mut known = std::collections::HashSet::new();
    strings(args, &mut known);
    fn walk(
        v: serde_json::Value,
        field: &str,
        known: &std::collections::HashSet<&str>,
        event: &str,
    ) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) if s.is_empty() || is_unknown(&s) || known.contains(s.as_str()) => {
                Value::String(s)
            }
            Value::String(_) => Value::String(placeholder(event, field)),
            Value::Bool(_) if field.rsplit('.').next() == Some("changed") => Value::Bool(true),
            Value::Array(a) => Value::Array(
                a.into_iter()
                    .enumerate()
                    .map(|(i, v)| walk(v, &format!("{field}[{i}]"), known, event))
                    .collect(),
            ),
            Value::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, v)| {
                        let f = if field.is_empty() {
                            k.clone()
                        } else {
                            format!("{field}.{k}")
                        };
                        let v = walk(v, &f, known, event);
                        (k, v)
                    })
                    .collect(),
            ),
            other => other,
        }
    }
    walk(output, "", &known, event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changing_result_keeps_only_what_its_arguments_gave() {
        let args = serde_json::json!({"name": "n1-server", "dns": ["n1"], "host": {"name": "n1"}});
        let out = serde_json::json!({
            "name": "n1-server", "cert_path": "/ws/pki/n1-server.crt", "key_path": "",
            "dns": ["n1"], "changed": false, "is_ca": false, "days": 3,
        });
        let u = unsettle(out, &args, "gen_cert n1-server changes");
        assert_eq!(u["name"], "n1-server");
        assert_eq!(
            u["cert_path"],
            "(known after gen_cert n1-server changes: cert_path)"
        );
        assert_eq!(u["key_path"], "");
        assert_eq!(u["dns"][0], "n1");
        assert_eq!(u["changed"], true);
        assert_eq!(u["is_ca"], false);
        assert_eq!(u["days"], 3);
        assert_eq!(
            first_unknown(
                &serde_json::json!({"src": format!("x{}y", u["cert_path"].as_str().unwrap())})
            ),
            Some("known after gen_cert n1-server changes: cert_path".into())
        );
        assert_eq!(first_unknown(&args), None);
    }

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
