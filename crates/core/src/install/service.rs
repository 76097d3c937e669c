//! The agent's service: what it is (pure data, shown on the Review page and by `install --json`),
//! the systemd unit it becomes on Linux, and the calls that register, start, stop and remove it
//! (systemctl on Linux, the Service Control Manager through `windows-service` on Windows).
//!
//! Registration is idempotent by construction: one unit file by one name, or one SCM entry that
//! is updated in place when it exists. A re-run never makes a second service.

use super::layout::{Layout, SERVICE_DESCRIPTION, SERVICE_DISPLAY_NAME, SERVICE_NAME};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The secrets the service is handed, by store name.
pub const SERVICE_SECRETS: [&str; 3] = crate::secrets::ALL;

#[derive(Debug, Clone, Serialize)]
pub struct ServiceDef {
    pub name: &'static str,
    pub display_name: &'static str,
    pub description: &'static str,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The account the service runs as.
    pub account: String,
    pub start: &'static str,
    pub on_failure: &'static str,
}

impl ServiceDef {
    pub fn new(layout: &Layout) -> ServiceDef {
        if cfg!(windows) {
            ServiceDef {
                name: SERVICE_NAME,
                display_name: SERVICE_DISPLAY_NAME,
                description: SERVICE_DESCRIPTION,
                program: layout.agent_exe.clone(),
                args: vec![
                    "service".into(),
                    "--config".into(),
                    layout.config.display().to_string(),
                ],
                account: format!("NT SERVICE\\{SERVICE_NAME}"),
                start: "automatic (delayed start)",
                on_failure: "restart after 10 s, 60 s, then every 5 minutes; the count resets after a day",
            }
        } else {
            ServiceDef {
                name: SERVICE_NAME,
                display_name: SERVICE_DISPLAY_NAME,
                description: SERVICE_DESCRIPTION,
                program: layout.agent_exe.clone(),
                args: vec![
                    "run".into(),
                    "--config".into(),
                    // systemd's credentials folder: the config and secrets reach the service as
                    // copies only its own user can read.
                    "%d/agent.toml".into(),
                ],
                account: "ad-sync (a dynamic user of its own, DynamicUser=yes)".into(),
                start: "at boot (enabled in multi-user.target)",
                on_failure: "restart 10 s after any failure (Restart=on-failure)",
            }
        }
    }

