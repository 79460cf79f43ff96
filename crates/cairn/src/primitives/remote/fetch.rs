//! `fetch`: copy a file from a host into the workspace, streamed.
//!
//! The remote file is read without following a link (the descriptor read is
//! checked to be the very regular file `stat` saw at the path, as in
//! [`super::put::observe`]) and its bytes go straight from the ssh channel
//! into a temporary file next to the destination, hashed on the way: never
//! through a command's captured output or the journal. The host hashes the
//! same descriptor; the two sha256 must agree (and agree with what the facts
//! saw) before the temporary file is renamed into place.

use super::put::{self, Kind};
use crate::action::Action;
use crate::error::StepError;
use crate::host::Host;
use crate::primitives::local::{confined, parse_mode};
use crate::ssh::{quote, tail};
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use crate::unknown;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one copy may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3600);

/// Options of `fetch`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchArgs {
    pub src: String,
    pub dest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

crate::registration::documented! {
    /// Copy the file `src` on `host` to `dest` in the workspace, streamed (any
    /// size; never through the journal).
    ///
    /// Options: `src` (absolute path on the host, required; a symbolic link there
    /// is refused, never followed), `dest` (workspace path under `backups/` or
    /// `files/`, e.g. `backups/etcd-1/snap.db`; no `..`, no links), `mode`
    /// (octal; default: the remote file's mode). A no-op when `dest` already has
    /// the remote file's sha256 (its mode is still fixed). The copy goes to a
    /// temporary file in `dest`'s folder, is hashed on both ends, and is renamed
    /// into place only when both hashes agree. Returns a `FetchResult` (`path`,
    /// `sha256`, `size`, `changed`).
    ///
    /// ```rhai
    /// let f = fetch(node, #{ src: "/var/lib/cairn/backups/snap.db", dest: "backups/etcd-1/snap.db", mode: "0600" });
    /// print(`${f.path}: ${f.size} bytes, sha256 ${f.sha256}`);
    /// ```
    #[derive(Clone, Debug, Serialize)]
    pub struct Fetch {
        pub host: Host,
        #[serde(flatten)]
        pub args: FetchArgs,
    }
}

/// What `fetch` returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "FetchResult")]
pub struct FetchResult {
    /// Full local path.
    #[rhai_type(readonly)]
    pub path: String,
    #[rhai_type(readonly)]
    pub sha256: String,
    #[rhai_type(skip)]
    pub size: u64,
    /// Whether the local copy was written (or its mode changed).
    #[rhai_type(readonly)]
    pub changed: bool,
}

impl std::fmt::Display for FetchResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} bytes, sha256 {}, {})",
            self.path,
            self.size,
            &self.sha256[..12.min(self.sha256.len())],
            if self.changed { "fetched" } else { "unchanged" }
        )
    }
}

/// The decided work.
pub enum FetchWork {
    /// Copy the file with this sha256 (seen in the facts) and mode.
    Copy {
        dest: PathBuf,
        sha256: String,
        mode: u32,
    },
    /// Only set the mode of the local copy.
    Chmod { dest: PathBuf, mode: u32 },
}

/// The local copy as it is now.
#[derive(Serialize)]
struct Local {
    exists: bool,
    sha256: Option<String>,
    mode: Option<u32>,
}

/// sha256 and mode of a regular local file (streamed), if there is one.
fn local_facts(path: &Path) -> Result<Local, StepError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Local {
                exists: false,
                sha256: None,
                mode: None,
            })
        }
        Err(e) => return Err(StepError::io("inspecting", path, e)),
    };
    if !meta.is_file() {
        return Err(StepError::invalid(
            "dest",
            format!("{} exists and is not a regular file", path.display()),
        ));
    }
    let mut file = std::fs::File::open(path).map_err(|e| StepError::io("reading", path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| StepError::io("reading", path, e))?;
    Ok(Local {
        exists: true,
        sha256: Some(hex::encode(hasher.finalize())),
        mode: Some(meta.permissions().mode() & 0o7777),
    })
}

/// The script that writes the regular file at `src` to stdout, from a
/// descriptor checked to be the file `stat` saw (no link followed), then
/// `sha256 <hex>` of that same file on the last stderr line.
pub fn stream_script(src: &str) -> String {
    format!(
        "p={p}\n\
         t=$(stat -c '%F|%d:%i' -- \"$p\") || exit 3\n\
         case \"$t\" in 'regular file|'*|'regular empty file|'*) ;;\n\
         *) echo \"cairn: $p is a ${{t%%|*}}, not a regular file (links are not followed)\" >&2; exit 4;; esac\n\
         exec 3<\"$p\" || exit 3\n\
         if [ \"$(stat -L -c %d:%i -- /dev/fd/3)\" != \"${{t##*|}}\" ]; then\n\
         \x20 echo \"cairn: $p was replaced while it was opened (a link or another file swapped in)\" >&2; exit 5\n\
         fi\n\
         cat <&3 || exit 6\n\
         s=$(sha256sum </dev/fd/3 | cut -d' ' -f1) || exit 7\n\
         printf 'sha256 %s\\n' \"$s\" >&2\n",
        p = quote(src)
    )
}

