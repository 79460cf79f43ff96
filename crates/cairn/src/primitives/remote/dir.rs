//! `dir`: a directory with a mode and, if asked, an owner.

use super::put::{self, FileResult, Kind, Want};
use crate::action::Action;
use crate::error::StepError;
use crate::host::Host;
use crate::ssh::{quote, tail};
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use serde::{Deserialize, Serialize};

/// Options of `dir`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirArgs {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

crate::registration::documented! {
    /// Make a directory exist on `host` (with its parents).
    ///
    /// Options: `path` (absolute, required), `mode` (default "0755"), `owner`,
    /// `group` (left as they are unless given). A no-op when it exists with that
    /// mode and owner; a mode or owner difference is fixed in place. Returns a
    /// `FileResult` (`path`, `changed`, `created`).
    ///
    /// ```rhai
    /// dir(node, #{ path: "/var/lib/etcd", mode: "0700", owner: "etcd", group: "etcd" });
    /// ```
    #[derive(Clone, Debug, Serialize)]
    pub struct Dir {
        pub host: Host,
        #[serde(flatten)]
        pub args: DirArgs,
    }
}

/// Whether to create the directory or only fix its mode and owner.
pub struct DirWork {
    create: bool,
    want: Want,
    output: FileResult,
}

impl Dir {
    fn want(&self) -> Result<Want, StepError> {
        let a = &self.args;
        Want::new(
            a.mode.as_deref(),
            a.owner.as_deref(),
            a.group.as_deref(),
            "0755",
        )
    }
    fn what(&self, want: &Want) -> String {
        format!("dir {} {}", self.args.path, want.describe())
    }
}

impl Step for Dir {
    type Output = FileResult;
    type Work = DirWork;

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
        "dir"
    }
    fn target(&self) -> String {
        self.host.name.clone()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<FileResult, DirWork>, StepError> {
        put::check_path("path", &this.args.path)?;
        let want = this.want()?;
        let path = &this.args.path;
        let (facts, _) = put::observe(ctx, &this.host, path, false).await?;
        facts.check_holders(&this.host.name, "path", path)?;
        let digest = fingerprint(&facts);
        let target = &this.host.name;
        let output = |changed, created| FileResult {
            path: path.clone(),
            changed,
            created,
        };
        match facts.kind {
            Kind::Missing => Ok(Prepared::todo(
                vec![Action::create(target, this.what(&want))],
                digest,
                output(true, true),
                DirWork {
                    create: true,
                    want,
                    output: output(true, true),
                },
            )),
            Kind::Dir => {
                let changes = want.differences(&facts);
                if changes.is_empty() {
                    return Ok(Prepared::done(
                        vec![Action::noop(
                            target,
                            this.what(&want),
                            "exists with that mode and owner",
                        )],
                        digest,
                        output(false, false),
                    ));
                }
                Ok(Prepared::todo(
                    vec![Action::change(target, this.what(&want)).because(changes.join(", "))],
                    digest,
                    output(true, false),
                    DirWork {
                        create: false,
                        want,
                        output: output(true, false),
                    },
                ))
            }
            Kind::Link => Err(StepError::invalid(
                "path",
                format!(
                    "{path} on {target} is a symlink (owner {}) to {}, where a folder \
                     should be: cairn does not follow it, nor change what it points to; \
                     remove the link (or give the real folder's path)",
                    facts.owner,
                    facts.link_to.as_deref().unwrap_or("?")
                ),
            )),
            Kind::File | Kind::Other => Err(StepError::invalid(
                "path",
                format!("{path} on {target} exists and is not a directory"),
            )),
        }
    }
    fn intent(this: &Valid<Self>) -> Prepared<FileResult, DirWork> {
        let what = match this.want() {
            Ok(want) => this.what(&want),
            Err(_) => format!("dir {}", this.args.path),
        };
        Prepared {
            actions: vec![Action::create(&this.host.name, what)],
            facts: String::new(),
            predicted: FileResult {
                path: this.args.path.clone(),
                changed: true,
                created: true,
            },
            work: None,
        }
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, work: DirWork) -> Result<FileResult, StepError> {
        // Mode and owner are set on the folder cairn is in after `cd`, once
        // its real path is checked: a link swapped in is never followed.
        let script = format!(
            "set -e\np={p}\nd=${{p%/*}}; [ -n \"$d\" ] || d=/\n{mkdir}\
             r=$(cd -P -- \"$d\" && pwd -P)\n\
             cd -P -- \"$p\"\n\
             if [ \"$(pwd -P)\" != \"${{r%/}}/${{p##*/}}\" ]; then\n\
             \x20 echo \"cairn: $p is not a folder of its own (now $(pwd -P)): a link was swapped in; nothing changed\" >&2; exit 5\n\
             fi\n{fix}",
            p = quote(&this.args.path),
            mkdir = if work.create {
                "mkdir -p -- \"$p\"\n"
            } else {
                ""
            },
            fix = work.want.apply_to("."),
        );
        let out = ctx.ssh.exec(&this.host, &script, None).await?;
        if out.code != 0 {
            return Err(StepError::Command {
                host: this.host.name.clone(),
                command: format!("create directory {}", this.args.path),
                code: out.code,
                stderr: tail(&out.stderr, 1000),
            });
        }
        Ok(work.output)
    }
}
