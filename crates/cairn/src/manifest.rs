//! `runbook.toml`: a runbook's name, version, description and typed parameters,
//! and the validation of parameter values before anything runs.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A parsed `runbook.toml`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    /// Semantic version; the journal pins it.
    pub version: semver::Version,
    pub description: String,
    /// Parameters in declaration order.
    #[serde(default)]
    pub params: indexmap_lite::OrderedParams,
}

/// The kind of a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Int,
    Bool,
    /// A list; items are of `items` type (default string).
    List,
    /// A table of string keys to values.
    Map,
    /// An IPv4 or IPv6 address.
    Ip,
    /// A network in CIDR notation.
    Cidr,
    /// A string that is never printed, logged or journaled.
    Secret,
    /// A host name (RFC 1123 labels: letters, digits, `-`, dots between).
    Hostname,
    /// A systemd unit name (`etcd`, `etcd@a.service`).
    Unit,
    /// An absolute path on a host, without `..`, control characters or
    /// shell-special characters.
    Path,
    /// A release version (`3.5.1`, `v3.5.9`, `3.6.0-rc.1`).
    Version,
    /// An http(s) URL with a host and nothing a shell or a URL parser reads
    /// differently (no spaces, quotes, `$`, backquotes or control characters).
    Url,
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::List => "list",
            ParamType::Map => "map",
            ParamType::Ip => "ip",
            ParamType::Cidr => "cidr",
            ParamType::Secret => "secret",
            ParamType::Hostname => "hostname",
            ParamType::Unit => "unit",
            ParamType::Path => "path",
            ParamType::Url => "url",
            ParamType::Version => "version",
        };
        f.write_str(s)
    }
}

/// One declared parameter.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Item type of a list (default string).
    #[serde(default)]
    pub items: Option<ParamType>,
    #[serde(default)]
    pub default: Option<toml::Value>,
    /// Must be given (no default).
    #[serde(default)]
    pub required: bool,
    pub help: String,
    /// Allowed values (strings and ints).
    #[serde(default)]
    pub choices: Option<Vec<toml::Value>>,
    /// Lower and upper bounds (ints).
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
    /// Environment variable the value may come from (tokens: `HCLOUD_TOKEN`).
    #[serde(default)]
    pub env: Option<String>,
}

/// Parameter order is the manifest's order; a tiny ordered map keeps it.
pub mod indexmap_lite {
    use super::Param;
    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Parameters by name, in declaration order.
    #[derive(Clone, Debug, Default)]
    pub struct OrderedParams(pub Vec<(String, Param)>);

    impl OrderedParams {
        pub fn get(&self, name: &str) -> Option<&Param> {
            self.0.iter().find(|(n, _)| n == name).map(|(_, p)| p)
        }
        pub fn iter(&self) -> impl Iterator<Item = &(String, Param)> {
            self.0.iter()
        }
        pub fn names(&self) -> Vec<&str> {
            self.0.iter().map(|(n, _)| n.as_str()).collect()
        }
    }

    impl Serialize for OrderedParams {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }

    impl<'de> Deserialize<'de> for OrderedParams {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = OrderedParams;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a table of parameters")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = m.next_entry::<String, Param>()? {
                        out.push((k, v));
                    }
                    Ok(OrderedParams(out))
                }
            }
            d.deserialize_map(V)
        }
    }
}

/// A bad manifest or bad parameter value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ManifestError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: parameter `{param}`: {message}")]
    Declaration {
        file: String,
        param: String,
        message: String,
    },
    #[error("unknown parameter `{name}` (from {origin}); {runbook} takes: {known}")]
    Unknown {
        name: String,
        origin: String,
        runbook: String,
        known: String,
    },
    #[error("parameter `{name}` (from {origin}): {message}")]
    Invalid {
        name: String,
        origin: String,
        message: String,
    },
    #[error("missing required parameter `{name}` ({help}); give it with --var {name}=...{env}")]
    Missing {
        name: String,
        help: String,
        env: String,
    },
}

