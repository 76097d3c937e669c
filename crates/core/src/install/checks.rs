//! The install's own checks, beside the preflight list: on an upgrade the service account is the
//! installed one (`account.unchanged`) and the cloud is the one the agent is enrolled with; the
//! install has the rights it needs, a service manager to start the service, and the agent
//! program to install. New ids, never renamed, like the preflight ones.

use crate::directory::bind::AccountName;
use crate::preflight::CheckResult;

pub const ACCOUNT_UNCHANGED: &str = "account.unchanged";

/// On an upgrade the agent keeps its service account: `typed` must name `installed`.
pub fn account_unchanged(installed: &str, typed: &str) -> CheckResult {
    let user = |s: &str| {
        AccountName::parse(s)
            .ok()
            .map(|a| a.user().to_ascii_lowercase())
    };
    match (user(installed), user(typed)) {
        (Some(a), Some(b)) if a == b => CheckResult::pass(
            ACCOUNT_UNCHANGED,
            format!("`{typed}` is the installed service account"),
            "",
        ),
        _ => CheckResult::fail(
            ACCOUNT_UNCHANGED,
            format!("Service account `{typed}` is not the installed one (`{installed}`)"),
            "",
            format!(
                "An upgrade keeps the service account: type `{installed}`. To change it, uninstall (ad-sync-setup uninstall --keep-config) and set up again."
            ),
        ),
    }
}

pub const PRIVILEGES: &str = "install.privileges";
pub const SERVICE_MANAGER: &str = "install.service_manager";
pub const SAME_CLOUD: &str = "install.same_cloud";
pub const AGENT_PROGRAM: &str = "install.agent_program";

/// The install writes system folders and registers a service: it needs root (Administrator on
/// Windows, where the manifest asks for it), unless everything goes under a staging prefix.
pub fn privileges(elevated: bool, prefix: bool) -> CheckResult {
    if prefix {
        CheckResult::pass(
            PRIVILEGES,
            "installing under a staging prefix: no system folder is touched",
            "",
        )
    } else if elevated {
        CheckResult::pass(PRIVILEGES, "running with administrator rights", "")
    } else {
        CheckResult::fail(
            PRIVILEGES,
            "the install needs administrator rights (it writes /etc and registers a service)",
            "",
            "Run it as root: sudo ad-sync-setup install --answers FILE (or give --prefix DIR to stage it).",
        )
    }
}

/// systemd must run this machine to enable and start the service, unless `--no-start` says
/// the service is only to be written (a container, a chroot, an image being built).
pub fn service_manager(systemd: bool, no_start: bool, prefix: bool) -> CheckResult {
    if cfg!(windows) {
        return CheckResult::pass(
            SERVICE_MANAGER,
            "the Windows Service Control Manager registers the service",
            "",
        );
    }
    match (systemd, no_start || prefix) {
        (true, _) => CheckResult::pass(SERVICE_MANAGER, "systemd runs this machine", ""),
        (false, true) => CheckResult::pass(
            SERVICE_MANAGER,
            "systemd is not running: the unit is written and enabled, not started (--no-start)",
            "",
        ),
        (false, false) => CheckResult::fail(
            SERVICE_MANAGER,
            "systemd is not running on this machine (no /run/systemd/system), so the service cannot be started",
            "",
            "Re-run with --no-start to write and enable the service without starting it; it starts at the next boot under systemd, or run `ad-sync-agent run --config /etc/ad-sync/agent.toml` yourself.",
        ),
    }
}

/// On an upgrade the agent stays enrolled with the cloud it enrolled with.
pub fn same_cloud(enrolled_with: &str, given: Option<&str>) -> CheckResult {
    let norm = |s: &str| s.trim().trim_end_matches('/').to_ascii_lowercase();
    match given {
        Some(g) if norm(g) == norm(enrolled_with) => CheckResult::pass(
            SAME_CLOUD,
            format!("the agent stays enrolled with {enrolled_with}"),
            "",
        ),
        other => CheckResult::fail(
            SAME_CLOUD,
            format!(
                "[cloud] url `{}` is not the cloud this agent is enrolled with (`{enrolled_with}`)",
                other.unwrap_or("")
            ),
            "",
            format!(
                "Keep url = \"{enrolled_with}\". To move to another cloud: ad-sync-setup uninstall --keep-config, then install with a key from the new cloud."
            ),
        ),
    }
}

/// The agent program the service will run must be found beside the installer.
pub fn agent_program(source: &std::path::Path) -> CheckResult {
    if source.is_file() {
        CheckResult::pass(
            AGENT_PROGRAM,
            format!("agent program found: {}", source.display()),
            "",
        )
    } else {
        CheckResult::fail(
            AGENT_PROGRAM,
            format!("the agent program {} is missing", source.display()),
            "the installer copies the agent from its own folder",
            "Run ad-sync-setup from the folder (or package) that holds ad-sync-agent too.",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Status;

    #[test]
    fn the_same_account_in_another_spelling_is_unchanged() {
        assert_eq!(
            account_unchanged(r"EXAMPLE\svc-sync", "svc-sync@example.com").status,
            Status::Pass
        );
        assert_eq!(
            account_unchanged(r"EXAMPLE\svc-sync", r"EXAMPLE\other").status,
            Status::Fail
        );
    }
}
