//! `ad-sync-setup restart`: starts the agent service again, or restarts it, so it runs the
//! programs now in place. The MSI runs it after an upgrade replaced them (it stopped the service
//! first); an administrator may run it after changing the config by hand.

use super::layout::Layout;
use super::service;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restarted {
    /// The service runs again.
    Running,
    /// There is no configured agent (no config, or no service registered): nothing to run.
    NothingInstalled(String),
}

/// The layout of the install whose config is at `config` (its program folder is the one the
/// config names).
pub fn installed_layout(config: &Path, prefix: Option<&Path>) -> Layout {
    let real = super::layout::staged(prefix, config);
    let dir = super::config::read_installed(&real)
        .ok()
        .and_then(|i| i.answers.install.map(|d| d.dir))
        .unwrap_or_else(super::layout::default_program_dir);
    Layout::new(config, &dir, prefix)
}

/// Restarts the installed agent's service. Not installed is its own answer, not an error: the
/// caller decides (`--if-installed` makes it a success).
pub fn restart(layout: &Layout) -> Result<Restarted, String> {
    let config = layout.real(&layout.config);
    if !config.is_file() {
        return Ok(Restarted::NothingInstalled(format!(
            "no agent is configured ({} does not exist)",
            config.display()
        )));
    }
    if let Some(unit) = &layout.unit {
        if !layout.real(unit).exists() {
            return Ok(Restarted::NothingInstalled(format!(
                "no service unit is installed ({})",
                layout.real(unit).display()
            )));
        }
        if layout.prefix.is_some() || !service::systemd_running() {
            return Err("systemd is not running here: the service cannot be started".into());
        }
        for verb in [
            &["daemon-reload"][..],
            &["restart", super::layout::SERVICE_NAME],
        ] {
            let args: Vec<String> = verb.iter().map(|s| s.to_string()).collect();
            let (line, r) = service::run_command("systemctl", &args, Duration::from_secs(90));
            r.map_err(|e| format!("{line}: {e}"))?;
        }
        return Ok(Restarted::Running);
    }
    windows(layout)
}

#[cfg(windows)]
fn windows(layout: &Layout) -> Result<Restarted, String> {
    let def = service::ServiceDef::new(layout);
    if !service::scm::exists(&def) {
        return Ok(Restarted::NothingInstalled(format!(
            "no {} service is registered",
            def.name
        )));
    }
    service::scm::restart(&def).map(|()| Restarted::Running)
}

#[cfg(not(windows))]
fn windows(_: &Layout) -> Result<Restarted, String> {
    Err("no service manager here to restart the service".into())
}
