//! `file` (content given inline) and `upload` (content from a local file):
//! both put bytes at a path on a host through [`super::put`].

use super::put::{self, FileResult, NewContent, PutWork, Want};
use crate::action::Action;
use crate::error::StepError;
use crate::host::Host;
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Options of `file`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileArgs {
    pub path: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Never show the content (it is still written, of course).
    #[serde(default)]
    pub secret: bool,
}

crate::registration::documented! {
    /// Make a file on `host` hold exactly `content`.
    ///
    /// Options: `path` (absolute, required), `content` (string, required),
    /// `mode` (default "0644"; "0600" for secrets), `owner`, `group` (left as
    /// they are unless given), `secret` (bool: never show the content in plans).
    ///
    /// The plan shows a unified diff of the change; content that looks like a
    /// private key (or `secret: true`) is shown as `(content hidden)` with hashes.
    /// The write is atomic: a temp file in the same folder gets mode and owner
    /// before it is renamed over the path, so a key is never briefly readable.
    /// Missing parent folders are created. Returns a `FileResult`
    /// (`path`, `changed`, `created`).
    ///
    /// ```rhai
    /// let cfg = file(node, #{ path: "/etc/default/etcd", content: env_file });
    /// if cfg.changed { systemctl(node, #{ unit: "etcd", action: "restart" }); }
    /// ```
    #[derive(Clone, Debug, Serialize)]
    pub struct File {
        pub host: Host,
        #[serde(flatten)]
        pub args: FileArgs,
    }
}

/// Mode for content: 0644, or 0600 when it is secret.
fn default_mode(content: &[u8], secret: bool) -> &'static str {
    if put::looks_secret(content, secret) {
        "0600"
    } else {
        "0644"
    }
}

/// What `prepare` hands to `apply` for both `file` and `upload`.
pub struct Write {
    want: Want,
    content: Vec<u8>,
    work: PutWork,
    output: FileResult,
}

/// Facts, decision and prepared work for putting `content` at `path`.
#[allow(clippy::too_many_arguments)]
async fn prepare_put(
    ctx: &Ctx,
    host: &Host,
    field: &str,
    kind: &str,
    path: &str,
    content: Vec<u8>,
    want: Want,
    secret: bool,
) -> Result<Prepared<FileResult, Write>, StepError> {
    let new = NewContent::new(&content, secret);
    let (facts, current) = put::observe(ctx, host, path, !new.hidden).await?;
    facts.check_holders(&host.name, field, path)?;
    let decision = put::decide(
        &host.name,
        kind,
        path,
        &want,
        &new,
        &facts,
        current.as_deref(),
    )?;
    let digest = fingerprint(&facts);
    Ok(match decision.work {
        None => Prepared::done(decision.actions, digest, decision.output),
        Some(work) => Prepared::todo(
            decision.actions,
            digest,
            decision.output.clone(),
            Write {
                want,
                content,
                work,
                output: decision.output,
            },
        ),
    })
}

async fn apply_put(ctx: &Ctx, host: &Host, path: &str, w: Write) -> Result<FileResult, StepError> {
    let new = NewContent::new(&w.content, false);
    put::put(ctx, host, path, &w.want, &new, &w.work).await?;
    Ok(w.output)
}

/// What putting content on a blank host looks like.
fn intent_put(
    host: &Host,
    kind: &str,
    path: &str,
    content: Option<&[u8]>,
    want: Option<Want>,
    secret: bool,
) -> Prepared<FileResult, Write> {
    let output = FileResult {
        path: path.into(),
        changed: true,
        created: true,
    };
    let what = match want {
        Some(want) => format!("{kind} {path} {}", want.describe()),
        None => format!("{kind} {path}"),
    };
    let mut action = Action::create(&host.name, what);
    if let Some(content) = content {
        let new = NewContent::new(content, secret);
        action = action.with_diff(Some(put::diff(path, None, None, &new)));
    }
    Prepared {
        actions: vec![action],
        facts: String::new(),
        predicted: output,
        work: None,
    }
}

impl Step for File {
    type Output = FileResult;
    type Work = Write;

