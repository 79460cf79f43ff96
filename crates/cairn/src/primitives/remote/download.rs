//! `download`: fetch a URL on the host itself, verified by sha256 before it is
//! moved into place.

use super::put::{self, FileResult, Kind, Want};
use crate::action::Action;
use crate::error::StepError;
use crate::host::Host;
use crate::ssh::{quote, tail};
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use crate::unknown;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(900);

/// Options of `download`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadArgs {
    pub url: String,
    pub sha256: String,
    pub dest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

crate::registration::documented! {
    /// Download `url` to `dest` on `host` (with `curl` on the host), checked
    /// against `sha256`.
    ///
    /// Options: `url` (http or https, required), `sha256` (64 hex digits,
    /// required), `dest` (absolute path, required), `mode` (default "0644"),
    /// `owner`, `group`. A no-op when `dest` already has that hash (mode and owner
    /// are still fixed if they differ). The file is fetched to a temp file next to
    /// `dest` and its hash verified BEFORE it is moved into place; on a mismatch
    /// nothing is left behind and the error names the URL and both hashes.
    /// Returns a `FileResult`.
    ///
    /// ```rhai
    /// download(node, #{ url: etcd_url, sha256: etcd_sha, dest: "/opt/etcd.tar.gz" });
    /// ```
    #[derive(Clone, Debug, Serialize)]
    pub struct Download {
        pub host: Host,
        #[serde(flatten)]
        pub args: DownloadArgs,
    }
}

/// Fetch with mode and owner set (a mode or owner change alone fetches again).
pub struct DownloadWork {
    want: Want,
    output: FileResult,
}

impl Download {
    /// The arguments as the step uses them (the Step's `check` runs this
    /// too, letting through values known only after an earlier change).
    fn validate(&self) -> Result<(Want, String), StepError> {
        let a = &self.args;
        if !unknown::is_unknown(&a.dest) {
            put::check_path("dest", &a.dest)?;
        }
        if !unknown::is_unknown(&a.url)
            && (!(a.url.starts_with("https://") || a.url.starts_with("http://"))
                || a.url.contains(char::is_whitespace))
        {
            return Err(StepError::invalid(
                "url",
                format!("`{}` is not an http(s) URL", a.url),
            ));
        }
        let sha = a.sha256.trim().to_ascii_lowercase();
        if !unknown::is_unknown(&sha)
            && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(StepError::invalid(
                "sha256",
                format!("`{}` is not a sha256 (64 hex digits)", a.sha256),
            ));
        }
        let want = Want::new(
            a.mode.as_deref(),
            a.owner.as_deref(),
            a.group.as_deref(),
            "0644",
        )?;
        Ok((want, sha))
    }
    fn what(&self, want: &Want) -> String {
        format!("file {} {}", self.args.dest, want.describe())
    }
}

impl Step for Download {
    type Output = FileResult;
    type Work = DownloadWork;

    fn validate(&self) -> Result<(), StepError> {
        self.validate().map(|_| ())
    }
    fn kind(&self) -> &'static str {
        "download"
    }
    fn target(&self) -> String {
        self.host.name.clone()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<FileResult, DownloadWork>, StepError> {
        let (want, sha) = this.validate()?;
        let dest = &this.args.dest;
        let target = &this.host.name;
        let (facts, _) = put::observe(ctx, &this.host, dest, false).await?;
        facts.check_holders(&this.host.name, "dest", dest)?;
        let digest = fingerprint(&facts);
        let output = |changed, created| FileResult {
            path: dest.clone(),
            changed,
            created,
        };
        let from = format!("from {}", this.args.url);
        match facts.kind {
            Kind::Missing => Ok(Prepared::todo(
                vec![Action::create(target, this.what(&want)).because(from)],
                digest,
                output(true, true),
                DownloadWork {
                    want,
                    output: output(true, true),
                },
            )),
            Kind::File => {
                let same = facts.sha256.as_deref() == Some(sha.as_str());
                let mut changes = Vec::new();
                if !same {
                    changes.push(format!(
                        "content (sha256 {} differs) {from}",
                        facts
                            .sha256
                            .as_deref()
                            .map(|s| &s[..12.min(s.len())])
                            .unwrap_or("?")
                    ));
                }
                changes.extend(want.differences(&facts));
                if changes.is_empty() {
                    return Ok(Prepared::done(
                        vec![Action::noop(
                            target,
                            this.what(&want),
                            "already downloaded (sha256 matches)",
                        )],
                        digest,
                        output(false, false),
                    ));
                }
                Ok(Prepared::todo(
                    vec![Action::change(target, this.what(&want)).because(changes.join(", "))],
                    digest,
                    output(true, false),
                    DownloadWork {
                        want,
                        output: output(true, false),
                    },
                ))
            }
            Kind::Link => Ok(Prepared::todo(
                vec![Action::change(target, this.what(&want)).because(format!(
                    "replace symlink → {}, {from}",
                    facts.link_to.as_deref().unwrap_or("?")
                ))],
                digest,
                output(true, false),
                DownloadWork {
                    want,
                    output: output(true, false),
                },
            )),
            Kind::Dir | Kind::Other => Err(StepError::invalid(
                "dest",
                format!("{dest} on {target} exists and is not a regular file"),
            )),
        }
    }
    fn intent(this: &Valid<Self>) -> Prepared<FileResult, DownloadWork> {
        let what = match this.validate() {
            Ok((want, _)) => this.what(&want),
            Err(_) => format!("file {}", this.args.dest),
        };
        Prepared {
            actions: vec![
                Action::create(&this.host.name, what).because(format!("from {}", this.args.url))
            ],
            facts: String::new(),
            predicted: FileResult {
                path: this.args.dest.clone(),
                changed: true,
                created: true,
            },
            work: None,
        }
    }
    async fn apply(
        this: &Valid<Self>,
        ctx: &Ctx,
        work: DownloadWork,
    ) -> Result<FileResult, StepError> {
        let (_, sha) = this.validate()?;
        // A mode or owner change alone downloads again: changing them in
        // place would follow a link swapped in since the facts were read.
        let fetch = format!(
            "curl -fsSL --retry 2 --connect-timeout 20 -o \"$f\" -- {}",
            quote(&this.args.url)
        );
        let script = put::private_write(&this.args.dest, true, &fetch, &sha, &work.want);
        let out = ctx
            .ssh
            .exec_with(&this.host, &script, None, Some(DOWNLOAD_TIMEOUT))
            .await?;
        if out.code == put::SHA_MISMATCH {
            let actual = out
                .stderr
                .lines()
                .find_map(|l| l.strip_prefix("sha256 mismatch: "))
                .unwrap_or("?")
                .trim();
            return Err(StepError::Verify(format!(
                "download of {} to {} on {}: expected sha256 {sha}, got {actual}; nothing was installed",
                this.args.url, this.args.dest, this.host.name
            )));
        }
        if out.code != 0 {
            return Err(StepError::Command {
                host: this.host.name.clone(),
                command: format!("download {} to {}", this.args.url, this.args.dest),
                code: out.code,
                stderr: tail(&out.stderr, 1000),
            });
        }
        Ok(work.output)
    }
}