    /// The command line, as the service manager will run it, quoted as this system's service
    /// manager reads it (Windows' rules on Windows, where `\` in a path is a plain character).
    pub fn command_line(&self) -> String {
        if cfg!(windows) {
            self.windows_command_line()
        } else {
            std::iter::once(quote(&self.program.display().to_string()))
                .chain(self.args.iter().map(|a| quote(a)))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }

    /// The command line as Windows' SCM keeps it in the service's `ImagePath`.
    fn windows_command_line(&self) -> String {
        std::iter::once(quote_windows(&self.program.display().to_string()))
            .chain(self.args.iter().map(|a| quote_windows(a)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// What registering it on Windows amounts to, as `sc.exe` commands: shown on the Review page
    /// and in `install --json`, and tested here as data (the SCM itself is only on Windows).
    pub fn sc_commands(&self) -> Vec<String> {
        vec![
            format!(
                "sc.exe create {} binPath= \"{}\" start= delayed-auto obj= \"{}\" DisplayName= \"{}\"",
                self.name,
                self.windows_command_line().replace('"', "\\\""),
                self.account,
                self.display_name
            ),
            format!("sc.exe description {} \"{}\"", self.name, self.description),
            format!(
                "sc.exe failure {} reset= 86400 actions= restart/10000/restart/60000/restart/300000",
                self.name
            ),
            format!("sc.exe failureflag {} 1", self.name),
            format!("sc.exe sidtype {} unrestricted", self.name),
        ]
    }
}

/// The Application event log source the agent writes its warnings and errors under: the
/// registry key the installer creates and the uninstaller removes.
pub const EVENT_SOURCE_KEY: &str =
    r"HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\ad-sync-agent";

/// Where an administrator reads what the agent did, in the platform's own words: its log
/// folder, and Event Viewer's Application log on Windows or the journal on Linux.
pub fn where_to_read_logs(log_dir: &std::path::Path, service: &str) -> String {
    logs_words(cfg!(windows), log_dir, service)
}

fn logs_words(windows: bool, log_dir: &std::path::Path, service: &str) -> String {
    if windows {
        format!(
            "{}, and Event Viewer (Windows Logs > Application, source {service}) for warnings and errors",
            log_dir.display()
        )
    } else {
        format!("{} (and journalctl -u {service})", log_dir.display())
    }
}

/// The message file: EventCreate.exe (in every Windows since XP) defines ids 1 to 1000 as the
/// text given, so Event Viewer shows the agent's message as it is.
pub const EVENT_MESSAGE_FILE: &str = r"%SystemRoot%\System32\EventCreate.exe";

/// `reg.exe` arguments that register the event source (idempotent: `/f` overwrites).
pub fn event_source_add() -> Vec<Vec<String>> {
    let v = |name: &str, kind: &str, data: &str| {
        [
            "add",
            EVENT_SOURCE_KEY,
            "/v",
            name,
            "/t",
            kind,
            "/d",
            data,
            "/f",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    vec![
        v("EventMessageFile", "REG_EXPAND_SZ", EVENT_MESSAGE_FILE),
        // Error, warning and information.
        v("TypesSupported", "REG_DWORD", "7"),
    ]
}

/// `reg.exe` arguments that remove the event source.
pub fn event_source_delete() -> Vec<String> {
    ["delete", EVENT_SOURCE_KEY, "/f"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn quote(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '"', '\\', '\t']) {
        return arg.to_string();
    }
    format!("\"{}\"", arg.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One argument as Windows programs split a command line (`CommandLineToArgvW`): quoted when
/// it holds a space, a tab or a quote; backslashes are plain characters except right before a
/// quote, where each is doubled and the quote escaped.
fn quote_windows(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '"']) {
        return arg.to_string();
    }
    let mut out = String::from('"');
    let mut slashes = 0usize;
    for c in arg.chars() {
        match c {
            '\\' => slashes += 1,
            '"' => {
                out.push_str(&"\\".repeat(slashes * 2 + 1));
                out.push('"');
                slashes = 0;
            }
            c => {
                out.push_str(&"\\".repeat(slashes));
                out.push(c);
                slashes = 0;
            }
        }
    }
    out.push_str(&"\\".repeat(slashes * 2));
    out.push('"');
    out
}

/// systemd reads `%` as a specifier; a literal one in a path is `%%`.
fn unit_path(p: &Path) -> String {
    p.display().to_string().replace('%', "%%")
}

/// The hardened systemd unit. The service gets its own dynamic user, sees the file system read
/// only except its state and log folders, gets the config and secrets through `LoadCredential=`
/// (`LoadCredentialEncrypted=` for secrets encrypted by systemd-creds: root-only files on disk,
/// copies readable by the service alone at run time, never in its environment), and is
/// restarted when it fails.
/// `cas` names the CA copies beside the config (`dc`, `cloud`) the service is handed too.
/// The unit for `layout`: the CA copies `cas` and the optional secrets `optional` (the proxy's
/// password, when the config has one) are handed over besides the config and `SERVICE_SECRETS`.
pub fn systemd_unit(
    layout: &Layout,
    cas: &[&str],
    optional: &[&str],
    protection: crate::secrets::Protection,
) -> String {
    let def = ServiceDef::new(layout);
    let mut exec = quote(&unit_path(&def.program));
    for a in &def.args {
        exec.push(' ');
        exec.push_str(&quote(a));
    }
    let mut creds = format!("LoadCredential=agent.toml:{}\n", unit_path(&layout.config));
    for which in cas {
        let name = super::layout::ca_name(which);
        creds.push_str(&format!(
            "LoadCredential={name}:{}\n",
            unit_path(&layout.ca_copy(which))
        ));
    }
    for name in SERVICE_SECRETS.iter().chain(optional) {
        // Encrypted at rest: systemd decrypts them into the service's credentials folder.
        let directive = if protection == crate::secrets::Protection::SystemdCreds {
            "LoadCredentialEncrypted"
        } else {
            "LoadCredential"
        };
        creds.push_str(&format!(
            "{directive}={name}:{}\n",
            unit_path(
                &layout
                    .secrets_dir
                    .join(format!("{name}{}", protection.suffix()))
            )
        ));
    }
    format!(
        "# Written by ad-sync-setup {version}. Re-run ad-sync-setup to change it; edits here are replaced.\n\
[Unit]\n\
Description={display}: cloud directory to Active Directory\n\
After=network-online.target\n\
Wants=network-online.target\n\
StartLimitIntervalSec=600\n\
StartLimitBurst=10\n\
\n\
[Service]\n\
Type=exec\n\
ExecStart={exec}\n\
{creds}\
DynamicUser=yes\n\
User=ad-sync\n\
StateDirectory=ad-sync\n\
StateDirectoryMode=0700\n\
LogsDirectory=ad-sync\n\
LogsDirectoryMode=0700\n\
Restart=on-failure\n\
RestartSec=10s\n\
TimeoutStopSec=30s\n\
UMask=0077\n\
NoNewPrivileges=yes\n\
ProtectSystem=strict\n\
ProtectHome=yes\n\
PrivateTmp=yes\n\
PrivateDevices=yes\n\
PrivateUsers=yes\n\
ProtectKernelTunables=yes\n\
ProtectKernelModules=yes\n\
ProtectKernelLogs=yes\n\
ProtectControlGroups=yes\n\
ProtectClock=yes\n\
ProtectHostname=yes\n\
ProtectProc=invisible\n\
ProcSubset=pid\n\
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\
RestrictNamespaces=yes\n\
RestrictRealtime=yes\n\
RestrictSUIDSGID=yes\n\
LockPersonality=yes\n\
MemoryDenyWriteExecute=yes\n\
RemoveIPC=yes\n\
CapabilityBoundingSet=\n\
AmbientCapabilities=\n\
DevicePolicy=closed\n\
SystemCallArchitectures=native\n\
SystemCallFilter=@system-service\n\
SystemCallFilter=~@privileged @resources\n\
SystemCallErrorNumber=EPERM\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n",
        version = env!("CARGO_PKG_VERSION"),
        display = SERVICE_DISPLAY_NAME,
    )
}

/// Whether systemd manages this machine (the test systemd itself documents for `sd_booted`).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Runs a service-manager command with a time limit. Returns the command line as run (for the
/// record: it never holds a secret) and the result; the error is the command's own words.
/// The system's own copy of a tool, by absolute path (System32 on Windows; the first of
/// /usr/bin, /bin, /usr/sbin, /sbin elsewhere): never what PATH offers, nor on Windows the
/// program's own folder, which it searches first.
pub fn system_tool(name: &str) -> std::path::PathBuf {
    #[cfg(windows)]
    {
        super::winsec::system_dir()
            .unwrap_or_else(|| std::path::PathBuf::from(r"C:\Windows\System32"))
            .join(format!("{name}.exe"))
    }
    #[cfg(not(windows))]
    {
        ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| std::path::Path::new("/usr/bin").join(name))
    }
}

pub fn run_command(
    program: &str,
    args: &[String],
    limit: Duration,
) -> (String, Result<(), String>) {
    let line = std::iter::once(program.to_string())
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ");
    let child = Command::new(system_tool(program))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return (line, Err(format!("could not run {program}: {e}"))),
    };
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() >= deadline => {
                // It may have exited just now; either way it is reaped and reported as late.
                let _ = child.kill();
                let _ = child.wait();
                return (
                    line,
                    Err(format!(
                        "{program} did not finish within {} s",
                        limit.as_secs()
                    )),
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return (line, Err(e.to_string())),
        }
    }
    match child.wait_with_output() {
        Ok(out) if out.status.success() => (line, Ok(())),
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let why = if text.is_empty() {
                format!("{program} failed ({})", out.status)
            } else {
                text
            };
            (line, Err(why))
        }
        Err(e) => (line, Err(e.to_string())),
    }
}

/// `systemctl [--root=PREFIX] <verb> ad-sync-agent.service`.
pub fn systemctl_args(layout: &Layout, verb: &[&str]) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(root) = &layout.prefix {
        args.push(format!("--root={}", root.display()));
    }
    args.extend(verb.iter().map(|s| s.to_string()));
    args.push(format!("{SERVICE_NAME}.service"));
    args
}

#[cfg(windows)]
pub mod scm {
    //! The Windows Service Control Manager: register or update in place, start, stop, remove.

    use super::ServiceDef;
    use std::ffi::OsString;
    use std::time::Duration;
    use windows_service::service::{
        ServiceAccess, ServiceAction, ServiceActionType, ServiceErrorControl,
        ServiceFailureActions, ServiceFailureResetPeriod, ServiceInfo, ServiceSidType,
        ServiceStartType, ServiceState, ServiceType,
    };
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

    fn info(def: &ServiceDef) -> ServiceInfo {
        ServiceInfo {
            name: OsString::from(def.name),
            display_name: OsString::from(def.display_name),
            service_type: ServiceType::OWN_PROCESS,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: def.program.clone(),
            launch_arguments: def.args.iter().map(OsString::from).collect(),
            dependencies: vec![],
            account_name: Some(OsString::from(&def.account)),
            account_password: None,
        }
    }

    fn words(e: windows_service::Error) -> String {
        // windows-service's own text ("IO error in winapi call") hides the system's reason.
        match std::error::Error::source(&e) {
            Some(cause) => format!("the Service Control Manager refused: {e}: {cause}"),
            None => format!("the Service Control Manager refused: {e}"),
        }
    }

    /// The same, saying which request was refused.
    fn refused(what: &'static str) -> impl Fn(windows_service::Error) -> String {
        move |e| format!("{what}: {}", words(e))
    }

    /// Creates the service, or updates the existing one in place; returns true when it existed.
    pub fn register(def: &ServiceDef) -> Result<bool, String> {
        let manager = ServiceManager::local_computer(
            None::<&str>,
            ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
        )
        .map_err(words)?;
        let access = ServiceAccess::QUERY_CONFIG
            | ServiceAccess::CHANGE_CONFIG
            | ServiceAccess::QUERY_STATUS
            | ServiceAccess::START
            | ServiceAccess::STOP;
        let info = info(def);
        let (service, existed) = match manager.open_service(def.name, access) {
            Ok(s) => {
                s.change_config(&info)
                    .map_err(refused("updating the service's definition"))?;
                (s, true)
            }
            Err(_) => (
                manager
                    .create_service(&info, access)
                    .map_err(refused("creating the service"))?,
                false,
            ),
        };
        service
            .set_description(def.description)
            .map_err(refused("setting the description"))?;
        or_registry(
            def.name,
            "DelayedAutostart",
            1,
            service.set_delayed_auto_start(true),
            "setting delayed automatic start",
        )?;
        or_registry(
            def.name,
            "ServiceSidType",
            1, // SERVICE_SID_TYPE_UNRESTRICTED
            service.set_config_service_sid_info(ServiceSidType::Unrestricted),
            "setting the service SID type",
        )?;
        service
            .update_failure_actions(ServiceFailureActions {
                reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
                reboot_msg: None,
                command: None,
                actions: Some(vec![
                    ServiceAction {
                        action_type: ServiceActionType::Restart,
                        delay: Duration::from_secs(10),
                    },
                    ServiceAction {
                        action_type: ServiceActionType::Restart,
                        delay: Duration::from_secs(60),
                    },
                    ServiceAction {
                        action_type: ServiceActionType::Restart,
                        delay: Duration::from_secs(300),
                    },
                ]),
            })
            .map_err(refused("setting the recovery actions"))?;
        or_registry(
            def.name,
            "FailureActionsOnNonCrashFailures",
            1,
            service.set_failure_actions_on_non_crash_failures(true),
            "setting recovery on non-crash failures",
        )?;
        Ok(existed)
    }

    /// A setting the SCM refused as an unknown information level (ERROR_INVALID_LEVEL) or an
    /// unsupported request (ERROR_NOT_SUPPORTED) is written where the SCM keeps it and reads it
    /// at boot: the service's key under HKLM\SYSTEM\CurrentControlSet\Services. Every
    /// Windows Server this product supports takes these levels through ChangeServiceConfig2;
    /// Wine's SCM (the test bed) does not take delayed start. Any other refusal is an error.
    fn or_registry(
        service: &str,
        value: &str,
        data: u32,
        result: windows_service::Result<()>,
        what: &'static str,
    ) -> Result<(), String> {
        const ERROR_NOT_SUPPORTED: i32 = 50;
        const ERROR_INVALID_LEVEL: i32 = 124;
        let e = match result {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let unsupported = matches!(
            &e,
            windows_service::Error::Winapi(io)
                if matches!(io.raw_os_error(), Some(ERROR_NOT_SUPPORTED | ERROR_INVALID_LEVEL))
        );
        if !unsupported {
            return Err(refused(what)(e));
        }
        let key = wide(&format!(r"SYSTEM\CurrentControlSet\Services\{service}"));
        let name = wide(value);
        // SAFETY: both strings are NUL-terminated UTF-16 that outlive the call; the data pointer
        // and its length describe one u32.
        let rc = unsafe {
            windows_sys::Win32::System::Registry::RegSetKeyValueW(
                windows_sys::Win32::System::Registry::HKEY_LOCAL_MACHINE,
                key.as_ptr(),
                name.as_ptr(),
                windows_sys::Win32::System::Registry::REG_DWORD,
                (&data as *const u32).cast(),
                std::mem::size_of::<u32>() as u32,
            )
        };
        if rc == 0 {
            tracing::info!(
                "{what}: {}; {value} = {data} written to the service's registry key instead",
                words(e)
            );
            Ok(())
        } else {
            Err(format!(
                "{what}: the Service Control Manager does not take this setting ({}), and writing {value} to the service's registry key failed too: {}",
                words(e),
                std::io::Error::from_raw_os_error(rc as i32)
            ))
        }
    }

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(std::iter::once(0)).collect()
    }

    /// Starts the service, or restarts it when it runs (an upgrade).
    pub fn restart(def: &ServiceDef) -> Result<(), String> {
        let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
            .map_err(words)?;
        let service = manager
            .open_service(
                def.name,
                ServiceAccess::QUERY_STATUS | ServiceAccess::START | ServiceAccess::STOP,
            )
            .map_err(words)?;
        stop_and_wait(&service)?;
        service.start::<&str>(&[]).map_err(words)
    }

    fn stop_and_wait(service: &windows_service::service::Service) -> Result<(), String> {
        if service.query_status().map_err(words)?.current_state == ServiceState::Stopped {
            return Ok(());
        }
        // Refused when it is stopping already; the wait below says whether it stopped.
        let _ = service.stop();
        for _ in 0..300 {
            if service.query_status().map_err(words)?.current_state == ServiceState::Stopped {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("the service did not stop within 30 s".into())
    }

    /// ERROR_SERVICE_DOES_NOT_EXIST: the one answer that means there is nothing to remove.
    const NO_SUCH_SERVICE: i32 = 1060;

    /// Stops and removes the service; an absent service is not an error. Any other refusal to
    /// open it (the service database locked while a service starts or stops, for one) is
    /// asked again for up to 10 s, then reported: a removal never says done while the service
    /// is still registered.
    pub fn remove(def: &ServiceDef) -> Result<(), String> {
        let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
            .map_err(words)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let service = loop {
            match manager.open_service(
                def.name,
                ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
            ) {
                Ok(s) => break s,
                Err(windows_service::Error::Winapi(e))
                    if e.raw_os_error() == Some(NO_SUCH_SERVICE) =>
                {
                    return Ok(());
                }
                Err(e) if std::time::Instant::now() >= deadline => {
                    return Err(format!("opening the service to remove it: {}", words(e)));
                }
                Err(e) => {
                    tracing::info!(
                        "opening the service to remove it: {}; asking again",
                        words(e)
                    );
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        };
        stop_and_wait(&service)?;
        service.delete().map_err(words)
    }

    pub fn exists(def: &ServiceDef) -> bool {
        ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
            .and_then(|m| m.open_service(def.name, ServiceAccess::QUERY_STATUS))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_administrator_is_sent_to_the_platforms_own_logs() {
        let words = logs_words(
            true,
            std::path::Path::new(r"C:\ProgramData\ad-sync\logs"),
            "ad-sync-agent",
        );
        assert!(
            words.starts_with(r"C:\ProgramData\ad-sync\logs, and Event Viewer")
                && words.contains("source ad-sync-agent")
                && !words.contains("journalctl"),
            "{words}"
        );
        let words = logs_words(
            false,
            std::path::Path::new("/var/log/ad-sync"),
            "ad-sync-agent",
        );
        assert_eq!(words, "/var/log/ad-sync (and journalctl -u ad-sync-agent)");
    }

    #[test]
    fn the_unit_hands_secrets_over_as_credentials_and_names_no_secret() {
        let layout = Layout::new(
            Path::new("/etc/ad-sync/agent.toml"),
            Path::new("/opt/ad sync"),
            None,
        );
        let unit = systemd_unit(&layout, &["dc"], &[], crate::secrets::Protection::File);
        let encrypted = systemd_unit(
            &layout,
            &["dc"],
            &[crate::secrets::PROXY_PASSWORD],
            crate::secrets::Protection::SystemdCreds,
        );
        assert!(
            encrypted.contains(
                "LoadCredentialEncrypted=agent-credential:/etc/ad-sync/secrets/agent-credential.cred"
            ) && encrypted.contains("LoadCredential=agent.toml:/etc/ad-sync/agent.toml"),
            "{encrypted}"
        );
        assert!(
            unit.contains("LoadCredential=dc-ca.pem:/etc/ad-sync/dc-ca.pem"),
            "{unit}"
        );
        assert!(
            unit.contains("ExecStart=\"/opt/ad sync/ad-sync-agent\" run --config %d/agent.toml"),
            "{unit}"
        );
        assert!(
            unit.contains("LoadCredential=agent-credential:/etc/ad-sync/secrets/agent-credential")
        );
        assert!(unit.contains("ProtectSystem=strict"));
        assert!(unit.contains("DynamicUser=yes"));
        assert!(
            !unit.contains("Environment="),
            "secrets never travel in the environment"
        );
        let sc = ServiceDef {
            program: PathBuf::from(r"C:\Program Files\ad-sync\ad-sync-agent.exe"),
            args: vec![
                "service".into(),
                "--config".into(),
                r"C:\ProgramData\ad-sync\agent.toml".into(),
            ],
            account: r"NT SERVICE\ad-sync-agent".into(),
            ..ServiceDef::new(&layout)
        }
        .sc_commands();
        assert!(
            sc[0].starts_with("sc.exe create ad-sync-agent binPath= "),
            "{sc:?}"
        );
        // Windows' quoting: a path's backslashes stay single (as the SCM shows ImagePath).
        assert!(
            sc[0].contains(
                r#"binPath= "\"C:\Program Files\ad-sync\ad-sync-agent.exe\" service --config C:\ProgramData\ad-sync\agent.toml""#
            ),
            "{sc:?}"
        );
        assert!(sc[0].contains("start= delayed-auto"));
        assert!(sc.iter().any(|c| c.contains("restart/10000")));
    }

    #[test]
    fn windows_arguments_are_quoted_as_command_line_to_argv_splits_them() {
        let cases = [
            (
                r"C:\ProgramData\ad-sync\agent.toml",
                r"C:\ProgramData\ad-sync\agent.toml",
            ),
            (
                r"C:\Program Files\ad-sync\ad-sync-agent.exe",
                r#""C:\Program Files\ad-sync\ad-sync-agent.exe""#,
            ),
            ("", r#""""#),
            (r#"say "hi""#, r#""say \"hi\"""#),
            (r"C:\dir with space\", r#""C:\dir with space\\""#),
            (r#"a\"b"#, r#""a\\\"b""#),
            ("service", "service"),
        ];
        for (arg, want) in cases {
            assert_eq!(quote_windows(arg), want, "{arg}");
        }
    }
}
