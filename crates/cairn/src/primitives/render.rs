//! `render`: Jinja templates (minijinja) from the runbook's own folder.
//!
//! Rendering is pure: it reads only the runbook's files and its arguments, so
//! it is a plain function, not a journaled step. Undefined variables are
//! errors (`UndefinedBehavior::Strict`). Errors name the template and line and
//! the failing expression, never the values of variables (which may be
//! secrets): minijinja's alternate error format, which dumps every referenced
//! variable, is never used.
//!
//! Whitespace: `trim_blocks` is on (the newline after a `{% ... %}` tag is
//! removed, as in Ansible) and a template's final newline is kept.
//!
//! Escaping: every printed value is escaped for the format of the file it
//! lands in (YAML, env file, systemd unit, shell, OpenSSL config, or plain
//! lines), chosen by the template's name or a `{# format: ... #}` first line;
//! a value that cannot be written safely (a line break in a line-based file)
//! is refused, naming the template, line and variable. See
//! [`super::template_format`].

use super::template_format::Format;
use crate::bundle::Bundle;
use crate::error::StepError;
use crate::executor::{script_error, Executor};
use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use rhai::{Dynamic, Map, NativeCallContext};
use std::borrow::Cow;
use std::sync::Arc;

/// Name of templates given as text (`render_str`).
const INLINE: &str = "<string>";

/// The format of the template `name`: declared on its first line, else by its name.
fn format_of(name: &str, source: Option<&str>) -> Format {
    source
        .and_then(|s| Format::declared(s).ok().flatten())
        .unwrap_or_else(|| Format::of_name(name))
}

/// Print `value` escaped for the template's format (see [`Format`]).
fn write_value(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    if value.is_safe() {
        return write!(out, "{value}").map_err(minijinja::Error::from);
    }
    let format = match state.auto_escape() {
        AutoEscape::Custom(name) => Format::from_name(name).unwrap_or(Format::Line),
        _ => Format::Line,
    };
    let escaped = escape_value(format, value)?;
    out.write_str(&escaped).map_err(minijinja::Error::from)
}

/// `value` as text escaped for `format`; YAML prints booleans and none as YAML does.
fn escape_value(format: Format, value: &minijinja::Value) -> Result<String, minijinja::Error> {
    let text = match (format, value.kind()) {
        (Format::Yaml, minijinja::value::ValueKind::Bool) => {
            if value.is_true() { "true" } else { "false" }.to_string()
        }
        (Format::Yaml, minijinja::value::ValueKind::None) => "null".to_string(),
        _ => value.to_string(),
    };
    format
        .escape(&text)
        .map_err(|why| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, why))
}

/// The explicit filters `yaml`, `env`, `unit`, `shell`, `cnf`: the value
/// escaped for that format, marked safe (not escaped again).
fn add_format_filters(env: &mut Environment<'static>) {
    for format in [
        Format::Yaml,
        Format::Env,
        Format::Unit,
        Format::Shell,
        Format::Cnf,
    ] {
        env.add_filter(
            format.name(),
            move |value: minijinja::Value| -> Result<minijinja::Value, minijinja::Error> {
                escape_value(format, &value).map(minijinja::Value::from_safe_string)
            },
        );
    }
}

fn environment(bundle: Option<Arc<Bundle>>, inline: Option<Format>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_debug(true);
    env.set_formatter(write_value);
    add_format_filters(&mut env);
    let sources = bundle.clone();
    env.set_auto_escape_callback(move |name| {
        let format = match (&sources, inline) {
            (_, Some(format)) if name == INLINE => format,
            (Some(b), _) => {
                let source = b
                    .files()
                    .get(std::path::Path::new(name))
                    .and_then(|bytes| std::str::from_utf8(bytes).ok());
                format_of(name, source)
            }
            (None, _) => Format::of_name(name),
        };
        AutoEscape::Custom(format.name().into())
    });
    if let Ok(syntax) = SyntaxConfig::builder()
        .trim_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    // `./x` and `../x` are relative to the including template; other names
    // are relative to the runbook folder.
    env.set_path_join_callback(|name, parent| {
        if !(name.starts_with("./") || name.starts_with("../")) {
            return Cow::Borrowed(name);
        }
        let dir = parent.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
        for part in name.split('/') {
            match part {
                "." | "" => {}
                // popping past the root leaves `..` in place, and the loader refuses it
                ".." if parts.last().is_some_and(|p| *p != "..") => {
                    parts.pop();
                }
                other => parts.push(other),
            }
        }
        Cow::Owned(parts.join("/"))
    });
    if let Some(bundle) = bundle {
        env.set_loader(move |name| {
            let rel = Bundle::check_path(name).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
            })?;
            let rel = rel.to_string_lossy();
            match bundle.files().get(std::path::Path::new(rel.as_ref())) {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes.clone()).map(Some).map_err(|_| {
                    minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("`{name}` is not UTF-8 text"),
                    )
                }),
            }
        });
    }
    env
}

