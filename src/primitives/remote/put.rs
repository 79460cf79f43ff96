//! Putting bytes at a path on a host: what is there now (one round trip), what
//! would change (with a diff that never shows secrets), and the atomic write.
//! Shared by `file` and `upload`; `download` and `dir` use its facts and its
//! mode/owner handling.

use crate::action::Action;
use crate::error::StepError;
use crate::host::Host;
use crate::ssh::quote;
use crate::step::Ctx;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Current content is fetched for a diff only up to this size.
pub const DIFF_LIMIT: u64 = 256 * 1024;

/// The result of `file`, `upload`, `dir`, `download` and `unpack`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileResult {
    pub path: String,
    /// Anything was changed (content, mode or owner).
    pub changed: bool,
    /// The path did not exist before.
    pub created: bool,
}

impl fmt::Display for FileResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (self.created, self.changed) {
            (true, _) => "created",
            (false, true) => "changed",
            (false, false) => "unchanged",
        };
        write!(f, "{} ({state})", self.path)
    }
}

/// What kind of thing is at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Missing,
    File,
    Dir,
    Other,
}

/// What is at a remote path now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathFacts {
    pub kind: Kind,
    /// Four octal digits (`0644`); empty when missing.
    pub mode: String,
    pub owner: String,
    pub group: String,
    pub size: u64,
    /// Of a regular file's content.
    pub sha256: Option<String>,
    /// Whether the parent folder exists.
    pub parent_exists: bool,
}

/// Mode and ownership asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Want {
    /// Four octal digits.
    pub mode: String,
    pub owner: Option<String>,
    pub group: Option<String>,
}

impl Want {
    /// Validate what a runbook passed; `default_mode` when no mode is given.
    pub fn new(
        mode: Option<&str>,
        owner: Option<&str>,
        group: Option<&str>,
        default_mode: &str,
    ) -> Result<Self, StepError> {
        let mode = mode.unwrap_or(default_mode);
        let valid =
            (3..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
        if !valid {
            return Err(StepError::invalid(
                "mode",
                format!("`{mode}` is not an octal mode like \"0644\""),
            ));
        }
        let name = |field: &str, v: Option<&str>| -> Result<Option<String>, StepError> {
            match v {
                None => Ok(None),
                Some(v)
                    if !v.is_empty()
                        && !v.starts_with('-')
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) =>
                {
                    Ok(Some(v.to_string()))
                }
                Some(v) => Err(StepError::invalid(
                    field,
                    format!("`{v}` is not a user or group name"),
                )),
            }
        };
        Ok(Want {
            mode: format!("{mode:0>4}"),
            owner: name("owner", owner)?,
            group: name("group", group)?,
        })
    }

    /// `(0644 root:root)`, for action lines.
    pub fn describe(&self) -> String {
        match (&self.owner, &self.group) {
            (None, None) => format!("({})", self.mode),
            (o, g) => format!(
                "({} {}:{})",
                self.mode,
                o.as_deref().unwrap_or("-"),
                g.as_deref().unwrap_or("-")
            ),
        }
    }

    /// Differences in mode and ownership, e.g. `mode 0644 -> 0600`.
    pub fn differences(&self, facts: &PathFacts) -> Vec<String> {
        let mut out = Vec::new();
        if facts.mode != self.mode {
            out.push(format!("mode {} -> {}", facts.mode, self.mode));
        }
        if let Some(o) = self.owner.as_ref().filter(|o| **o != facts.owner) {
            out.push(format!("owner {} -> {o}", facts.owner));
        }
        if let Some(g) = self.group.as_ref().filter(|g| **g != facts.group) {
            out.push(format!("group {} -> {g}", facts.group));
        }
        out
    }

