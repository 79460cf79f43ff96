//! `local_file`: files on the operator's machine, under the workspace's
//! `files/` folder (member lists, kubeadm snippets, client configs).

use crate::action::Action;
use crate::error::StepError;
use crate::executor::Executor;
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use rhai::{EvalAltResult, NativeCallContext};
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
    /// The workspace folder `path` is in: `files` (default) or `backups`
    /// (e.g. a backup's sidecar record next to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
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
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, rhai::CustomType)]
#[rhai_type(name = "LocalFileResult")]
pub struct LocalFileResult {
    /// Absolute path of the file.
    #[rhai_type(readonly)]
    pub path: String,
    /// Whether the run changed it.
    #[rhai_type(readonly)]
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
        match self.area.as_deref() {
            None | Some("files") => {
                let rel = crate::bundle::Bundle::check_path(&self.path)?;
                Ok(ctx.workspace.files_dir().join(rel))
            }
            Some(area) => confined(&ctx.workspace, "path", &format!("{area}/{}", self.path)),
        }
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
    fn validate(&self) -> Result<(), StepError> {
        if crate::unknown::is_unknown(&self.path) {
            return Ok(());
        }
        if let Some(area) = self.area.as_deref().filter(|a| !AREAS.contains(a)) {
            return Err(StepError::invalid(
                "area",
                format!("`{area}` is not one of {}", AREAS.join(", ")),
            ));
        }
        crate::bundle::Bundle::check_path(&self.path).map(|_| ())
    }
    fn kind(&self) -> &'static str {
        "local_file"
    }
    fn target(&self) -> String {
        "local".into()
    }

    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<LocalFileResult, PathBuf>, StepError> {
        use std::os::unix::fs::PermissionsExt;
        let mode = parse_mode("mode", &this.mode)?;
        let path = this.full_path(ctx)?;
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
                let diff = unified_diff(&shown, "", &this.content);
                let action = Action::create("local", format!("file {shown} ({})", this.mode))
                    .with_diff(Some(diff));
                Ok(Prepared::todo(vec![action], fp, out(true), path))
            }
            Some(bytes) if bytes == this.content.as_bytes() && cur_mode == Some(mode) => {
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
                let diff = (old != this.content).then(|| unified_diff(&shown, &old, &this.content));
                Ok(Prepared::todo(
                    vec![Action::change("local", what).with_diff(diff)],
                    fp,
                    out(true),
                    path,
                ))
            }
        }
    }

    fn intent(this: &Valid<Self>) -> Prepared<LocalFileResult, PathBuf> {
        let shown = format!(
            "<workspace>/{}/{}",
            this.area.as_deref().unwrap_or("files"),
            this.path
        );
        let action = Action::create("local", format!("file {shown} ({})", this.mode))
            .with_diff(Some(unified_diff(&shown, "", &this.content)));
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

    async fn apply(
        this: &Valid<Self>,
        _ctx: &Ctx,
        path: PathBuf,
    ) -> Result<LocalFileResult, StepError> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mode = parse_mode("mode", &this.mode)?;
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
        f.write_all(this.content.as_bytes())
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
        .build_type::<LocalFileResult>()
        .register_fn("to_string", |r: &mut LocalFileResult| {
            format!(
                "{} ({})",
                r.path,
                if r.changed { "changed" } else { "unchanged" }
            )
        });
    crate::registration::function!(
        engine,
        /// Write a file on the operator's machine, under the workspace's `files/` folder
        /// (or `backups/` with `area: "backups"`): `#{ path, content, mode?, area? }`
        /// (`path` relative to that folder, no `..`). Written to a
        /// temp file and renamed; a no-op when it already holds `content` with that mode.
        /// The plan shows a diff. Returns `LocalFileResult` (`path`, `changed`).
        ///
        /// ```rhai
        /// local_file(#{ path: `${params.cluster}/endpoints.txt`, content: eps.join("\n") });
        /// ```
        fn "local_file"("args: Map") -> "LocalFileResult" =
        crate::registration::map_step::<LocalFile>(exec, "local_file")
    );
    register_housekeeping(engine, exec);
}

