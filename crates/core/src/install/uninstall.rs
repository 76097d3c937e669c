//! `ad-sync-setup uninstall [--keep-config] [--force] [--dry-run]`: the install's mirror image.
//!
//! Read once what is on the machine (`Facts::read`), decide the removal as data
//! (`plan`, pure and table-tested), then carry it out step by step (`execute`) with the same
//! progress and the same honest report as the install: what each step removed, and what it
//! could not. `--dry-run` prints the plan and removes nothing.
//!
//! The order, and why:
//! 1. The cloud is told first: its credential stops working and the agent gives up the primary
//!    role. When the cloud cannot be reached nothing is removed (the agent would otherwise stay
//!    listed, and primary, with no machine behind it), unless `--force` (the MSI's removal uses
//!    it: Apps & features must be able to remove the product; what it could not do is reported).
//! 2. The service is stopped and removed (systemd unit, or the SCM's service and the Windows
//!    event log source), so nothing runs with what follows gone.
//! 3. The secrets, the enrollment record, the program copy the installer made (never a packaged
//!    one: that is the package's) and the agent's state (its mirror and cursor belong to the
//!    enrollment just ended; states set aside from older ones go too).
//! 4. The config, its backups and CA copies, unless `--keep-config`.

use super::enrollment::Record;
use super::layout::Layout;
use super::service;
use crate::cloud::client::{CloudClient, CloudError, CloudOptions};
use serde::Serialize;
use std::path::{Path, PathBuf};
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

/// What is on the machine, read before anything is removed.
#[derive(Debug, Clone)]
pub struct Facts {
    pub layout: Layout,
    pub record: Option<Record>,
    /// The agent's credential is in the store (the cloud can be told with it).
    pub has_credential: bool,
    /// The cloud CA file the installed config names.
    pub cloud_ca: Option<PathBuf>,
    /// How the installed agent reaches the cloud (`[cloud] proxy` and its stored password).
    pub route: crate::cloud::client::Route,
    /// Linux: the unit file exists.
    pub unit_exists: bool,
    /// Windows: the service is registered with the SCM.
    pub service_registered: bool,
    /// The agent program the installer copied (None when absent, or the packaged one).
    pub program_copy: Option<PathBuf>,
    /// `state.db*` in the state folder (the current state and states set aside), and the
    /// agent's cycle lock (`state.lock`).
    pub state_files: Vec<PathBuf>,
    /// The config, its backups and CA copies that exist.
    pub config_files: Vec<PathBuf>,
}

impl Facts {
    pub fn read(opts: &UninstallOptions) -> Facts {
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
        let cloud_ca = installed.as_ref().and_then(|i| {
            i.answers
                .cloud
                .as_ref()
                .and_then(|c| c.ca_file.as_ref())
                .map(|p| i.answers.path(p))
        });
        let exe = layout.real(&layout.agent_exe);
        let own = opts.source_dir.join(exe.file_name().unwrap_or_default());
        let packaged = matches!((exe.canonicalize(), own.canonicalize()), (Ok(a), Ok(b)) if a == b);
        let state_dir = layout.real(&layout.state_dir);
        let mut state_files: Vec<PathBuf> = std::fs::read_dir(&state_dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("state.db") || n == "state.lock")
                    })
                    .collect()
            })
            .unwrap_or_default();
        state_files.sort();
        let config = layout.real(&layout.config);
        let mut config_files = vec![
            config.clone(),
            layout.real(&layout.ca_copy("dc")),
            layout.real(&layout.ca_copy("cloud")),
        ];
        config_files.extend(super::config::backups(&config));
        config_files.retain(|p| p.exists());
        let route = installed
            .as_ref()
            .map(|i| {
                i.answers
                    .cloud_route(store.read(crate::secrets::PROXY_PASSWORD).ok())
            })
            .unwrap_or(crate::cloud::client::Route::Direct);
        Facts {
            route,
            has_credential: store.has(crate::secrets::AGENT_CREDENTIAL),
            unit_exists: layout
                .unit
                .as_ref()
                .is_some_and(|u| layout.real(u).exists()),
            service_registered: service_registered(&layout),
            program_copy: (exe.exists() && !packaged).then_some(exe),
            record,
            cloud_ca,
            state_files,
            config_files,
            layout,
        }
    }
}