    /// Shell lines setting mode and ownership of `"$var"`.
    pub fn apply_to(&self, var: &str) -> String {
        let mut s = String::new();
        match (&self.owner, &self.group) {
            (Some(o), Some(g)) => s.push_str(&format!("chown {o}:{g} -- \"${var}\"\n")),
            (Some(o), None) => s.push_str(&format!("chown {o} -- \"${var}\"\n")),
            (None, Some(g)) => s.push_str(&format!("chgrp {g} -- \"${var}\"\n")),
            (None, None) => {}
        }
        s.push_str(&format!("chmod {} -- \"${var}\"\n", self.mode));
        s
    }
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether content must never be shown: asked to, or it looks like a private key.
pub fn looks_secret(content: &[u8], secret: bool) -> bool {
    if secret {
        return true;
    }
    let head = &content[..content.len().min(100)];
    head.starts_with(b"-----BEGIN") && content.windows(11).any(|w| w == b"PRIVATE KEY")
}

/// Validate an absolute remote path.
pub fn check_path(field: &str, path: &str) -> Result<(), StepError> {
    if !path.starts_with('/') || path.contains('\0') || path.contains('\n') {
        return Err(StepError::invalid(
            field,
            format!("`{path}` is not an absolute path on the host"),
        ));
    }
    if path.len() > 1 && path.ends_with('/') {
        return Err(StepError::invalid(field, format!("`{path}` ends with `/`")));
    }
    Ok(())
}

/// Observe `path` on `host`: kind, mode, owner, hash and, if `fetch_content`
/// and it is small, its content (for diffs). One round trip.
pub async fn observe(
    ctx: &Ctx,
    host: &Host,
    path: &str,
    fetch_content: bool,
) -> Result<(PathFacts, Option<Vec<u8>>), StepError> {
    let content = if fetch_content {
        format!(
            "if [ -f \"$p\" ] && [ \"$(stat -L -c %s -- \"$p\")\" -le {DIFF_LIMIT} ]; then base64 -w0 < \"$p\"; fi\n"
        )
    } else {
        String::new()
    };
    let script = format!(
        "p={p}\n\
         if [ -e \"$p\" ]; then stat -L -c '%F|%a|%U|%G|%s' -- \"$p\"; else echo 'missing||||0'; fi\n\
         if [ -f \"$p\" ]; then sha256sum < \"$p\" | cut -d' ' -f1; else echo -; fi\n\
         if [ -d \"$(dirname -- \"$p\")\" ]; then echo parent; else echo noparent; fi\n\
         {content}echo",
        p = quote(path)
    );
    let out = ctx.ssh.exec(host, &script, None).await?;
    if out.code != 0 {
        return Err(StepError::Command {
            host: host.name.clone(),
            command: format!("inspect {path}"),
            code: out.code,
            stderr: crate::ssh::tail(&out.stderr, 1000),
        });
    }
    parse_facts(&out.stdout).ok_or_else(|| StepError::Transport {
        host: host.name.clone(),
        command: format!("inspect {path}"),
        message: format!(
            "unexpected answer: {}",
            crate::ssh::tail(out.stdout.lines().next().unwrap_or(""), 200)
        ),
    })
}

fn parse_facts(stdout: &str) -> Option<(PathFacts, Option<Vec<u8>>)> {
    let mut lines = stdout.lines();
    let stat: Vec<&str> = lines.next()?.split('|').collect();
    let hash = lines.next()?.trim();
    let parent = lines.next()?.trim();
    let content = lines.next().map(str::trim).filter(|c| !c.is_empty());
    if stat.len() != 5 {
        return None;
    }
    let kind = match stat[0] {
        "missing" => Kind::Missing,
        "regular file" | "regular empty file" => Kind::File,
        "directory" => Kind::Dir,
        _ => Kind::Other,
    };
    let mode = if kind == Kind::Missing {
        String::new()
    } else {
        format!("{:0>4}", stat[1])
    };
    use base64::Engine as _;
    let content = content.and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok());
    Some((
        PathFacts {
            kind,
            mode,
            owner: stat[2].to_string(),
            group: stat[3].to_string(),
            size: stat[4].parse().unwrap_or(0),
            sha256: (hash != "-").then(|| hash.to_string()),
            parent_exists: parent == "parent",
        },
        content,
    ))
}

/// The write `decide` settled on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutWork {
    /// Write the content (atomically, mode and owner set before it appears).
    pub write: bool,
    /// Create missing parent folders first.
    pub mkdir: bool,
}

/// What `decide` concluded: actions, work (if any) and the resulting output.
pub struct Decision {
    pub actions: Vec<Action>,
    pub work: Option<PutWork>,
    pub output: FileResult,
}

/// New content as the decision sees it: its hash and whether it may be shown.
pub struct NewContent<'a> {
    pub bytes: &'a [u8],
    pub sha256: String,
    pub hidden: bool,
}

impl<'a> NewContent<'a> {
    pub fn new(bytes: &'a [u8], secret: bool) -> Self {
        NewContent {
            bytes,
            sha256: sha256_hex(bytes),
            hidden: looks_secret(bytes, secret),
        }
    }
}

