//! Secrets at rest: values sealed with the team key.
//!
//! Shared state (see issue 16) keeps private keys where a whole team can read
//! them. Before such a value leaves this machine it is sealed with the **team
//! key**, 32 random bytes every operator of the team has and that is given
//! only through the environment, `CAIRN_STATE_KEY` (base64). The key is never
//! stored, logged or printed by cairn; `cairn state keygen` prints a new one,
//! the only place a key is ever shown.
//!
//! The cipher is AES-256-GCM from aws-lc-rs (AWS's maintained, FIPS-validated
//! fork of BoringSSL, already linked into cairn through rustls and rcgen), used
//! through its `RandomizedNonceKey`: a fresh random 96-bit nonce per seal, safe
//! far beyond the number of values a team ever seals with one key (NIST's
//! bound for random GCM nonces is 2^32 messages per key). aws-lc-rs is a
//! direct dependency at the version already in the tree: nothing new is built.
//!
//! The logical name of a value (`pki/ca.key`) is bound as associated data: a
//! sealed value copied under another name does not open.
//!
//! A sealed value is text:
//!
//! ```text
//! cairn-sealed-v1 <key fingerprint> <name id>\n
//! <base64 of nonce || ciphertext || tag>
//! ```
//!
//! The key fingerprint (16 hex digits, a hash of the key, not secret) lets a
//! wrong key be reported as "sealed with key A, CAIRN_STATE_KEY is B" instead
//! of a bare authentication failure. The name id (8 hex digits of a hash of
//! the name, which is not secret either) only chooses the error message: a
//! value moved to another name is reported as moved rather than as damaged.
//! Neither is trusted: the AEAD tag alone decides whether a value opens.
//!
//! Which workspace files hold secrets, and are sealed by a shared state, is
//! decided by [`is_secret_file`]; [`secret_files`] lists them.

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable that holds the team key.
pub const KEY_VAR: &str = "CAIRN_STATE_KEY";

/// Length of a team key in bytes.
pub const KEY_LEN: usize = 32;

/// First token of a sealed value's header line.
pub const MAGIC: &str = "cairn-sealed-v1";

const TAG_LEN: usize = 16;

/// What went wrong sealing or opening. Messages name the item (its logical
/// name) and the key fingerprints, never a key or a value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// `CAIRN_STATE_KEY` is set but is not a team key.
    #[error("{var} is not a team key: {why}; expected the base64 of {KEY_LEN} random bytes (make one with `cairn state keygen`)")]
    MalformedKey { var: &'static str, why: String },
    /// A sealed value is needed but no team key is set.
    #[error("{name} is sealed with team key {sealed_with}, and {KEY_VAR} is not set: export the team's key (`export {KEY_VAR}=...`) and try again")]
    NoKey { name: String, sealed_with: String },
    /// The value was sealed with another team key.
    #[error("{name}: sealed with key {sealed_with}, {KEY_VAR} is {have}: set {KEY_VAR} to the key this state was sealed with")]
    WrongKey {
        name: String,
        sealed_with: String,
        have: String,
    },
    /// The value was sealed for another name and copied here.
    #[error("{name}: this value was sealed for another name (name id {sealed_for}, {name} is {expected}); a sealed value opens only under the name it was sealed for: it was moved or copied there")]
    MovedName {
        name: String,
        sealed_for: String,
        expected: String,
    },
    /// The key and name match, but the data does not authenticate.
    #[error("{name}: sealed data fails authentication with key {key}: it was changed or damaged after it was sealed")]
    Tampered { name: String, key: String },
    /// Not a sealed value at all, or its header or body is broken.
    #[error("{name}: not a valid sealed value: {why}")]
    Malformed { name: String, why: String },
}

/// The team key. Its bytes live only inside the cipher; `Debug` shows the
/// fingerprint, and there is no way to get the key back out.
#[derive(Clone)]
pub struct TeamKey {
    cipher: Arc<RandomizedNonceKey>,
    fingerprint: String,
}

impl std::fmt::Debug for TeamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TeamKey({})", self.fingerprint)
    }
}

impl std::fmt::Display for TeamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "team key {}", self.fingerprint)
    }
}

/// Hex of the first `n` bytes of SHA-256 over a domain label and `bytes`.
fn short_hash(domain: &str, bytes: &[u8], n: usize) -> String {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update([0u8]);
    h.update(bytes);
    hex::encode(&h.finalize()[..n])
}

