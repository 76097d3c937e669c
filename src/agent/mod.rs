//! The agent the service runs: start-up (config and secrets from the store the installer used,
//! refusing ones others can read), then the heartbeat that keeps it known to the cloud and tells
//! it whether it is the primary. Applying the cloud's changes to AD builds on this (issue 6).

use crate::answers::Answers;
use crate::cloud::api::{HeartbeatRequest, Role};
use crate::cloud::client::{CloudClient, CloudOptions};
use crate::secret::Secret;
use crate::secrets::{AGENT_CREDENTIAL, FileStore};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Agent {
    pub config_path: PathBuf,
    pub answers: Answers,
    pub credential: Secret,
    pub client: CloudClient,
    pub host: String,
}

/// Where the secrets are: systemd's credentials folder when the service runs under systemd
/// (`LoadCredential=`), otherwise the store beside the config.
pub fn store_for(config: &Path) -> FileStore {
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => FileStore::new(dir),
        None => FileStore::beside_config(config),
    }
}

/// Refuses a config that users other than the owner can read or change.
fn check_private(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    if let Some(mode) = crate::install::fsops::mode_of(path)
        && mode & 0o077 != 0
    {
        return Err(format!(
            "config {}: other users can read or change it (mode {mode:o}); it is not used. Run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    let _ = path;
    Ok(())
}

impl Agent {
    pub fn start(config: &Path) -> Result<Agent, String> {
        check_private(config)?;
        let installed = crate::install::config::read_installed(config)?;
        let answers = installed.answers;
        let store = store_for(config);
        let credential = store.read(AGENT_CREDENTIAL).map_err(|e| {
            format!("the agent's credential: {e}. The agent is not enrolled: run ad-sync-setup (or `ad-sync-setup install --answers FILE`) to finish the install")
        })?;
        let cloud = answers
            .cloud
            .as_ref()
            .ok_or("config: no [cloud] section; re-run ad-sync-setup")?;
        let client = CloudClient::new(&CloudOptions {
            url: cloud.url.clone().unwrap_or_default(),
            ca_file: cloud.ca_file.as_deref().map(|p| answers.path(p)),
            timeout: cloud.timeout(),
        })
        .map_err(|e| format!("[cloud] {e}; {}", e.fix()))?;
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        Ok(Agent {
            config_path: config.to_path_buf(),
            answers,
            credential,
            client,
            host,
        })
    }

    /// One heartbeat: the role the cloud gives this agent and the interval it asks for.
    pub async fn heartbeat(&self) -> Result<(Role, Duration), String> {
        let req = HeartbeatRequest {
            version: env!("CARGO_PKG_VERSION").into(),
            host: self.host.clone(),
            status: "ok".into(),
            message: None,
        };
        let r = self
            .client
            .heartbeat(&self.credential, &req)
            .await
            .map_err(|e| format!("heartbeat: {e}; {}", e.fix()))?;
        Ok((
            r.role,
            Duration::from_secs(r.heartbeat_interval_seconds.max(1)),
        ))
    }

    /// Heartbeats until `stop` resolves. A failed heartbeat is logged and retried with backoff
    /// (up to the interval); the agent never exits because the cloud is away.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut interval = Duration::from_secs(30);
        let mut backoff = Duration::from_secs(1);
        let mut last_role = None;
        loop {
            let wait = match self.heartbeat().await {
                Ok((role, every)) => {
                    if last_role != Some(role) {
                        tracing::info!(role = ?role, "the cloud gives this agent the {} role", if role == Role::Primary { "primary" } else { "standby" });
                        last_role = Some(role);
                    }
                    interval = every;
                    backoff = Duration::from_secs(1);
                    interval
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    backoff = (backoff * 2).min(interval);
                    backoff
                }
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