fn text(bytes: &[u8]) -> Option<&str> {
    if bytes.len() as u64 > DIFF_LIMIT || bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// A unified diff from `old` to `new` for `path`, or a line saying why not.
pub fn diff(path: &str, old: Option<&[u8]>, old_sha: Option<&str>, new: &NewContent) -> String {
    let old_label = old_sha.map(short).unwrap_or("(none)");
    if new.hidden {
        return format!(
            "(content hidden) sha256 {old_label} -> {}\n",
            short(&new.sha256)
        );
    }
    let old_text = match (old, old_sha) {
        (_, None) => Some(""),
        (Some(o), Some(_)) => text(o),
        (None, Some(_)) => None,
    };
    match (old_text, text(new.bytes)) {
        (Some(o), Some(n)) => similar::TextDiff::from_lines(o, n)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{path} (now)"), &format!("{path} (new)"))
            .to_string(),
        _ => format!(
            "(binary or larger than {} KiB) sha256 {old_label} -> {}\n",
            DIFF_LIMIT / 1024,
            short(&new.sha256)
        ),
    }
}

/// Decide from facts what writing `new` at `path` with `want` takes.
pub fn decide(
    target: &str,
    kind: &str,
    path: &str,
    want: &Want,
    new: &NewContent,
    facts: &PathFacts,
    current: Option<&[u8]>,
) -> Result<Decision, StepError> {
    let what = format!("{kind} {path} {}", want.describe());
    match facts.kind {
        Kind::Missing => {
            let mut action =
                Action::create(target, what).with_diff(Some(diff(path, None, None, new)));
            if !facts.parent_exists {
                action = action.because("with its parent folders");
            }
            Ok(Decision {
                actions: vec![action],
                work: Some(PutWork {
                    write: true,
                    mkdir: !facts.parent_exists,
                }),
                output: FileResult {
                    path: path.into(),
                    changed: true,
                    created: true,
                },
            })
        }
        Kind::File => {
            let same = facts.sha256.as_deref() == Some(new.sha256.as_str());
            let mut changes = Vec::new();
            if !same {
                changes.push("content".to_string());
            }
            changes.extend(want.differences(facts));
            if changes.is_empty() {
                return Ok(Decision {
                    actions: vec![Action::noop(
                        target,
                        what,
                        "content, mode and owner already match",
                    )],
                    work: None,
                    output: FileResult {
                        path: path.into(),
                        changed: false,
                        created: false,
                    },
                });
            }
            let diff = (!same).then(|| diff(path, current, facts.sha256.as_deref(), new));
            Ok(Decision {
                actions: vec![Action::change(target, what)
                    .because(changes.join(", "))
                    .with_diff(diff)],
                work: Some(PutWork {
                    write: !same,
                    mkdir: false,
                }),
                output: FileResult {
                    path: path.into(),
                    changed: true,
                    created: false,
                },
            })
        }
        Kind::Dir | Kind::Other => Err(StepError::invalid(
            "path",
            format!(
                "{path} on {target} exists and is not a regular file ({})",
                if facts.kind == Kind::Dir {
                    "a directory"
                } else {
                    "a special file"
                }
            ),
        )),
    }
}

/// Carry out `work`: write `new` atomically (a temp file in the same folder,
/// mode and owner set, hash checked, then renamed over `path`), or only fix
/// mode and owner in place.
pub async fn put(
    ctx: &Ctx,
    host: &Host,
    path: &str,
    want: &Want,
    new: &NewContent<'_>,
    work: &PutWork,
) -> Result<(), StepError> {
    let p = quote(path);
    let (script, stdin) = if work.write {
        let mkdir = if work.mkdir {
            "mkdir -p -- \"$d\"\n"
        } else {
            ""
        };
        (
            format!(
                "set -e\np={p}\nd=$(dirname -- \"$p\")\n{mkdir}\
                 t=$(mktemp -- \"$d/.cairn.XXXXXXXX\")\n\
                 trap 'rm -f -- \"$t\"' EXIT\n\
                 cat > \"$t\"\n\
                 {fix}\
                 s=$(sha256sum < \"$t\" | cut -d' ' -f1)\n\
                 if [ \"$s\" != {sha} ]; then echo \"content arrived damaged (sha256 $s)\" >&2; exit 3; fi\n\
                 mv -f -- \"$t\" \"$p\"\n\
                 trap - EXIT\n",
                fix = want.apply_to("t"),
                sha = new.sha256,
            ),
            Some(new.bytes),
        )
    } else {
        (format!("set -e\np={p}\n{}", want.apply_to("p")), None)
    };
    let out = ctx.ssh.exec(host, &script, stdin).await?;
    if out.code != 0 {
        return Err(StepError::Command {
            host: host.name.clone(),
            command: if work.write {
                format!("write {path}")
            } else {
                format!("set mode and owner of {path}")
            },
            code: out.code,
            stderr: crate::ssh::tail(&out.stderr, 1000),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::ActionKind;

    fn facts(kind: Kind, mode: &str, sha: Option<&str>) -> PathFacts {
        PathFacts {
            kind,
            mode: mode.into(),
            owner: "root".into(),
            group: "root".into(),
            size: 0,
            sha256: sha.map(str::to_string),
            parent_exists: true,
        }
    }

    fn want(mode: &str) -> Want {
        Want::new(Some(mode), Some("root"), Some("root"), "0644").unwrap()
    }

    #[test]
    fn missing_file_is_created_with_full_diff() {
        let new = NewContent::new(b"a\nb\n", false);
        let d = decide(
            "n1",
            "file",
            "/etc/x",
            &want("644"),
            &new,
            &facts(Kind::Missing, "", None),
            None,
        )
        .unwrap();
        assert_eq!(d.actions[0].kind, ActionKind::Create);
        assert_eq!(d.actions[0].what, "file /etc/x (0644 root:root)");
        let diff = d.actions[0].diff.as_deref().unwrap();
        assert!(diff.contains("+a\n+b\n"), "{diff}");
        assert!(d.output.created && d.output.changed);
        assert_eq!(
            d.work,
            Some(PutWork {
                write: true,
                mkdir: false
            })
        );
    }

    #[test]
    fn same_content_and_mode_is_a_noop() {
        let new = NewContent::new(b"a\n", false);
        let f = facts(Kind::File, "0644", Some(&new.sha256));
        let d = decide("n1", "file", "/etc/x", &want("0644"), &new, &f, None).unwrap();
        assert_eq!(d.actions[0].kind, ActionKind::Noop);
        assert_eq!(
            d.actions[0].reason.as_deref(),
            Some("content, mode and owner already match")
        );
        assert!(d.work.is_none());
    }

    #[test]
    fn mode_change_alone_does_not_rewrite() {
        let new = NewContent::new(b"a\n", false);
        let f = facts(Kind::File, "0644", Some(&new.sha256));
        let d = decide("n1", "file", "/etc/x", &want("0600"), &new, &f, None).unwrap();
        assert_eq!(d.actions[0].kind, ActionKind::Change);
        assert_eq!(d.actions[0].reason.as_deref(), Some("mode 0644 -> 0600"));
        assert_eq!(d.actions[0].diff, None);
        assert_eq!(
            d.work,
            Some(PutWork {
                write: false,
                mkdir: false
            })
        );
    }

    #[test]
    fn changed_content_shows_a_unified_diff() {
        let new = NewContent::new(b"a\nB\nc\n", false);
        let f = facts(Kind::File, "0644", Some(&sha256_hex(b"a\nb\nc\n")));
        let d = decide(
            "n1",
            "file",
            "/etc/x",
            &want("0644"),
            &new,
            &f,
            Some(b"a\nb\nc\n"),
        )
        .unwrap();
        let diff = d.actions[0].diff.as_deref().unwrap();
        assert!(diff.contains("-b\n+B\n"), "{diff}");
        assert!(diff.contains("--- /etc/x (now)"), "{diff}");
    }

    #[test]
    fn private_keys_are_never_shown() {
        let key = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----\n";
        let new = NewContent::new(key, false);
        assert!(new.hidden);
        let d = decide(
            "n1",
            "file",
            "/k",
            &want("0600"),
            &new,
            &facts(Kind::Missing, "", None),
            None,
        )
        .unwrap();
        let diff = d.actions[0].diff.as_deref().unwrap();
        assert!(diff.starts_with("(content hidden)"), "{diff}");
        assert!(!diff.contains("MIGHAgEAMBMG"));
        let secret = NewContent::new(b"token-value\n", true);
        assert!(diff_of(&secret).starts_with("(content hidden)"));
    }

    fn diff_of(new: &NewContent) -> String {
        diff("/x", None, None, new)
    }

    #[test]
    fn directories_are_not_overwritten() {
        let new = NewContent::new(b"a", false);
        let err = decide(
            "n1",
            "file",
            "/etc",
            &want("0644"),
            &new,
            &facts(Kind::Dir, "0755", None),
            None,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("a directory"), "{err}");
    }

    #[test]
    fn facts_parse() {
        let (f, c) = parse_facts("regular file|600|root|adm|12\nabc\nparent\nYQ==\n").unwrap();
        assert_eq!(f.kind, Kind::File);
        assert_eq!(f.mode, "0600");
        assert_eq!(f.group, "adm");
        assert_eq!(f.sha256.as_deref(), Some("abc"));
        assert_eq!(c.as_deref(), Some(&b"a"[..]));
        let (f, c) = parse_facts("missing||||0\n-\nnoparent\n\n").unwrap();
        assert_eq!(f.kind, Kind::Missing);
        assert!(!f.parent_exists && c.is_none() && f.sha256.is_none());
    }

    #[test]
    fn bad_modes_and_names_are_rejected() {
        assert!(Want::new(Some("999"), None, None, "0644").is_err());
        assert!(Want::new(Some("0644"), Some("-x"), None, "0644").is_err());
        assert!(Want::new(Some("0644"), Some("a b"), None, "0644").is_err());
        assert_eq!(Want::new(None, None, None, "0600").unwrap().mode, "0600");
    }
}
