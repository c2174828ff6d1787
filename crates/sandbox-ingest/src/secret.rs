//! The platform secret behind pseudonymized keys.
//!
//! `identifier` and `privacy_unit` columns are stored as
//! `hex(HMAC-SHA256(secret, value))[..32]` (128 bits), so one credit code
//! gets one pseudonym in every dataset registered under the same secret and
//! joins keep working, while nothing stored lets anyone recover the code
//! without the secret. The secret lives outside the data directory (a copy
//! of the data directory alone reveals nothing), is created on first use
//! from the operating system's CSPRNG, and is readable by its owner only
//! (mode 0600). Rotation: see docs/onboarding.md ("Rotating the secret");
//! every version's manifest records the [`PseudonymKey::id`] it was made
//! under.

use crate::IngestError;
use hmac::{Hmac, KeyInit, Mac};
use sha2_11::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Environment variable naming the secret's file.
pub const SECRET_ENV: &str = "SANDBOX_PSEUDONYM_KEY";

/// Bytes of secret.
const SECRET_BYTES: usize = 32;
/// Hex characters of a pseudonym (128 bits).
pub const PSEUDONYM_HEX: usize = 32;

/// The keyed hash of pseudonymized columns.
#[derive(Clone)]
pub struct PseudonymKey {
    mac: Hmac<Sha256>,
    id: String,
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PseudonymKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn secret_err(path: &Path, message: impl Into<String>) -> IngestError {
    IngestError::Secret {
        path: path.display().to_string(),
        message: message.into(),
    }
}

impl PseudonymKey {
    /// `$SANDBOX_PSEUDONYM_KEY`, else `$XDG_CONFIG_HOME/data-sandbox/pseudonym.key`,
    /// else `~/.config/data-sandbox/pseudonym.key`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(SECRET_ENV).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        if let Some(p) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p).join("data-sandbox/pseudonym.key"));
        }
        std::env::var_os("HOME")
            .filter(|p| !p.is_empty())
            .map(|h| PathBuf::from(h).join(".config/data-sandbox/pseudonym.key"))
    }

    /// Reads the secret at `path`, creating it (32 random bytes, hex, mode
    /// 0600) when it does not exist. Refused when `path` lies inside
    /// `data_root` (the secret must not travel with the data), or when the
    /// file is readable by others than its owner.
    pub fn load_or_create(path: &Path, data_root: &Path) -> Result<Self, IngestError> {
        let inside = |p: &Path, root: &Path| {
            let p = p
                .parent()
                .and_then(|d| d.canonicalize().ok())
                .map(|d| d.join(p.file_name().unwrap_or_default()));
            let root = root.canonicalize().ok();
            matches!((p, root), (Some(p), Some(r)) if p.starts_with(&r))
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| secret_err(path, format!("cannot create its directory: {e}")))?;
        }
        if inside(path, data_root) {
            return Err(secret_err(
                path,
                "it lies inside the data directory; keep it elsewhere (--pseudonym-key or $SANDBOX_PSEUDONYM_KEY)",
            ));
        }
        match std::fs::read_to_string(path) {
            Ok(text) => {
                check_private(path)?;
                let bytes = hex::decode(text.trim()).map_err(|_| secret_err(path, "not a hex-encoded secret"))?;
                if bytes.len() != SECRET_BYTES {
                    return Err(secret_err(
                        path,
                        format!("expected {SECRET_BYTES} bytes, found {}", bytes.len()),
                    ));
                }
                Self::from_secret(&bytes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(secret_err(path, format!("cannot read: {e}"))),
        }
    }

    fn create(path: &Path) -> Result<Self, IngestError> {
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret).map_err(|e| secret_err(path, format!("no randomness from the OS: {e}")))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = match options.open(path) {
            Ok(f) => f,
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(|e| secret_err(path, format!("cannot read: {e}")))?;
                let bytes = hex::decode(text.trim()).map_err(|_| secret_err(path, "not a hex-encoded secret"))?;
                return Self::from_secret(&bytes);
            }
            Err(e) => return Err(secret_err(path, format!("cannot create: {e}"))),
        };
        file.write_all(format!("{}\n", hex::encode(secret)).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| secret_err(path, format!("cannot write: {e}")))?;
        tracing::info!(path = %path.display(), "created the pseudonymization secret");
        Self::from_secret(&secret)
    }

    /// A key from raw secret bytes (tests, and a secret held elsewhere).
    pub fn from_secret(secret: &[u8]) -> Result<Self, IngestError> {
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .map_err(|_| IngestError::Spec("invalid pseudonymization secret".into()))?;
        // The id says which secret made a version, without revealing it.
        let id = hex::encode(Sha256::digest(
            [b"sandbox-pseudonym-key-id\0".as_slice(), secret].concat(),
        ))[..16]
            .to_string();
        Ok(PseudonymKey { mac, id })
    }

    /// A public fingerprint of the secret (16 hex characters).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The pseudonym of one value: 32 lower-case hex characters.
    pub fn pseudonym(&self, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(value.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut s = hex::encode(tag);
        s.truncate(PSEUDONYM_HEX);
        s
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), IngestError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| secret_err(path, format!("cannot stat: {e}")))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(secret_err(
            path,
            format!("readable by others (mode {:o}); run chmod 600 on it", mode & 0o777),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), IngestError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_created_private_and_reused() {
        let home = tempfile::tempdir().expect("tempdir");
        let data = tempfile::tempdir().expect("tempdir");
        let path = home.path().join("keys/pseudonym.key");
        let a = PseudonymKey::load_or_create(&path, data.path()).expect("create");
        let b = PseudonymKey::load_or_create(&path, data.path()).expect("reuse");
        assert_eq!(a.pseudonym("91310115MA1H7GQX3T"), b.pseudonym("91310115MA1H7GQX3T"));
        assert_eq!(a.id(), b.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn a_secret_inside_the_data_directory_is_refused() {
        let data = tempfile::tempdir().expect("tempdir");
        let err = PseudonymKey::load_or_create(&data.path().join("pseudonym.key"), data.path()).expect_err("inside");
        assert!(err.to_string().contains("inside the data directory"), "{err}");
        assert!(!data.path().join("pseudonym.key").exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_world_readable_secret_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().expect("tempdir");
        let data = tempfile::tempdir().expect("tempdir");
        let path = home.path().join("pseudonym.key");
        PseudonymKey::load_or_create(&path, data.path()).expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = PseudonymKey::load_or_create(&path, data.path()).expect_err("exposed");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn different_secrets_give_different_pseudonyms() {
        let a = PseudonymKey::from_secret(&[1; 32]).expect("key");
        let b = PseudonymKey::from_secret(&[2; 32]).expect("key");
        let p = a.pseudonym("x");
        assert_eq!(p.len(), PSEUDONYM_HEX);
        assert_ne!(p, b.pseudonym("x"));
        assert_ne!(a.id(), b.id());
    }
}