/// The sha256 the host reported on its last `sha256 <hex>` stderr line.
pub fn reported_sha(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("sha256 "))
        .map(str::trim)
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Fetch {
    fn what(&self) -> String {
        format!(
            "fetch {}:{} → {}",
            self.host.name, self.args.src, self.args.dest
        )
    }
    fn mode(&self) -> Result<Option<u32>, StepError> {
        match &self.args.mode {
            Some(m) if !unknown::is_unknown(m) => Ok(Some(parse_mode("mode", m)?)),
            _ => Ok(None),
        }
    }

    /// Copy the remote file (expected to hash to `want`) to `dest`.
    pub async fn copy(
        &self,
        ctx: &Ctx,
        dest: &Path,
        want: &str,
        mode: u32,
    ) -> Result<FetchResult, StepError> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let folder = dest.parent().unwrap_or(Path::new("/"));
        // Private: a backup holds every key of a cluster.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(|e| StepError::io("creating", folder, e))?;
        // Folders made just now: checked again for links swapped in meanwhile.
        confined(&ctx.workspace, "dest", &dest.display().to_string())?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".fetch-")
            .suffix(".cairn-tmp")
            .tempfile_in(folder)
            .map_err(|e| StepError::io("creating a temporary file in", folder, e))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let script = stream_script(&self.args.src);
        let out = {
            let file = tmp.as_file_mut();
            ctx.ssh
                .stream(&self.host, &script, FETCH_TIMEOUT, dest, |chunk| {
                    hasher.update(chunk);
                    size += chunk.len() as u64;
                    file.write_all(chunk)
                })
                .await?
        };
        if out.code != 0 {
            return Err(StepError::Command {
                host: self.host.name.clone(),
                command: format!("read {}", self.args.src),
                code: out.code,
                stderr: tail(&out.stderr, 1000),
            });
        }
        let local = hex::encode(hasher.finalize());
        let remote = reported_sha(&out.stderr).unwrap_or("(none reported)");
        if local != remote || local != want {
            return Err(StepError::Verify(format!(
                "fetch {}:{} to {}: sha256 differs (host {remote}, received {local}, expected \
                 {want}); the file changed while it was copied, or the copy was damaged; \
                 nothing was written",
                self.host.name,
                self.args.src,
                dest.display()
            )));
        }
        let file = tmp.as_file();
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .and_then(|_| file.sync_all())
            .map_err(|e| StepError::io("writing", tmp.path(), e))?;
        tmp.persist(dest)
            .map_err(|e| StepError::io("renaming into", dest, e.error))?;
        Ok(FetchResult {
            path: dest.display().to_string(),
            sha256: local,
            size,
            changed: true,
        })
    }
}

impl Step for Fetch {
    type Output = FetchResult;
    type Work = FetchWork;