    /// An absolute path and a valid mode, owner and group (values known
    /// only after an earlier change are let through).
    fn validate(&self) -> Result<(), StepError> {
        let a = &self.args;
        put::check_target(
            "path",
            &a.path,
            a.mode.as_deref(),
            a.owner.as_deref(),
            a.group.as_deref(),
        )
    }
    fn kind(&self) -> &'static str {
        "file"
    }
    fn target(&self) -> String {
        self.host.name.clone()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<FileResult, Write>, StepError> {
        let a = &this.args;
        put::check_path("path", &a.path)?;
        let content = a.content.as_bytes();
        let want = Want::new(
            a.mode.as_deref(),
            a.owner.as_deref(),
            a.group.as_deref(),
            default_mode(content, a.secret),
        )?;
        prepare_put(
            ctx,
            &this.host,
            "path",
            "file",
            &a.path,
            content.to_vec(),
            want,
            a.secret,
        )
        .await
    }
    fn intent(this: &Valid<Self>) -> Prepared<FileResult, Write> {
        let a = &this.args;
        let content = a.content.as_bytes();
        let want = Want::new(
            a.mode.as_deref(),
            a.owner.as_deref(),
            a.group.as_deref(),
            default_mode(content, a.secret),
        )
        .ok();
        intent_put(&this.host, "file", &a.path, Some(content), want, a.secret)
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, work: Write) -> Result<FileResult, StepError> {
        apply_put(ctx, &this.host, &this.args.path, work).await
    }
}

/// Options of `upload`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadArgs {
    pub src: String,
    pub dest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default)]
    pub secret: bool,
}

crate::registration::documented! {
    /// Copy a local file to `host` (alias: `scp`).
    ///
    /// Options: `src` (required: a path relative to the runbook folder, or an
    /// absolute path inside the workspace such as a generated certificate),
    /// `dest` (absolute path on the host, required), `mode` (default "0644";
    /// "0600" when the content is a private key), `owner`, `group`, `secret`.
    ///
    /// Skipped when the host already has identical content (sha256), mode and
    /// owner. Written atomically like `file`. Returns a `FileResult`.
    ///
    /// ```rhai
    /// upload(node, #{ src: ca.cert_path, dest: "/etc/etcd/pki/ca.crt" });
    /// ```
    #[derive(Clone, Debug, Serialize)]
    pub struct Upload {
        pub host: Host,
        #[serde(flatten)]
        pub args: UploadArgs,
    }
}

/// Read a local source: relative paths from the runbook folder, absolute
/// paths only from inside the workspace.
pub fn read_source(ctx: &Ctx, src: &str) -> Result<Vec<u8>, StepError> {
    let path = Path::new(src);
    if !path.is_absolute() {
        return ctx.bundle.read(src).map(<[u8]>::to_vec);
    }
    let root = ctx.workspace.root();
    let real_root = root.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound if path.starts_with(root) => StepError::Pending {
            what: path.display().to_string(),
        },
        _ => StepError::io("reading workspace", root, e),
    })?;
    let real = path.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound if path.starts_with(root) => StepError::Pending {
            what: path.display().to_string(),
        },
        _ => StepError::io("reading", path, e),
    })?;
    if !real.starts_with(&real_root) {
        return Err(StepError::invalid(
            "src",
            format!(
                "`{src}` is outside the workspace {}: absolute paths must be inside it \
                 (relative paths are read from the runbook folder)",
                root.display()
            ),
        ));
    }
    std::fs::read(&real).map_err(|e| StepError::io("reading", real, e))
}

impl Step for Upload {
    type Output = FileResult;
    type Work = Write;

    /// An absolute path and a valid mode, owner and group (values known
    /// only after an earlier change are let through).
    fn validate(&self) -> Result<(), StepError> {
        let a = &self.args;
        put::check_target(
            "dest",
            &a.dest,
            a.mode.as_deref(),
            a.owner.as_deref(),
            a.group.as_deref(),
        )
    }
    fn kind(&self) -> &'static str {
        "upload"
    }
    fn target(&self) -> String {
        self.host.name.clone()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<FileResult, Write>, StepError> {
        let a = &this.args;
        put::check_path("dest", &a.dest)?;
        let content = read_source(ctx, &a.src)?;
        let want = Want::new(
            a.mode.as_deref(),
            a.owner.as_deref(),
            a.group.as_deref(),
            default_mode(&content, a.secret),
        )?;
        prepare_put(
            ctx, &this.host, "dest", "file", &a.dest, content, want, a.secret,
        )
        .await
    }
    fn intent(this: &Valid<Self>) -> Prepared<FileResult, Write> {
        let a = &this.args;
        // Without the content the default mode (0644, 0600 for keys) is not known.
        let want = a
            .mode
            .as_deref()
            .and_then(|m| Want::new(Some(m), a.owner.as_deref(), a.group.as_deref(), m).ok());
        let mut p = intent_put(&this.host, "file", &a.dest, None, want, a.secret);
        for action in &mut p.actions {
            action.reason = Some(format!("from {}", a.src));
        }
        p
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, work: Write) -> Result<FileResult, StepError> {
        apply_put(ctx, &this.host, &this.args.dest, work).await
    }
}
