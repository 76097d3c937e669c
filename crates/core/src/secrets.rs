//! The installed agent's secret store: one root-only file per secret (0600, in a 0700 `secrets`
//! folder beside the config; on Windows a folder whose ACL admits only SYSTEM, Administrators
//! and the agent's service account). The installer writes it; the wizard's review mode reads
//! the password back so an upgrade asks for nothing; the agent reads it at start-up. Under
//! systemd the service never opens these files itself: the unit's `LoadCredential=` hands it
//! copies readable by the service's own user only (`$CREDENTIALS_DIRECTORY`).
//!
//! Why not the OS keyring: on Linux a system service has no Secret Service session to ask, and
//! on Windows the Credential Manager is per user, so what the installer (an administrator)
//! stores there is invisible to the service's account. A protected file is what both services
//! can actually read.

use crate::secret::Secret;
use std::path::{Path, PathBuf};

/// The file name of the service account's password in the store.
pub const SERVICE_ACCOUNT_PASSWORD: &str = "service-account-password";
/// The agent's own credential from enrollment (`Authorization: Bearer ...`).
pub const AGENT_CREDENTIAL: &str = "agent-credential";
/// The secret half of the agent's X25519 key pair; password changes are sealed to it.
pub const AGENT_PRIVATE_KEY: &str = "agent-private-key";
/// Every secret the store can hold.
pub const ALL: [&str; 3] = [
    SERVICE_ACCOUNT_PASSWORD,
    AGENT_CREDENTIAL,
    AGENT_PRIVATE_KEY,
];

#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path} does not exist (no password was stored by the installer)")]
    Missing { path: String },
    #[error(
        "{path} cannot be read by this user; re-run the wizard elevated to use the stored password"
    )]
    Denied { path: String },
    #[error(
        "{path} is readable by other users (mode {mode:o}); it is not used. Run `chmod 600 {path}`"
    )]
    Unsafe { path: String, mode: u32 },
    #[error("{path} cannot be read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl FileStore {
    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore { dir: dir.into() }
    }

    /// The store that belongs to the config at `config`: its `secrets` folder.
    pub fn beside_config(config: &Path) -> FileStore {
        let parent = config.parent().unwrap_or(Path::new("."));
        FileStore::new(parent.join("secrets"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where the store is, in words for the Review page.
    pub fn describe(&self) -> String {
        format!("root-only files in {}", self.dir.display())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores a secret atomically, readable by its owner only. The folder must exist.
    pub fn write(&self, name: &str, value: &Secret) -> std::io::Result<()> {
        crate::install::fsops::write_atomic(&self.path(name), value.expose().as_bytes(), 0o600)
    }

    /// The stored bytes as they are (for a rollback to put back), or None when absent.
    pub fn snapshot(&self, name: &str) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        std::fs::read(self.path(name))
            .ok()
            .map(zeroize::Zeroizing::new)
    }

    /// Removes a secret; an absent one is not an error.
    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn read(&self, name: &str) -> Result<Secret, StoreError> {
        let path = self.path(name);
        let shown = path.display().to_string();
        let io = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::Missing {
                path: shown.clone(),
            },
            std::io::ErrorKind::PermissionDenied => StoreError::Denied {
                path: shown.clone(),
            },
            _ => StoreError::Io {
                path: shown.clone(),
                source: e,
            },
        };
        let meta = std::fs::metadata(&path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreError::Unsafe {
                    path: shown.clone(),
                    mode,
                });
            }
        }
        #[cfg(not(unix))]
        let _ = meta; // Windows: the folder's ACL is what keeps it private.
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(&path).map_err(io)?);
        Ok(Secret::new(text.trim_end_matches(['\r', '\n'])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_private_file_and_refuses_a_shared_one() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let store = FileStore::new(dir.path());
        assert!(matches!(
            store.read(SERVICE_ACCOUNT_PASSWORD),
            Err(StoreError::Missing { .. })
        ));
        let path = store.path(SERVICE_ACCOUNT_PASSWORD);
        std::fs::write(&path, "s3cret-value\n").unwrap_or_else(|e| panic!("write: {e}"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .unwrap_or_else(|e| panic!("chmod: {e}"));
            let err = store
                .read(SERVICE_ACCOUNT_PASSWORD)
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains("chmod 600")),
                "{err:?}"
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .unwrap_or_else(|e| panic!("chmod: {e}"));
        }
        let secret = store
            .read(SERVICE_ACCOUNT_PASSWORD)
            .map_err(|e| e.to_string());
        assert_eq!(secret.as_ref().map(|s| s.expose()), Ok("s3cret-value"));
    }
}