/// The name id in a sealed value's header: which name it was sealed for.
fn name_id(name: &str) -> String {
    short_hash("cairn-sealed-v1 name", name.as_bytes(), 4)
}

impl TeamKey {
    /// The key from `CAIRN_STATE_KEY`: `None` when it is not set (or empty),
    /// an error naming the variable when it is not base64 of 32 bytes.
    pub fn from_env() -> Result<Option<TeamKey>, SealError> {
        match std::env::var(KEY_VAR) {
            Ok(v) if v.trim().is_empty() => Ok(None),
            Ok(v) => TeamKey::from_base64(&v).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(SealError::MalformedKey {
                var: KEY_VAR,
                why: "it is not valid text".into(),
            }),
        }
    }

    /// A key from its base64 text (as `CAIRN_STATE_KEY` holds it). Errors
    /// never contain the text.
    pub fn from_base64(text: &str) -> Result<TeamKey, SealError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| SealError::MalformedKey {
                var: KEY_VAR,
                why: "it is not base64".into(),
            })?;
        if bytes.len() != KEY_LEN {
            return Err(SealError::MalformedKey {
                var: KEY_VAR,
                why: format!("it decodes to {} bytes, not {KEY_LEN}", bytes.len()),
            });
        }
        TeamKey::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<TeamKey, SealError> {
        let cipher =
            RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::MalformedKey {
                var: KEY_VAR,
                why: "the cipher refused it".into(),
            })?;
        Ok(TeamKey {
            cipher: Arc::new(cipher),
            fingerprint: short_hash("cairn team key fingerprint v1", bytes, 8),
        })
    }

    /// A new random key as `CAIRN_STATE_KEY` holds it (base64 of 32 bytes
    /// from the system's random generator).
    pub fn generate() -> String {
        let mut bytes = [0u8; KEY_LEN];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator works");
        B64.encode(bytes)
    }

    /// A short, non-secret id of the key: 16 hex digits of a domain-separated
    /// SHA-256 of it. Two operators compare fingerprints, never keys.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// Seal `plaintext` for the logical name `name` (e.g. `pki/ca.key`).
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut data = plaintext.to_vec();
        let nonce = self
            .cipher
            .seal_in_place_append_tag(Aad::from(name.as_bytes()), &mut data)
            .expect("AES-256-GCM sealing with a valid key does not fail");
        let mut body = nonce.as_ref().to_vec();
        body.extend_from_slice(&data);
        format!(
            "{MAGIC} {} {}\n{}\n",
            self.fingerprint,
            name_id(name),
            B64.encode(body)
        )
        .into_bytes()
    }

    /// Open a value sealed for `name`. Errors say whether the key, the name or
    /// the data is wrong, naming `name` and the key fingerprints only.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let parsed = parse(name, sealed)?;
        if parsed.fingerprint != self.fingerprint {
            return Err(SealError::WrongKey {
                name: name.into(),
                sealed_with: parsed.fingerprint,
                have: self.fingerprint.clone(),
            });
        }
        let expected = name_id(name);
        if parsed.name_id != expected {
            return Err(SealError::MovedName {
                name: name.into(),
                sealed_for: parsed.name_id,
                expected,
            });
        }
        let tampered = || SealError::Tampered {
            name: name.into(),
            key: self.fingerprint.clone(),
        };
        let (nonce, rest) = parsed.body.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| tampered())?;
        let mut data = rest.to_vec();
        let plain = self
            .cipher
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut data)
            .map_err(|_| tampered())?;
        Ok(plain.to_vec())
    }
}

/// Whether `bytes` is a sealed value (starts with the `cairn-sealed-v1 `
/// header); says nothing about whether it opens.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC.as_bytes()) && bytes.get(MAGIC.len()) == Some(&b' ')
}

/// The fingerprint of the key `sealed` was sealed with, if it is a sealed
/// value (for messages such as "sealed with key X; set CAIRN_STATE_KEY").
pub fn sealed_with(sealed: &[u8]) -> Option<String> {
    parse("", sealed).ok().map(|p| p.fingerprint)
}

/// Open `sealed` with `key`, or refuse clearly when no key is set:
/// [`SealError::NoKey`] names the item and the key it needs.
pub fn open_with(key: Option<&TeamKey>, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    match key {
        Some(k) => k.open(name, sealed),
        None => {
            let p = parse(name, sealed)?;
            Err(SealError::NoKey {
                name: name.into(),
                sealed_with: p.fingerprint,
            })
        }
    }
}

