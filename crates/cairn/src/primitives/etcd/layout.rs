//! How an etcd member is configured, from the text of the files that start it:
//! systemd unit files, environment files, etcd's YAML `--config-file` and a
//! kubelet static-pod manifest. Pure parsing, no I/O: [`super::member`]
//! gathers the texts on a host and hands them here.
//!
//! etcd's own precedence is applied: a config file (`--config-file` or
//! `ETCD_CONFIG_FILE`) wins over everything and etcd then ignores flags and
//! `ETCD_*` variables; otherwise flags and `ETCD_*` variables both count, but
//! a flag and its own variable together are an error, as etcd (3.4, 3.5)
//! refuses to start with both; what neither sets takes etcd's default (name `default`, data dir
//! `${name}.etcd`, WAL in `${data-dir}/member/wal`, URLs on localhost).
//!
//! Anything that cannot be parsed is a [`FactError`] naming the file and line;
//! nothing is guessed.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A file (or a line of one) that could not be read or understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FactError {
    /// The file, on the host.
    pub file: String,
    /// 1-based line, when the problem is on one line.
    pub line: Option<usize>,
    pub message: String,
}

impl FactError {
    pub fn at(file: &str, line: usize, message: impl Into<String>) -> Self {
        FactError {
            file: file.into(),
            line: Some(line),
            message: message.into(),
        }
    }
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        FactError {
            file: file.into(),
            line: None,
            message: message.into(),
        }
    }
    /// `file line N` or `file`.
    pub fn place(&self) -> String {
        match self.line {
            Some(l) => format!("{} line {l}", self.file),
            None => self.file.clone(),
        }
    }
}

impl fmt::Display for FactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place(), self.message)
    }
}

type Res<T> = Result<T, FactError>;

/// A value and where it was set (for `origins` and for error messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub origin: String,
    /// The file it was set in, and the line when known.
    pub file: String,
    pub line: Option<usize>,
}

// ---------------------------------------------------------------------------
// systemd unit files

/// What the `[Service]` sections of a unit (its file and drop-ins, in the
/// order systemd reads them) say about how etcd starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitConfig {
    /// The `ExecStart=` line in effect: raw value, file, line.
    pub exec_start: Option<(String, String, usize)>,
    /// `Environment=` assignments in order: name, value, file, line.
    pub environment: Vec<(String, String, String, usize)>,
    /// `EnvironmentFile=` entries in order: path, optional (`-`), origin.
    pub environment_files: Vec<(String, bool, String)>,
    pub working_directory: Option<String>,
}

/// Specifier values for `%n`, `%N`, `%p`, `%i`, `%H` of a unit named `unit`
/// (`etcd.service`) on a host named `hostname`.
pub struct Specifiers<'a> {
    pub unit: &'a str,
    pub hostname: &'a str,
}

impl Specifiers<'_> {
    fn expand(&self, s: &str, file: &str, line: usize) -> Res<String> {
        let name = self.unit.rsplit_once('.').map_or(self.unit, |(n, _)| n);
        let (prefix, instance) = match name.split_once('@') {
            Some((p, i)) => (p, i),
            None => (name, ""),
        };
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('n') => out.push_str(self.unit),
                Some('N') => out.push_str(name),
                Some('p') => out.push_str(prefix),
                Some('i') | Some('I') => out.push_str(instance),
                Some('H') => out.push_str(self.hostname),
                Some(other) => {
                    return Err(FactError::at(
                        file,
                        line,
                        format!(
                            "specifier %{other} is not one cairn understands (%n %N %p %i %H %%)"
                        ),
                    ))
                }
                None => {
                    return Err(FactError::at(
                        file,
                        line,
                        "a lone % at the end of the value",
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// The logical lines of a unit file (continuations joined): (first line
/// number, text).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let t = raw.trim();
        if let Some((start, mut acc)) = pending.take() {
            if t.starts_with('#') || t.starts_with(';') {
                pending = Some((start, acc));
                continue;
            }
            if let Some(head) = t.strip_suffix('\\') {
                acc.push(' ');
                acc.push_str(head.trim_end());
                pending = Some((start, acc));
            } else {
                acc.push(' ');
                acc.push_str(t);
                out.push((start, acc));
            }
            continue;
        }
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => pending = Some((n, head.trim_end().to_string())),
            None => out.push((n, t.to_string())),
        }
    }
    if let Some(p) = pending {
        out.push(p);
    }
    out
}

/// Read unit files `(path, text)` in systemd's order (the unit file, then its
/// drop-ins) into what concerns etcd's start.
pub fn parse_unit(files: &[(String, String)], spec: &Specifiers) -> Res<UnitConfig> {
    let mut u = UnitConfig::default();
    for (path, text) in files {
        let mut section = String::new();
        for (n, line) in logical_lines(text) {
            if line.starts_with('[') {
                if !line.ends_with(']') {
                    return Err(FactError::at(
                        path,
                        n,
                        format!("bad section header `{line}`"),
                    ));
                }
                section = line[1..line.len() - 1].to_string();
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(FactError::at(path, n, format!("not `Key=Value`: `{line}`")));
            };
            if section != "Service" {
                continue;
            }
            let (key, value) = (key.trim(), value.trim());
            let origin = format!("{path} line {n}");
            match key {
                "ExecStart" => {
                    u.exec_start = if value.is_empty() {
                        None
                    } else if let Some((_, f, l)) = &u.exec_start {
                        return Err(FactError::at(
                            path,
                            n,
                            format!("a second ExecStart= (the first is in {f} line {l}): only Type=oneshot units may have several, and etcd's is not one"),
                        ));
                    } else {
                        let value = spec.expand(value, path, n)?;
                        split_words(&value, path, n)?;
                        Some((value, path.clone(), n))
                    };
                }
                "Environment" => {
                    if value.is_empty() {
                        u.environment.clear();
                        continue;
                    }
                    let value = spec.expand(value, path, n)?;
                    for word in split_words(&value, path, n)? {
                        let Some((k, v)) = word.split_once('=') else {
                            return Err(FactError::at(
                                path,
                                n,
                                format!("Environment= item `{word}` is not NAME=VALUE"),
                            ));
                        };
                        u.environment
                            .push((k.to_string(), v.to_string(), path.clone(), n));
                    }
                }
                "EnvironmentFile" => {
                    if value.is_empty() {
                        u.environment_files.clear();
                        continue;
                    }
                    let value = spec.expand(value, path, n)?;
                    let (optional, file) = match value.strip_prefix('-') {
                        Some(rest) => (true, rest.to_string()),
                        None => (false, value.clone()),
                    };
                    if !file.starts_with('/') || file.contains(['*', '?', '[']) {
                        return Err(FactError::at(
                            path,
                            n,
                            format!("EnvironmentFile={value}: cairn reads absolute paths without wildcards"),
                        ));
                    }
                    u.environment_files.push((file, optional, origin));
                }
                "WorkingDirectory" => {
                    let value = spec.expand(value, path, n)?;
                    let dir = value.strip_prefix('-').unwrap_or(&value).to_string();
                    if !dir.starts_with('/') {
                        return Err(FactError::at(
                            path,
                            n,
                            format!(
                                "WorkingDirectory={value}: only an absolute path is understood"
                            ),
                        ));
                    }
                    u.working_directory = Some(dir);
                }
                _ => {}
            }
        }
    }
    Ok(u)
}

/// Split a unit value into words with systemd's quoting: whitespace separates,
/// `"..."` and `'...'` group, backslash escapes (`\n`, `\t`, `\\`, `\"`, ...).
pub fn split_words(s: &str, file: &str, line: usize) -> Res<Vec<String>> {
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"') | (None, '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (Some('\''), c) => word.push(c),
                (_, '\\') => match chars.next() {
                    Some('n') => word.push('\n'),
                    Some('t') => word.push('\t'),
                    Some('r') => word.push('\r'),
                    Some(c) => word.push(c),
                    None => {
                        return Err(FactError::at(
                            file,
                            line,
                            "a backslash at the end of the value",
                        ))
                    }
                },
                (_, c) => word.push(c),
            }
        }
        if let Some(q) = quote {
            return Err(FactError::at(file, line, format!("unterminated {q}quote")));
        }
        words.push(word);
    }
}

