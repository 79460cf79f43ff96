//! `etcd_member(host)`: how etcd runs on a host, found on the host itself.
//!
//! A read-only step: it reads the systemd unit (`systemctl show`, then the
//! unit file and its drop-ins), the environment files, etcd's YAML config
//! file or the kubelet static-pod manifest, each with the non-following read
//! of [`crate::primitives::remote::put::observe`]; then the process and the
//! versions. The texts are parsed by [`super::layout`] with etcd's
//! precedence. A file that cannot be read or parsed is an error naming it
//! (and the line); nothing is guessed. Its plan line is an `ok read` no-op:
//! it answers in plans as well as in runs.

use super::layout::{self, FactError, PodStart, Setting, Settings, Sources, Specifiers, Tls};
use crate::action::Action;
use crate::cmd::Cmd;
use crate::error::StepError;
use crate::host::Host;
use crate::primitives::remote::put::{self, Kind};
use crate::ssh::quote;
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use crate::unknown;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

crate::registration::documented! {
    /// How etcd runs on `host` (read-only; it also answers in plans): an
    /// `EtcdMemberLayout`.
    ///
    /// It looks for the systemd unit `etcd.service`, else the kubelet static-pod
    /// manifest `/etc/kubernetes/manifests/etcd.yaml` (options `unit` or
    /// `manifest` name another; both present is an error). From the unit's
    /// `ExecStart`, `Environment=`, `EnvironmentFile=`s, a YAML `--config-file`
    /// or the manifest's etcd container it works out the settings with etcd's
    /// precedence: a config file (`--config-file` or `ETCD_CONFIG_FILE`) alone
    /// when given; else flags over `ETCD_*` variables; else etcd's defaults
    /// (name `default`, data dir `${name}.etcd`, WAL in `${data_dir}/member/wal`).
    /// Paths in a manifest are mapped to the host through its hostPath volumes.
    ///
    /// Getters: `host`, `started_by` ("systemd" | "static-pod"), `unit`,
    /// `unit_files`, `exec_start` (argument list), `environment_files`,
    /// `config_file`, `manifest`, `image`, `user`, `name`, `data_dir`, `wal_dir`,
    /// `listen_client_urls`, `advertise_client_urls`, `listen_peer_urls`,
    /// `advertise_peer_urls`, `cert_file`, `key_file`, `trusted_ca_file`,
    /// `client_cert_auth`, `peer_cert_file`, `peer_key_file`,
    /// `peer_trusted_ca_file`, `peer_client_cert_auth`, `binary`,
    /// `binary_version`, `running`, `pid`, `running_version`,
    /// `running_version_from` ("endpoint URL" or "process PID"), `origins`
    /// (field -> where its value was set). `to_map()` and `to_json()` give all.
    ///
    /// A file it cannot read (a link, missing, too large) or parse is an error
    /// naming the file and line.
    ///
    /// ```rhai
    /// let m = etcd_member(node);
    /// print(`${m.name}: ${m.data_dir}, client cert ${m.cert_file}, etcd ${m.running_version}`);
    /// ```
    pub(super) const DOC;
}

/// Default unit and manifest looked for.
const UNIT: &str = "etcd.service";
const MANIFEST: &str = "/etc/kubernetes/manifests/etcd.yaml";

/// Options of `etcd_member`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberArgs {
    /// A systemd unit (`etcd` or `etcd.service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// A static-pod manifest path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

/// `etcd_member(host, #{unit?, manifest?})`.
#[derive(Clone, Debug, Serialize)]
pub struct EtcdMember {
    pub host: Host,
    #[serde(flatten)]
    pub args: MemberArgs,
}

