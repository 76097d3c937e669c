//! Where an installation puts things. Paths come in two forms: the *installed* path, as the
//! service and the config will name it (`/etc/ad-sync/agent.toml`), and the *real* path the
//! installer writes, which is the same unless `--prefix DIR` stages everything under DIR.

use serde::Serialize;
use std::path::{Component, Path, PathBuf};

pub const SERVICE_NAME: &str = "ad-sync-agent";
pub const SERVICE_DISPLAY_NAME: &str = "ad-sync agent";
pub const SERVICE_DESCRIPTION: &str = "Mirrors the cloud directory's users, groups, memberships, lock state and passwords into Active Directory.";

/// Where the installed config lives.
pub fn default_config_path() -> PathBuf {
    if cfg!(windows) {
        let base = std::env::var_os("ProgramData")
            .map_or_else(|| PathBuf::from(r"C:\ProgramData"), PathBuf::from);
        base.join("ad-sync").join("agent.toml")
    } else {
        PathBuf::from("/etc/ad-sync/agent.toml")
    }
}

/// Where the program files go unless the answers say otherwise (`[install] dir`).
pub fn default_program_dir() -> PathBuf {
    if cfg!(windows) {
        let base = std::env::var_os("ProgramFiles")
            .map_or_else(|| PathBuf::from(r"C:\Program Files"), PathBuf::from);
        base.join("ad-sync")
    } else {
        PathBuf::from("/opt/ad-sync")
    }
}

/// Whether this process may install (root, or an elevated Windows token, which the manifest
/// asks for on double-click).
pub fn elevated() -> bool {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// `installed` as written under the staging root `prefix` (itself when there is none); never
/// climbs out of the root.
pub fn staged(prefix: Option<&Path>, installed: &Path) -> PathBuf {
    match prefix {
        None => installed.to_path_buf(),
        Some(root) => {
            let mut p = root.to_path_buf();
            for c in installed.components() {
                match c {
                    Component::Normal(n) => p.push(n),
                    // Never climbs out of the staging root.
                    Component::ParentDir => {
                        if p != root {
                            p.pop();
                        }
                    }
                    Component::Prefix(pre) => {
                        // C:\ProgramData → <prefix>\C\ProgramData
                        let drive = pre.as_os_str().to_string_lossy();
                        p.push(drive.trim_end_matches(':'));
                    }
                    Component::RootDir | Component::CurDir => {}
                }
            }
            p
        }
    }
}

/// The file name of a CA copy beside the config (`dc` or `cloud`).
pub fn ca_name(which: &str) -> String {
    format!("{which}-ca.pem")
}

#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    /// Everything is written under this folder instead of `/` (staging, packaging, tests).
    pub prefix: Option<PathBuf>,
    pub config: PathBuf,
    pub config_dir: PathBuf,
    pub secrets_dir: PathBuf,
    /// Which agent this machine is, and whether its enrollment finished (no secret in it).
    pub enrollment: PathBuf,
    pub program_dir: PathBuf,
    pub agent_exe: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    /// The systemd unit file (Linux) or None (Windows: the SCM keeps the definition).
    pub unit: Option<PathBuf>,
}

impl Layout {
    pub fn new(config: &Path, program_dir: &Path, prefix: Option<&Path>) -> Layout {
        let config_dir = config
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let exe = if cfg!(windows) {
            "ad-sync-agent.exe"
        } else {
            "ad-sync-agent"
        };
        let (state_dir, log_dir, unit) = if cfg!(windows) {
            (config_dir.join("state"), config_dir.join("logs"), None)
        } else {
            (
                PathBuf::from("/var/lib/ad-sync"),
                PathBuf::from("/var/log/ad-sync"),
                Some(PathBuf::from(format!(
                    "/etc/systemd/system/{SERVICE_NAME}.service"
                ))),
            )
        };
        Layout {
            prefix: prefix.map(Path::to_path_buf),
            config: config.to_path_buf(),
            secrets_dir: config_dir.join("secrets"),
            enrollment: config_dir.join("enrollment.toml"),
            config_dir,
            agent_exe: program_dir.join(exe),
            program_dir: program_dir.to_path_buf(),
            state_dir,
            log_dir,
            unit,
        }
    }

    /// The path the installer writes for an installed path.
    pub fn real(&self, installed: &Path) -> PathBuf {
        staged(self.prefix.as_deref(), installed)
    }

    pub fn store(&self) -> crate::secrets::FileStore {
        crate::secrets::FileStore::new(self.real(&self.secrets_dir))
    }

    /// A copy of a CA file given in the answers, kept beside the config so the service (which
    /// cannot see home folders) can read it.
    pub fn ca_copy(&self, which: &str) -> PathBuf {
        self.config_dir.join(ca_name(which))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_stages_every_path_under_it() {
        let l = Layout::new(
            Path::new("/etc/ad-sync/agent.toml"),
            Path::new("/opt/ad-sync"),
            Some(Path::new("/tmp/stage")),
        );
        assert_eq!(
            l.real(&l.config),
            PathBuf::from("/tmp/stage/etc/ad-sync/agent.toml")
        );
        assert_eq!(
            l.real(&l.secrets_dir),
            PathBuf::from("/tmp/stage/etc/ad-sync/secrets")
        );
        let none = Layout::new(
            Path::new("/etc/ad-sync/agent.toml"),
            Path::new("/opt/x"),
            None,
        );
        assert_eq!(none.real(&none.config), none.config);
        assert!(
            l.real(Path::new("/../../etc/passwd"))
                .starts_with("/tmp/stage"),
            "{:?}",
            l.real(Path::new("/../../etc/passwd"))
        );
    }
}
