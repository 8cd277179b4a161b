//! The audit key (SPEC §15): the secret under which every digest of personal data in the trail
//! is an HMAC, so that a digest of a resident id, a body, a path or a free-text purpose cannot be
//! reversed by enumerating candidates. The chain hash stays a plain hash: anyone can verify the
//! chain without the key.
//!
//! The key is 32 random bytes kept in `[audit] key_file` as 64 lowercase hex digits (and a
//! newline), created with mode 0600 at the first start when the file is absent. It is deployed
//! like a TLS private key: with a shared store every gateway needs the same file. The trail keeps
//! only the key's [fingerprint](AuditKey::fingerprint), and a gateway whose key has another
//! fingerprint refuses to start against it ([`KeyError::Changed`]). Nothing here prints the key:
//! `Debug` shows the fingerprint.

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sm3::Sm3;

use crate::entry::{AuditHash, digest_hex};

/// The key's length in bytes.
pub const KEY_BYTES: usize = 32;

/// What is prefixed to the key before hashing it into its fingerprint, so that the fingerprint
/// is no HMAC the trail could hold.
const FINGERPRINT_LABEL: &[u8] = b"xgate-audit-key-fingerprint\0";

/// Why the audit key could not be had. No variant holds the key or the file's content.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or created.
    #[error("the audit key file {path} cannot be {action}: {error}")]
    File {
        /// The file.
        path: PathBuf,
        /// `read` or `created`.
        action: &'static str,
        /// Why.
        error: std::io::Error,
    },
    /// The file does not hold a key.
    #[error(
        "the audit key file {path} does not hold a key (64 hex digits, {KEY_BYTES} bytes); restore the deployment's key file, or move this one away to have a new key created for a new trail"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// The trail was written under another key.
    #[error(
        "the audit key {path} (fingerprint {configured}) is not the key this audit trail was written with (fingerprint {stored}); deploy the trail's key file: every gateway of a trail needs the same key"
    )]
    Changed {
        /// The key file.
        path: PathBuf,
        /// The start of the fingerprint the trail holds.
        stored: String,
        /// The start of the configured key's fingerprint.
        configured: String,
    },
}

/// The keyed digest function of a trail: HMAC-SHA-256, or HMAC-SM3 with `[audit] hash = "sm3"`,
/// under the audit key. Keyed once: each digest starts from a copy of the keyed state.
#[derive(Clone)]
pub struct AuditKey {
    mac: KeyedMac,
    fingerprint: String,
    path: PathBuf,
}

#[derive(Clone)]
enum KeyedMac {
    Sha256(Hmac<Sha256>),
    Sm3(Hmac<Sm3>),
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl AuditKey {
    /// The key of `bytes`, for the trail's `hash`; `path` names it in messages.
    pub fn new(bytes: &[u8; KEY_BYTES], hash: AuditHash, path: &Path) -> AuditKey {
        // HMAC takes a key of any length: `new_from_slice` cannot fail.
        let mac = match hash {
            AuditHash::Sha256 => KeyedMac::Sha256(
                <Hmac<Sha256> as Mac>::new_from_slice(bytes)
                    .unwrap_or_else(|_| unreachable!("HMAC accepts any key length")),
            ),
            AuditHash::Sm3 => KeyedMac::Sm3(
                <Hmac<Sm3> as Mac>::new_from_slice(bytes)
                    .unwrap_or_else(|_| unreachable!("HMAC accepts any key length")),
            ),
        };
        let fingerprint = match hash {
            AuditHash::Sha256 => digest_hex(
                &Sha256::new_with_prefix(FINGERPRINT_LABEL)
                    .chain_update(bytes)
                    .finalize()
                    .into(),
            ),
            AuditHash::Sm3 => digest_hex(
                &Sm3::new_with_prefix(FINGERPRINT_LABEL)
                    .chain_update(bytes)
                    .finalize()
                    .into(),
            ),
        };
        AuditKey {
            mac,
            fingerprint,
            path: path.to_owned(),
        }
    }

    /// Reads the key in `path`, or creates the file with a new random key (mode 0600, its
    /// folder too) when there is none. Blocking: called at start.
    pub fn load_or_create(path: &Path, hash: AuditHash) -> Result<AuditKey, KeyError> {
        let bytes = match std::fs::read(path) {
            Ok(text) => parse(&text).ok_or_else(|| KeyError::Malformed {
                path: path.to_owned(),
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => create(path)?,
            Err(error) => {
                return Err(KeyError::File {
                    path: path.to_owned(),
                    action: "read",
                    error,
                });
            }
        };
        warn_if_readable_by_others(path);
        Ok(AuditKey::new(&bytes, hash, path))
    }

    /// The key's fingerprint: the trail's hash of a label and the key, lowercase hex. It is
    /// what the trail stores, and reveals nothing of the key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether a trail that stores `stored` (or no fingerprint yet) may be written under this
    /// key.
    pub fn check(&self, stored: Option<&str>) -> Result<(), KeyError> {
        match stored {
            Some(stored) if stored != self.fingerprint => Err(KeyError::Changed {
                path: self.path.clone(),
                stored: stored.chars().take(16).collect(),
                configured: self.fingerprint.chars().take(16).collect(),
            }),
            _ => Ok(()),
        }
    }

    /// The keyed digest of `bytes`, lowercase hex: how bodies, paths and free-text purposes
    /// are kept.
    pub fn digest(&self, bytes: &[u8]) -> String {
        self.digest_parts(&[bytes])
    }

    /// The keyed digest of a subject, lowercase hex: of its kind, a zero byte and its id, so
    /// that the same characters as ids of two kinds give two digests.
    pub fn subject(&self, kind: &str, id: &str) -> String {
        self.digest_parts(&[kind.as_bytes(), b"\0", id.as_bytes()])
    }

    /// The keyed digest of the concatenation of `parts`.
    fn digest_parts(&self, parts: &[&[u8]]) -> String {
        let digest: [u8; 32] = match &self.mac {
            KeyedMac::Sha256(mac) => {
                let mut mac = mac.clone();
                for part in parts {
                    mac.update(part);
                }
                mac.finalize().into_bytes().into()
            }
            KeyedMac::Sm3(mac) => {
                let mut mac = mac.clone();
                for part in parts {
                    mac.update(part);
                }
                mac.finalize().into_bytes().into()
            }
        };
        digest_hex(&digest)
    }
}

/// The key held in a key file's text: 64 hex digits, surrounding white space allowed.
fn parse(text: &[u8]) -> Option<[u8; KEY_BYTES]> {
    let mut bytes = [0u8; KEY_BYTES];
    hex::decode_to_slice(text.trim_ascii(), &mut bytes).ok()?;
    Some(bytes)
}

/// Creates `path` with a new random key, readable by its owner only; a file created meanwhile
/// by another gateway is never overwritten (it is read instead).
fn create(path: &Path) -> Result<[u8; KEY_BYTES], KeyError> {
    let failed = |action, error| KeyError::File {
        path: path.to_owned(),
        action,
        error,
    };
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|error| failed("created", std::io::Error::other(error.to_string())))?;
    if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).map_err(|error| failed("created", error))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read(path).map_err(|error| failed("read", error))?;
            return parse(&text).ok_or_else(|| KeyError::Malformed {
                path: path.to_owned(),
            });
        }
        Err(error) => return Err(failed("created", error)),
    };
    let mut text = hex::encode(bytes);
    text.push('\n');
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| failed("created", error))?;
    tracing::info!(path = %path.display(), "created a new audit key (mode 0600); deploy this file to every gateway of the trail and keep a copy: without it old digests cannot be matched");
    Ok(bytes)
}