/// How etcd runs on a host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "EtcdMemberLayout")]
pub struct MemberLayout {
    #[rhai_type(readonly)]
    pub host: String,
    /// `systemd` or `static-pod`.
    #[rhai_type(readonly)]
    pub started_by: String,
    /// The systemd unit (empty for a static pod).
    #[rhai_type(readonly)]
    pub unit: String,
    /// The unit file and its drop-ins, in the order systemd reads them.
    #[rhai_type(skip)]
    pub unit_files: Vec<String>,
    /// The command etcd is started with (variables expanded); for a static
    /// pod the container's `command` and `args`.
    #[rhai_type(skip)]
    pub exec_start: Vec<String>,
    #[rhai_type(skip)]
    pub environment_files: Vec<String>,
    /// etcd's YAML config file, when one is given (it then overrides all).
    #[rhai_type(readonly)]
    pub config_file: String,
    #[rhai_type(readonly)]
    pub manifest: String,
    /// The container image of a static pod.
    #[rhai_type(readonly)]
    pub image: String,
    /// The account etcd runs as (`User=`; `root` when unset; a pod's
    /// `runAsUser`, empty when the pod sets none).
    #[rhai_type(readonly)]
    pub user: String,
    #[serde(flatten)]
    #[rhai_type(skip)]
    pub settings: Settings,
    /// The etcd binary (`ExecStart`'s program; for a pod the running
    /// process's executable).
    #[rhai_type(readonly)]
    pub binary: String,
    /// `etcd --version` of `binary`.
    #[rhai_type(readonly)]
    pub binary_version: String,
    #[rhai_type(readonly)]
    pub running: bool,
    /// The running etcd's process id (0 when not running).
    #[rhai_type(readonly)]
    pub pid: i64,
    /// The running etcd's version (empty when not running).
    #[rhai_type(readonly)]
    pub running_version: String,
    /// `endpoint URL` (its `/version`) or `process PID` (the running
    /// executable's `--version`).
    #[rhai_type(readonly)]
    pub running_version_from: String,
}

fn fact(host: &Host, e: FactError) -> StepError {
    StepError::Fact {
        host: host.name.clone(),
        place: e.place(),
        message: e.message,
    }
}

fn command_failed(host: &Host, what: &str, out: &crate::ssh::CommandOutput) -> StepError {
    StepError::Command {
        host: host.name.clone(),
        command: what.into(),
        code: out.code,
        stderr: crate::ssh::tail(&out.stderr, 1000),
    }
}

/// The text of a regular file on the host, read without following links.
pub(super) async fn read_text(
    ctx: &Ctx,
    host: &Host,
    path: &str,
) -> Result<Option<String>, StepError> {
    let (facts, content) = put::observe(ctx, host, path, true).await?;
    let why = match facts.kind {
        Kind::Missing => return Ok(None),
        Kind::File => match content {
            Some(bytes) => {
                return String::from_utf8(bytes)
                    .map(Some)
                    .map_err(|_| fact(host, FactError::file(path, "is not UTF-8 text")))
            }
            None if facts.size > put::DIFF_LIMIT => format!(
                "is {} bytes, more than cairn reads ({})",
                facts.size,
                put::DIFF_LIMIT
            ),
            None => "has more than one hard link; cairn does not read such files".into(),
        },
        Kind::Link => format!(
            "is a symbolic link (to {}); cairn reads no links",
            facts.link_to.unwrap_or_default()
        ),
        Kind::Dir => "is a directory, not a file".into(),
        Kind::Other => "is not a regular file".into(),
    };
    Err(fact(host, FactError::file(path, why)))
}

/// `systemctl show` properties.
fn parse_show(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What the first round trip finds.
struct Found {
    hostname: String,
    show: BTreeMap<String, String>,
}

async fn look(ctx: &Ctx, host: &Host, unit: &str) -> Result<Found, StepError> {
    let show = Cmd::new("systemctl")
        .args(["show", "--no-pager"])
        .args(
            [
                "Id",
                "LoadState",
                "ActiveState",
                "MainPID",
                "User",
                "FragmentPath",
                "DropInPaths",
            ]
            .iter()
            .map(|p| format!("--property={p}")),
        )
        .operands([unit]);
    let script = format!("printf 'hostname=%s\\n' \"$(uname -n)\"\n{show} 2>/dev/null || true\n");
    let out = ctx.ssh.exec(host, &script, None).await?;
    if out.code != 0 {
        return Err(command_failed(host, "systemctl show", &out));
    }
    let mut show = parse_show(&out.stdout);
    let hostname = show.remove("hostname").unwrap_or_default();
    Ok(Found { hostname, show })
}

/// An etcd process: pid and argument list.
struct Process {
    pid: i64,
    argv: Vec<String>,
}

/// Every process named `etcd`, with its command line.
async fn etcd_processes(ctx: &Ctx, host: &Host) -> Result<Vec<Process>, StepError> {
    let script = "for d in /proc/[0-9]*; do\n\
                  \x20 c=$(cat \"$d/comm\" 2>/dev/null) || continue\n\
                  \x20 [ \"$c\" = etcd ] || continue\n\
                  \x20 printf '%s %s\\n' \"${d#/proc/}\" \"$(base64 -w0 < \"$d/cmdline\" 2>/dev/null)\"\n\
                  done\n";
    let out = ctx.ssh.exec(host, script, None).await?;
    if out.code != 0 {
        return Err(command_failed(host, "list etcd processes", &out));
    }
    use base64::Engine as _;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| {
            let (pid, b64) = l.split_once(' ')?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()?;
            let argv = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some(Process {
                pid: pid.parse().ok()?,
                argv,
            })
        })
        .collect())
}

