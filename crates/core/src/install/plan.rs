//! The install plan: pure data built from validated answers and what is already installed. The
//! Review page and `install --json` show it; `apply` carries it out step by step.
//!
//! Its order is what makes a failure lose nothing: every local step first (each can be undone),
//! then enrollment (which uses the connect key up), then starting the service.

use super::enrollment::{Record, State};
use super::layout::Layout;
use super::service::ServiceDef;
use crate::answers::Answers;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What the command line or the wizard asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The config's installed path (`/etc/ad-sync/agent.toml` unless `--config`).
    pub config: PathBuf,
    /// Stage every path under this folder instead of `/`.
    pub prefix: Option<PathBuf>,
    /// Write and register the service, but do not start it.
    pub no_start: bool,
    /// The folder holding the `ad-sync-agent` program to install (the installer's own).
    pub source_dir: PathBuf,
    /// Whether this process may write system folders and register services.
    pub elevated: bool,
}

impl Options {
    pub fn new(config: PathBuf) -> Options {
        let source_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        Options {
            config,
            prefix: None,
            no_start: false,
            source_dir,
            elevated: super::layout::elevated(),
        }
    }

    pub fn agent_source(&self) -> PathBuf {
        self.source_dir.join(if cfg!(windows) {
            "ad-sync-agent.exe"
        } else {
            "ad-sync-agent"
        })
    }
}

/// What is on this machine already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Nothing installed (or only files from a run that stopped before making the agent's key).
    Fresh,
    /// A run stopped after making the agent's key, perhaps after the cloud enrolled it: the
    /// same connect key finishes the enrollment.
    Resume,
    /// An enrolled agent: its identity and enrollment are kept, no connect key is needed.
    Upgrade,
}

/// What `detect` found.
#[derive(Debug, Clone)]
pub struct Existing {
    pub mode: Mode,
    pub record: Option<Record>,
    /// The installed config's service account and cloud, when there is one.
    pub config: Option<Answers>,
    /// Problems reading what is there (shown, never fatal for a fresh install).
    pub notes: Vec<String>,
}

impl Existing {
    pub fn detect(layout: &Layout) -> Existing {
        let mut notes = Vec::new();
        let record = Record::read(&layout.real(&layout.enrollment)).unwrap_or_else(|e| {
            notes.push(e);
            None
        });
        let store = layout.store();
        let has = |name: &str| store.path(name).is_file();
        let config_path = layout.real(&layout.config);
        let config = if config_path.is_file() {
            match super::config::read_installed(&config_path) {
                Ok(i) => {
                    notes.extend(i.migrated);
                    Some(i.answers)
                }
                Err(e) => {
                    notes.push(e);
                    None
                }
            }
        } else {
            None
        };
        let mode = match &record {
            Some(r)
                if r.state == State::Enrolled
                    && has(crate::secrets::AGENT_CREDENTIAL)
                    && has(crate::secrets::AGENT_PRIVATE_KEY) =>
            {
                Mode::Upgrade
            }
            Some(_) if has(crate::secrets::AGENT_PRIVATE_KEY) => Mode::Resume,
            _ => Mode::Fresh,
        };
        Existing {
            mode,
            record,
            config,
            notes,
        }
    }
}

/// One step as shown: a stable id, a title and what exactly it does.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub id: &'static str,
    pub title: String,
    pub detail: String,
    /// Whether a failure of a later local step undoes this one.
    pub undoable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub mode: Mode,
    pub layout: Layout,
    pub service: ServiceDef,
    /// Where the secrets go, in words (the Review and Finish pages say it).
    pub secret_store: String,
    /// The agent's id when it is enrolled already (upgrade).
    pub agent_id: Option<String>,
    /// Whether the service is started at the end, and if not why.
    pub start: bool,
    pub not_started_because: Option<String>,
    pub steps: Vec<PlannedStep>,
}

/// The layout an install of `answers` with `opts` uses.
pub fn layout(answers: &Answers, opts: &Options) -> Layout {
    let dir = answers
        .install
        .as_ref()
        .map(|i| answers.path(&i.dir))
        .unwrap_or_else(super::layout::default_program_dir);
    Layout::new(&opts.config, &dir, opts.prefix.as_deref())
}

/// The CA files an install keeps copies of beside the config: `dc` and `cloud`.
pub const CAS: [&str; 2] = ["dc", "cloud"];

/// The CA file the answers give for `which` (`dc` or `cloud`), resolved, and its field name.
pub fn ca_source(answers: &Answers, which: &str) -> Option<(PathBuf, &'static str)> {
    let (given, field) = match which {
        "dc" => (answers.ldap.ca_file.as_ref(), "[ldap] ca_file"),
        _ => (
            answers.cloud.as_ref().and_then(|c| c.ca_file.as_ref()),
            "[cloud] ca_file",
        ),
    };
    given.map(|p| (answers.path(p), field))
}

pub fn secret_store_words(layout: &Layout) -> String {
    let dir = layout.secrets_dir.display();
    if cfg!(windows) {
        format!(
            "files in {dir}, readable only by SYSTEM, Administrators and the service's own account (NT SERVICE\\ad-sync-agent)"
        )
    } else {
        format!(
            "root-only files (0600) in {dir}; systemd hands the service copies only it can read (LoadCredential=)"
        )
    }
}