struct Parsed {
    fingerprint: String,
    name_id: String,
    body: Vec<u8>,
}

fn parse(name: &str, sealed: &[u8]) -> Result<Parsed, SealError> {
    let bad = |why: &str| SealError::Malformed {
        name: name.into(),
        why: why.into(),
    };
    if !is_sealed(sealed) {
        return Err(bad(&format!("it does not start with `{MAGIC} `")));
    }
    let nl = sealed
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| bad("its header line has no end"))?;
    let header = std::str::from_utf8(&sealed[..nl]).map_err(|_| bad("its header is not text"))?;
    let fields: Vec<&str> = header.split(' ').collect();
    let hexes = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let (fingerprint, id) = match fields.as_slice() {
        [_, fp, id] if hexes(fp, 16) && hexes(id, 8) => (fp.to_string(), id.to_string()),
        _ => {
            return Err(bad(
                "its header is not `cairn-sealed-v1 <16 hex digits> <8 hex digits>`",
            ))
        }
    };
    let text = std::str::from_utf8(&sealed[nl + 1..]).map_err(|_| bad("its body is not text"))?;
    let body = B64
        .decode(text.trim_end_matches('\n'))
        .map_err(|_| bad("its body is not base64"))?;
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(bad(&format!(
            "its body is {} bytes, shorter than a nonce and a tag ({})",
            body.len(),
            NONCE_LEN + TAG_LEN
        )));
    }
    Ok(Parsed {
        fingerprint,
        name_id: id,
        body,
    })
}

/// Whether a workspace file holds a secret, and so is sealed in shared
/// state: its content contains `PRIVATE KEY` (any PEM private key: PKCS#8,
/// RSA, EC, encrypted), or its mode lets no one but its owner read it (the
/// 0600 that cairn gives every key file it writes in `pki/`, and that
/// runbooks give secret files they write with `local_file`). Anything else
/// (certificates, journals, pinned host keys) is public and stored as it is.
/// The workspace's own `lock` and `audit.log` (0600 too) are not state
/// files: a shared state keeps a lease lock and its own audit store instead.
pub fn is_secret_file(mode: u32, content: &[u8]) -> bool {
    let owner_only = mode & 0o077 == 0;
    owner_only || content.windows(11).any(|w| w == b"PRIVATE KEY")
}

