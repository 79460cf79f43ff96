//! `unpack`: extract a .tar.gz that is on the host into a folder.

use super::put::{self, FileResult};
use crate::action::Action;
use crate::error::StepError;
use crate::host::Host;
use crate::ssh::{quote, tail};
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use crate::unknown;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Options of `unpack`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnpackArgs {
    pub archive: String,
    pub dest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creates: Option<String>,
}

crate::registration::documented! {
    /// Extract the tar.gz `archive` (a path on the host) into `dest`.
    ///
    /// Options: `archive` (absolute path on the host, required), `dest` (absolute
    /// folder, created if missing, required), `strip` (int: leading path
    /// components to drop, like tar's `--strip-components`), `creates` (path the
    /// archive produces: the step is a no-op when it exists, and it must exist
    /// afterwards; put in place last, so a cut-off run never leaves it behind a
    /// half-extracted archive). Without `creates` the archive is extracted on
    /// every run.
    /// Files get the archive's modes; owners are not taken from the archive.
    /// Returns a `FileResult` for `dest`.
    ///
    /// ```rhai
    /// unpack(node, #{ archive: "/opt/etcd.tar.gz", dest: "/usr/local/bin", strip: 1,
    ///                 creates: "/usr/local/bin/etcd" });
    /// ```
    #[derive(Clone, Debug, Serialize)]
    pub struct Unpack {
        pub host: Host,
        #[serde(flatten)]
        pub args: UnpackArgs,
    }
}

/// What unpack saw before deciding.
#[derive(Debug, Serialize)]
struct UnpackFacts {
    creates_exists: bool,
    archive_exists: bool,
    dest_exists: bool,
}

impl Unpack {
    /// `creates` relative to `dest`, when it lies inside it.
    fn creates_inside_dest(&self) -> Option<String> {
        let creates = self.args.creates.as_deref()?;
        let dest = self.args.dest.trim_end_matches('/');
        let rel = creates.strip_prefix(dest)?.strip_prefix('/')?;
        let rel = rel.trim_end_matches('/');
        let plain = !rel.is_empty()
            && rel
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        plain.then(|| rel.to_string())
    }

    /// Absolute paths (the Step's `check`); a value known only after an
    /// earlier change is let through.
    fn validate(&self) -> Result<(), StepError> {
        let paths = [
            ("archive", Some(&self.args.archive)),
            ("dest", Some(&self.args.dest)),
            ("creates", self.args.creates.as_ref()),
        ];
        for (field, path) in paths {
            if let Some(p) = path.filter(|p| !unknown::is_unknown(p)) {
                put::check_path(field, p)?;
            }
        }
        Ok(())
    }
    fn what(&self) -> String {
        format!("unpack {} into {}", self.args.archive, self.args.dest)
    }
    fn action(&self, dest_exists: bool) -> Action {
        let target = &self.host.name;
        match (&self.args.creates, dest_exists) {
            (Some(c), _) => Action::create(target, self.what()).because(format!("creates {c}")),
            (None, false) => Action::create(target, self.what()),
            (None, true) => Action::run(target, self.what())
                .because("no `creates` given: extracted on every run"),
        }
    }
}

impl Step for Unpack {
    type Output = FileResult;
    type Work = bool;