/// The argument list of an `ExecStart=` value with the environment's
/// variables expanded as systemd does: `$VAR` as a word of its own becomes
/// its value split at whitespace, `${VAR}` is replaced in place (one word),
/// `$$` is a `$`. Prefixes (`-@:+!`) are dropped.
pub fn exec_argv(
    value: &str,
    env: &BTreeMap<String, Setting>,
    file: &str,
    line: usize,
) -> Res<Vec<String>> {
    let mut rest = value.trim_start();
    let mut argv0_given = false;
    while let Some(c) = rest.chars().next().filter(|c| "-@:+!".contains(*c)) {
        argv0_given |= c == '@';
        rest = &rest[1..];
    }
    let raw = split_words(rest, file, line)?;
    if raw.iter().any(|w| w == ";") {
        return Err(FactError::at(
            file,
            line,
            "ExecStart= with several commands (`;`)",
        ));
    }
    let get = |name: &str| env.get(name).map(|s| s.value.clone()).unwrap_or_default();
    let mut argv = Vec::new();
    for word in raw {
        let bare = word
            .strip_prefix('$')
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if let Some(name) = bare {
            argv.extend(get(name).split_whitespace().map(str::to_string));
            continue;
        }
        let mut out = String::new();
        let mut s = word.as_str();
        while let Some(i) = s.find('$') {
            out.push_str(&s[..i]);
            s = &s[i..];
            if let Some(r) = s.strip_prefix("$$") {
                out.push('$');
                s = r;
            } else if let Some(r) = s.strip_prefix("${") {
                let Some(end) = r.find('}') else {
                    return Err(FactError::at(
                        file,
                        line,
                        format!("unterminated ${{ in `{word}`"),
                    ));
                };
                out.push_str(&get(&r[..end]));
                s = &r[end + 1..];
            } else {
                out.push('$');
                s = &s[1..];
            }
        }
        out.push_str(s);
        argv.push(out);
    }
    if argv0_given && argv.len() > 1 {
        // `@/path argv0 args`: the path runs, argv0 is only its name.
        argv.remove(1);
    }
    if argv.is_empty() {
        return Err(FactError::at(file, line, "ExecStart= names no program"));
    }
    Ok(argv)
}