/// A template error as data: template name, line, what went wrong and the
/// source of the failing expression. Never a variable's value.
fn template_error(e: &minijinja::Error, fallback_name: &str) -> StepError {
    let mut message = e.kind().to_string();
    if let Some(detail) = e.detail() {
        message.push_str(": ");
        message.push_str(detail);
    }
    if let (Some(src), Some(range)) = (e.template_source(), e.range()) {
        if let Some(expr) = src.get(range) {
            let expr = expr.trim();
            let said = e.detail().is_some_and(|d| d.contains(&format!("`{expr}`")));
            if !said && !expr.is_empty() && expr.len() <= 80 && !expr.contains('\n') {
                message.push_str(&format!(" (in `{expr}`)"));
            }
        }
    }
    // an error raised inside an included template: say where it was included from
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        if let Some(inner) = inner.downcast_ref::<minijinja::Error>() {
            message.push_str(&format!("; {}", template_error(inner, "?")));
        }
        source = inner.source();
    }
    StepError::Template {
        name: e.name().unwrap_or(fallback_name).to_string(),
        line: e.line().unwrap_or(0),
        message,
    }
}

/// Render the runbook file `path` (relative to the runbook folder) with `vars`.
pub fn render(
    bundle: &Arc<Bundle>,
    path: &str,
    vars: &serde_json::Value,
) -> Result<String, StepError> {
    Bundle::check_path(path).map_err(|_| {
        StepError::invalid(
            "template",
            format!(
                "`{path}` escapes the runbook folder (only relative paths inside it are allowed)"
            ),
        )
    })?;
    bundle.read(path).map_err(|_| {
        StepError::invalid(
            "template",
            format!("no template `{path}` in runbook {}", bundle.origin),
        )
    })?;
    if let Some(source) = bundle
        .files()
        .get(std::path::Path::new(path))
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
    {
        Format::declared(source).map_err(|why| StepError::Template {
            name: path.to_string(),
            line: 1,
            message: why,
        })?;
    }
    let env = environment(Some(bundle.clone()), None);
    let template = env
        .get_template(path)
        .map_err(|e| template_error(&e, path))?;
    template
        .render(minijinja::Value::from(minijinja::value::Serde(vars)))
        .map_err(|e| template_error(&e, path))
}

/// Render template text with `vars`. `{% include %}` is not available (there is
/// no folder to include from).
pub fn render_str(text: &str, vars: &serde_json::Value) -> Result<String, StepError> {
    let format = Format::declared(text)
        .map_err(|why| StepError::Template {
            name: INLINE.to_string(),
            line: 1,
            message: why,
        })?
        .unwrap_or(Format::Line);
    let env = environment(None, Some(format));
    let template = env
        .template_from_named_str(INLINE, text)
        .map_err(|e| template_error(&e, INLINE))?;
    template
        .render(minijinja::Value::from(minijinja::value::Serde(vars)))
        .map_err(|e| template_error(&e, INLINE))
}

/// Turn a Rhai value into template data. Secrets are revealed (a template is
/// where a secret goes into a config file); handles (`Cert`, `Host`, ...)
/// must have become maps of their fields first ([`crate::args::lower`]).
pub fn to_json(path: &str, value: &Dynamic) -> Result<serde_json::Value, StepError> {
    use serde_json::Value;
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = value.as_int() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = value.as_float() {
        return Ok(Value::from(f));
    }
    if value.is_string() {
        return Ok(Value::String(value.to_string()));
    }
    if let Some(secret) = value.read_lock::<crate::engine::Secret>() {
        return Ok(Value::String(secret.0.to_string()));
    }
    if value.is_array() {
        let array = value
            .read_lock::<rhai::Array>()
            .map(|a| a.clone())
            .unwrap_or_default();
        return array
            .iter()
            .enumerate()
            .map(|(i, v)| to_json(&format!("{path}[{i}]"), v))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if value.is_map() {
        let map = value
            .read_lock::<Map>()
            .map(|m| m.clone())
            .unwrap_or_default();
        let mut out = serde_json::Map::new();
        for (k, v) in &map {
            let sub = if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            };
            out.insert(k.to_string(), to_json(&sub, v)?);
        }
        return Ok(Value::Object(out));
    }
    Err(StepError::invalid(
        "vars",
        format!(
            "`{path}` is a {}, which a template cannot use",
            value.type_name()
        ),
    ))
}

