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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "FileResult")]
pub struct FileResult {
    #[rhai_type(readonly)]
    pub path: String,
    /// Anything was changed (content, mode or owner).
    #[rhai_type(readonly)]
    pub changed: bool,
    /// The path did not exist before.
    #[rhai_type(readonly)]
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
    /// A symbolic link (never followed).
    Link,
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
    /// Where a symbolic link at the path points (shown, never followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_to: Option<String>,
    /// Folders that hold the path's parent (or would hold what `mkdir -p`
    /// makes) and that an account other than root could change: their
    /// entries could be swapped for links under a root write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsafe_holders: Vec<String>,
}

impl PathFacts {
    /// Refuse to write at a path below a folder another account controls.
    pub fn check_holders(&self, host: &str, field: &str, path: &str) -> Result<(), StepError> {
        match self.unsafe_holders.first() {
            None => Ok(()),
            Some(holder) => Err(StepError::invalid(
                field,
                format!(
                    "{path} on {host} is below {holder}: another account could swap a \
                     folder on the way for a link and turn a root write elsewhere; cairn \
                     writes only below folders root alone may change (chown root and chmod \
                     go-w that folder, or pick another path)"
                ),
            )),
        }
    }
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

    /// Shell lines setting mode and ownership of `target` (a word as the
    /// shell reads it, e.g. `"$f"` or `.`). Ownership is changed without
    /// following a link (`-h`); `chmod` has no such option, so `target` must be
    /// a file or folder no other account can swap (a file in cairn's private
    /// temporary folder, or the current folder after `cd`).
    pub fn apply_to(&self, target: &str) -> String {
        let mut s = String::new();
        match (&self.owner, &self.group) {
            (Some(o), Some(g)) => s.push_str(&format!(
                "chown -h {} -- {target}\n",
                quote(&format!("{o}:{g}"))
            )),
            (Some(o), None) => s.push_str(&format!("chown -h {} -- {target}\n", quote(o))),
            (None, Some(g)) => s.push_str(&format!("chgrp -h {} -- {target}\n", quote(g))),
            (None, None) => {}
        }
        s.push_str(&format!("chmod {} -- {target}\n", quote(&self.mode)));
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

/// The Step `check` of the primitives that put something at a path (file,
/// upload, dir): an absolute path and a valid mode, owner and group. A value
/// known only after an earlier change (see [`crate::unknown`]) is let through.
pub fn check_target(
    field: &str,
    path: &str,
    mode: Option<&str>,
    owner: Option<&str>,
    group: Option<&str>,
) -> Result<(), StepError> {
    use crate::unknown::is_unknown;
    if !is_unknown(path) {
        check_path(field, path)?;
    }
    if [mode, owner, group].iter().flatten().any(|v| is_unknown(v)) {
        return Ok(());
    }
    Want::new(mode, owner, group, "0644").map(|_| ())
}

/// Observe `path` on `host` without following a link at it: kind, mode,
/// owner, hash and, if `fetch_content` and it is small, its content (for
/// diffs); the folders that hold it. One round trip.
///
/// Content and hash are read from a descriptor that is checked to be the very
/// file (device and inode) `stat` saw at the path as a regular file, so a link
/// planted there, or swapped in while reading, is never read through. A file
/// with more than one hard link is hashed but its content is not fetched.
pub async fn observe(
    ctx: &Ctx,
    host: &Host,
    path: &str,
    fetch_content: bool,
) -> Result<(PathFacts, Option<Vec<u8>>), StepError> {
    let script = format!(
        "p={p}\n\
         set -f\n\
         d=${{p%/*}}; [ -n \"$d\" ] || d=/\n\
         t=$(stat -c '%F|%a|%U|%G|%s|%d:%i|%h' -- \"$p\" 2>/dev/null) || t='missing||||0||0'\n\
         printf '%s\\n' \"$t\"\n\
         IFS='|'; set -- $t; IFS=' \t\n'\n\
         if [ \"$1\" = 'symbolic link' ]; then printf 'link %s\\n' \"$(readlink -- \"$p\" | tr '\\n' ' ')\"; else echo nolink; fi\n\
         case \"$1\" in\n\
         'regular file'|'regular empty file')\n\
         \x20 if {{ command exec 3<\"$p\"; }} 2>/dev/null && [ \"$(stat -L -c %d:%i -- /dev/fd/3)\" = \"$6\" ]; then\n\
         \x20   if [ {fetch} = 1 ] && [ \"$5\" -le {DIFF_LIMIT} ] && [ \"$7\" = 1 ]; then echo =; base64 -w0 <&3; echo\n\
         \x20   else sha256sum <&3 | cut -d' ' -f1; echo; fi\n\
         \x20   exec 3<&-\n\
         \x20 else echo moved; echo; fi;;\n\
         *) echo -; echo;;\n\
         esac\n\
         e=$d; while [ ! -d \"$e\" ] && [ \"$e\" != / ]; do e=${{e%/*}}; [ -n \"$e\" ] || e=/; done\n\
         if [ \"$e\" = \"$d\" ]; then echo parent; set --; else echo noparent; set -- \"$e\"; fi\n\
         a=$e; while [ \"$a\" != / ]; do a=${{a%/*}}; [ -n \"$a\" ] || a=/; set -- \"$@\" \"$a\"; done\n\
         r=$(cd -P -- \"$e\" 2>/dev/null && pwd -P) || r=/\n\
         [ \"$r\" = \"$e\" ] || [ \"$e\" = \"$d\" ] || set -- \"$@\" \"$r\"\n\
         a=$r; while [ \"$a\" != / ]; do a=${{a%/*}}; [ -n \"$a\" ] || a=/; set -- \"$@\" \"$a\"; done\n\
         stat -L -c 'holder|%u|%g|%a|%n' -- \"$@\"\n",
        p = quote(path),
        fetch = if fetch_content { 1 } else { 0 },
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
    let parsed = parse_facts(&out.stdout).ok_or_else(|| StepError::Transport {
        host: host.name.clone(),
        command: format!("inspect {path}"),
        message: format!(
            "unexpected answer: {}",
            crate::ssh::tail(out.stdout.lines().next().unwrap_or(""), 200)
        ),
    })?;
    if parsed.0.sha256.as_deref() == Some("moved") {
        return Err(StepError::Command {
            host: host.name.clone(),
            command: format!("inspect {path}"),
            code: 0,
            stderr: "the file was replaced while it was read (a link or another file swapped in); \
                     nothing was read from it"
                .into(),
        });
    }
    Ok(parsed)
}

/// Whether a folder (`holder|uid|gid|mode|name`) may be changed by an account
/// other than root: not owned by root, writable by a group other than root's,
/// or writable by others without the sticky bit.
fn unsafe_holder(line: &str) -> Option<String> {
    let mut f = line.splitn(5, '|');
    let (_, uid, gid, mode, name) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let mode = u32::from_str_radix(mode, 8).ok()?;
    let risky = uid != "0"
        || (mode & 0o020 != 0 && gid != "0")
        || (mode & 0o002 != 0 && mode & 0o1000 == 0);
    risky.then(|| format!("{name} (owner uid {uid}, group gid {gid}, mode {mode:04o})"))
}

fn parse_facts(stdout: &str) -> Option<(PathFacts, Option<Vec<u8>>)> {
    let mut lines = stdout.lines();
    let stat: Vec<&str> = lines.next()?.split('|').collect();
    let link = lines.next()?;
    let hash = lines.next()?.trim();
    let content = lines.next().map(str::trim).filter(|c| !c.is_empty());
    let parent = lines.next()?.trim();
    let unsafe_holders: Vec<String> = lines
        .filter(|l| l.starts_with("holder|"))
        .filter_map(unsafe_holder)
        .collect();
    if stat.len() != 7 {
        return None;
    }
    let kind = match stat[0] {
        "missing" => Kind::Missing,
        "regular file" | "regular empty file" => Kind::File,
        "directory" => Kind::Dir,
        "symbolic link" => Kind::Link,
        _ => Kind::Other,
    };
    let mode = if kind == Kind::Missing {
        String::new()
    } else {
        format!("{:0>4}", stat[1])
    };
    use base64::Engine as _;
    let content = if hash == "=" {
        Some(
            base64::engine::general_purpose::STANDARD
                .decode(content.unwrap_or(""))
                .ok()?,
        )
    } else {
        None
    };
    let sha256 = match (&content, hash) {
        (Some(c), _) => Some(sha256_hex(c)),
        (None, "-") => None,
        (None, h) => Some(h.to_string()),
    };
    Some((
        PathFacts {
            kind,
            mode,
            owner: stat[2].to_string(),
            group: stat[3].to_string(),
            size: stat[4].parse().unwrap_or(0),
            sha256,
            parent_exists: parent == "parent",
            link_to: link.strip_prefix("link ").map(|l| l.trim_end().to_string()),
            unsafe_holders,
        },
        content,
    ))
}

/// Exit code of [`private_write`] when the new file's sha256 is not the one
/// expected (stderr: `sha256 mismatch: <actual>`); nothing was installed.
pub const SHA_MISMATCH: i32 = 90;

/// The shell script that puts a new file at `path` without following any
/// link another account could have planted: in the path's folder (entered
/// with `cd -P`, made first if `mkdir`), a fresh private folder (0700,
/// checked after entering it) gets the file, `produce` writes it (a shell
/// snippet writing to `"$f"`, e.g. `cat > "$f"`), its sha256 is checked
/// against `sha` and mode and owner set, and it is renamed over the path
/// (`mv -T`: a link or file there is replaced, never written through).
pub fn private_write(path: &str, mkdir: bool, produce: &str, sha: &str, want: &Want) -> String {
    format!(
        "set -e\n\
         p={p}\n\
         b=${{p##*/}}; d=${{p%/*}}; [ -n \"$d\" ] || d=/\n\
         {mkdir}\
         cd -P -- \"$d\"\n\
         r=$(pwd -P)\n\
         w=$(mktemp -d .cairn.XXXXXXXX)\n\
         trap 'rm -rf -- \"$r/$w\"' EXIT\n\
         cd -- \"$w\"\n\
         if [ \"$(stat -c %u:%a .)\" != \"$(id -u):700\" ] || [ \"$(pwd -P)\" != \"${{r%/}}/$w\" ]; then\n\
         \x20 echo \"cairn: the temporary folder $r/$w was swapped while in use\" >&2; exit 5\n\
         fi\n\
         f=$(mktemp ./.new.XXXXXXXX)\n\
         {produce}\n\
         s=$(sha256sum < \"$f\" | cut -d' ' -f1)\n\
         if [ \"$s\" != {sha} ]; then echo \"sha256 mismatch: $s\" >&2; exit {SHA_MISMATCH}; fi\n\
         {fix}\
         mv -f -T -- \"$f\" \"${{r%/}}/$b\"\n",
        p = quote(path),
        mkdir = if mkdir {
            "mkdir -p -- \"$d\"\n"
        } else {
            ""
        },
        sha = quote(sha),
        fix = want.apply_to("\"$f\""),
    )
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
        Kind::Link => Ok(Decision {
            actions: vec![Action::change(target, what)
                .because(format!(
                    "replace symlink → {}",
                    facts.link_to.as_deref().unwrap_or("?")
                ))
                .with_diff(Some(diff(path, None, None, new)))],
            work: Some(PutWork {
                write: true,
                mkdir: false,
            }),
            output: FileResult {
                path: path.into(),
                changed: true,
                created: false,
            },
        }),
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

/// Carry out `work`: write `new` through [`private_write`] (mode and owner
/// set on the new file before it replaces the path). A mode or owner change
/// alone rewrites the file too: changing them in place would follow a link
/// swapped in since the facts were read.
pub async fn put(
    ctx: &Ctx,
    host: &Host,
    path: &str,
    want: &Want,
    new: &NewContent<'_>,
    work: &PutWork,
) -> Result<(), StepError> {
    let script = private_write(path, work.mkdir, "cat > \"$f\"", &new.sha256, want);
    let out = ctx.ssh.exec(host, &script, Some(new.bytes)).await?;
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
            link_to: None,
            unsafe_holders: Vec::new(),
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
        let (f, c) = parse_facts(
            "regular file|600|root|adm|1|2049:7|1\nnolink\n=\nYQ==\nparent\nholder|0|0|755|/etc\nholder|0|0|755|/\n",
        )
        .unwrap();
        assert_eq!(f.kind, Kind::File);
        assert_eq!(f.mode, "0600");
        assert_eq!(f.group, "adm");
        assert_eq!(f.sha256.as_deref(), Some(sha256_hex(b"a").as_str()));
        assert_eq!(c.as_deref(), Some(&b"a"[..]));
        assert!(f.unsafe_holders.is_empty());
        let (f, c) =
            parse_facts("missing||||0||0\nnolink\n-\n\nnoparent\nholder|0|0|1777|/tmp\n").unwrap();
        assert_eq!(f.kind, Kind::Missing);
        assert!(!f.parent_exists && c.is_none() && f.sha256.is_none());
        let (f, c) = parse_facts(
            "symbolic link|777|etcd|etcd|11|2049:9|1\nlink /etc/shadow\n-\n\nparent\nholder|998|998|750|/etc/ssl/etcd\n",
        )
        .unwrap();
        assert_eq!(f.kind, Kind::Link);
        assert_eq!(f.link_to.as_deref(), Some("/etc/shadow"));
        assert!(c.is_none() && f.sha256.is_none());
        assert_eq!(
            f.unsafe_holders,
            ["/etc/ssl/etcd (owner uid 998, group gid 998, mode 0750)"]
        );
    }

    #[test]
    fn folders_other_accounts_can_change_are_named() {
        assert_eq!(unsafe_holder("holder|0|0|755|/etc"), None);
        assert_eq!(unsafe_holder("holder|0|0|1777|/tmp"), None);
        assert_eq!(unsafe_holder("holder|0|0|775|/srv"), None);
        assert!(unsafe_holder("holder|0|50|2775|/var/local").is_some());
        assert!(unsafe_holder("holder|0|0|777|/x").is_some());
        assert!(unsafe_holder("holder|998|0|700|/opt/etcd").is_some());
    }

    #[test]
    fn a_symlink_at_the_path_is_replaced_never_read() {
        let new = NewContent::new(b"a\n", false);
        let mut f = facts(Kind::Link, "0777", None);
        f.link_to = Some("/etc/shadow".into());
        let d = decide("n1", "file", "/etc/x", &want("0644"), &new, &f, None).unwrap();
        assert_eq!(
            d.actions[0].to_string().lines().next().unwrap(),
            "~ change file /etc/x (0644 root:root) (replace symlink → /etc/shadow)"
        );
        let diff = d.actions[0].diff.as_deref().unwrap();
        assert!(diff.contains("+a"), "{diff}");
        assert!(d.work.unwrap().write);
    }

    #[test]
    fn bad_modes_and_names_are_rejected() {
        assert!(Want::new(Some("999"), None, None, "0644").is_err());
        assert!(Want::new(Some("0644"), Some("-x"), None, "0644").is_err());
        assert!(Want::new(Some("0644"), Some("a b"), None, "0644").is_err());
        assert_eq!(Want::new(None, None, None, "0600").unwrap().mode, "0600");
    }
}
