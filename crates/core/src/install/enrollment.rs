//! The enrollment record beside the config: which agent this machine is and whether its
//! enrollment finished. Not a secret (the credential and private key are in the store); it is
//! what lets a re-run tell a finished install (upgrade: no key needed) from one stopped half-way
//! (resume: the same key finishes it) from none at all.

use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The key pair is made and stored; the cloud may or may not have enrolled it yet.
    Pending,
    /// The cloud enrolled it and the credential is stored.
    Enrolled,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub cloud_url: String,
    pub domain: String,
    /// The agent's X25519 public key (base64); the private half is in the store.
    pub public_key: String,
    pub updated_at: String,
}

impl Record {
    pub fn read(path: &Path) -> Result<Option<Record>, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map(Some)
                .map_err(|e| format!("enrollment record {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("enrollment record {}: {e}", path.display())),
        }
    }

    pub fn text(&self) -> String {
        format!(
            "# Which agent this machine is, written by ad-sync-setup. Not a secret; do not edit.\n{}",
            toml::to_string(self).unwrap_or_default()
        )
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        super::fsops::write_atomic(path, self.text().as_bytes(), 0o600)
    }
}