/// Register `local_remove`, `local_files` and their record type.
fn register_housekeeping(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    use rhai::{Dynamic, ImmutableString};
    type I = LocalFileInfo;
    engine
        .build_type::<I>()
        .register_get("size", |f: &mut I| f.size as i64)
        .register_fn("to_string", |f: &mut I| {
            format!("{} ({} bytes, {})", f.path, f.size, f.modified)
        })
        .register_fn("to_debug", |f: &mut I| {
            format!("{} ({} bytes, {})", f.path, f.size, f.modified)
        });
    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "local_remove"("path: &str") -> "bool" as DOC_REMOVE =
        move |call: NativeCallContext, path: ImmutableString| -> Result<bool, Box<EvalAltResult>> {
            x.exec(
                &call,
                LocalRemove {
                    path: path.to_string(),
                },
            )
        }
    );
    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "local_files"("pattern: &str") -> "Array" as DOC_FILES =
        move |call: NativeCallContext,
              pattern: ImmutableString|
              -> Result<rhai::Array, Box<EvalAltResult>> {
            let files = x.exec(
                &call,
                LocalFiles {
                    pattern: pattern.to_string(),
                },
            )?;
            Ok(files.into_iter().map(Dynamic::from).collect())
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::Workspace;

    #[test]
    fn workspace_paths_are_confined() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace::new(tmp.path().join(".cairn"));
        let ok = confined(&ws, "dest", "backups/c1/a.db").unwrap();
        assert_eq!(ok, ws.root().join("backups/c1/a.db"));
        let abs = ws.root().join("files/x").display().to_string();
        assert_eq!(
            confined(&ws, "dest", &abs).unwrap(),
            ws.root().join("files/x")
        );
        for (bad, why) in [
            ("backups/../pki/ca.key", "goes up with `..`"),
            ("/etc/passwd", "is outside the workspace"),
            (
                "pki/ca.key",
                "is not a file in the workspace's files/ or backups folders",
            ),
            ("backups", "is not a file in the workspace's"),
        ] {
            let err = confined(&ws, "dest", bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        // a link on the way, or at the path
        std::fs::create_dir_all(ws.root().join("backups")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), ws.root().join("backups/c2")).unwrap();
        let err = confined(&ws, "dest", "backups/c2/a.db")
            .unwrap_err()
            .to_string();
        assert!(err.contains("backups/c2 is a symbolic link"), "{err}");
        std::os::unix::fs::symlink("/etc/passwd", ws.root().join("backups/p")).unwrap();
        let err = confined(&ws, "path", "backups/p").unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
    }

    #[test]
    fn globs_match_names() {
        for (p, n, m) in [
            ("*.db", "2026-a.db", true),
            ("*.db", "a.db.json", false),
            ("*-node-?.db", "x-node-2.db", true),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
        ] {
            assert_eq!(glob_match(p, n), m, "{p} {n}");
        }
    }

    #[test]
    fn listing_is_newest_first_and_skips_links() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace::new(tmp.path());
        let dir = tmp.path().join("backups/c1");
        std::fs::create_dir_all(&dir).unwrap();
        let old = std::fs::File::create(dir.join("a.db")).unwrap();
        old.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
            .unwrap();
        std::fs::write(dir.join("b.db"), "12345").unwrap();
        std::fs::write(dir.join("b.db.json"), "{}").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("c.db")).unwrap();
        let l = LocalFiles {
            pattern: "backups/c1/*.db".into(),
        };
        let found = l.list(&ws).unwrap();
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["b.db", "a.db"]);
        assert_eq!(found[0].path, "backups/c1/b.db");
        assert_eq!(found[0].size, 5);
        assert!(found[1].age_seconds >= 3599, "{found:?}");
        let none = LocalFiles {
            pattern: "backups/absent/*.db".into(),
        };
        assert!(none.list(&ws).unwrap().is_empty());
        let bad = LocalFiles {
            pattern: "backups/*/x.db".into(),
        };
        assert!(bad.list(&ws).is_err());
    }
}

// ---- Workspace files a runbook keeps: confinement and housekeeping --------

/// The workspace folders runbooks may put files in, list and remove:
/// `files/` (what `local_file` writes) and `backups/` (what `fetch` brings).
/// Everything else in the workspace (keys, journals, known_hosts) is cairn's.
pub const AREAS: [&str; 2] = ["files", "backups"];

