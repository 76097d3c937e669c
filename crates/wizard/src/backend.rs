//! What the wizard asks of the outside world, behind one small trait: the preflight checks of a
//! scope, the DC's certificate, the DCs DNS knows, a level of the directory for the pickers, a
//! folder's state and the stored password.
//! `Live` does it for real (the same code as `ad-sync-setup check`); UI tests that must not
//! wait give the wizard their own implementation.

use ad_sync_core::answers::Answers;
use ad_sync_core::directory::browse::{Level, Offer};
use ad_sync_core::directory::cert::{self, CertInfo};
use ad_sync_core::directory::discover::{self, Discovered};
use ad_sync_core::preflight::{self, CheckResult, Report, Scope};
use ad_sync_core::secret::Secret;
use ad_sync_core::status::AgentStatus;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

pub trait Backend: Send + Sync + 'static {
    /// The preflight checks of `scope` for these answers.
    fn preflight(&self, answers: Answers, scope: Scope) -> BoxFuture<Report>;
    /// The certificate the DC presents (read without verifying it, for display).
    fn certificate(
        &self,
        host: String,
        port: u16,
        starttls: bool,
        timeout: Duration,
    ) -> BoxFuture<Result<CertInfo, String>>;
    /// The domain controllers DNS SRV lists for a domain, this server's site's first.
    fn discover(
        &self,
        domain: String,
        server: Option<IpAddr>,
        timeout: Duration,
    ) -> BoxFuture<Result<Discovered, String>>;
    /// One level of the directory under `base` (the domain's naming context when `None`), read
    /// as the service account.
    fn level(
        &self,
        answers: Answers,
        base: Option<String>,
        offer: Offer,
        name: String,
        limit: usize,
    ) -> BoxFuture<Result<Level, String>>;
    /// Whether the destination folder can be used (`install.folder`).
    fn folder(&self, dir: PathBuf) -> BoxFuture<CheckResult>;
    /// The service account's password from the installed secret store.
    fn stored_password(&self, config: PathBuf) -> BoxFuture<Result<Secret, String>>;
    /// The installed agent's health: `program status --json --config F --state-dir D`
    /// (with `--offline` when `offline`: the state alone, the cloud not asked).
    fn agent_status(
        &self,
        program: PathBuf,
        config: PathBuf,
        state_dir: PathBuf,
        offline: bool,
    ) -> BoxFuture<Result<AgentStatus, String>> {
        Box::pin(run_status(program, config, state_dir, offline))
    }
}

/// Runs the installed agent's `status --json` (its exit code says the light, which the JSON
/// carries too): the agent's state is read by the agent's own code only.
async fn run_status(
    program: PathBuf,
    config: PathBuf,
    state_dir: PathBuf,
    offline: bool,
) -> Result<AgentStatus, String> {
    let mut cmd = tokio::process::Command::new(&program);
    // No console window flashes up over the wizard (CREATE_NO_WINDOW).
    #[cfg(windows)]
    cmd.creation_flags(0x0800_0000);
    let out = cmd
        .arg("status")
        .arg("--json")
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&state_dir)
        .args(offline.then_some("--offline"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("{} could not be run: {e}", program.display()))?;
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "{} status gave no status ({e}): {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// The real thing: Samba or Windows DCs, the cloud, DNS, the file system.
pub struct Live;

impl Backend for Live {
    fn preflight(&self, answers: Answers, scope: Scope) -> BoxFuture<Report> {
        Box::pin(async move { preflight::run_scope(&answers, scope).await })
    }

    fn certificate(
        &self,
        host: String,
        port: u16,
        starttls: bool,
        timeout: Duration,
    ) -> BoxFuture<Result<CertInfo, String>> {
        Box::pin(async move {
            let addr =
                tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
                    .await
                    .map_err(|_| format!("{host} did not resolve within {} s", timeout.as_secs()))?
                    .map_err(|e| format!("{host} does not resolve: {e}"))?
                    .next()
                    .ok_or_else(|| format!("{host} has no address"))?;
            cert::fetch_certificate(addr, &host, starttls, timeout)
                .await
                .ok_or_else(|| format!("{host}:{port} presented no certificate that could be read"))
        })
    }

    fn discover(
        &self,
        domain: String,
        server: Option<IpAddr>,
        timeout: Duration,
    ) -> BoxFuture<Result<Discovered, String>> {
        Box::pin(async move { discover::domain_controllers(&domain, server, timeout).await })
    }

    fn level(
        &self,
        answers: Answers,
        base: Option<String>,
        offer: Offer,
        name: String,
        limit: usize,
    ) -> BoxFuture<Result<Level, String>> {
        Box::pin(async move {
            preflight::browse::level(&answers, base.as_deref(), offer, &name, limit).await
        })
    }

    fn folder(&self, dir: PathBuf) -> BoxFuture<CheckResult> {
        Box::pin(preflight::install_folder(dir))
    }

    fn stored_password(&self, config: PathBuf) -> BoxFuture<Result<Secret, String>> {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                ad_sync_core::secrets::FileStore::beside_config(&config)
                    .read(ad_sync_core::secrets::SERVICE_ACCOUNT_PASSWORD)
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| format!("reading the secret store stopped: {e}"))?
        })
    }
}