impl Manifest {
    /// Parse and check a manifest; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            file: file.to_string(),
            message: toml_message(text, &e),
        })?;
        let name_ok = !manifest.name.is_empty()
            && manifest
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(ManifestError::Parse {
                file: file.into(),
                message: format!(
                    "name `{}` must be letters, digits, `-` and `_` only",
                    manifest.name
                ),
            });
        }
        for (name, p) in manifest.params.iter() {
            let decl = |message: String| ManifestError::Declaration {
                file: file.into(),
                param: name.clone(),
                message,
            };
            if p.items.is_some() && p.kind != ParamType::List {
                return Err(decl("`items` is only for lists".into()));
            }
            if p.required && p.default.is_some() {
                return Err(decl("a required parameter cannot have a default".into()));
            }
            if p.kind == ParamType::Secret && p.default.is_some() {
                return Err(decl("a secret cannot have a default".into()));
            }
            if let Some(d) = &p.default {
                check_value(p, d).map_err(|m| decl(format!("default: {m}")))?;
            }
        }
        Ok(manifest)
    }
}

/// Where a parameter value came from, for messages.
#[derive(Clone, Debug)]
pub enum Origin {
    Var,
    VarsFile(String),
    Env(String),
    Default,
    Journal,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Var => f.write_str("--var"),
            Origin::VarsFile(p) => write!(f, "{p}"),
            Origin::Env(v) => write!(f, "environment variable {v}"),
            Origin::Default => f.write_str("default"),
            Origin::Journal => f.write_str("the journal of the run being resumed"),
        }
    }
}

/// Parse a `--var` string value into the parameter's type.
pub fn parse_cli_value(p: &Param, raw: &str) -> Result<toml::Value, String> {
    let item_kind = p.items.unwrap_or(ParamType::String);
    let scalar = |kind: ParamType, raw: &str| -> Result<toml::Value, String> {
        match kind {
            ParamType::Int => raw
                .trim()
                .parse::<i64>()
                .map(toml::Value::Integer)
                .map_err(|_| format!("expected an int, got `{raw}`")),
            ParamType::Bool => match raw.trim() {
                "true" | "yes" | "1" => Ok(toml::Value::Boolean(true)),
                "false" | "no" | "0" => Ok(toml::Value::Boolean(false)),
                _ => Err(format!("expected true or false, got `{raw}`")),
            },
            _ => Ok(toml::Value::String(raw.to_string())),
        }
    };
    match p.kind {
        ParamType::List => {
            let t = raw.trim();
            if t.starts_with('[') {
                let v: toml::Value = toml::from_str::<toml::Table>(&format!("v = {t}"))
                    .map_err(|e| format!("not a TOML array: {}", e.message()))?
                    .remove("v")
                    .unwrap_or(toml::Value::Array(vec![]));
                Ok(v)
            } else if t.is_empty() {
                Ok(toml::Value::Array(vec![]))
            } else {
                t.split(',')
                    .map(|s| scalar(item_kind, s.trim()))
                    .collect::<Result<Vec<_>, _>>()
                    .map(toml::Value::Array)
            }
        }
        ParamType::Map => toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .map_err(|e| {
                format!(
                    "expected a TOML inline table like {{a = \"b\"}}: {}",
                    e.message()
                )
            })
            .map(|mut t| {
                t.remove("v")
                    .unwrap_or(toml::Value::Table(Default::default()))
            }),
        kind => scalar(kind, raw),
    }
}

/// Check a value against its declaration.
pub fn check_value(p: &Param, v: &toml::Value) -> Result<(), String> {
    check_kind(p.kind, p.items, v)?;
    if let (Some(min), toml::Value::Integer(i)) = (p.min, v) {
        if *i < min {
            return Err(format!("{i} is below the minimum {min}"));
        }
    }
    if let (Some(max), toml::Value::Integer(i)) = (p.max, v) {
        if *i > max {
            return Err(format!("{i} is above the maximum {max}"));
        }
    }
    if let Some(choices) = &p.choices {
        if !choices.contains(v) {
            let list: Vec<String> = choices.iter().map(|c| c.to_string()).collect();
            return Err(format!("{v} is not one of {}", list.join(", ")));
        }
    }
    Ok(())
}

