//! `ad-sync-setup uninstall [--keep-config]`: tells the cloud the agent is gone (its credential
//! stops working and it gives up the primary role), stops and removes the service, and removes
//! the secrets, the enrollment record, the program copy the installer made and (unless
//! `--keep-config`) the agent's state, the config and its backups.
//!
//! The cloud is told first: when it cannot be reached nothing is removed (the agent would
//! otherwise stay listed, and primary, with no machine behind it), unless `--force`.

use super::enrollment::Record;
use super::layout::Layout;
use super::service;
use crate::cloud::client::{CloudClient, CloudError, CloudOptions};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct UninstallOptions {
    pub config: PathBuf,
    pub prefix: Option<PathBuf>,
    pub keep_config: bool,
    /// Remove locally even when the cloud cannot be told.
    pub force: bool,
    pub source_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub what: String,
    pub ok: bool,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UninstallOutcome {
    /// True when everything asked for was removed.
    pub complete: bool,
    pub agent_id: Option<String>,
    pub steps: Vec<Removed>,
    pub error: Option<String>,
    pub fix: Option<String>,
    pub commands: Vec<String>,
}

pub fn uninstall(opts: &UninstallOptions) -> UninstallOutcome {
    // The program folder is the one the installed config names.
    let real_config =
        Layout::new(&opts.config, &PathBuf::new(), opts.prefix.as_deref()).real(&opts.config);
    let installed = super::config::read_installed(&real_config).ok();
    let program_dir = installed
        .as_ref()
        .and_then(|i| i.answers.install.as_ref().map(|d| d.dir.clone()))
        .unwrap_or_else(super::layout::default_program_dir);
    let layout = Layout::new(&opts.config, &program_dir, opts.prefix.as_deref());
    let store = layout.store();
    let record = Record::read(&layout.real(&layout.enrollment))
        .ok()
        .flatten();
    let mut out = UninstallOutcome {
        complete: true,
        agent_id: record.as_ref().and_then(|r| r.agent_id.clone()),
        steps: Vec::new(),
        error: None,
        fix: None,
        commands: Vec::new(),
    };
    let step = |out: &mut UninstallOutcome, what: &str, r: Result<String, String>| {
        let ok = r.is_ok();
        out.complete &= ok;
        out.steps.push(Removed {
            what: what.into(),
            ok,
            message: r.unwrap_or_else(|e| e),
        });
    };

    // 1. The cloud.
    let credential = store.read(crate::secrets::AGENT_CREDENTIAL).ok();
    match (&record, credential) {
        (Some(r), Some(c)) => {
            let ca = installed.as_ref().and_then(|i| {
                i.answers
                    .cloud
                    .as_ref()
                    .and_then(|c| c.ca_file.as_ref())
                    .map(|p| i.answers.path(p))
            });
            let told = CloudClient::new(&CloudOptions {
                url: r.cloud_url.clone(),
                ca_file: ca,
                timeout: Duration::from_secs(10),
            })
            .and_then(|client| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| CloudError::Connect(e.to_string()))?
                    .block_on(client.deregister(&c))
            });
            match told {
                Ok(()) => step(
                    &mut out,
                    "cloud",
                    Ok(format!(
                        "agent {} deregistered at {}",
                        r.agent_id.as_deref().unwrap_or("?"),
                        r.cloud_url
                    )),
                ),
                Err(CloudError::Api { code, .. }) if code == "unauthorized" => step(
                    &mut out,
                    "cloud",
                    Ok(
                        "the cloud no longer knows this agent's credential (already deregistered)"
                            .into(),
                    ),
                ),
                Err(e) if opts.force => step(
                    &mut out,
                    "cloud",
                    Err(format!(
                        "not told ({e}); --force: removing locally anyway. Remove agent {} in the cloud console.",
                        r.agent_id.as_deref().unwrap_or("?")
                    )),
                ),
                Err(e) => {
                    out.complete = false;
                    out.error = Some(format!(
                        "the cloud at {} could not be told the agent is going: {e}",
                        r.cloud_url
                    ));
                    out.fix = Some(format!(
                        "{} Nothing was removed. Run uninstall again when the cloud is reachable, or add --force to remove locally anyway.",
                        e.fix()
                    ));
                    return out;
                }
            }
        }
        _ => step(
            &mut out,
            "cloud",
            Ok("no enrolled agent on this machine: nothing to tell the cloud".into()),
        ),
    }

    // 2. The service.
    if let Some(unit) = &layout.unit {
        let unit_path = layout.real(unit);
        if unit_path.exists() {
            let mut verb = vec!["disable", "--quiet"];
            if layout.prefix.is_none() && service::systemd_running() {
                verb.push("--now");
            }
            let (line, r) = service::run_command(
                "systemctl",
                &service::systemctl_args(&layout, &verb),
                Duration::from_secs(60),
            );
            out.commands.push(line);
            let removed =
                r.and_then(|()| std::fs::remove_file(&unit_path).map_err(|e| e.to_string()));
            if removed.is_ok() && layout.prefix.is_none() && service::systemd_running() {
                let (line, _) = service::run_command(
                    "systemctl",
                    &["daemon-reload".to_string()],
                    Duration::from_secs(60),
                );
                out.commands.push(line);
            }
            step(
                &mut out,
                "service",
                removed.map(|()| format!("stopped, disabled, {} removed", unit_path.display())),
            );
        } else {
            step(&mut out, "service", Ok("no service unit installed".into()));
        }
    } else {
        #[cfg(windows)]
        {
            let def = service::ServiceDef::new(&layout);
            let r = if layout.prefix.is_some() {
                Ok("staged install: no service registered".into())
            } else {
                service::scm::remove(&def).map(|()| "stopped and removed".to_string())
            };
            step(&mut out, "service", r);
            if layout.prefix.is_none() {
                let (line, r) = service::run_command(
                    "reg",
                    &service::event_source_delete(),
                    Duration::from_secs(30),
                );
                out.commands.push(line);
                // Absent already (an install from before the source existed) is fine.
                let present = service::run_command(
                    "reg",
                    &["query".to_string(), service::EVENT_SOURCE_KEY.to_string()],
                    Duration::from_secs(30),
                )
                .1
                .is_ok();
                step(
                    &mut out,
                    "event_source",
                    match (r, present) {
                        (_, false) => Ok("the Application event log source is removed".into()),
                        (Err(e), true) => Err(e),
                        (Ok(()), true) => Err(format!(
                            "{} is still there; remove it with `reg delete {} /f`",
                            service::EVENT_SOURCE_KEY,
                            service::EVENT_SOURCE_KEY
                        )),
                    },
                );
            }
        }
    }

    // 3. Secrets and the enrollment record.
    for name in crate::secrets::ALL {
        let r = store
            .remove(name)
            .map(|()| format!("{} removed", store.path(name).display()));
        step(&mut out, name, r.map_err(|e| e.to_string()));
    }
    // Only when empty: anything else in it was not ours.
    let _ = std::fs::remove_dir(store.dir());
    let rec = layout.real(&layout.enrollment);
    step(
        &mut out,
        "enrollment record",
        remove(&rec).map(|()| format!("{} removed", rec.display())),
    );

    // 4. The program copy the installer made (never a packaged one: that is the package's).
    let exe = layout.real(&layout.agent_exe);
    let own = opts.source_dir.join(exe.file_name().unwrap_or_default());
    let packaged = matches!((exe.canonicalize(), own.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if exe.exists() && !packaged {
        step(
            &mut out,
            "program",
            remove(&exe).map(|()| format!("{} removed", exe.display())),
        );
        // Only when empty: anything else in it was not ours.
        let _ = std::fs::remove_dir(layout.real(&layout.program_dir));
    }

    // 5. The agent's state (its mirror and cursor belong to this enrollment; a state set aside
    //    from an older one goes too). Kept with the config: it stays bound to this enrollment.
    let state_dir = layout.real(&layout.state_dir);
    if opts.keep_config {
        step(
            &mut out,
            "state",
            Ok(format!("{} kept (--keep-config)", state_dir.display())),
        );
    } else {
        let files: Vec<PathBuf> = std::fs::read_dir(&state_dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("state.db"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let r = files.iter().try_for_each(|f| remove(f));
        step(
            &mut out,
            "state",
            r.map(|()| format!("{} removed ({} files)", state_dir.display(), files.len())),
        );
        // Only when empty: anything else in it was not ours.
        let _ = std::fs::remove_dir(&state_dir);
    }

    // 6. The config.
    if opts.keep_config {
        step(
            &mut out,
            "config",
            Ok(format!(
                "{} kept (--keep-config)",
                layout.real(&layout.config).display()
            )),
        );
    } else {
        let config = layout.real(&layout.config);
        let mut files = vec![
            config.clone(),
            layout.real(&layout.ca_copy("dc")),
            layout.real(&layout.ca_copy("cloud")),
        ];
        files.extend(super::config::backups(&config));
        let r = files.iter().try_for_each(|f| remove(f));
        step(
            &mut out,
            "config",
            r.map(|()| format!("{} and its backups removed", config.display())),
        );
        // Only when empty: anything else in it was not ours.
        let _ = std::fs::remove_dir(layout.real(&layout.config_dir));
    }
    out
}

fn remove(path: &std::path::Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("{}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}
