//! Who may do what with what the install creates on Linux, decided by two things only: the
//! modes the install sets (the constants below, which `apply` uses) and the systemd unit it
//! writes (`DynamicUser=`, `ProtectSystem=`, `StateDirectory=`, `LogsDirectory=` and the
//! credentials it hands over). `statement` reads both and says, per path, what the service,
//! root and any other account may do: the Linux half of `install --dry-run --json`'s `access`
//! (the Windows half is `access::statement`).
//!
//! The rules, as systemd documents them (systemd.exec(5)) and as the kernel enforces them:
//! - root may do everything (it bypasses file modes).
//! - The service runs as a dynamic user: neither root nor any file's owner, so file modes give
//!   it the "other" bits. It reads the config and the secrets only as the copies systemd puts in
//!   its private `$CREDENTIALS_DIRECTORY` (`LoadCredential=`, `LoadCredentialEncrypted=`).
//! - `StateDirectory=`/`LogsDirectory=` are made and owned by the service's user, with the
//!   directive's mode; `ProtectSystem=strict` makes every other path read-only for it.

use super::access::Statement;
use super::layout::Layout;
use std::path::{Path, PathBuf};

/// The program folder and the agent program: everyone may read and run them.
pub const PROGRAM_MODE: u32 = 0o755;
/// `/etc/ad-sync`: listed by anyone; what is in it has its own mode.
pub const CONFIG_DIR_MODE: u32 = 0o755;
/// The config and the enrollment record: root only (the service gets the config as a
/// credential).
pub const CONFIG_MODE: u32 = 0o600;
/// The secret store's folder and each secret in it: root only.
pub const SECRETS_DIR_MODE: u32 = 0o700;
pub const SECRET_MODE: u32 = 0o600;

/// What a unit says about the service's identity and its file system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFacts {
    pub dynamic_user: bool,
    pub protect_system_strict: bool,
    /// `StateDirectory=` name and its mode (systemd's default 0755).
    pub state: Option<(String, u32)>,
    pub logs: Option<(String, u32)>,
    /// The files handed over as credentials.
    pub credentials: Vec<PathBuf>,
    /// `UMask=` (systemd's default 0022): the mode of the files the service creates.
    pub umask: u32,
}

/// Reads the `[Service]` directives that decide access.
pub fn unit_facts(unit: &str) -> UnitFacts {
    let mut f = UnitFacts {
        umask: 0o022,
        ..UnitFacts::default()
    };
    let mut state_mode = 0o755;
    let mut logs_mode = 0o755;
    let mut section = "";
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[Service]" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let yes = matches!(value, "yes" | "true" | "1" | "on");
        match key.trim() {
            "DynamicUser" => f.dynamic_user = yes,
            "ProtectSystem" => f.protect_system_strict = value == "strict",
            "StateDirectory" => f.state = Some((value.to_string(), 0)),
            "LogsDirectory" => f.logs = Some((value.to_string(), 0)),
            "StateDirectoryMode" => state_mode = u32::from_str_radix(value, 8).unwrap_or(0o755),
            "LogsDirectoryMode" => logs_mode = u32::from_str_radix(value, 8).unwrap_or(0o755),
            "UMask" => f.umask = u32::from_str_radix(value, 8).unwrap_or(0o022),
            "LoadCredential" | "LoadCredentialEncrypted" => {
                if let Some((_, path)) = value.split_once(':') {
                    f.credentials.push(PathBuf::from(path));
                }
            }
            _ => {}
        }
    }
    if let Some(s) = f.state.as_mut() {
        s.1 = state_mode;
    }
    if let Some(l) = f.logs.as_mut() {
        l.1 = logs_mode;
    }
    f
}

/// The words for what a mode's permission bits (`rwx`, one class) allow on a file or folder.
fn words(bits: u32, folder: bool) -> &'static str {
    match (bits & 0o4 != 0, bits & 0o2 != 0, folder) {
        (true, true, _) => "modify",
        (true, false, true) => "list",
        (true, false, false) => "read",
        (false, _, _) => "none",
    }
}

/// What the install creates, with the mode it sets, in creation order.
fn paths(layout: &Layout) -> Vec<(PathBuf, bool, u32)> {
    vec![
        (layout.program_dir.clone(), true, PROGRAM_MODE),
        (layout.config_dir.clone(), true, CONFIG_DIR_MODE),
        (layout.state_dir.clone(), true, 0),
        (layout.log_dir.clone(), true, 0),
        (layout.secrets_dir.clone(), true, SECRETS_DIR_MODE),
        (layout.config.clone(), false, CONFIG_MODE),
    ]
}