/// How the start command and environment were found, before precedence.
struct Start {
    started_by: &'static str,
    unit: String,
    unit_files: Vec<String>,
    argv: Vec<String>,
    argv_origin: String,
    argv_file: String,
    argv_line: Option<usize>,
    env: BTreeMap<String, Setting>,
    environment_files: Vec<String>,
    manifest: String,
    pod: Option<PodStart>,
    user: String,
    cwd: Option<String>,
    pid: i64,
    running: bool,
}

async fn systemd_start(ctx: &Ctx, host: &Host, found: &Found) -> Result<Start, StepError> {
    let show = &found.show;
    let unit = show.get("Id").cloned().unwrap_or_default();
    let fragment = show.get("FragmentPath").cloned().unwrap_or_default();
    if fragment.is_empty() {
        return Err(fact(
            host,
            FactError::file(&unit, "the unit has no unit file (FragmentPath is empty)"),
        ));
    }
    let mut unit_files = vec![fragment];
    unit_files.extend(
        show.get("DropInPaths")
            .map(|d| d.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    let mut texts = Vec::new();
    for f in &unit_files {
        let text = read_text(ctx, host, f)
            .await?
            .ok_or_else(|| fact(host, FactError::file(f, "is missing")))?;
        texts.push((f.clone(), text));
    }
    let spec = Specifiers {
        unit: &unit,
        hostname: &found.hostname,
    };
    let cfg = layout::parse_unit(&texts, &spec).map_err(|e| fact(host, e))?;
    let mut env: BTreeMap<String, Setting> = BTreeMap::new();
    for (k, v, file, line) in &cfg.environment {
        env.insert(
            k.clone(),
            Setting {
                value: v.clone(),
                origin: format!("env {k} (Environment= in {file} line {line})"),
                file: file.clone(),
                line: Some(*line),
            },
        );
    }
    let mut environment_files = Vec::new();
    for (path, optional, origin) in &cfg.environment_files {
        match read_text(ctx, host, path).await? {
            None if *optional => continue,
            None => {
                return Err(fact(
                    host,
                    FactError::file(
                        path,
                        format!("is missing, and EnvironmentFile= in {origin} requires it"),
                    ),
                ))
            }
            Some(text) => {
                for (k, v, line) in
                    layout::parse_env_file(path, &text).map_err(|e| fact(host, e))?
                {
                    env.insert(
                        k.clone(),
                        Setting {
                            value: v,
                            origin: format!("env {k} ({path} line {line})"),
                            file: path.clone(),
                            line: Some(line),
                        },
                    );
                }
                environment_files.push(path.clone());
            }
        }
    }
    let Some((exec, file, line)) = &cfg.exec_start else {
        return Err(fact(
            host,
            FactError::file(&unit_files[0], format!("{unit} has no ExecStart=")),
        ));
    };
    let argv = layout::exec_argv(exec, &env, file, *line).map_err(|e| fact(host, e))?;
    if argv[0].rsplit('/').next() != Some("etcd") {
        return Err(fact(
            host,
            FactError::at(
                file,
                *line,
                format!(
                    "ExecStart= runs `{}`, not an etcd binary; cairn reads etcd's settings only from \
                     a unit that starts etcd itself",
                    argv[0]
                ),
            ),
        ));
    }
    let user = match show.get("User").map(String::as_str) {
        None | Some("") => "root".to_string(),
        Some(u) => u.to_string(),
    };
    let pid: i64 = show
        .get("MainPID")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let running = show.get("ActiveState").map(String::as_str) == Some("active") && pid != 0;
    Ok(Start {
        started_by: "systemd",
        unit,
        unit_files,
        argv,
        argv_origin: format!("ExecStart in {file} line {line}"),
        argv_file: file.clone(),
        argv_line: Some(*line),
        env,
        environment_files,
        manifest: String::new(),
        pod: None,
        user,
        cwd: Some(cfg.working_directory.unwrap_or_else(|| "/".into())),
        pid: if running { pid } else { 0 },
        running,
    })
}

async fn pod_start(ctx: &Ctx, host: &Host, manifest: &str) -> Result<Start, StepError> {
    let text = read_text(ctx, host, manifest)
        .await?
        .ok_or_else(|| fact(host, FactError::file(manifest, "is missing")))?;
    let pod = layout::parse_manifest(manifest, &text).map_err(|e| fact(host, e))?;
    let procs = etcd_processes(ctx, host).await?;
    let args = &pod.argv[1..];
    let matching: Vec<&Process> = procs
        .iter()
        .filter(|p| p.argv.get(1..) == Some(args))
        .collect();
    let pids = |ps: &[&Process]| {
        ps.iter()
            .map(|p| p.pid.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let proc = match matching.as_slice() {
        [p] => Some(*p),
        [] if procs.is_empty() => None,
        [] => {
            let all: Vec<&Process> = procs.iter().collect();
            return Err(fact(
                host,
                FactError::file(
                    manifest,
                    format!(
                        "etcd runs (pid {}) but not with this manifest's command: the kubelet \
                         has not applied it, or another etcd runs here; cannot tell which is \
                         the member",
                        pids(&all)
                    ),
                ),
            ));
        }
        several => {
            return Err(fact(
                host,
                FactError::file(
                    manifest,
                    format!(
                        "several etcd processes run this manifest's command (pid {})",
                        pids(several)
                    ),
                ),
            ))
        }
    };
    Ok(Start {
        started_by: "static-pod",
        unit: String::new(),
        unit_files: Vec::new(),
        argv: pod.argv.clone(),
        argv_origin: format!("command of {manifest}"),
        argv_file: manifest.to_string(),
        argv_line: None,
        env: pod.env.clone(),
        environment_files: Vec::new(),
        manifest: manifest.to_string(),
        user: pod.run_as_user.map(|u| u.to_string()).unwrap_or_default(),
        pod: Some(pod),
        cwd: None,
        pid: proc.map_or(0, |p| p.pid),
        running: proc.is_some(),
    })
}

/// The URL to ask `/version`: a loopback client URL, else the first one
/// listened on (a wildcard address asked on loopback).
fn version_url(s: &Settings) -> Option<String> {
    let http: Vec<&String> = s
        .listen_client_urls
        .iter()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .collect();
    let local = http.iter().find(|u| {
        let rest = u.split_once("://").map_or("", |(_, r)| r);
        rest.starts_with("127.") || rest.starts_with("localhost:") || rest.starts_with("[::1]:")
    });
    let url = local.or(http.first())?;
    Some(
        url.replace("://0.0.0.0:", "://127.0.0.1:")
            .replace("://[::]:", "://[::1]:"),
    )
}

/// Versions: of the binary, and of the running member (its `/version`, else
/// its executable).
async fn versions(
    ctx: &Ctx,
    host: &Host,
    binary: &str,
    pid: i64,
    s: &Settings,
) -> Result<BTreeMap<String, String>, StepError> {
    let mut script = String::from("set -f\n");
    if !binary.is_empty() {
        script.push_str(&format!(
            "printf 'binary=%s\\n' \"$({} --version 2>&1 | head -n1)\"\n",
            Cmd::new(binary)
        ));
    }
    if pid != 0 {
        let exe = format!("/proc/{pid}/exe");
        script.push_str(&format!(
            "printf 'exe=%s\\n' \"$(readlink {e})\"\nprintf 'process=%s\\n' \"$({e} --version 2>&1 | head -n1)\"\n",
            e = quote(&exe)
        ));
        if let Some(url) = version_url(s) {
            let mut curl = Cmd::new("curl").args(["-fsS", "--max-time", "5"]);
            if url.starts_with("https://") {
                let t = &s.client_tls;
                if !t.trusted_ca_file.is_empty() {
                    curl = curl.args(["--cacert", t.trusted_ca_file.as_str()]);
                }
                if !t.cert_file.is_empty() && !t.key_file.is_empty() {
                    curl =
                        curl.args(["--cert", t.cert_file.as_str(), "--key", t.key_file.as_str()]);
                }
            }
            let curl = curl.operands([format!("{url}/version")]);
            script.push_str(&format!(
                "printf 'url=%s\\n' {}\nif v=$({curl} 2>/dev/null); then printf 'endpoint=%s\\n' \"$v\" | tr -d '\\r' | head -n1; fi\n",
                quote(&url)
            ));
        }
    }
    let out = ctx.ssh.exec(host, &script, None).await?;
    if out.code != 0 {
        return Err(command_failed(host, "etcd --version", &out));
    }
    Ok(parse_show(&out.stdout))
}

/// Put the layout together from what was found and the files read.
async fn describe(ctx: &Ctx, host: &Host, start: Start) -> Result<MemberLayout, StepError> {
    let flags = layout::parse_flags(
        &start.argv[1..],
        &start.argv_origin,
        &start.argv_file,
        start.argv_line,
    )
    .map_err(|m| {
        fact(
            host,
            FactError {
                file: start.argv_file.clone(),
                line: start.argv_line,
                message: m,
            },
        )
    })?;
    let sources = Sources {
        flags,
        env: start.env.clone(),
    };
    let mut config_file = String::new();
    let config = match sources.config_file() {
        None => None,
        Some(set) => {
            let path = match &start.pod {
                Some(pod) => pod.host_path(&set.value),
                None => absolute_in(&set.value, start.cwd.as_deref()),
            };
            let text = read_text(ctx, host, &path).await?.ok_or_else(|| {
                fact(
                    host,
                    FactError::file(&path, format!("is missing (named by {})", set.origin)),
                )
            })?;
            config_file = path.clone();
            Some(layout::parse_config_file(&path, &text).map_err(|e| fact(host, e))?)
        }
    };
    let mut settings = layout::resolve(&sources, config.as_ref(), start.cwd.as_deref())
        .map_err(|e| fact(host, e))?;
    if let Some(pod) = &start.pod {
        let map = |p: &mut String| {
            if !p.is_empty() {
                *p = pod.host_path(p);
            }
        };
        map(&mut settings.data_dir);
        map(&mut settings.wal_dir);
        for t in [&mut settings.client_tls, &mut settings.peer_tls] {
            map(&mut t.cert_file);
            map(&mut t.key_file);
            map(&mut t.trusted_ca_file);
        }
    }
    let binary = if start.pod.is_some() {
        String::new()
    } else {
        start.argv[0].clone()
    };
    let v = versions(ctx, host, &binary, start.pid, &settings).await?;
    let binary = if binary.is_empty() {
        v.get("exe").cloned().unwrap_or_default()
    } else {
        binary
    };
    let binary_line = v
        .get("binary")
        .or(v.get("process"))
        .cloned()
        .unwrap_or_default();
    let binary_version = if binary.is_empty() {
        String::new()
    } else {
        layout::version_from_binary(&binary_line).ok_or_else(|| {
            fact(
                host,
                FactError::file(
                    &binary,
                    format!("`{binary} --version` printed `{binary_line}`, not `etcd Version: X`"),
                ),
            )
        })?
    };
    let (running_version, running_version_from) = if !start.running {
        (String::new(), String::new())
    } else if let Some(ver) = v
        .get("endpoint")
        .and_then(|b| layout::version_from_endpoint(b))
    {
        (
            ver,
            format!("endpoint {}", v.get("url").cloned().unwrap_or_default()),
        )
    } else {
        let line = v.get("process").cloned().unwrap_or_default();
        match layout::version_from_binary(&line) {
            Some(ver) => (ver, format!("process {}", start.pid)),
            None => {
                return Err(fact(
                    host,
                    FactError::file(
                        &format!("/proc/{}/exe", start.pid),
                        format!(
                            "the running etcd's version is unknown: no answer from /version and \
                             `--version` of its executable printed `{line}`"
                        ),
                    ),
                ))
            }
        }
    };
    Ok(MemberLayout {
        host: host.name.clone(),
        started_by: start.started_by.into(),
        unit: start.unit,
        unit_files: start.unit_files,
        exec_start: start.argv,
        environment_files: start.environment_files,
        config_file,
        manifest: start.manifest,
        image: start
            .pod
            .as_ref()
            .map(|p| p.image.clone())
            .unwrap_or_default(),
        user: start.user,
        settings,
        binary,
        binary_version,
        running: start.running,
        pid: start.pid,
        running_version,
        running_version_from,
    })
}

fn absolute_in(path: &str, cwd: Option<&str>) -> String {
    match cwd {
        Some(d) if !path.starts_with('/') => format!("{}/{path}", d.trim_end_matches('/')),
        _ => path.to_string(),
    }
}

impl EtcdMember {
    fn action(&self) -> Action {
        Action::noop(&self.host.name, "read etcd member layout", "read-only fact")
    }

    fn unit_name(&self) -> Option<String> {
        self.args.unit.as_ref().map(|u| {
            if u.contains('.') {
                u.clone()
            } else {
                format!("{u}.service")
            }
        })
    }

    /// Gather and describe.
    pub async fn discover(&self, ctx: &Ctx) -> Result<MemberLayout, StepError> {
        let host = &self.host;
        let unit = self.unit_name();
        let found = look(ctx, host, unit.as_deref().unwrap_or(UNIT)).await?;
        let loaded = found.show.get("LoadState").map(String::as_str) == Some("loaded");
        let start = match (&unit, &self.args.manifest) {
            (Some(u), None) if !loaded => {
                return Err(StepError::Verify(format!(
                    "{}: unit {u} is not loaded (LoadState={})",
                    host.name,
                    found.show.get("LoadState").cloned().unwrap_or_default()
                )))
            }
            (Some(_), None) => systemd_start(ctx, host, &found).await?,
            (None, Some(m)) => pod_start(ctx, host, m).await?,
            (Some(_), Some(_)) => {
                return Err(StepError::invalid(
                    "unit",
                    "give `unit` or `manifest`, not both",
                ))
            }
            (None, None) => {
                let (mfacts, _) = put::observe(ctx, host, MANIFEST, false).await?;
                let has_manifest = mfacts.kind != Kind::Missing;
                match (loaded, has_manifest) {
                    (true, true) => {
                        return Err(StepError::Verify(format!(
                        "{}: both unit {UNIT} and static-pod manifest {MANIFEST} exist; say which \
                             runs the member with #{{unit: ..}} or #{{manifest: ..}}",
                        host.name
                    )))
                    }
                    (true, false) => systemd_start(ctx, host, &found).await?,
                    (false, true) => pod_start(ctx, host, MANIFEST).await?,
                    (false, false) => {
                        return Err(StepError::Verify(format!(
                        "{}: no etcd found: no unit {UNIT} and no {MANIFEST}; name the unit with \
                             #{{unit: ..}} or the manifest with #{{manifest: ..}}",
                        host.name
                    )))
                    }
                }
            }
        };
        describe(ctx, host, start).await
    }
}

impl Step for EtcdMember {
    type Output = MemberLayout;
    type Work = ();

    fn kind(&self) -> &'static str {
        "etcd_member"
    }
    fn target(&self) -> String {
        self.host.name.clone()
    }
    fn validate(&self) -> Result<(), StepError> {
        if let Some(m) = &self.args.manifest {
            if !unknown::is_unknown(m) {
                put::check_path("manifest", m)?;
            }
        }
        Ok(())
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<MemberLayout, ()>, StepError> {
        let layout = this.discover(ctx).await?;
        Ok(Prepared::done(
            vec![this.action()],
            fingerprint(&layout),
            layout,
        ))
    }
    fn intent(this: &Valid<Self>) -> Prepared<MemberLayout, ()> {
        let p =
            |what: &str| unknown::placeholder("read", &format!("{}: etcd {what}", this.host.name));
        let predicted = MemberLayout {
            host: this.host.name.clone(),
            started_by: p("started_by"),
            unit: p("unit"),
            config_file: p("config_file"),
            manifest: p("manifest"),
            image: p("image"),
            user: p("user"),
            settings: Settings {
                name: p("name"),
                data_dir: p("data_dir"),
                wal_dir: p("wal_dir"),
                client_tls: Tls {
                    cert_file: p("cert_file"),
                    key_file: p("key_file"),
                    trusted_ca_file: p("trusted_ca_file"),
                    client_cert_auth: false,
                },
                peer_tls: Tls {
                    cert_file: p("peer_cert_file"),
                    key_file: p("peer_key_file"),
                    trusted_ca_file: p("peer_trusted_ca_file"),
                    client_cert_auth: false,
                },
                ..Settings::default()
            },
            binary: p("binary"),
            binary_version: p("binary_version"),
            running_version: p("running_version"),
            running_version_from: p("running_version_from"),
            ..MemberLayout::default()
        };
        Prepared::done(vec![this.action()], String::new(), predicted)
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<MemberLayout, StepError> {
        // Never reached: prepare leaves no work.
        Ok(this.prepare(ctx).await?.predicted)
    }
}