/// `KEY=VALUE` lines of an environment file, as systemd reads them: `#` and
/// `;` comment lines, quotes, backslash escapes and continuations. A line
/// that is not an assignment is an error (systemd would skip it silently).
pub fn parse_env_file(path: &str, text: &str) -> Res<Vec<(String, String, usize)>> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let n = i + 1;
        let t = lines[i].trim_start();
        i += 1;
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        let Some((key, rest)) = t.split_once('=') else {
            return Err(FactError::at(path, n, "not a NAME=VALUE line"));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(FactError::at(
                path,
                n,
                format!("`{key}` is not a variable name"),
            ));
        }
        let mut value = String::new();
        let mut chars: Vec<char> = rest.trim_start().chars().collect();
        let mut quote: Option<char> = None;
        let mut j = 0;
        let mut trailing_ws = 0usize;
        loop {
            if j >= chars.len() {
                let continued = quote.is_some();
                if continued && i < lines.len() {
                    value.push('\n');
                    chars = lines[i].chars().collect();
                    i += 1;
                    j = 0;
                    continue;
                }
                if continued {
                    return Err(FactError::at(path, n, "unterminated quote"));
                }
                break;
            }
            let c = chars[j];
            j += 1;
            match (quote, c) {
                (None, '"') | (None, '\'') => {
                    quote = Some(c);
                    trailing_ws = 0;
                }
                (Some(q), c) if c == q => quote = None,
                (Some('\''), c) => value.push(c),
                (_, '\\') => {
                    if j >= chars.len() {
                        // continuation onto the next line
                        if i < lines.len() {
                            chars = lines[i].chars().collect();
                            i += 1;
                            j = 0;
                            continue;
                        }
                        break;
                    }
                    value.push(chars[j]);
                    j += 1;
                    trailing_ws = 0;
                }
                (None, c) if c.is_whitespace() => {
                    value.push(c);
                    trailing_ws += 1;
                }
                (_, c) => {
                    value.push(c);
                    trailing_ws = 0;
                }
            }
        }
        value.truncate(value.len() - trailing_ws);
        out.push((key.to_string(), value, n));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// etcd's own settings

/// The boolean settings cairn reports.
const BOOLS: &[&str] = &["client-cert-auth", "peer-client-cert-auth"];

/// etcd's boolean flags: they never take the next argument as their value.
const BOOL_FLAGS: &[&str] = &[
    "client-cert-auth",
    "peer-client-cert-auth",
    "auto-tls",
    "peer-auto-tls",
    "strict-reconfig-check",
    "enable-v2",
    "enable-pprof",
    "enable-grpc-gateway",
    "debug",
    "force-new-cluster",
    "pre-vote",
    "socket-reuse-port",
    "socket-reuse-address",
    "unsafe-no-fsync",
    "version",
    "help",
    "h",
    "experimental-initial-corrupt-check",
    "experimental-enable-v2v3",
    "experimental-enable-lease-checkpoint",
    "experimental-enable-lease-checkpoint-persist",
    "experimental-enable-distributed-tracing",
    "experimental-memory-mlock",
    "experimental-peer-skip-client-san-verification",
    "experimental-compact-hash-check-enabled",
    "experimental-txn-mode-write-with-shared-buffer",
    "experimental-stop-grpc-service-on-defrag",
    "experimental-downgrade-check-time",
    "log-rotation-config-json",
    "client-crl-file",
];

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Command-line flags as etcd (Go's `flag` package) reads them: `-f`,
/// `--f`, `--f=v`, `--f v` (not for booleans), up to `--`. Returns each
/// flag's last value. `origin` names where the command line is.
pub fn parse_flags(
    args: &[String],
    origin: &str,
    file: &str,
    line: Option<usize>,
) -> Result<BTreeMap<String, Setting>, String> {
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            if i < args.len() {
                return Err(format!("`{}` after `--`: etcd takes no arguments", args[i]));
            }
            break;
        }
        let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            return Err(format!("`{a}` is not a flag: etcd takes no arguments"));
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None if BOOL_FLAGS.contains(&body) => (body.to_string(), "true".to_string()),
            None => {
                let Some(v) = args.get(i) else {
                    return Err(format!("flag `{a}` needs a value"));
                };
                i += 1;
                (body.to_string(), v.clone())
            }
        };
        if name.is_empty() || name.starts_with('-') {
            return Err(format!("bad flag syntax `{a}`"));
        }
        out.insert(
            name.clone(),
            Setting {
                value,
                origin: format!("flag --{name} ({origin})"),
                file: file.to_string(),
                line,
            },
        );
    }
    Ok(out)
}

/// `ETCD_DATA_DIR` for `data-dir`.
pub fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// etcd's YAML configuration file: the keys cairn reports (others are
/// ignored here, as they are by this description).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct YamlConfig {
    name: Option<String>,
    data_dir: Option<String>,
    wal_dir: Option<String>,
    listen_client_urls: Option<String>,
    advertise_client_urls: Option<String>,
    listen_peer_urls: Option<String>,
    initial_advertise_peer_urls: Option<String>,
    client_transport_security: Option<YamlTls>,
    peer_transport_security: Option<YamlTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct YamlTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    trusted_ca_file: Option<String>,
    client_cert_auth: Option<bool>,
}

fn yaml_error(path: &str, e: serde_yaml::Error) -> FactError {
    let line = e.location().map(|l| l.line());
    let mut msg = e.to_string();
    if let Some(i) = msg.find(" at line ") {
        msg.truncate(i);
    }
    FactError {
        file: path.into(),
        line,
        message: format!("not an etcd YAML configuration: {msg}"),
    }
}

