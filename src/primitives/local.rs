//! `local_file`: files on the operator's machine, under the workspace's
//! `files/` folder (member lists, kubeadm snippets, client configs).

use crate::action::Action;
use crate::error::StepError;
use crate::executor::Executor;
use crate::step::{fingerprint, Ctx, Prepared, Step};
use rhai::{EvalAltResult, Map, NativeCallContext};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `local_file`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalFile {
    /// Path relative to the workspace's `files/` folder.
    pub path: String,
    /// The content. Hashed, not stored, in the journal.
    #[serde(serialize_with = "hash_content")]
    pub content: String,
    /// Octal mode, default `0644`; keys should be `0600`.
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_mode() -> String {
    "0644".into()
}

fn hash_content<S: serde::Serializer>(content: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!(
        "sha256:{}",
        hex::encode(Sha256::digest(content.as_bytes()))
    ))
}

/// The result of a file step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LocalFileResult {
    /// Absolute path of the file.
    pub path: String,
    /// Whether the run changed it.
    pub changed: bool,
}

/// Unified diff of two texts, labelled with `path`.
pub fn unified_diff(path: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(path, &format!("{path} (planned)"))
        .to_string()
}

/// Parse an octal mode string like `0644`.
pub fn parse_mode(field: &str, mode: &str) -> Result<u32, StepError> {
    u32::from_str_radix(mode.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            StepError::invalid(
                field,
                format!("`{mode}` is not an octal file mode like 0644"),
            )
        })
}

impl LocalFile {
    fn full_path(&self, ctx: &Ctx) -> Result<PathBuf, StepError> {
        let rel = crate::bundle::Bundle::check_path(&self.path)?;
        Ok(ctx.workspace.files_dir().join(rel))
    }
}

/// What `local_file` found.
#[derive(Serialize)]
struct Facts {
    exists: bool,
    sha256: Option<String>,
    mode: Option<u32>,
}

impl Step for LocalFile {
    type Output = LocalFileResult;
    type Work = PathBuf;

    /// The path stays inside the workspace's files folder.
    fn check(&self) -> Result<(), StepError> {
        if crate::unknown::is_unknown(&self.path) {
            return Ok(());
        }
        crate::bundle::Bundle::check_path(&self.path).map(|_| ())
    }
    fn kind(&self) -> &'static str {
        "local_file"
    }
    fn target(&self) -> String {
        "local".into()
    }

    async fn prepare(&self, ctx: &Ctx) -> Result<Prepared<LocalFileResult, PathBuf>, StepError> {
        use std::os::unix::fs::PermissionsExt;
        let mode = parse_mode("mode", &self.mode)?;
        let path = self.full_path(ctx)?;
        let shown = path.display().to_string();
        let current = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StepError::io("reading", &path, e)),
        };
        let cur_mode = std::fs::metadata(&path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777);
        let facts = Facts {
            exists: current.is_some(),
            sha256: current.as_ref().map(|b| hex::encode(Sha256::digest(b))),
            mode: cur_mode,
        };
        let fp = fingerprint(&facts);
        let out = |changed| LocalFileResult {
            path: shown.clone(),
            changed,
        };
        match current {
            None => {
                let diff = unified_diff(&shown, "", &self.content);
                let action = Action::create("local", format!("file {shown} ({})", self.mode))
                    .with_diff(Some(diff));
                Ok(Prepared::todo(vec![action], fp, out(true), path))
            }
            Some(bytes) if bytes == self.content.as_bytes() && cur_mode == Some(mode) => {
                Ok(Prepared::done(
                    vec![Action::noop(
                        "local",
                        format!("file {shown}"),
                        "content and mode match",
                    )],
                    fp,
                    out(false),
                ))
            }
            Some(bytes) => {
                let old = String::from_utf8_lossy(&bytes);
                let mut what = format!("file {shown}");
                if cur_mode != Some(mode) {
                    what.push_str(&format!(
                        " (mode {:04o} -> {:04o})",
                        cur_mode.unwrap_or(0),
                        mode
                    ));
                }
                let diff = (old != self.content).then(|| unified_diff(&shown, &old, &self.content));
                Ok(Prepared::todo(
                    vec![Action::change("local", what).with_diff(diff)],
                    fp,
                    out(true),
                    path,
                ))
            }
        }
    }

    fn intent(&self) -> Prepared<LocalFileResult, PathBuf> {
        let shown = format!("<workspace>/files/{}", self.path);
        let action = Action::create("local", format!("file {shown} ({})", self.mode))
            .with_diff(Some(unified_diff(&shown, "", &self.content)));
        Prepared::todo(
            vec![action],
            String::new(),
            LocalFileResult {
                path: shown,
                changed: true,
            },
            PathBuf::new(),
        )
    }

    async fn apply(&self, _ctx: &Ctx, path: PathBuf) -> Result<LocalFileResult, StepError> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mode = parse_mode("mode", &self.mode)?;
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| StepError::io("creating", dir, e))?;
        let tmp = dir.join(format!(
            ".{}.cairn-tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
        ));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| StepError::io("creating", &tmp, e))?;
        f.write_all(self.content.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| StepError::io("writing", &tmp, e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(|e| StepError::io("chmod", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| StepError::io("renaming", &path, e))?;
        Ok(LocalFileResult {
            path: path.display().to_string(),
            changed: true,
        })
    }
}

/// Register `local_file`.
pub fn register(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    engine
        .register_type_with_name::<LocalFileResult>("LocalFileResult")
        .register_get("path", |r: &mut LocalFileResult| r.path.clone())
        .register_get("changed", |r: &mut LocalFileResult| r.changed)
        .register_fn("to_string", |r: &mut LocalFileResult| {
            format!(
                "{} ({})",
                r.path,
                if r.changed { "changed" } else { "unchanged" }
            )
        });
    let x = exec.clone();
    rhai::FuncRegistration::new("local_file")
        .with_params_info(["args: Map", "LocalFileResult"])
        .with_comments([
            "/// Write a file on the operator's machine, under the workspace's `files/` folder:",
            "/// `#{ path, content, mode? }` (`path` relative to `files/`, no `..`). Written to a",
            "/// temp file and renamed; a no-op when it already holds `content` with that mode.",
            "/// The plan shows a diff. Returns `LocalFileResult` (`path`, `changed`).",
            "///",
            "/// ```rhai",
            "/// local_file(#{ path: `${params.cluster}/endpoints.txt`, content: eps.join(\"\\n\") });",
            "/// ```",
        ])
        .register_into_engine(
            engine,
            move |call: NativeCallContext,
                  args: Map|
                  -> Result<LocalFileResult, Box<EvalAltResult>> {
                let step: LocalFile = crate::args::parse("local_file", args)?;
                x.exec(&call, step)
            },
        );
}