/// The full path of `path` in the workspace, confined: relative to the
/// workspace folder (or absolute inside it), without `..`, in one of
/// [`AREAS`], and with no symbolic link on the way or at the path itself
/// (a link could point a write or a removal anywhere).
pub fn confined(
    workspace: &crate::workspace::Workspace,
    field: &str,
    path: &str,
) -> Result<PathBuf, StepError> {
    use std::path::Component;
    let bad = |why: &str| {
        StepError::invalid(
            field,
            format!(
                "`{path}` {why} (workspace files are paths like backups/NAME or files/NAME, inside {})",
                workspace.root().display()
            ),
        )
    };
    let given = std::path::Path::new(path);
    let rel = if given.is_absolute() {
        given
            .strip_prefix(workspace.root())
            .map_err(|_| bad("is outside the workspace"))?
    } else {
        given
    };
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(bad("goes up with `..`")),
            _ => return Err(bad("is outside the workspace")),
        }
    }
    let first = parts.first().and_then(|p| p.to_str()).unwrap_or("");
    if !AREAS.contains(&first) || parts.len() < 2 {
        return Err(bad(&format!(
            "is not a file in the workspace's {} folders",
            AREAS.join("/ or ")
        )));
    }
    let mut full = workspace.root().to_path_buf();
    for p in parts {
        full.push(p);
        if std::fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(StepError::invalid(
                field,
                format!(
                    "{} is a symbolic link: cairn does not follow links in the workspace",
                    full.display()
                ),
            ));
        }
    }
    Ok(full)
}

/// `local_remove(path)`: remove a file the workspace keeps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalRemove {
    /// Workspace path (see [`confined`]).
    pub path: String,
}

impl Step for LocalRemove {
    type Output = bool;
    type Work = PathBuf;

    fn validate(&self) -> Result<(), StepError> {
        if crate::unknown::is_unknown(&self.path) {
            return Ok(());
        }
        // The lexical checks alone (the workspace is not known here).
        confined(
            &crate::workspace::Workspace::new("/nonexistent-workspace"),
            "path",
            &self.path,
        )
        .map(|_| ())
    }
    fn kind(&self) -> &'static str {
        "local_remove"
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(this: &Valid<Self>, ctx: &Ctx) -> Result<Prepared<bool, PathBuf>, StepError> {
        let path = confined(&ctx.workspace, "path", &this.path)?;
        let shown = path.display().to_string();
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Prepared::done(
                vec![Action::noop(
                    "local",
                    format!("file {shown}"),
                    "already absent",
                )],
                fingerprint(&false),
                false,
            )),
            Err(e) => Err(StepError::io("inspecting", &path, e)),
            Ok(m) if m.is_file() => Ok(Prepared::todo(
                vec![Action::delete("local", format!("file {shown}"))],
                fingerprint(&(m.len(), m.modified().ok())),
                true,
                path,
            )),
            Ok(_) => Err(StepError::invalid(
                "path",
                format!("{shown} is not a regular file; local_remove removes files only"),
            )),
        }
    }
    fn intent(this: &Valid<Self>) -> Prepared<bool, PathBuf> {
        Prepared::todo(
            vec![Action::delete(
                "local",
                format!("file <workspace>/{}", this.path),
            )],
            String::new(),
            true,
            PathBuf::new(),
        )
    }
    async fn apply(_this: &Valid<Self>, _ctx: &Ctx, path: PathBuf) -> Result<bool, StepError> {
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StepError::io("removing", &path, e)),
        }
    }
}

/// One file found by `local_files`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, rhai::CustomType)]
#[rhai_type(name = "LocalFileInfo")]
pub struct LocalFileInfo {
    /// Workspace-relative path (`backups/c1/x.db`): what `local_remove` takes.
    #[rhai_type(readonly)]
    pub path: String,
    /// File name alone.
    #[rhai_type(readonly)]
    pub name: String,
    #[rhai_type(skip)]
    pub size: u64,
    /// Last modification, RFC 3339 UTC.
    #[rhai_type(readonly)]
    pub modified: String,
    /// Seconds since `modified` (at the time of the listing).
    #[rhai_type(readonly)]
    pub age_seconds: i64,
}

/// `local_files(pattern)`: workspace files whose name matches a pattern.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalFiles {
    /// `FOLDER/NAME-PATTERN` in the workspace; `*` and `?` in the name only.
    pub pattern: String,
}