    fn validate(&self) -> Result<(), StepError> {
        self.validate()
    }
    fn kind(&self) -> &'static str {
        "unpack"
    }
    fn target(&self) -> String {
        self.host.name.clone()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<FileResult, bool>, StepError> {
        this.validate()?;
        let a = &this.args;
        let creates = a
            .creates
            .as_deref()
            .map(|c| format!("if [ -e {} ]; then echo creates; fi\n", quote(c)))
            .unwrap_or_default();
        let script = format!(
            "{creates}if [ -f {} ]; then echo archive; fi\nif [ -d {} ]; then echo dest; fi\n",
            quote(&a.archive),
            quote(&a.dest)
        );
        let out = ctx.ssh.exec(&this.host, &script, None).await?;
        // tar writes straight into `dest`: it and every folder above it must
        // be root's alone, or a link planted there would take the writes.
        let (dest_facts, _) = super::put::observe(ctx, &this.host, &a.dest, false).await?;
        dest_facts.check_holders(&this.host.name, "dest", &a.dest)?;
        if dest_facts.kind == super::put::Kind::Link {
            return Err(StepError::invalid(
                "dest",
                format!(
                    "{} on {} is a symlink to {}: cairn does not unpack through it",
                    a.dest,
                    this.host.name,
                    dest_facts.link_to.as_deref().unwrap_or("?")
                ),
            ));
        }
        // (a path two levels below `dest` that does not exist: its holders
        // are `dest` itself and every folder above it)
        let inner = format!("{}/.cairn-unpack/x", a.dest.trim_end_matches('/'));
        let (inner_facts, _) = super::put::observe(ctx, &this.host, &inner, false).await?;
        inner_facts.check_holders(&this.host.name, "dest", &a.dest)?;
        let has = |word: &str| out.stdout.lines().any(|l| l == word);
        let facts = UnpackFacts {
            creates_exists: has("creates"),
            archive_exists: has("archive"),
            dest_exists: has("dest"),
        };
        let digest = fingerprint(&facts);
        let output = |changed, created| FileResult {
            path: a.dest.clone(),
            changed,
            created,
        };
        if facts.creates_exists {
            let creates = a.creates.as_deref().unwrap_or_default();
            return Ok(Prepared::done(
                vec![Action::noop(
                    &this.host.name,
                    this.what(),
                    format!("{creates} exists"),
                )],
                digest,
                output(false, false),
            ));
        }
        let mut action = this.action(facts.dest_exists);
        if !facts.archive_exists {
            // It may come from an earlier step of this run (a download).
            let reason = action
                .reason
                .take()
                .map(|r| format!("{r}; "))
                .unwrap_or_default();
            action = action.because(format!("{reason}archive not on the host yet"));
        }
        Ok(Prepared::todo(
            vec![action],
            digest,
            output(true, !facts.dest_exists),
            !facts.dest_exists,
        ))
    }
    fn intent(this: &Valid<Self>) -> Prepared<FileResult, bool> {
        Prepared {
            actions: vec![this.action(false)],
            facts: String::new(),
            predicted: FileResult {
                path: this.args.dest.clone(),
                changed: true,
                created: true,
            },
            work: None,
        }
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, created: bool) -> Result<FileResult, StepError> {
        let a = &this.args;
        let strip = a
            .strip
            .map(|n| format!(" --strip-components={n}"))
            .unwrap_or_default();
        let verify = a
            .creates
            .as_deref()
            .map(|c| {
                format!(
                    "if [ ! -e {q} ]; then echo \"the archive did not create {c}\" >&2; exit 3; fi\n",
                    q = quote(c),
                    c = c.replace(['"', '$', '`', '\\'], "_")
                )
            })
            .unwrap_or_default();
        let d = quote(&a.dest);
        let arch = quote(&a.archive);
        let script = match this.creates_inside_dest() {
            // `creates` must only exist once everything is in place, or a run
            // interrupted mid-extraction (killed, host powered off) would
            // leave a half-written archive that the next run skips. So: extract
            // into a staging folder in `dest` (same file system), copy the
            // rest over (replacing running binaries' files, not writing into
            // them), and move `creates` into place last.
            Some(rel) => {
                let rel = quote(&rel);
                format!(
                    "set -e\nmkdir -p -- {d}\n\
                     rm -rf {d}/.cairn-unpack.*\n\
                     t=$(mktemp -d {d}/.cairn-unpack.XXXXXX)\n\
                     trap 'rm -rf \"$t\" \"$t.last\"' EXIT\n\
                     tar -xzf {arch} -C \"$t\" --no-same-owner{strip}\n\
                     if [ -e \"$t\"/{rel} ] || [ -L \"$t\"/{rel} ]; then mv \"$t\"/{rel} \"$t.last\"; fi\n\
                     (cd \"$t\" && find . -mindepth 1 -maxdepth 1 -exec cp -a --remove-destination {{}} {d}/ \\;)\n\
                     if [ -e \"$t.last\" ] || [ -L \"$t.last\" ]; then \
                       mkdir -p \"$(dirname {d}/{rel})\" && rm -rf {d}/{rel} && mv \"$t.last\" {d}/{rel}; fi\n\
                     {verify}"
                )
            }
            None => format!(
                "set -e\nmkdir -p -- {d}\ntar -xzf {arch} -C {d} --no-same-owner{strip}\n{verify}"
            ),
        };
        let out = ctx
            .ssh
            .exec_with(&this.host, &script, None, Some(Duration::from_secs(900)))
            .await?;
        if out.code != 0 {
            return Err(StepError::Command {
                host: this.host.name.clone(),
                command: this.what(),
                code: out.code,
                stderr: tail(&out.stderr, 1000),
            });
        }
        Ok(FileResult {
            path: a.dest.clone(),
            changed: true,
            created,
        })
    }
}