fn check_kind(kind: ParamType, items: Option<ParamType>, v: &toml::Value) -> Result<(), String> {
    let got = || format!("{} `{}`", v.type_str(), v);
    match (kind, v) {
        (ParamType::String | ParamType::Secret, toml::Value::String(_)) => Ok(()),
        (ParamType::Hostname, toml::Value::String(s)) => crate::value_kind::hostname(s),
        (ParamType::Unit, toml::Value::String(s)) => crate::value_kind::unit(s),
        (ParamType::Path, toml::Value::String(s)) => crate::value_kind::path(s),
        (ParamType::Url, toml::Value::String(s)) => crate::value_kind::url(s),
        (ParamType::Version, toml::Value::String(s)) => crate::value_kind::version(s),
        (ParamType::Int, toml::Value::Integer(_)) => Ok(()),
        (ParamType::Bool, toml::Value::Boolean(_)) => Ok(()),
        (ParamType::Map, toml::Value::Table(_)) => Ok(()),
        (ParamType::Ip, toml::Value::String(s)) => s
            .parse::<std::net::IpAddr>()
            .map(|_| ())
            .map_err(|_| format!("`{s}` is not an IP address")),
        (ParamType::Cidr, toml::Value::String(s)) => s
            .parse::<ipnet::IpNet>()
            .map(|_| ())
            .map_err(|_| format!("`{s}` is not a network in CIDR notation (like 10.1.0.0/16)")),
        (ParamType::List, toml::Value::Array(a)) => {
            for (i, item) in a.iter().enumerate() {
                check_kind(items.unwrap_or(ParamType::String), None, item)
                    .map_err(|m| format!("item {i}: {m}"))?;
            }
            Ok(())
        }
        (ParamType::Secret, _) => Err(format!("expected a string, got {}", v.type_str())),
        (k, _) => Err(format!("expected {} {k}, got {}", article(k), got())),
    }
}

fn article(k: ParamType) -> &'static str {
    match k {
        ParamType::Int | ParamType::Ip | ParamType::Url => "an",
        _ => "a",
    }
}