/// `vars` with its handles as maps of their fields (see [`to_json`]).
fn lowered(call: &NativeCallContext, vars: Map) -> Map {
    crate::args::lower(call, Dynamic::from_map(vars)).cast::<Map>()
}

fn vars_of(vars: Map) -> Result<serde_json::Value, StepError> {
    to_json("", &Dynamic::from_map(vars))
}

/// Register `render` and `render_str`.
pub fn register(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    let x = exec.clone();
    crate::registration::function!(
        engine,
        /// Render a Jinja template of the runbook (`path` relative to the runbook folder,
        /// e.g. `"templates/etcd.conf.j2"`) with the variables in `vars`.
        ///
        /// Undefined variables are errors naming the template and line. Templates may
        /// `{% include %}` / `{% import %}` other files of the runbook (`./x` is relative to
        /// the including template). Built-in filters include `join`, `indent`, `default`,
        /// `upper`, `lower`, `replace`, `trim`. `trim_blocks` is on; the final newline is kept.
        ///
        /// Every printed value is escaped for the file's format, from its name or a first line
        /// `{# format: yaml #}`: `*.yaml` (write `key: "{{ v }}"`; quotes, `\` and line breaks
        /// escaped), `*.env` / `*.default` (write `KEY="{{ v }}"`; `"` `$` `` ` `` `\` escaped),
        /// systemd units (`*.service`, ...), `*.sh` (one shell word), `*.cnf`; in every
        /// line-based format (all but yaml and `text`) a value with a line break is refused, naming
        /// the template, line and variable. `{{ v | safe }}` prints a value as is; the filters
        /// `yaml`, `env`, `unit`, `shell`, `cnf` escape for one format explicitly.
        fn "render"("path: &str", "vars: Map") -> "String" =
        move |call: NativeCallContext, path: &str, vars: Map| -> Result<String, Box<rhai::EvalAltResult>> {
            let bundle = x.ctx().bundle.clone();
            vars_of(lowered(&call, vars))
                .and_then(|vars| render(&bundle, path, &vars))
                .map_err(|e| script_error(format!("render: {e}")))
        }
    );

    crate::registration::function!(
        engine,
        /// Render Jinja template text with the variables in `vars` (see `render`).
        fn "render_str"("template: &str", "vars: Map") -> "String" =
        |call: NativeCallContext,
         text: &str,
         vars: Map|
         -> Result<String, Box<rhai::EvalAltResult>> {
            vars_of(lowered(&call, vars))
                .and_then(|vars| render_str(text, &vars))
                .map_err(|e| script_error(format!("render_str: {e}")))
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn bundle(files: &[(&str, &str)]) -> Arc<Bundle> {
        let files: BTreeMap<PathBuf, Vec<u8>> = files
            .iter()
            .map(|(p, c)| (PathBuf::from(p), c.as_bytes().to_vec()))
            .collect();
        Arc::new(Bundle::new("runbooks/test", files))
    }

    const ETCD_CONF: &str = "\
# etcd for {{ name }}
ETCD_NAME={{ name }}
ETCD_INITIAL_CLUSTER=\"{{ peers | join(',') }}\"
{% for ip in ips %}
# listens on {{ ip }}
{% endfor %}
ETCD_LISTEN_PEER_URLS=https://{{ peer_ip }}:2380
";

    #[test]
    fn a_good_render() {
        let b = bundle(&[("templates/etcd.conf.j2", ETCD_CONF)]);
        let out = render(
            &b,
            "templates/etcd.conf.j2",
            &json!({"name": "node-1", "peers": ["a=https://1:2380", "b=https://2:2380"],
                    "ips": ["10.0.0.1", "10.0.0.2"], "peer_ip": "10.0.0.1"}),
        )
        .unwrap();
        assert_eq!(
            out,
            "# etcd for node-1\nETCD_NAME=node-1\n\
             ETCD_INITIAL_CLUSTER=\"a=https://1:2380,b=https://2:2380\"\n\
             # listens on 10.0.0.1\n# listens on 10.0.0.2\n\
             ETCD_LISTEN_PEER_URLS=https://10.0.0.1:2380\n"
        );
    }

    #[test]
    fn an_undefined_variable_names_template_line_and_expression_not_values() {
        let b = bundle(&[("templates/etcd.conf.j2", ETCD_CONF)]);
        let err = render(
            &b,
            "templates/etcd.conf.j2",
            &json!({"name": "s3cr3t-value", "peers": [], "ips": []}),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "template templates/etcd.conf.j2 line 7: undefined value: `peer_ip` is undefined"
        );
        assert!(!err.contains("s3cr3t"));

        let err = render_str(
            "a\n{{ token }} {{ missing.field }}",
            &json!({"token": "s3cr3t-value"}),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "template <string> line 2: undefined value: `missing` is undefined (in `missing.field`)"
        );
        let err = render_str("{{ node.ip }}", &json!({"node": {"name": "s3cr3t-value"}}))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("template <string> line 1: undefined value"),
            "{err}"
        );
        assert!(err.contains("node.ip"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn paths_escaping_the_runbook_folder_are_rejected() {
        let b = bundle(&[("templates/a.j2", "{% include '../../etc/passwd' %}")]);
        for bad in ["../secrets.txt", "/etc/passwd", "templates/../../x"] {
            let err = render(&b, bad, &json!({})).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("invalid `template`: `{bad}` escapes the runbook folder (only relative paths inside it are allowed)")
            );
        }
        let err = render(&b, "templates/a.j2", &json!({}))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("template templates/a.j2 line 1: "), "{err}");
        assert!(err.contains("escapes the runbook folder"), "{err}");
        let err = render(&b, "templates/none.j2", &json!({}))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid `template`: no template `templates/none.j2` in runbook runbooks/test"
        );
    }

    #[test]
    fn templates_include_and_import_their_neighbours() {
        let b = bundle(&[
            (
                "templates/main.j2",
                "{% import './macros.j2' as m %}{{ m.url(ip) }}\n{% include 'shared/footer.j2' %}",
            ),
            (
                "templates/macros.j2",
                "{% macro url(ip) %}https://{{ ip }}:2379{% endmacro %}",
            ),
            ("shared/footer.j2", "# end {{ ip }}\n"),
        ]);
        let out = render(&b, "templates/main.j2", &json!({"ip": "10.0.0.1"})).unwrap();
        assert_eq!(out, "https://10.0.0.1:2379\n# end 10.0.0.1\n");

        let b = bundle(&[
            ("templates/main.j2", "x\n{% include 'templates/inner.j2' %}"),
            ("templates/inner.j2", "\n\n{{ nope }}"),
        ]);
        let err = render(&b, "templates/main.j2", &json!({}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("templates/inner.j2 line 3: undefined value"),
            "{err}"
        );
    }

    /// The token of defect 3: a quote and line breaks that tried to add keys.
    const HOSTILE_TOKEN: &str = "tok\"\nenable-pprof: true\nenable-v2: true\nx: \"";

    #[test]
    fn a_yaml_value_cannot_add_keys() {
        let b = bundle(&[(
            "templates/etcd.conf.j2",
            "{#- format: yaml -#}\n# etcd\nname: \"{{ name }}\"\ninitial-cluster-token: \"{{ token }}\"\nimage: {{ name }}\n",
        )]);
        let out = render(
            &b,
            "templates/etcd.conf.j2",
            &json!({"name": "n\\1", "token": HOSTILE_TOKEN}),
        )
        .unwrap();
        assert_eq!(
            out,
            "# etcd\nname: \"n\\\\1\"\n\
             initial-cluster-token: \"tok\\\"\\nenable-pprof: true\\nenable-v2: true\\nx: \\\"\"\n\
             image: n\\\\1\n"
        );
        let keys: Vec<&str> = out
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(':').map(|(k, _)| k))
            .collect();
        assert_eq!(keys, ["name", "initial-cluster-token", "image"]);
        // by name too, and booleans as YAML writes them
        let b = bundle(&[("t/x.yaml.j2", "a: {{ t }}\nb: {{ f }}\n")]);
        let out = render(&b, "t/x.yaml.j2", &json!({"t": "a\nb: c", "f": true})).unwrap();
        assert_eq!(out, "a: a\\nb: c\nb: true\n");
    }

    #[test]
    fn a_line_break_in_a_line_based_file_is_refused_naming_the_variable() {
        for (name, text) in [
            (
                "templates/options.env.j2",
                "ETCD_NAME=\"{{ name }}\"\nETCD_INITIAL_CLUSTER_TOKEN=\"{{ token }}\"\n",
            ),
            (
                "templates/etcd.default.j2",
                "A=\"x\"\nETCD_INITIAL_CLUSTER_TOKEN=\"{{ token }}\"\n",
            ),
            (
                "templates/etcd-members.j2",
                "{#- format: env -#}\nA=1\nETCD_INITIAL_CLUSTER_TOKEN=\"{{ token }}\"\n",
            ),
            (
                "templates/etcd.service.j2",
                "[Service]\nEnvironment=\"T={{ token }}\"\n",
            ),
            ("templates/run.sh.j2", "#!/bin/sh\nx\n# {{ token }}\n"),
            ("templates/openssl.cnf.j2", "[a]\nb = {{ token }}\n"),
            ("templates/kubernetes.list.j2", "deb\ndeb {{ token }} /\n"),
        ] {
            let b = bundle(&[(name, text)]);
            let err = render(&b, name, &json!({"name": "n1", "token": HOSTILE_TOKEN}))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("template {name} line ")), "{err}");
            assert!(err.contains("a line break (\\n)"), "{name}: {err}");
            assert!(err.contains("(in `token`)"), "{name}: {err}");
            assert!(!err.contains("pprof"), "never the value: {err}");
        }
        // inline templates are line-based too
        let err = render_str("A={{ token }}", &json!({"token": HOSTILE_TOKEN}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("(in `token`)"), "{err}");
    }

    #[test]
    fn env_unit_and_shell_values_stay_one_value() {
        let v = json!({"v": "a\"b $(touch /tmp/x) `id` \\ 5%", "w": "node-1"});
        let b = bundle(&[
            ("templates/o.env.j2", "K=\"{{ v }}\"\nN=\"{{ w }}\"\n"),
            (
                "templates/u.service.j2",
                "[Service]\nEnvironment=\"K={{ v }}\"\n",
            ),
            ("templates/s.sh.j2", "echo {{ v }} {{ w }}\n"),
            ("templates/raw.j2", "{# format: text #}\n{{ v }}\n"),
        ]);
        assert_eq!(
            render(&b, "templates/o.env.j2", &v).unwrap(),
            "K=\"a\\\"b \\$(touch /tmp/x) \\`id\\` \\\\ 5%\"\nN=\"node-1\"\n"
        );
        assert_eq!(
            render(&b, "templates/u.service.j2", &v).unwrap(),
            "[Service]\nEnvironment=\"K=a\\\"b $(touch /tmp/x) `id` \\\\ 5%%\"\n"
        );
        assert_eq!(
            render(&b, "templates/s.sh.j2", &v).unwrap(),
            "echo 'a\"b $(touch /tmp/x) `id` \\ 5%' node-1\n"
        );
        assert_eq!(
            render(&b, "templates/raw.j2", &v).unwrap(),
            "a\"b $(touch /tmp/x) `id` \\ 5%\n"
        );
        // explicit filters and `safe`
        let out = render_str(
            "{# format: text #}\n{{ v | shell }} {{ v | env }} {{ w | safe }}",
            &v,
        )
        .unwrap();
        assert_eq!(
            out,
            "'a\"b $(touch /tmp/x) `id` \\ 5%' a\\\"b \\$(touch /tmp/x) \\`id\\` \\\\ 5% node-1"
        );
        let err = render_str("{# format: xml #}\n", &v)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown template format `xml`"), "{err}");
    }

    #[test]
    fn rhai_values_become_template_data() {
        let mut m = Map::new();
        m.insert("n".into(), Dynamic::from(3_i64));
        m.insert(
            "list".into(),
            Dynamic::from_array(vec![Dynamic::from("a"), Dynamic::from(true)]),
        );
        m.insert(
            "secret".into(),
            Dynamic::from(crate::engine::Secret(Arc::from("tok-1234"))),
        );
        m.insert("none".into(), Dynamic::UNIT);
        let v = vars_of(m).unwrap();
        assert_eq!(
            v,
            json!({"n": 3, "list": ["a", true], "secret": "tok-1234", "none": null})
        );
        let out = render_str("{{ secret }} {{ list | join(',') }} {{ n + 1 }}", &v).unwrap();
        assert_eq!(
            out, "tok-1234 a,True 4",
            "Jinja prints booleans as Python does"
        );
    }
}