/// Whether `name` matches `pattern` (`*`: any run of characters, `?`: one).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl LocalFiles {
    fn split(&self) -> Result<(&str, &str), StepError> {
        let (dir, name) = self.pattern.rsplit_once('/').ok_or_else(|| {
            StepError::invalid(
                "pattern",
                format!(
                    "`{}` names no folder (like backups/CLUSTER/*.db)",
                    self.pattern
                ),
            )
        })?;
        if dir.contains(['*', '?']) || name.is_empty() {
            return Err(StepError::invalid(
                "pattern",
                format!(
                    "`{}`: wildcards go in the file name only (like backups/CLUSTER/*.db)",
                    self.pattern
                ),
            ));
        }
        Ok((dir, name))
    }

    /// The matching regular files, newest first (then by name).
    pub fn list(
        &self,
        workspace: &crate::workspace::Workspace,
    ) -> Result<Vec<LocalFileInfo>, StepError> {
        let (dir, name_pattern) = self.split()?;
        let full = confined(workspace, "pattern", &format!("{dir}/x"))?;
        let folder = full.parent().unwrap_or(workspace.root()).to_path_buf();
        let rel_dir = dir.trim_start_matches("./");
        let now = std::time::SystemTime::now();
        let mut found = Vec::new();
        let entries = match std::fs::read_dir(&folder) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StepError::io("listing", &folder, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StepError::io("listing", &folder, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !glob_match(name_pattern, &name) {
                continue;
            }
            // Links and folders are not the workspace's files: skipped.
            let meta = std::fs::symlink_metadata(entry.path())
                .map_err(|e| StepError::io("inspecting", entry.path(), e))?;
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(now);
            let age = now
                .duration_since(modified)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            found.push((
                modified,
                LocalFileInfo {
                    path: format!("{rel_dir}/{name}"),
                    name,
                    size: meta.len(),
                    modified: crate::clock::Timestamp(time::OffsetDateTime::from(modified))
                        .to_string(),
                    age_seconds: age,
                },
            ));
        }
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
        Ok(found.into_iter().map(|(_, f)| f).collect())
    }
}

impl Step for LocalFiles {
    type Output = Vec<LocalFileInfo>;
    type Work = ();

    fn validate(&self) -> Result<(), StepError> {
        if crate::unknown::is_unknown(&self.pattern) {
            return Ok(());
        }
        self.split().map(|_| ())
    }
    fn kind(&self) -> &'static str {
        "local_files"
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<Self::Output, ()>, StepError> {
        let files = this.list(&ctx.workspace)?;
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        Ok(Prepared::done(
            vec![Action::noop(
                "local",
                format!("list {} ({} files)", this.pattern, files.len()),
                "read-only fact",
            )],
            fingerprint(&names),
            files,
        ))
    }
    fn intent(this: &Valid<Self>) -> Prepared<Self::Output, ()> {
        Prepared::done(
            vec![Action::noop(
                "local",
                format!("list {}", this.pattern),
                "read-only fact",
            )],
            String::new(),
            Vec::new(),
        )
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<Self::Output, StepError> {
        this.list(&ctx.workspace)
    }
}

crate::registration::documented! {
    /// Remove the workspace file `path` (relative to the workspace, under
    /// `backups/` or `files/`; no `..`, no symbolic links). A no-op when it is
    /// already absent. Returns whether a file was removed.
    ///
    /// ```rhai
    /// local_remove("backups/etcd-1/20261201T101500Z-node-2.db");
    /// ```
    const DOC_REMOVE;
}

crate::registration::documented! {
    /// The workspace files matching `pattern` (`FOLDER/NAME`, `*` and `?` in the
    /// name only, e.g. `backups/etcd-1/*.db`), newest first: an array of
    /// `LocalFileInfo` (`path` (workspace-relative, for `local_remove`), `name`,
    /// `size`, `modified` (RFC 3339), `age_seconds`). Links, folders and dot files
    /// are left out. Read-only: it answers in plans too.
    ///
    /// ```rhai
    /// let old = local_files("backups/etcd-1/*.db");
    /// for f in old.extract(3) { local_remove(f.path); }   // keep the newest 3
    /// ```
    const DOC_FILES;
}