/// A TOML error with line and column.
pub fn toml_message(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            format!("line {line}, column {col}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

/// Parameter values after validation, with secrets kept apart.
#[derive(Clone, Debug, Default)]
pub struct Values {
    pub values: BTreeMap<String, toml::Value>,
    /// Names of secret parameters.
    pub secret: Vec<String>,
}

/// Inputs from the command line and files, before validation.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// `--vars` files: (path, table).
    pub files: Vec<(String, toml::Table)>,
    /// `--var k=v`, in order (later wins).
    pub vars: Vec<(String, String)>,
    /// Values recorded by the journal of a resumed run.
    pub journal: BTreeMap<String, toml::Value>,
}

/// Validate inputs against the manifest: unknown names, types, required ones.
pub fn resolve(
    m: &Manifest,
    inputs: &Inputs,
    env: &BTreeMap<String, String>,
) -> Result<Values, ManifestError> {
    let unknown = |name: &str, origin: Origin| ManifestError::Unknown {
        name: name.into(),
        origin: origin.to_string(),
        runbook: m.name.clone(),
        known: if m.params.0.is_empty() {
            "no parameters".into()
        } else {
            m.params.names().join(", ")
        },
    };
    let mut chosen: BTreeMap<String, (toml::Value, Origin)> = BTreeMap::new();
    for (name, value) in &inputs.journal {
        if m.params.get(name).is_some() {
            chosen.insert(name.clone(), (value.clone(), Origin::Journal));
        }
    }
    for (path, table) in &inputs.files {
        for (name, value) in table {
            if m.params.get(name).is_none() {
                return Err(unknown(name, Origin::VarsFile(path.clone())));
            }
            chosen.insert(
                name.clone(),
                (value.clone(), Origin::VarsFile(path.clone())),
            );
        }
    }
    for (name, raw) in &inputs.vars {
        let p = m
            .params
            .get(name)
            .ok_or_else(|| unknown(name, Origin::Var))?;
        let value = parse_cli_value(p, raw).map_err(|message| ManifestError::Invalid {
            name: name.clone(),
            origin: Origin::Var.to_string(),
            message,
        })?;
        chosen.insert(name.clone(), (value, Origin::Var));
    }
    let mut out = Values::default();
    for (name, p) in m.params.iter() {
        if p.kind == ParamType::Secret {
            out.secret.push(name.clone());
        }
        let entry = chosen.remove(name).or_else(|| {
            let var = p.env.as_ref()?;
            let v = env.get(var)?;
            let value = parse_cli_value(p, v).ok()?;
            Some((value, Origin::Env(var.clone())))
        });
        let entry = entry.or_else(|| p.default.clone().map(|d| (d, Origin::Default)));
        match entry {
            Some((value, origin)) => {
                check_value(p, &value).map_err(|message| ManifestError::Invalid {
                    name: name.clone(),
                    origin: origin.to_string(),
                    message: if p.kind == ParamType::Secret {
                        "expected a string".into()
                    } else {
                        message
                    },
                })?;
                out.values.insert(name.clone(), value);
            }
            None if p.required => {
                return Err(ManifestError::Missing {
                    name: name.clone(),
                    help: p.help.clone(),
                    env: p
                        .env
                        .as_ref()
                        .map(|e| format!(" or set {e}"))
                        .unwrap_or_default(),
                })
            }
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = r#"
name = "demo"
version = "1.2.3"
description = "a demo"

[params.nodes]
type = "int"
default = 3
min = 1
help = "how many nodes"

[params.network]
type = "cidr"
default = "10.1.0.0/16"
help = "the network"

[params.names]
type = "list"
default = ["a", "b"]
help = "names"

[params.token]
type = "secret"
env = "DEMO_TOKEN"
required = true
help = "API token"
"#;

    fn inputs(vars: &[(&str, &str)]) -> Inputs {
        Inputs {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn values_are_typed_validated_and_ordered() {
        let m = Manifest::parse("runbook.toml", M).unwrap();
        assert_eq!(m.params.names(), vec!["nodes", "network", "names", "token"]);
        let env = BTreeMap::from([("DEMO_TOKEN".to_string(), "s3cr3t-token".to_string())]);
        let v = resolve(&m, &inputs(&[("nodes", "5"), ("names", "x,y,z")]), &env).unwrap();
        assert_eq!(v.values["nodes"], toml::Value::Integer(5));
        assert_eq!(v.values["names"].as_array().unwrap().len(), 3);
        assert_eq!(v.secret, vec!["token"]);

        let e = resolve(&m, &inputs(&[("nodes", "five")]), &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter `nodes` (from --var): expected an int, got `five`"
        );
        let e = resolve(&m, &inputs(&[("nodes", "0")]), &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter `nodes` (from --var): 0 is below the minimum 1"
        );
        let e = resolve(&m, &inputs(&[("network", "10.1.0.0/33")]), &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter `network` (from --var): `10.1.0.0/33` is not a network in CIDR notation (like 10.1.0.0/16)"
        );
        let e = resolve(&m, &inputs(&[("nodse", "3")]), &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown parameter `nodse` (from --var); demo takes: nodes, network, names, token"
        );
        let e = resolve(&m, &inputs(&[]), &BTreeMap::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "missing required parameter `token` (API token); give it with --var token=... or set DEMO_TOKEN"
        );
    }

    #[test]
    fn bad_manifests_name_line_and_column() {
        let e = Manifest::parse(
            "x/runbook.toml",
            "name = \"a\"\nversion = \"1.0\"\ndescription = \"d\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("x/runbook.toml: line 2, column 11:"), "{e}");
        let e = Manifest::parse(
            "runbook.toml",
            "name = \"a\"\nversion = \"1.0.0\"\ndescription = \"d\"\n[params.x]\ntype = \"strin\"\nhelp = \"h\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 5, column 8"), "{e}");
        assert!(e.contains("unknown variant `strin`"), "{e}");
    }
}