/// The files under `dir` (recursively, links not followed) that
/// [`is_secret_file`] calls secret, sorted. A missing `dir` has none.
pub fn secret_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && d == dir => return Ok(out),
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let meta = std::fs::symlink_metadata(e.path())?;
            if meta.is_dir() {
                todo.push(e.path());
            } else if meta.is_file() {
                let content = std::fs::read(e.path())?;
                if is_secret_file(meta.permissions().mode(), &content) {
                    out.push(e.path());
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `cairn state keygen`: print a new team key and how to use it.
pub fn keygen() -> crate::error::Success {
    let key = TeamKey::generate();
    let fp = TeamKey::from_base64(&key)
        .map(|k| k.fingerprint())
        .unwrap_or_default();
    println!("{key}");
    eprintln!(
        "A new team key (fingerprint {fp}). Give it to your team through a secret store, never \
         a file in the repository, and export it before using shared state:\n  \
         export {KEY_VAR}='{key}'\ncairn never stores it; whoever has it can read the state's \
         private keys."
    );
    crate::error::Success::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn key_a() -> TeamKey {
        TeamKey::from_base64(KEY_A).unwrap()
    }
    fn key_b() -> TeamKey {
        TeamKey::from_base64(&TeamKey::generate()).unwrap()
    }

    #[test]
    fn round_trip_and_format() {
        let k = key_a();
        let secret = b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n";
        let sealed = k.seal("pki/ca.key", secret);
        assert!(is_sealed(&sealed));
        assert!(!is_sealed(secret));
        let text = String::from_utf8(sealed.clone()).unwrap();
        let header = text.lines().next().unwrap();
        assert_eq!(
            header,
            format!(
                "cairn-sealed-v1 {} {}",
                k.fingerprint(),
                name_id("pki/ca.key")
            )
        );
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert_eq!(k.open("pki/ca.key", &sealed).unwrap(), secret);
        assert_eq!(sealed_with(&sealed), Some(k.fingerprint()));
        // a fresh nonce every time
        assert_ne!(k.seal("pki/ca.key", secret), sealed);
        // empty values too
        assert_eq!(k.open("e", &k.seal("e", b"")).unwrap(), b"");
    }

    #[test]
    fn fingerprint_is_stable_short_hex_and_not_the_key() {
        let k = key_a();
        assert_eq!(k.fingerprint(), key_a().fingerprint());
        assert_eq!(k.fingerprint().len(), 16);
        assert!(k.fingerprint().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(k.fingerprint(), key_b().fingerprint());
        let raw = B64.decode(KEY_A).unwrap();
        assert!(!hex::encode(&raw).contains(&k.fingerprint()));
    }

    #[test]
    fn wrong_key_names_both_fingerprints() {
        let (a, b) = (key_a(), key_b());
        let sealed = a.seal("pki/ca.key", b"secret");
        let e = b.open("pki/ca.key", &sealed).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "pki/ca.key: sealed with key {}, CAIRN_STATE_KEY is {}: set CAIRN_STATE_KEY to \
                 the key this state was sealed with",
                a.fingerprint(),
                b.fingerprint()
            )
        );
    }

    #[test]
    fn wrong_key_with_a_forged_fingerprint_still_does_not_open() {
        let (a, b) = (key_a(), key_b());
        let sealed = String::from_utf8(a.seal("n", b"secret")).unwrap();
        let forged = sealed.replace(&a.fingerprint(), &b.fingerprint());
        let e = b.open("n", forged.as_bytes()).unwrap_err();
        assert!(matches!(e, SealError::Tampered { .. }), "{e}");
    }

    #[test]
    fn tampered_data_is_refused() {
        let k = key_a();
        let sealed = String::from_utf8(k.seal("pki/ca.key", b"secret value")).unwrap();
        let (header, body) = sealed.split_once('\n').unwrap();
        let mut bytes = B64.decode(body.trim_end()).unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[i] ^= 1;
            let bad = format!("{header}\n{}\n", B64.encode(&bytes));
            let e = k.open("pki/ca.key", bad.as_bytes()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "pki/ca.key: sealed data fails authentication with key {}: it was changed \
                     or damaged after it was sealed",
                    k.fingerprint()
                ),
                "byte {i}"
            );
            bytes[i] ^= 1;
        }
        // truncated: shorter than nonce and tag
        let short = format!("{header}\n{}\n", B64.encode(&bytes[..20]));
        let e = k.open("pki/ca.key", short.as_bytes()).unwrap_err();
        assert!(matches!(e, SealError::Malformed { .. }), "{e}");
    }

    #[test]
    fn a_value_moved_to_another_name_does_not_open() {
        let k = key_a();
        let sealed = k.seal("pki/ca.key", b"ca secret");
        let e = k.open("pki/server.key", &sealed).unwrap_err();
        assert!(matches!(e, SealError::MovedName { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("pki/server.key: this value was sealed for another name"),
            "{e}"
        );
        // with the name id rewritten, the AEAD still refuses it
        let text = String::from_utf8(sealed).unwrap();
        let forged = text.replace(&name_id("pki/ca.key"), &name_id("pki/server.key"));
        let e = k.open("pki/server.key", forged.as_bytes()).unwrap_err();
        assert!(matches!(e, SealError::Tampered { .. }), "{e}");
    }

    #[test]
    fn malformed_headers_are_named() {
        let k = key_a();
        let cases: [(&[u8], &str); 5] = [
            (b"plain text", "it does not start with `cairn-sealed-v1 `"),
            (b"cairn-sealed-v1 abc", "its header line has no end"),
            (
                b"cairn-sealed-v1 zz 00\nAAAA\n",
                "its header is not `cairn-sealed-v1 <16 hex digits> <8 hex digits>`",
            ),
            (
                b"cairn-sealed-v1 0011223344556677 00112233\n!!!\n",
                "its body is not base64",
            ),
            (
                b"cairn-sealed-v1 0011223344556677 00112233\nAAAA\n",
                "its body is 3 bytes, shorter than a nonce and a tag (28)",
            ),
        ];
        for (input, why) in cases {
            let e = k.open("pki/x.key", input).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("pki/x.key: not a valid sealed value: {why}")
            );
        }
    }

    #[test]
    fn no_key_refuses_naming_the_item_and_the_key_it_needs() {
        let k = key_a();
        let sealed = k.seal("pki/ca.key", b"s");
        let e = open_with(None, "pki/ca.key", &sealed).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "pki/ca.key is sealed with team key {}, and CAIRN_STATE_KEY is not set: export \
                 the team's key (`export CAIRN_STATE_KEY=...`) and try again",
                k.fingerprint()
            )
        );
        assert_eq!(open_with(Some(&k), "pki/ca.key", &sealed).unwrap(), b"s");
    }

    #[test]
    fn malformed_keys_are_refused_without_showing_them() {
        let not_b64 = "this-is-not-base64-secret!";
        let e = TeamKey::from_base64(not_b64).unwrap_err();
        assert_eq!(
            e.to_string(),
            "CAIRN_STATE_KEY is not a team key: it is not base64; expected the base64 of 32 \
             random bytes (make one with `cairn state keygen`)"
        );
        let short = B64.encode(b"sixteen byte key");
        let e = TeamKey::from_base64(&short).unwrap_err();
        assert_eq!(
            e.to_string(),
            "CAIRN_STATE_KEY is not a team key: it decodes to 16 bytes, not 32; expected the \
             base64 of 32 random bytes (make one with `cairn state keygen`)"
        );
        assert!(!format!("{e:?}").contains(&short));
    }

    #[test]
    fn from_env_reads_the_variable() {
        // the only test in this binary that touches CAIRN_STATE_KEY
        // SAFETY: no other thread of this test binary reads or writes it.
        unsafe { std::env::remove_var(KEY_VAR) };
        assert_eq!(TeamKey::from_env().unwrap().map(|k| k.fingerprint()), None);
        unsafe { std::env::set_var(KEY_VAR, KEY_A) };
        assert_eq!(
            TeamKey::from_env().unwrap().map(|k| k.fingerprint()),
            Some(key_a().fingerprint())
        );
        unsafe { std::env::set_var(KEY_VAR, "c2hvcnQ=") };
        let e = TeamKey::from_env().unwrap_err();
        assert!(e
            .to_string()
            .starts_with("CAIRN_STATE_KEY is not a team key"));
        unsafe { std::env::remove_var(KEY_VAR) };
    }

    #[test]
    fn the_key_never_shows_in_debug_display_or_errors() {
        let k = key_a();
        let raw = B64.decode(KEY_A).unwrap();
        let forms = [KEY_A.to_string(), hex::encode(&raw), format!("{raw:?}")];
        let sealed = k.seal("n", b"v");
        let errors = [
            key_b().open("n", &sealed).unwrap_err(),
            k.open("m", &sealed).unwrap_err(),
            k.open("n", b"cairn-sealed-v1 x").unwrap_err(),
            open_with(None, "n", &sealed).unwrap_err(),
        ];
        let mut shown = vec![format!("{k:?}"), format!("{k}"), format!("{:?}", Some(&k))];
        for e in &errors {
            shown.push(e.to_string());
            shown.push(format!("{e:?}"));
        }
        for s in &shown {
            for f in &forms {
                assert!(!s.contains(f.as_str()), "{s} shows the key");
            }
        }
        assert_eq!(format!("{k:?}"), format!("TeamKey({})", k.fingerprint()));
        // errors never show the sealed value either
        let sealed_text = String::from_utf8(sealed).unwrap();
        let body = sealed_text.lines().nth(1).unwrap();
        for s in &shown {
            assert!(!s.contains(body), "{s}");
        }
    }

    #[test]
    fn secret_files_are_private_keys_and_owner_only_files() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let pki = d.path().join("pki");
        std::fs::create_dir_all(pki.join("sub")).unwrap();
        let write = |name: &str, content: &str, mode: u32| {
            let p = pki.join(name);
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("ca.crt", "-----BEGIN CERTIFICATE-----\n", 0o644);
        write("ca.key", "-----BEGIN PRIVATE KEY-----\n", 0o600);
        write("loose.key", "-----BEGIN EC PRIVATE KEY-----\n", 0o644);
        write("sub/token", "opaque", 0o600);
        write("sub/readme", "hello", 0o644);
        let got: Vec<String> = secret_files(&pki)
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(&pki).unwrap().display().to_string())
            .collect();
        assert_eq!(got, ["ca.key", "loose.key", "sub/token"]);
        assert_eq!(secret_files(&d.path().join("none")).unwrap().len(), 0);
    }
}