/// Warns (never refuses: secret volumes are often mounted 0644) when others may read the key.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", metadata.permissions().mode() & 0o777), "the audit key file is readable by others than its owner; make it 0600");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_created_0600_and_read_back_as_the_same_key() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("keys/audit.key");
        let created = AuditKey::load_or_create(&path, AuditHash::Sha256).unwrap();
        let again = AuditKey::load_or_create(&path, AuditHash::Sha256).unwrap();
        assert_eq!(created.fingerprint(), again.fingerprint());
        assert_eq!(created.digest(b"x"), again.digest(b"x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        assert!(!format!("{created:?}").contains(text.trim()));
        // Another folder gets another key.
        let other =
            AuditKey::load_or_create(&folder.path().join("other.key"), AuditHash::Sha256).unwrap();
        assert_ne!(other.fingerprint(), created.fingerprint());
        assert_ne!(other.digest(b"x"), created.digest(b"x"));
    }

    #[test]
    fn a_file_that_holds_no_key_is_refused_and_left_as_it_is() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("audit.key");
        for text in ["", "not a key", &"ab".repeat(31), &"ab".repeat(33)] {
            std::fs::write(&path, text).unwrap();
            let error = AuditKey::load_or_create(&path, AuditHash::Sha256).unwrap_err();
            assert!(
                matches!(error, KeyError::Malformed { .. }),
                "{text:?}: {error}"
            );
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
    }

    #[test]
    fn digests_are_hmacs_of_the_trail_s_hash_and_subjects_are_separated_by_kind() {
        let key = [7u8; KEY_BYTES];
        let path = Path::new("audit.key");
        let sha = AuditKey::new(&key, AuditHash::Sha256, path);
        let expected = {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
            mac.update(b"body");
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(sha.digest(b"body"), expected);
        assert_ne!(sha.digest(b"body"), crate::sha256_hex(b"body"));
        let sm3 = AuditKey::new(&key, AuditHash::Sm3, path);
        let expected = {
            let mut mac = <Hmac<Sm3> as Mac>::new_from_slice(&key).unwrap();
            mac.update(b"body");
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(sm3.digest(b"body"), expected);
        assert_ne!(sm3.fingerprint(), sha.fingerprint());
        assert_eq!(sha.subject("resident", "1"), sha.digest(b"resident\x001"));
        assert_ne!(
            sha.subject("resident", "1"),
            sha.subject("organisation", "1")
        );
    }

    #[test]
    fn another_key_s_fingerprint_is_refused_with_both_fingerprints_named() {
        let path = Path::new("/etc/xgate/audit.key");
        let one = AuditKey::new(&[1; KEY_BYTES], AuditHash::Sha256, path);
        let two = AuditKey::new(&[2; KEY_BYTES], AuditHash::Sha256, path);
        assert!(one.check(None).is_ok());
        assert!(one.check(Some(one.fingerprint())).is_ok());
        let message = one.check(Some(two.fingerprint())).unwrap_err().to_string();
        assert!(message.contains(&two.fingerprint()[..16]), "{message}");
        assert!(message.contains(&one.fingerprint()[..16]), "{message}");
        assert!(message.contains("/etc/xgate/audit.key"), "{message}");
    }
}