#[cfg(windows)]
fn service_registered(layout: &Layout) -> bool {
    layout.prefix.is_none() && service::scm::exists(&service::ServiceDef::new(layout))
}

#[cfg(not(windows))]
fn service_registered(_: &Layout) -> bool {
    false
}

/// One removal, as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Removal {
    /// Tell the cloud the agent is gone.
    Deregister {
        agent_id: Option<String>,
        cloud: String,
    },
    /// Linux: stop and disable the unit, delete its file.
    ServiceUnit {
        unit: PathBuf,
        live: bool,
    },
    /// Windows: stop the service and delete it from the SCM.
    WindowsService {
        name: String,
    },
    /// Windows: the Application event log source.
    EventSource {
        key: String,
    },
    Secret {
        name: String,
        path: PathBuf,
    },
    Enrollment {
        record: PathBuf,
    },
    Program {
        exe: PathBuf,
    },
    State {
        dir: PathBuf,
        files: Vec<PathBuf>,
    },
    Config {
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedRemoval {
    /// The step's id in reports (`cloud`, `service`, `event_source`, a secret's name,
    /// `enrollment record`, `program`, `state`, `config`).
    pub what: String,
    pub title: String,
    pub detail: String,
    pub removal: Removal,
}

#[derive(Debug, Clone, Serialize)]
pub struct UninstallPlan {
    pub agent_id: Option<String>,
    pub steps: Vec<PlannedRemoval>,
    /// What is left in place, and why.
    pub kept: Vec<String>,
}

/// The removal, decided from the facts alone.
pub fn plan(facts: &Facts, opts: &UninstallOptions) -> UninstallPlan {
    let layout = &facts.layout;
    let mut steps = Vec::new();
    let mut kept = Vec::new();
    let mut add = |what: &str, title: &str, detail: String, removal: Removal| {
        steps.push(PlannedRemoval {
            what: what.into(),
            title: title.into(),
            detail,
            removal,
        })
    };
    match (&facts.record, facts.has_credential) {
        (Some(r), true) => add(
            "cloud",
            "Deregister the agent",
            format!(
                "tell {} that agent {} is gone{}",
                r.cloud_url,
                r.agent_id.as_deref().unwrap_or("?"),
                if opts.force {
                    " (--force: go on locally if it cannot be reached)"
                } else {
                    "; nothing is removed if it cannot be reached"
                }
            ),
            Removal::Deregister {
                agent_id: r.agent_id.clone(),
                cloud: r.cloud_url.clone(),
            },
        ),
        _ => kept
            .push("no enrolled agent on this machine: there is nothing to tell the cloud".into()),
    }
    if let Some(unit) = &layout.unit {
        let unit = layout.real(unit);
        if facts.unit_exists {
            let live = layout.prefix.is_none();
            add(
                "service",
                "Remove the service",
                format!("stop and disable the unit, delete {}", unit.display()),
                Removal::ServiceUnit { unit, live },
            );
        } else {
            kept.push("no service unit is installed".into());
        }
    } else if layout.prefix.is_none() {
        if facts.service_registered {
            add(
                "service",
                "Remove the service",
                format!("stop {} and delete it", super::layout::SERVICE_NAME),
                Removal::WindowsService {
                    name: super::layout::SERVICE_NAME.into(),
                },
            );
        } else {
            kept.push(format!(
                "no {} service is registered",
                super::layout::SERVICE_NAME
            ));
        }
        add(
            "event_source",
            "Remove the event log source",
            format!("delete {}", service::EVENT_SOURCE_KEY),
            Removal::EventSource {
                key: service::EVENT_SOURCE_KEY.into(),
            },
        );
    }
    let store = layout.store();
    for &name in crate::secrets::ALL.iter().chain(&crate::secrets::OPTIONAL) {
        add(
            name,
            "Remove a secret",
            format!("{name} from {}", store.dir().display()),
            Removal::Secret {
                name: name.into(),
                path: store.path(name),
            },
        );
    }
    let record = layout.real(&layout.enrollment);
    add(
        "enrollment record",
        "Remove the enrollment record",
        format!("delete {}", record.display()),
        Removal::Enrollment { record },
    );
    match &facts.program_copy {
        Some(exe) => add(
            "program",
            "Remove the agent program",
            format!("delete the copy the installer made, {}", exe.display()),
            Removal::Program { exe: exe.clone() },
        ),
        None => kept.push(
            "the agent program: none was copied by the installer (a package's program goes with the package)"
                .into(),
        ),
    }
    let state_dir = layout.real(&layout.state_dir);
    add(
        "state",
        "Remove the agent's state",
        format!(
            "{} file(s) in {} (the mirror and cursor of the enrollment being ended)",
            facts.state_files.len(),
            state_dir.display()
        ),
        Removal::State {
            dir: state_dir,
            files: facts.state_files.clone(),
        },
    );
    let config = layout.real(&layout.config);
    if opts.keep_config {
        kept.push(format!(
            "{} and its backups (--keep-config)",
            config.display()
        ));
    } else {
        add(
            "config",
            "Remove the config",
            format!(
                "{} with its backups and CA copies ({} file(s))",
                config.display(),
                facts.config_files.len()
            ),
            Removal::Config {
                files: facts.config_files.clone(),
            },
        );
    }
    UninstallPlan {
        agent_id: facts.record.as_ref().and_then(|r| r.agent_id.clone()),
        steps,
        kept,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub what: String,
    pub title: String,
    pub ok: bool,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UninstallOutcome {
    /// True when everything asked for was removed.
    pub complete: bool,
    pub agent_id: Option<String>,
    pub plan: UninstallPlan,
    pub steps: Vec<Removed>,
    pub error: Option<String>,
    pub fix: Option<String>,
    pub commands: Vec<String>,
}

/// Removes the install (see the module's words) and records what it did in the setup log.
/// `progress` is called after each step with the reports so far.
pub fn uninstall(
    opts: &UninstallOptions,
    progress: &mut dyn FnMut(&[Removed]),
) -> UninstallOutcome {
    let facts = Facts::read(opts);
    let plan = plan(&facts, opts);
    let out = execute(&facts, plan, opts, progress);
    super::setup_log::append(
        &facts.layout,
        if opts.keep_config {
            "uninstall --keep-config"
        } else {
            "uninstall"
        },
        &super::setup_log::uninstall_lines(&out),
    );
    out
}

/// Carries out `plan`, in order. Only the cloud's refusal stops it (before anything is removed);
/// every other step that fails is reported and the rest still run.
pub fn execute(
    facts: &Facts,
    plan: UninstallPlan,
    opts: &UninstallOptions,
    progress: &mut dyn FnMut(&[Removed]),
) -> UninstallOutcome {
    let mut out = UninstallOutcome {
        complete: true,
        agent_id: plan.agent_id.clone(),
        plan: plan.clone(),
        steps: Vec::new(),
        error: None,
        fix: None,
        commands: Vec::new(),
    };
    for step in &plan.steps {
        let r = match &step.removal {
            Removal::Deregister { agent_id, cloud } => {
                match deregister(facts, opts, agent_id.as_deref(), cloud) {
                    Ok(r) => r,
                    Err((error, fix)) => {
                        out.complete = false;
                        out.error = Some(error);
                        out.fix = Some(fix);
                        return out;
                    }
                }
            }
            Removal::ServiceUnit { unit, live } => {
                remove_unit(&facts.layout, unit, *live, &mut out.commands)
            }
            Removal::WindowsService { .. } => remove_windows_service(&facts.layout),
            Removal::EventSource { .. } => remove_event_source(&mut out.commands),
            Removal::Secret { name, path } => facts
                .layout
                .store()
                .remove(name)
                .map(|()| format!("{} removed", path.display()))
                .map_err(|e| e.to_string()),
            Removal::Enrollment { record } => {
                remove(record).map(|()| format!("{} removed", record.display()))
            }
            Removal::Program { exe } => {
                let r = remove(exe).map(|()| format!("{} removed", exe.display()));
                // Only when empty: anything else in it was not ours.
                let _ = std::fs::remove_dir(facts.layout.real(&facts.layout.program_dir));
                r
            }
            Removal::State { dir, files } => {
                let r = files.iter().try_for_each(|f| remove(f));
                // The folder is the agent's alone: what the stopping agent wrote after the
                // facts were read (a journal, a lock) goes too. A service's process can hold a
                // file for a moment after the SCM says it stopped: asked again for up to 10 s.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                let gone = loop {
                    let _ = std::fs::remove_dir_all(dir);
                    if !dir.exists() {
                        break true;
                    }
                    if std::time::Instant::now() >= deadline {
                        break false;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(250));
                };
                r.and_then(|()| {
                    if gone {
                        Ok(format!("{} removed ({} files)", dir.display(), files.len()))
                    } else {
                        Err(format!(
                            "{} could not be removed (a file in it is in use); remove it by hand once the agent has exited",
                            dir.display()
                        ))
                    }
                })
            }
            Removal::Config { files } => {
                let config = facts.layout.real(&facts.layout.config);
                let r = files.iter().try_for_each(|f| remove(f));
                let _ = std::fs::remove_dir(facts.layout.real(&facts.layout.config_dir));
                r.map(|()| format!("{} and its backups removed", config.display()))
            }
        };
        if matches!(step.removal, Removal::Secret { .. }) {
            // Only when empty: anything else in it was not ours.
            let _ = std::fs::remove_dir(facts.layout.store().dir());
        }
        let ok = r.is_ok();
        out.complete &= ok;
        out.steps.push(Removed {
            what: step.what.clone(),
            title: step.title.clone(),
            ok,
            message: r.unwrap_or_else(|e| e),
        });
        progress(&out.steps);
    }
    out
}

fn deregister(
    facts: &Facts,
    opts: &UninstallOptions,
    agent_id: Option<&str>,
    cloud: &str,
) -> Result<Result<String, String>, (String, String)> {
    let store = facts.layout.store();
    let credential = store
        .read(crate::secrets::AGENT_CREDENTIAL)
        .map_err(|e| CloudError::Connect(format!("the agent's credential: {e}")));
    let told = credential.and_then(|c| {
        let client = CloudClient::new(&CloudOptions {
            url: cloud.to_string(),
            ca_file: facts.cloud_ca.clone(),
            timeout: Duration::from_secs(10),
            route: facts.route.clone(),
        })?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CloudError::Connect(e.to_string()))?
            .block_on(client.deregister(&c))
    });
    let id = agent_id.unwrap_or("?");
    match told {
        Ok(()) => Ok(Ok(format!("agent {id} deregistered at {cloud}"))),
        Err(CloudError::Api { code, .. }) if code == "unauthorized" => Ok(Ok(
            "the cloud no longer knows this agent's credential (already deregistered)".into(),
        )),
        Err(e) if opts.force => Ok(Err(format!(
            "not told ({e}); --force: removing locally anyway. Remove agent {id} in the cloud console."
        ))),
        Err(e) => Err((
            format!("the cloud at {cloud} could not be told the agent is going: {e}"),
            format!(
                "{} Nothing was removed. Run uninstall again when the cloud is reachable, or add --force to remove locally anyway.",
                e.fix()
            ),
        )),
    }
}

fn remove_unit(
    layout: &Layout,
    unit: &Path,
    live: bool,
    commands: &mut Vec<String>,
) -> Result<String, String> {
    let mut verb = vec!["disable", "--quiet"];
    let running = live && service::systemd_running();
    if running {
        verb.push("--now");
    }
    let (line, r) = service::run_command(
        "systemctl",
        &service::systemctl_args(layout, &verb),
        Duration::from_secs(60),
    );
    commands.push(line);
    let removed = r.and_then(|()| std::fs::remove_file(unit).map_err(|e| e.to_string()));
    if removed.is_ok() && running {
        let (line, _) = service::run_command(
            "systemctl",
            &["daemon-reload".to_string()],
            Duration::from_secs(60),
        );
        commands.push(line);
    }
    removed.map(|()| format!("stopped, disabled, {} removed", unit.display()))
}

#[cfg(windows)]
fn remove_windows_service(layout: &Layout) -> Result<String, String> {
    service::scm::remove(&service::ServiceDef::new(layout)).map(|()| "stopped and removed".into())
}

#[cfg(not(windows))]
fn remove_windows_service(_: &Layout) -> Result<String, String> {
    Err("no Windows service manager here".into())
}

fn remove_event_source(commands: &mut Vec<String>) -> Result<String, String> {
    let (line, r) = service::run_command(
        "reg",
        &service::event_source_delete(),
        Duration::from_secs(30),
    );
    commands.push(line);
    // Absent already (an install from before the source existed) is fine.
    let present = service::run_command(
        "reg",
        &["query".to_string(), service::EVENT_SOURCE_KEY.to_string()],
        Duration::from_secs(30),
    )
    .1
    .is_ok();
    match (r, present) {
        (_, false) => Ok("the Application event log source is removed".into()),
        (Err(e), true) => Err(e),
        (Ok(()), true) => Err(format!(
            "{} is still there; remove it with `reg delete {} /f`",
            service::EVENT_SOURCE_KEY,
            service::EVENT_SOURCE_KEY
        )),
    }
}

fn remove(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("{}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::enrollment::State as EnrollState;

    fn layout(windows_like: bool) -> Layout {
        let mut l = Layout::new(
            Path::new("/etc/ad-sync/agent.toml"),
            Path::new("/opt/ad-sync"),
            None,
        );
        if windows_like {
            l.unit = None;
        }
        l
    }

    fn record(cloud_url: &str) -> Record {
        Record {
            state: EnrollState::Enrolled,
            agent_id: Some("agt-1".into()),
            cloud_url: cloud_url.into(),
            domain: "DC=example,DC=com".into(),
            public_key: String::new(),
            updated_at: String::new(),
        }
    }

    fn facts(windows_like: bool) -> Facts {
        Facts {
            layout: layout(windows_like),
            record: Some(record("https://cloud.example")),
            has_credential: true,
            cloud_ca: None,
            route: crate::cloud::client::Route::Direct,
            unit_exists: true,
            service_registered: true,
            program_copy: None,
            state_files: vec![PathBuf::from("/var/lib/ad-sync/state.db")],
            config_files: vec![PathBuf::from("/etc/ad-sync/agent.toml")],
        }
    }

    fn opts(keep_config: bool, force: bool) -> UninstallOptions {
        UninstallOptions {
            config: "/etc/ad-sync/agent.toml".into(),
            prefix: None,
            keep_config,
            force,
            source_dir: "/opt/ad-sync".into(),
        }
    }

    fn whats(p: &UninstallPlan) -> Vec<&str> {
        p.steps.iter().map(|s| s.what.as_str()).collect()
    }

    #[test]
    fn the_plan_mirrors_the_install_in_the_order_that_leaves_nothing_running_on_what_is_gone() {
        let secrets: Vec<&str> = crate::secrets::ALL
            .iter()
            .chain(&crate::secrets::OPTIONAL)
            .copied()
            .collect();
        let tail = ["enrollment record", "state", "config"];
        let linux: Vec<&str> = ["cloud", "service"]
            .into_iter()
            .chain(secrets.iter().copied())
            .chain(tail)
            .collect();
        let windows: Vec<&str> = ["cloud", "service", "event_source"]
            .into_iter()
            .chain(secrets.iter().copied())
            .chain(tail)
            .collect();
        let cases: Vec<(&str, Facts, UninstallOptions, Vec<&str>, usize)> = vec![
            (
                "linux, everything",
                facts(false),
                opts(false, false),
                linux.clone(),
                1,
            ),
            (
                "windows, everything",
                facts(true),
                opts(false, false),
                windows,
                1,
            ),
            (
                "--keep-config keeps only the config",
                facts(false),
                opts(true, false),
                linux[..linux.len() - 1].to_vec(),
                2,
            ),
            (
                "no enrollment: the cloud is not told",
                Facts {
                    record: None,
                    ..facts(false)
                },
                opts(false, false),
                linux[1..].to_vec(),
                2,
            ),
            (
                "no credential: the cloud cannot be told",
                Facts {
                    has_credential: false,
                    ..facts(false)
                },
                opts(false, false),
                linux[1..].to_vec(),
                2,
            ),
            (
                "no unit: nothing to stop",
                Facts {
                    unit_exists: false,
                    ..facts(false)
                },
                opts(false, false),
                linux.iter().copied().filter(|w| *w != "service").collect(),
                2,
            ),
            (
                "the installer's program copy goes",
                Facts {
                    program_copy: Some("/opt/ad-sync/ad-sync-agent".into()),
                    ..facts(false)
                },
                opts(false, false),
                {
                    let mut v = linux.clone();
                    v.insert(v.len() - 2, "program");
                    v
                },
                0,
            ),
        ];
        for (name, f, o, want, kept) in cases {
            let p = plan(&f, &o);
            assert_eq!(whats(&p), want, "{name}");
            assert_eq!(p.kept.len(), kept, "{name}: {:?}", p.kept);
        }
    }

    #[test]
    fn state_goes_even_when_the_config_is_kept_and_force_is_said_in_the_cloud_step() {
        let p = plan(&facts(false), &opts(true, true));
        let state = p.steps.iter().find(|s| s.what == "state");
        assert!(
            matches!(state.map(|s| &s.removal), Some(Removal::State { files, .. }) if files.len() == 1)
        );
        assert!(p.kept.iter().any(|k| k.contains("--keep-config")));
        assert!(
            p.steps[0].detail.contains("--force"),
            "{}",
            p.steps[0].detail
        );
        let json = serde_json::to_value(&p).unwrap_or_default();
        assert_eq!(json["steps"][0]["removal"]["kind"], "deregister");
        assert_eq!(json["steps"][0]["removal"]["agent_id"], "agt-1");
    }

    #[test]
    fn a_cloud_that_cannot_be_told_stops_everything_unless_forced() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config = dir.path().join("etc/ad-sync/agent.toml");
        std::fs::create_dir_all(config.parent().unwrap_or(dir.path()))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&config, "x").unwrap_or_else(|e| panic!("{e}"));
        let mut f = facts(false);
        f.layout = Layout::new(
            Path::new("/etc/ad-sync/agent.toml"),
            Path::new("/opt/ad-sync"),
            Some(dir.path()),
        );
        f.unit_exists = false;
        f.config_files = vec![config.clone()];
        // Nothing listens here: the cloud cannot be told.
        f.record = Some(record("https://127.0.0.1:9"));
        std::fs::create_dir_all(f.layout.store().dir()).unwrap_or_else(|e| panic!("{e}"));
        f.layout
            .store()
            .write(
                crate::secrets::AGENT_CREDENTIAL,
                &crate::secret::Secret::new("c".repeat(32)),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let o = UninstallOptions {
            prefix: Some(dir.path().to_path_buf()),
            ..opts(false, false)
        };
        let out = execute(&f, plan(&f, &o), &o, &mut |_| {});
        assert!(out.error.is_some() && out.steps.is_empty(), "{out:?}");
        assert!(config.is_file(), "nothing removed");
        let o = UninstallOptions { force: true, ..o };
        let mut seen = 0;
        let out = execute(&f, plan(&f, &o), &o, &mut |s| seen = s.len());
        assert!(out.error.is_none(), "{out:?}");
        assert!(!out.complete, "the cloud step is reported as not done");
        assert!(!out.steps[0].ok && out.steps[0].message.contains("--force"));
        assert!(out.steps[1..].iter().all(|s| s.ok), "{out:?}");
        assert_eq!(seen, out.steps.len(), "progress after every step");
        assert!(!config.exists(), "removed locally");
    }
}