    fn validate(&self) -> Result<(), StepError> {
        if !unknown::is_unknown(&self.args.src) {
            put::check_path("src", &self.args.src)?;
        }
        if !unknown::is_unknown(&self.args.dest) {
            // The lexical checks alone (the workspace is not known here).
            confined(
                &crate::workspace::Workspace::new("/nonexistent-workspace"),
                "dest",
                &self.args.dest,
            )?;
        }
        self.mode().map(|_| ())
    }
    fn kind(&self) -> &'static str {
        "fetch"
    }
    fn target(&self) -> String {
        self.host.name.clone()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<FetchResult, FetchWork>, StepError> {
        let dest = confined(&ctx.workspace, "dest", &this.args.dest)?;
        let src = &this.args.src;
        let (remote, _) = put::observe(ctx, &this.host, src, false).await?;
        let name = &this.host.name;
        match remote.kind {
            Kind::File => {}
            Kind::Missing => {
                return Err(StepError::invalid(
                    "src",
                    format!("{src} does not exist on {name}"),
                ))
            }
            Kind::Link => {
                return Err(StepError::invalid(
                    "src",
                    format!(
                        "{src} on {name} is a symbolic link (to {}); fetch reads regular files only and never follows a link",
                        remote.link_to.as_deref().unwrap_or("?")
                    ),
                ))
            }
            Kind::Dir | Kind::Other => {
                return Err(StepError::invalid(
                    "src",
                    format!("{src} on {name} is not a regular file"),
                ))
            }
        }
        let sha = remote.sha256.clone().unwrap_or_default();
        let mode = match this.mode()? {
            Some(m) => m,
            None => parse_mode("mode", &remote.mode)?,
        };
        let local = local_facts(&dest)?;
        let digest = fingerprint(&(&remote, &local));
        let result = |changed| FetchResult {
            path: dest.display().to_string(),
            sha256: sha.clone(),
            size: remote.size,
            changed,
        };
        if local.sha256.as_deref() == Some(sha.as_str()) {
            if local.mode == Some(mode) {
                return Ok(Prepared::done(
                    vec![Action::noop(
                        "local",
                        this.what(),
                        "already fetched (sha256 matches)",
                    )],
                    digest,
                    result(false),
                ));
            }
            return Ok(Prepared::todo(
                vec![Action::change("local", this.what()).because(format!(
                    "mode {:04o} -> {mode:04o} (content matches)",
                    local.mode.unwrap_or(0)
                ))],
                digest,
                result(true),
                FetchWork::Chmod { dest, mode },
            ));
        }
        let action = if local.exists {
            Action::change("local", this.what()).because(format!(
                "{} bytes, sha256 {} (the local copy differs)",
                remote.size,
                &sha[..12.min(sha.len())]
            ))
        } else {
            Action::create("local", this.what()).because(format!(
                "{} bytes, mode {mode:04o}, sha256 {}",
                remote.size,
                &sha[..12.min(sha.len())]
            ))
        };
        Ok(Prepared::todo(
            vec![action],
            digest,
            result(true),
            FetchWork::Copy {
                dest,
                sha256: sha,
                mode,
            },
        ))
    }
    fn intent(this: &Valid<Self>) -> Prepared<FetchResult, FetchWork> {
        Prepared::todo(
            vec![Action::create("local", this.what())],
            String::new(),
            FetchResult {
                path: format!("<workspace>/{}", this.args.dest),
                sha256: unknown::placeholder("fetch", &format!("sha256 of {}", this.args.src)),
                size: 0,
                changed: true,
            },
            FetchWork::Chmod {
                dest: PathBuf::new(),
                mode: 0,
            },
        )
    }
    async fn apply(
        this: &Valid<Self>,
        ctx: &Ctx,
        work: FetchWork,
    ) -> Result<FetchResult, StepError> {
        match work {
            FetchWork::Copy { dest, sha256, mode } => this.copy(ctx, &dest, &sha256, mode).await,
            FetchWork::Chmod { dest, mode } => {
                use std::os::unix::fs::PermissionsExt;
                confined(&ctx.workspace, "dest", &dest.display().to_string())?;
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| StepError::io("chmod", &dest, e))?;
                let local = local_facts(&dest)?;
                Ok(FetchResult {
                    path: dest.display().to_string(),
                    sha256: local.sha256.unwrap_or_default(),
                    size: std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0),
                    changed: true,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_reports_its_hash_last() {
        let h = "a".repeat(64);
        assert_eq!(
            reported_sha(&format!("warn\nsha256 {h}\n")),
            Some(h.as_str())
        );
        assert_eq!(reported_sha("sha256 xyz\n"), None);
        assert_eq!(reported_sha(""), None);
    }

    #[test]
    fn the_source_path_is_quoted_into_a_variable() {
        let s = stream_script("/tmp/a b'; rm -rf /");
        assert!(s.starts_with("p='/tmp/a b'\\''; rm -rf /'\n"), "{s}");
        assert_eq!(s.matches("\"$p\"").count(), 2, "{s}");
    }

    #[test]
    fn arguments_are_checked_before_anything_runs() {
        let f = |src: &str, dest: &str, mode: Option<&str>| Fetch {
            host: Host::new("node-1", "10.0.0.1"),
            args: FetchArgs {
                src: src.into(),
                dest: dest.into(),
                mode: mode.map(Into::into),
            },
        };
        assert!(f("/var/x.db", "backups/c/x.db", None).validate().is_ok());
        assert!(f("var/x.db", "backups/c/x.db", None).validate().is_err());
        assert!(f("/var/x.db", "../x.db", None).validate().is_err());
        assert!(f("/var/x.db", "pki/ca.key", None).validate().is_err());
        assert!(f("/var/x.db", "backups/c/x.db", Some("rw"))
            .validate()
            .is_err());
    }
}