/// The settings of etcd's YAML config file `path`, by flag name.
pub fn parse_config_file(path: &str, text: &str) -> Res<BTreeMap<String, Setting>> {
    let c: YamlConfig = if text.trim().is_empty() {
        YamlConfig::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| yaml_error(path, e))?
    };
    let mut out = BTreeMap::new();
    let mut put = |flag: &str, key: &str, v: Option<String>| {
        if let Some(value) = v {
            out.insert(
                flag.to_string(),
                Setting {
                    value,
                    origin: format!("config file {path} key {key}"),
                    file: path.to_string(),
                    line: None,
                },
            );
        }
    };
    put("name", "name", c.name);
    put("data-dir", "data-dir", c.data_dir);
    put("wal-dir", "wal-dir", c.wal_dir);
    put(
        "listen-client-urls",
        "listen-client-urls",
        c.listen_client_urls,
    );
    put(
        "advertise-client-urls",
        "advertise-client-urls",
        c.advertise_client_urls,
    );
    put("listen-peer-urls", "listen-peer-urls", c.listen_peer_urls);
    put(
        "initial-advertise-peer-urls",
        "initial-advertise-peer-urls",
        c.initial_advertise_peer_urls,
    );
    for (prefix, section, tls) in [
        ("", "client-transport-security", c.client_transport_security),
        (
            "peer-",
            "peer-transport-security",
            c.peer_transport_security,
        ),
    ] {
        let t = tls.unwrap_or_default();
        put(
            &format!("{prefix}cert-file"),
            &format!("{section}.cert-file"),
            t.cert_file,
        );
        put(
            &format!("{prefix}key-file"),
            &format!("{section}.key-file"),
            t.key_file,
        );
        put(
            &format!("{prefix}trusted-ca-file"),
            &format!("{section}.trusted-ca-file"),
            t.trusted_ca_file,
        );
        put(
            &format!("{prefix}client-cert-auth"),
            &format!("{section}.client-cert-auth"),
            t.client_cert_auth.map(|b| b.to_string()),
        );
    }
    Ok(out)
}

/// Where a member's settings come from, once the start command is known.
pub struct Sources {
    /// Flags of the command line.
    pub flags: BTreeMap<String, Setting>,
    /// The process environment (`ETCD_*` and others), by name.
    pub env: BTreeMap<String, Setting>,
}

impl Sources {
    /// The config file etcd would read (`--config-file`, else `ETCD_CONFIG_FILE`).
    pub fn config_file(&self) -> Option<&Setting> {
        self.flags
            .get("config-file")
            .or_else(|| self.env.get("ETCD_CONFIG_FILE"))
            .filter(|s| !s.value.is_empty())
    }
}

/// TLS settings of one side (client or peer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tls {
    pub cert_file: String,
    pub key_file: String,
    pub trusted_ca_file: String,
    pub client_cert_auth: bool,
}

/// The member's settings after etcd's precedence and defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub name: String,
    pub data_dir: String,
    pub wal_dir: String,
    pub listen_client_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<String>,
    pub advertise_peer_urls: Vec<String>,
    pub client_tls: Tls,
    pub peer_tls: Tls,
    /// Field name -> where its value came from (`flag --name (...)`,
    /// `env ETCD_NAME (...)`, `config file ... key name`, `default`).
    pub origins: BTreeMap<String, String>,
}