/// Per path: its mode and what each kind of account may do, from the modes and `unit`.
pub fn statement(layout: &Layout, unit: &str) -> Vec<Statement> {
    let u = unit_facts(unit);
    let credential = |p: &Path| u.credentials.iter().any(|c| c == p);
    let own_dir = |p: &Path, which: &Option<(String, u32)>, base: &str| {
        which
            .as_ref()
            .filter(|(name, _)| Path::new(base).join(name) == p)
            .map(|(_, mode)| *mode)
    };
    paths(layout)
        .into_iter()
        .map(|(path, folder, mode)| {
            let managed = own_dir(&path, &u.state, "/var/lib")
                .map(|m| (m, "StateDirectory="))
                .or_else(|| own_dir(&path, &u.logs, "/var/log").map(|m| (m, "LogsDirectory=")));
            let (mode, owner, service, users) = match managed {
                // Made by systemd for the service's user, with the directive's mode; what
                // matters is the files the service makes in it (its UMask=), and whether
                // others may reach them through the folder.
                Some((m, how)) => {
                    let file = 0o666 & !u.umask;
                    let users = if m & 0o1 == 0 {
                        "none"
                    } else {
                        words(file, false)
                    };
                    (
                        m,
                        format!("the service's user (systemd {how}), files {file:04o}"),
                        words(file >> 6, false),
                        users,
                    )
                }
                None => {
                    // A folder of secrets the unit hands over one by one: the service reads
                    // them through its credentials, never from the folder.
                    let handed = if folder {
                        path == layout.secrets_dir
                            && crate::secrets::ALL.iter().all(|n| {
                                u.credentials.iter().any(|c| {
                                    c.starts_with(&path) && c.to_string_lossy().contains(n)
                                })
                            })
                    } else {
                        credential(&path)
                    };
                    let by_mode = words(mode, folder);
                    // ProtectSystem=strict: whatever the mode, read-only for the service.
                    let read_only = u.protect_system_strict && by_mode == "modify";
                    let service = if handed || read_only { "read" } else { by_mode };
                    (mode, "root".to_string(), service, words(mode, folder))
                }
            };
            Statement {
                path: path.display().to_string(),
                sddl: None,
                mode: Some(format!("{mode:04o} {owner}")),
                service,
                system: "full control",
                administrators: "full control",
                users,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Protection;

    fn layout() -> Layout {
        Layout::new(
            Path::new("/etc/ad-sync/agent.toml"),
            Path::new("/opt/ad-sync"),
            None,
        )
    }

    fn row<'a>(s: &'a [Statement], end: &str) -> &'a Statement {
        s.iter()
            .find(|r| r.path.ends_with(end))
            .unwrap_or_else(|| panic!("no {end} in {s:#?}"))
    }

    /// The unit the install writes: the service changes only its state and logs, reads the
    /// config and the secrets as credentials, and no other account reads either.
    #[test]
    fn the_installed_unit_gives_the_service_its_state_and_logs_and_nobody_else_a_secret() {
        if cfg!(windows) {
            return;
        }
        for protection in [Protection::File, Protection::SystemdCreds] {
            let unit = super::super::service::systemd_unit(&layout(), &["dc"], &[], protection);
            let s = statement(&layout(), &unit);
            for (end, service, users) in [
                ("/var/lib/ad-sync", "modify", "none"),
                ("/var/log/ad-sync", "modify", "none"),
                ("/etc/ad-sync/secrets", "read", "none"),
                ("agent.toml", "read", "none"),
                ("/opt/ad-sync", "list", "list"),
                ("/etc/ad-sync", "list", "list"),
            ] {
                let r = row(&s, end);
                assert_eq!(
                    (r.service, r.users),
                    (service, users),
                    "{protection:?}: {r:?}"
                );
                assert_eq!(r.administrators, "full control");
            }
            assert_eq!(
                row(&s, "/var/lib/ad-sync").mode.as_deref(),
                Some("0700 the service's user (systemd StateDirectory=), files 0600")
            );
        }
    }

    /// What each directive changes, one at a time.
    #[test]
    fn each_directive_decides_what_it_documents() {
        let base = "[Service]\nDynamicUser=yes\nProtectSystem=strict\nStateDirectory=ad-sync\nStateDirectoryMode=0700\nLogsDirectory=ad-sync\nLoadCredential=agent.toml:/etc/ad-sync/agent.toml\nLoadCredential=service-account-password:/etc/ad-sync/secrets/service-account-password\nLoadCredential=agent-credential:/etc/ad-sync/secrets/agent-credential\nLoadCredential=agent-private-key:/etc/ad-sync/secrets/agent-private-key\n";
        let l = layout();
        let s = statement(&l, base);
        // LogsDirectoryMode and UMask left out: systemd's defaults 0755 and 0022, so others
        // may read the logs.
        assert_eq!(row(&s, "/var/log/ad-sync").users, "read");
        let s = statement(&l, &format!("{base}UMask=0077\n"));
        assert_eq!(row(&s, "/var/log/ad-sync").users, "none");
        // Without the config handed over, the service cannot read a 0600 root file.
        let s = statement(
            &l,
            &base.replace("LoadCredential=agent.toml:/etc/ad-sync/agent.toml\n", ""),
        );
        assert_eq!(row(&s, "agent.toml").service, "none");
        // A secret not handed over: the folder is not readable to the service.
        let s = statement(
            &l,
            &base.replace(
                "LoadCredential=agent-credential:/etc/ad-sync/secrets/agent-credential\n",
                "",
            ),
        );
        assert_eq!(row(&s, "/etc/ad-sync/secrets").service, "none");
        // No StateDirectory=: nothing makes the folder the service's to write.
        let s = statement(&l, &base.replace("StateDirectory=ad-sync\n", ""));
        assert_ne!(row(&s, "/var/lib/ad-sync").service, "modify");
        // In a section other than [Service], a directive counts for nothing.
        assert!(!unit_facts("[Install]\nDynamicUser=yes\n").dynamic_user);
    }
}