impl Plan {
    pub fn build(answers: &Answers, existing: &Existing, opts: &Options) -> Plan {
        let layout = layout(answers, opts);
        let service = ServiceDef::new(&layout);
        let mut steps = Vec::new();
        let mut step = |id, title: &str, detail: String, undoable| {
            steps.push(PlannedStep {
                id,
                title: title.to_string(),
                detail,
                undoable,
            })
        };
        let real = |p: &Path| layout.real(p).display().to_string();
        let source = opts.agent_source();
        step(
            "program",
            "Install the agent program",
            if same_file(&source, &layout.real(&layout.agent_exe)) {
                format!("{} is already in place", real(&layout.agent_exe))
            } else {
                format!("copy {} to {}", source.display(), real(&layout.agent_exe))
            },
            true,
        );
        step(
            "folders",
            "Create the configuration folders",
            format!(
                "{} and {} (the secret store, owner only)",
                real(&layout.config_dir),
                real(&layout.secrets_dir)
            ),
            true,
        );
        for which in CAS {
            if let Some((from, _)) = ca_source(answers, which) {
                step(
                    if which == "dc" { "ca.dc" } else { "ca.cloud" },
                    if which == "dc" {
                        "Keep the DC's CA certificate"
                    } else {
                        "Keep the cloud's CA certificate"
                    },
                    format!(
                        "copy {} to {} (the service cannot read home folders)",
                        from.display(),
                        real(&layout.ca_copy(which))
                    ),
                    true,
                );
            }
        }
        step(
            "secret.password",
            "Store the service account's password",
            format!(
                "{} ({})",
                real(
                    &layout
                        .secrets_dir
                        .join(crate::secrets::SERVICE_ACCOUNT_PASSWORD)
                ),
                if cfg!(windows) {
                    "ACL: SYSTEM, Administrators, the service"
                } else {
                    "0600"
                }
            ),
            true,
        );
        if existing.mode == Mode::Fresh {
            step(
                "agent.key",
                "Make the agent's key pair",
                format!(
                    "X25519; the private half to {}, the public half goes to the cloud at enrollment",
                    real(&layout.secrets_dir.join(crate::secrets::AGENT_PRIVATE_KEY))
                ),
                true,
            );
        }
        let config_path = layout.real(&layout.config);
        step(
            "config",
            "Write the configuration",
            if config_path.exists() {
                format!(
                    "{} (0600), the current one kept as {}",
                    config_path.display(),
                    super::config::backup_path(&config_path, time::OffsetDateTime::now_utc())
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                )
            } else {
                format!("{} (0600)", config_path.display())
            },
            true,
        );
        if let Some(unit) = &layout.unit {
            step(
                "service.unit",
                "Write the service unit",
                format!("{} (hardened; runs {})", real(unit), service.command_line()),
                true,
            );
            step(
                "service.enable",
                "Enable the service at boot",
                format!(
                    "systemctl{} enable {}.service",
                    opts.prefix
                        .as_ref()
                        .map(|p| format!(" --root={}", p.display()))
                        .unwrap_or_default(),
                    service.name
                ),
                true,
            );
        } else {
            step(
                "service.register",
                "Register the Windows service",
                format!(
                    "{} ({}, {}; on failure: {})",
                    service.display_name, service.start, service.account, service.on_failure
                ),
                true,
            );
        }
        let agent_id = existing
            .record
            .as_ref()
            .filter(|_| existing.mode == Mode::Upgrade)
            .and_then(|r| r.agent_id.clone());
        let cloud = answers
            .cloud
            .as_ref()
            .and_then(|c| c.url.clone())
            .unwrap_or_default();
        match existing.mode {
            Mode::Fresh => step(
                "enroll",
                "Enroll the agent with the cloud",
                format!(
                    "{cloud}: uses the connect key up; the agent's credential goes to the secret store"
                ),
                false,
            ),
            Mode::Resume => step(
                "enroll",
                "Finish the interrupted enrollment",
                format!("{cloud}: the same connect key and the stored key pair resume it"),
                false,
            ),
            Mode::Upgrade => {}
        }
        let not_started_because = if opts.prefix.is_some() {
            Some(
                "--prefix stages the files; the staging root is not this machine's running system"
                    .to_string(),
            )
        } else if opts.no_start {
            Some("--no-start".to_string())
        } else {
            None
        };
        if not_started_because.is_none() {
            step(
                "service.start",
                if existing.mode == Mode::Upgrade {
                    "Restart the service"
                } else {
                    "Start the service"
                },
                if layout.unit.is_some() {
                    format!(
                        "systemctl daemon-reload, then systemctl restart {}.service",
                        service.name
                    )
                } else {
                    format!("start {} through the Service Control Manager", service.name)
                },
                false,
            );
        }
        Plan {
            mode: existing.mode,
            secret_store: secret_store_words(&layout),
            start: not_started_because.is_none(),
            not_started_because,
            agent_id,
            service,
            layout,
            steps,
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