fn urls(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

/// Apply etcd's precedence: `config` (the parsed config file, when one is
/// given) alone; else flags over `ETCD_*` variables; then defaults. Relative
/// paths are made absolute against `cwd` when given (the process's working
/// directory).
pub fn resolve(
    sources: &Sources,
    config: Option<&BTreeMap<String, Setting>>,
    cwd: Option<&str>,
) -> Res<Settings> {
    let pick = |flag: &str| -> Option<Setting> {
        match config {
            Some(c) => c.get(flag).cloned(),
            None => sources.flags.get(flag).cloned().or_else(|| {
                let var = env_name(flag);
                sources.env.get(&var).cloned()
            }),
        }
    };
    if config.is_none() {
        for (flag, set) in &sources.flags {
            if let Some(env) = sources.env.get(&env_name(flag)) {
                return Err(FactError {
                    file: env.file.clone(),
                    line: env.line,
                    message: format!(
                        "{} is set here and {} too: etcd refuses to start with both \
                         (\"conflicting environment variable is shadowed by corresponding \
                         command-line flag\")",
                        env_name(flag),
                        set.origin
                    ),
                });
            }
        }
    }
    let mut s = Settings::default();
    let mut origins = BTreeMap::new();
    let mut get = |field: &str, flag: &str, default: String| -> String {
        match pick(flag) {
            Some(set) => {
                origins.insert(field.to_string(), set.origin);
                set.value
            }
            None => {
                origins.insert(field.to_string(), "default".to_string());
                default
            }
        }
    };
    s.name = get("name", "name", "default".into());
    let data_dir = get("data_dir", "data-dir", format!("{}.etcd", s.name));
    s.data_dir = absolute(&data_dir, cwd);
    let wal = get("wal_dir", "wal-dir", String::new());
    s.wal_dir = if wal.is_empty() {
        format!("{}/member/wal", s.data_dir.trim_end_matches('/'))
    } else {
        absolute(&wal, cwd)
    };
    s.listen_client_urls = urls(&get(
        "listen_client_urls",
        "listen-client-urls",
        "http://localhost:2379".into(),
    ));
    s.advertise_client_urls = urls(&get(
        "advertise_client_urls",
        "advertise-client-urls",
        "http://localhost:2379".into(),
    ));
    s.listen_peer_urls = urls(&get(
        "listen_peer_urls",
        "listen-peer-urls",
        "http://localhost:2380".into(),
    ));
    s.advertise_peer_urls = urls(&get(
        "advertise_peer_urls",
        "initial-advertise-peer-urls",
        "http://localhost:2380".into(),
    ));
    for (prefix, field) in [("", "client_tls"), ("peer-", "peer_tls")] {
        let mut file = |name: &str| {
            let v = get(
                &format!("{field}.{}", name.replace('-', "_")),
                &format!("{prefix}{name}"),
                String::new(),
            );
            if v.is_empty() {
                v
            } else {
                absolute(&v, cwd)
            }
        };
        let tls = Tls {
            cert_file: file("cert-file"),
            key_file: file("key-file"),
            trusted_ca_file: file("trusted-ca-file"),
            client_cert_auth: false,
        };
        if prefix.is_empty() {
            s.client_tls = tls;
        } else {
            s.peer_tls = tls;
        }
    }
    for flag in BOOLS {
        let field = if flag.starts_with("peer-") {
            "peer_tls.client_cert_auth"
        } else {
            "client_tls.client_cert_auth"
        };
        let v = match pick(flag) {
            Some(set) => {
                let b = parse_bool(&set.value).ok_or_else(|| FactError {
                    file: set.file.clone(),
                    line: set.line,
                    message: format!(
                        "{flag} is `{}`, not a boolean etcd accepts (true/false/1/0)",
                        set.value
                    ),
                })?;
                origins.insert(field.to_string(), set.origin);
                b
            }
            None => {
                origins.insert(field.to_string(), "default".to_string());
                false
            }
        };
        if flag.starts_with("peer-") {
            s.peer_tls.client_cert_auth = v;
        } else {
            s.client_tls.client_cert_auth = v;
        }
    }
    s.origins = origins;
    Ok(s)
}

fn absolute(path: &str, cwd: Option<&str>) -> String {
    match cwd {
        Some(dir) if !path.starts_with('/') => {
            format!("{}/{}", dir.trim_end_matches('/'), path)
        }
        _ => path.to_string(),
    }
}

// ---------------------------------------------------------------------------
// kubelet static-pod manifests

#[derive(Debug, Deserialize)]
struct Pod {
    spec: PodSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    containers: Vec<Container>,
    #[serde(default)]
    volumes: Vec<Volume>,
    #[serde(default)]
    security_context: Option<SecurityContext>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecurityContext {
    run_as_user: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    volume_mounts: Vec<VolumeMount>,
    #[serde(default)]
    security_context: Option<SecurityContext>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    name: String,
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VolumeMount {
    name: String,
    mount_path: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Volume {
    name: String,
    host_path: Option<HostPath>,
}

#[derive(Debug, Deserialize)]
struct HostPath {
    path: String,
}

/// The etcd container of a static-pod manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodStart {
    /// `command` then `args`.
    pub argv: Vec<String>,
    pub image: String,
    /// `ETCD_*` and other variables of the container.
    pub env: BTreeMap<String, Setting>,
    /// (container path, host path) of each hostPath mount, longest first.
    pub mounts: Vec<(String, String)>,
    /// `runAsUser` of the container or pod, if set.
    pub run_as_user: Option<i64>,
}

impl PodStart {
    /// The host path of a path inside the container (through its hostPath
    /// mounts); a path no mount covers stays as it is.
    pub fn host_path(&self, path: &str) -> String {
        for (inside, outside) in &self.mounts {
            let inside = inside.trim_end_matches('/');
            if path == inside {
                return outside.clone();
            }
            if let Some(rest) = path.strip_prefix(inside).filter(|r| r.starts_with('/')) {
                return format!("{}{rest}", outside.trim_end_matches('/'));
            }
        }
        path.to_string()
    }
}

/// The container of manifest `path` whose command runs `etcd`.
pub fn parse_manifest(path: &str, text: &str) -> Res<PodStart> {
    let pod: Pod = serde_yaml::from_str(text).map_err(|e| {
        let mut fe = yaml_error(path, e);
        fe.message = fe
            .message
            .replace("an etcd YAML configuration", "a Pod manifest");
        fe
    })?;
    let etcd: Vec<&Container> = pod
        .spec
        .containers
        .iter()
        .filter(|c| {
            c.command
                .first()
                .is_some_and(|p| p.rsplit('/').next() == Some("etcd"))
        })
        .collect();
    let c = match etcd.as_slice() {
        [c] => *c,
        [] => {
            return Err(FactError::file(
                path,
                "no container's command runs etcd (the first item of `command:` must be etcd)",
            ))
        }
        _ => {
            return Err(FactError::file(
                path,
                "several containers run etcd; cannot tell which is the member",
            ))
        }
    };
    let mut env = BTreeMap::new();
    for v in &c.env {
        let Some(value) = &v.value else {
            return Err(FactError::file(
                path,
                format!(
                    "container {}: env {} has no literal value (valueFrom is not readable from the node)",
                    c.name, v.name
                ),
            ));
        };
        env.insert(
            v.name.clone(),
            Setting {
                value: value.clone(),
                origin: format!("env {} (container {} of {path})", v.name, c.name),
                file: path.to_string(),
                line: None,
            },
        );
    }
    let mut mounts: Vec<(String, String)> = c
        .volume_mounts
        .iter()
        .filter_map(|m| {
            let vol = pod.spec.volumes.iter().find(|v| v.name == m.name)?;
            let host = vol.host_path.as_ref()?;
            Some((m.mount_path.clone(), host.path.clone()))
        })
        .collect();
    mounts.sort_by_key(|(inside, _)| std::cmp::Reverse(inside.len()));
    let run_as_user = c
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_user)
        .or_else(|| {
            pod.spec
                .security_context
                .as_ref()
                .and_then(|s| s.run_as_user)
        });
    Ok(PodStart {
        argv: c.command.iter().chain(&c.args).cloned().collect(),
        image: c.image.clone(),
        env,
        mounts,
        run_as_user,
    })
}

/// The running version from `/version` (`{"etcdserver":"3.5.1",...}`).
pub fn version_from_endpoint(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    v.get("etcdserver")?.as_str().map(str::to_string)
}

/// The version in `etcd --version`'s first line (`etcd Version: 3.5.1`).
pub fn version_from_binary(first_line: &str) -> Option<String> {
    first_line
        .trim()
        .strip_prefix("etcd Version: ")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Specifiers<'static> {
        Specifiers {
            unit: "etcd.service",
            hostname: "node-1",
        }
    }

    fn env_of(pairs: &[(&str, &str)]) -> BTreeMap<String, Setting> {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Setting {
                        value: v.to_string(),
                        origin: format!("env {k} (/etc/etcd/env line 1)"),
                        file: "/etc/etcd/env".into(),
                        line: Some(1),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn debian_package_unit_with_specifiers_and_daemon_args() {
        let unit = "[Unit]\nDescription=etcd\n\n[Service]\nEnvironment=DAEMON_ARGS=\n\
                    Environment=ETCD_NAME=%H\nEnvironment=ETCD_DATA_DIR=/var/lib/etcd/default\n\
                    EnvironmentFile=-/etc/default/%p\nType=notify\nUser=etcd\n\
                    ExecStart=/usr/bin/etcd $DAEMON_ARGS\n";
        let u = parse_unit(
            &[("/lib/systemd/system/etcd.service".into(), unit.into())],
            &spec(),
        )
        .unwrap();
        assert_eq!(
            u.environment,
            vec![
                (
                    "DAEMON_ARGS".into(),
                    "".into(),
                    "/lib/systemd/system/etcd.service".into(),
                    5
                ),
                (
                    "ETCD_NAME".into(),
                    "node-1".into(),
                    "/lib/systemd/system/etcd.service".into(),
                    6
                ),
                (
                    "ETCD_DATA_DIR".into(),
                    "/var/lib/etcd/default".into(),
                    "/lib/systemd/system/etcd.service".into(),
                    7
                ),
            ]
        );
        assert_eq!(
            u.environment_files,
            vec![(
                "/etc/default/etcd".into(),
                true,
                "/lib/systemd/system/etcd.service line 8".into()
            )]
        );
        let (exec, file, line) = u.exec_start.unwrap();
        assert_eq!(
            (file.as_str(), line),
            ("/lib/systemd/system/etcd.service", 11)
        );
        let env = env_of(&[("DAEMON_ARGS", "--enable-v2 --name x")]);
        assert_eq!(
            exec_argv(&exec, &env, &file, line).unwrap(),
            ["/usr/bin/etcd", "--enable-v2", "--name", "x"]
        );
        assert_eq!(
            exec_argv(&exec, &BTreeMap::new(), &file, line).unwrap(),
            ["/usr/bin/etcd"]
        );
    }

    #[test]
    fn drop_ins_reset_exec_start_and_continuations_join() {
        let main = "[Service]\nExecStart=/usr/bin/etcd --name a\n";
        let drop = "[Service]\nExecStart=\nExecStart=/usr/local/bin/etcd \\\n  --name \"b c\" \\\n  # a comment\n  --data-dir=${DIR}/x\n";
        let u = parse_unit(
            &[
                ("/etc/systemd/system/etcd.service".into(), main.into()),
                (
                    "/etc/systemd/system/etcd.service.d/10.conf".into(),
                    drop.into(),
                ),
            ],
            &spec(),
        )
        .unwrap();
        let (exec, file, line) = u.exec_start.unwrap();
        assert_eq!(
            (file.as_str(), line),
            ("/etc/systemd/system/etcd.service.d/10.conf", 3)
        );
        let argv = exec_argv(&exec, &env_of(&[("DIR", "/srv data")]), &file, line).unwrap();
        assert_eq!(
            argv,
            [
                "/usr/local/bin/etcd",
                "--name",
                "b c",
                "--data-dir=/srv data/x"
            ]
        );
    }

    #[test]
    fn two_exec_starts_and_unknown_specifiers_are_errors_with_file_and_line() {
        let e = parse_unit(
            &[(
                "/etc/systemd/system/etcd.service".into(),
                "[Service]\nExecStart=/a\nExecStart=/b\n".into(),
            )],
            &spec(),
        )
        .unwrap_err();
        assert_eq!(e.place(), "/etc/systemd/system/etcd.service line 3");
        assert!(e.message.contains("second ExecStart="), "{e}");
        let e = parse_unit(
            &[("/u".into(), "[Service]\nEnvironment=X=%Z\n".into())],
            &spec(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/u line 2: specifier %Z is not one cairn understands (%n %N %p %i %H %%)"
        );
        let e = parse_unit(
            &[("/u".into(), "[Service]\nExecStart=/a \"b\n".into())],
            &spec(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "/u line 2: unterminated \"quote");
    }

    #[test]
    fn env_files_as_systemd_reads_them() {
        let text = "# comment\n; other\nETCD_NAME=\"node 1\"\n  ETCD_DATA_DIR=/opt/etcd/data   \n\
                    ETCD_X='a \\ b'\nETCD_LONG=one \\\ntwo\nEMPTY=\n";
        let vars = parse_env_file("/etc/etcd/options.env", text).unwrap();
        assert_eq!(
            vars,
            vec![
                ("ETCD_NAME".into(), "node 1".into(), 3),
                ("ETCD_DATA_DIR".into(), "/opt/etcd/data".into(), 4),
                ("ETCD_X".into(), "a \\ b".into(), 5),
                ("ETCD_LONG".into(), "one two".into(), 6),
                ("EMPTY".into(), "".into(), 8),
            ]
        );
        let e = parse_env_file("/etc/default/etcd", "A=1\nexport\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/default/etcd line 2: not a NAME=VALUE line"
        );
    }

    #[test]
    fn go_flags() {
        let args: Vec<String> = [
            "--name",
            "n1",
            "-data-dir=/d",
            "--client-cert-auth",
            "--peer-client-cert-auth=false",
            "--snapshot-count",
            "10000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let f = parse_flags(&args, "ExecStart in /u line 3", "/u", Some(3)).unwrap();
        assert_eq!(f["name"].value, "n1");
        assert_eq!(f["name"].origin, "flag --name (ExecStart in /u line 3)");
        assert_eq!(f["data-dir"].value, "/d");
        assert_eq!(f["client-cert-auth"].value, "true");
        assert_eq!(f["peer-client-cert-auth"].value, "false");
        assert_eq!(f["snapshot-count"].value, "10000");
        let bad = |a: &[&str]| {
            parse_flags(
                &a.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "x",
                "/u",
                None,
            )
            .unwrap_err()
        };
        assert_eq!(bad(&["--name"]), "flag `--name` needs a value");
        assert_eq!(
            bad(&["--client-cert-auth", "false"]),
            "`false` is not a flag: etcd takes no arguments"
        );
    }

    #[test]
    fn flags_and_env_combine_and_defaults_fill_the_rest() {
        let flags = parse_flags(
            &["--name".to_string(), "flagname".to_string()],
            "ExecStart in /u line 9",
            "/u",
            Some(9),
        )
        .unwrap();
        let env = env_of(&[
            ("ETCD_CLIENT_CERT_AUTH", "true"),
            ("ETCD_CERT_FILE", "/etc/ssl/etcd/etcd.crt"),
            ("ETCD_UNRELATED", "x"),
        ]);
        let s = resolve(&Sources { flags, env }, None, Some("/")).unwrap();
        assert_eq!(s.name, "flagname");
        assert_eq!(s.origins["name"], "flag --name (ExecStart in /u line 9)");
        assert_eq!(s.data_dir, "/flagname.etcd");
        assert_eq!(s.origins["data_dir"], "default");
        assert_eq!(s.wal_dir, "/flagname.etcd/member/wal");
        assert_eq!(s.listen_client_urls, ["http://localhost:2379"]);
        assert_eq!(s.advertise_peer_urls, ["http://localhost:2380"]);
        assert!(s.client_tls.client_cert_auth);
        assert_eq!(
            s.origins["client_tls.client_cert_auth"],
            "env ETCD_CLIENT_CERT_AUTH (/etc/etcd/env line 1)"
        );
        assert_eq!(s.client_tls.cert_file, "/etc/ssl/etcd/etcd.crt");
        assert!(!s.peer_tls.client_cert_auth);
        assert_eq!(s.peer_tls.cert_file, "");
    }

    #[test]
    fn a_flag_and_its_env_variable_together_are_refused_as_etcd_does() {
        // etcd 3.4 and 3.5 exit with "conflicting environment variable is
        // shadowed by corresponding command-line flag" (checked on the lab).
        let flags = parse_flags(
            &["--name".to_string(), "flagname".to_string()],
            "ExecStart in /u line 9",
            "/u",
            Some(9),
        )
        .unwrap();
        let env = env_of(&[("ETCD_NAME", "envname")]);
        let e = resolve(&Sources { flags, env }, None, None).unwrap_err();
        assert_eq!(e.place(), "/etc/etcd/env line 1");
        assert!(
            e.message.starts_with(
                "ETCD_NAME is set here and flag --name (ExecStart in /u line 9) too: etcd refuses"
            ),
            "{e}"
        );
    }

    #[test]
    fn nothing_set_is_all_defaults() {
        let s = resolve(
            &Sources {
                flags: BTreeMap::new(),
                env: BTreeMap::new(),
            },
            None,
            Some("/var/lib/etcd"),
        )
        .unwrap();
        assert_eq!(s.name, "default");
        assert_eq!(s.data_dir, "/var/lib/etcd/default.etcd");
        assert_eq!(s.wal_dir, "/var/lib/etcd/default.etcd/member/wal");
        assert_eq!(s.listen_peer_urls, ["http://localhost:2380"]);
        assert!(s.origins.values().all(|o| o == "default"));
    }

    #[test]
    fn a_bad_boolean_names_its_file_and_line() {
        let env = BTreeMap::from([(
            "ETCD_PEER_CLIENT_CERT_AUTH".to_string(),
            Setting {
                value: "yes".into(),
                origin: "env ETCD_PEER_CLIENT_CERT_AUTH (/etc/etcd/options.env line 7)".into(),
                file: "/etc/etcd/options.env".into(),
                line: Some(7),
            },
        )]);
        let e = resolve(
            &Sources {
                flags: BTreeMap::new(),
                env,
            },
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/etcd/options.env line 7: peer-client-cert-auth is `yes`, not a boolean etcd accepts (true/false/1/0)"
        );
    }

    const YAML: &str = "name: \"node-1\"\ndata-dir: \"/var/lib/etcd\"\n\
        listen-peer-urls: \"https://10.0.0.1:2380\"\n\
        listen-client-urls: \"https://10.0.0.1:2379,https://127.0.0.1:2379\"\n\
        advertise-client-urls: \"https://10.0.0.1:2379\"\n\
        initial-advertise-peer-urls: \"https://10.0.0.1:2380\"\n\
        client-transport-security:\n  cert-file: \"/etc/etcd/pki/node-1.crt\"\n  key-file: \"/etc/etcd/pki/node-1.key\"\n  trusted-ca-file: \"/etc/etcd/pki/etcd-ca.crt\"\n  client-cert-auth: true\n\
        peer-transport-security:\n  cert-file: \"/etc/etcd/pki/p.crt\"\n  key-file: \"/etc/etcd/pki/p.key\"\n  trusted-ca-file: \"/etc/etcd/pki/etcd-ca.crt\"\n  client-cert-auth: true\n";

    #[test]
    fn a_config_file_wins_over_flags_and_env() {
        let flags = parse_flags(
            &[
                "--config-file".to_string(),
                "/etc/etcd/etcd.conf".to_string(),
                "--name=ignored".to_string(),
            ],
            "ExecStart in /u line 9",
            "/u",
            Some(9),
        )
        .unwrap();
        let env = env_of(&[
            ("ETCD_DATA_DIR", "/ignored"),
            ("ETCD_WAL_DIR", "/ignored"),
            ("ETCD_NAME", "no conflict: ignored with a config file"),
        ]);
        let sources = Sources { flags, env };
        assert_eq!(sources.config_file().unwrap().value, "/etc/etcd/etcd.conf");
        let config = parse_config_file("/etc/etcd/etcd.conf", YAML).unwrap();
        let s = resolve(&sources, Some(&config), Some("/")).unwrap();
        assert_eq!(s.name, "node-1");
        assert_eq!(
            s.origins["name"],
            "config file /etc/etcd/etcd.conf key name"
        );
        assert_eq!(s.data_dir, "/var/lib/etcd");
        assert_eq!(s.wal_dir, "/var/lib/etcd/member/wal");
        assert_eq!(s.origins["wal_dir"], "default");
        assert_eq!(
            s.listen_client_urls,
            ["https://10.0.0.1:2379", "https://127.0.0.1:2379"]
        );
        assert_eq!(s.client_tls.cert_file, "/etc/etcd/pki/node-1.crt");
        assert_eq!(s.peer_tls.key_file, "/etc/etcd/pki/p.key");
        assert!(s.client_tls.client_cert_auth && s.peer_tls.client_cert_auth);
        assert_eq!(
            s.origins["peer_tls.client_cert_auth"],
            "config file /etc/etcd/etcd.conf key peer-transport-security.client-cert-auth"
        );
        // ETCD_CONFIG_FILE counts too
        let sources = Sources {
            flags: BTreeMap::new(),
            env: env_of(&[("ETCD_CONFIG_FILE", "/c.yaml")]),
        };
        assert_eq!(sources.config_file().unwrap().value, "/c.yaml");
    }

    #[test]
    fn a_bad_config_file_names_the_line() {
        let text = "name: a\nclient-transport-security:\n  client-cert-auth: \"yes\"\n";
        let e = parse_config_file("/etc/etcd/etcd.conf", text).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().starts_with("/etc/etcd/etcd.conf line 3: not an etcd YAML configuration: client-transport-security.client-cert-auth: invalid type: string \"yes\", expected a boolean"), "{e}");
        let e = parse_config_file("/c", "name: [\n").unwrap_err();
        assert_eq!(e.file, "/c");
        assert!(e.line.is_some(), "{e}");
    }

    const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\nspec:\n  containers:\n  - command:\n    - etcd\n    - --name=node-1\n    - --data-dir=/var/lib/etcd\n    - --cert-file=/etc/kubernetes/pki/etcd/server.crt\n    - --client-cert-auth=true\n    image: registry.k8s.io/etcd:3.5.9-0\n    name: etcd\n    env:\n    - name: ETCD_WAL_DIR\n      value: /var/lib/etcd/wal\n    volumeMounts:\n    - mountPath: /var/lib/etcd\n      name: etcd-data\n    - mountPath: /etc/kubernetes/pki/etcd\n      name: etcd-certs\n  volumes:\n  - hostPath:\n      path: /etc/kubernetes/pki/etcd\n    name: etcd-certs\n  - hostPath:\n      path: /srv/etcd\n    name: etcd-data\n";

    #[test]
    fn static_pod_manifest() {
        let p = parse_manifest("/etc/kubernetes/manifests/etcd.yaml", MANIFEST).unwrap();
        assert_eq!(p.argv[0], "etcd");
        assert_eq!(p.image, "registry.k8s.io/etcd:3.5.9-0");
        assert_eq!(p.host_path("/var/lib/etcd/wal"), "/srv/etcd/wal");
        assert_eq!(p.host_path("/var/lib/etcdx"), "/var/lib/etcdx");
        assert_eq!(
            p.host_path("/etc/kubernetes/pki/etcd/ca.crt"),
            "/etc/kubernetes/pki/etcd/ca.crt"
        );
        let flags = parse_flags(&p.argv[1..], "command of /m", "/m", None).unwrap();
        let s = resolve(
            &Sources {
                flags,
                env: p.env.clone(),
            },
            None,
            None,
        )
        .unwrap();
        assert_eq!(s.name, "node-1");
        assert_eq!(s.wal_dir, "/var/lib/etcd/wal");
        assert_eq!(
            s.origins["wal_dir"],
            "env ETCD_WAL_DIR (container etcd of /etc/kubernetes/manifests/etcd.yaml)"
        );
        let e = parse_manifest(
            "/m",
            "spec:\n  containers:\n  - name: x\n    command: [sh]\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/m: no container's command runs etcd (the first item of `command:` must be etcd)"
        );
        let e = parse_manifest("/m", "spec:\n  containers: 3\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn versions() {
        assert_eq!(
            version_from_endpoint("{\"etcdserver\":\"3.5.1\",\"etcdcluster\":\"3.5.0\"}\n")
                .as_deref(),
            Some("3.5.1")
        );
        assert_eq!(version_from_endpoint("<html>"), None);
        assert_eq!(
            version_from_binary("etcd Version: 3.4.23").as_deref(),
            Some("3.4.23")
        );
        assert_eq!(version_from_binary("sh: etcd: not found"), None);
    }
}
