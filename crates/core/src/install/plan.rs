//! The install plan, the one source of truth about what an install does: typed steps built by a
//! pure function (`Plan::build`) from the answers, the options and the facts gathered before it
//! (`Facts`: what is installed, whether the agent program is already in place, the clock).
//! `prepare` gathers and builds, for the command line, the wizard's worker and the Review
//! page's preview alike; `apply` carries the steps out as they say, re-deciding nothing.
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
        let has = |name: &str| store.has(name);
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

/// A CA certificate an install keeps a copy of beside the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ca {
    /// `[ldap] ca_file`: the DC's.
    Dc,
    /// `[cloud] ca_file`: the cloud's.
    Cloud,
}

impl Ca {
    pub const ALL: [Ca; 2] = [Ca::Dc, Ca::Cloud];

    /// Its name in the layout (`dc`, `cloud`).
    pub fn as_str(self) -> &'static str {
        match self {
            Ca::Dc => "dc",
            Ca::Cloud => "cloud",
        }
    }

    /// The answers' field that names it.
    pub fn field(self) -> &'static str {
        match self {
            Ca::Dc => "[ldap] ca_file",
            Ca::Cloud => "[cloud] ca_file",
        }
    }
}

/// A step's stable id: what `install --json` prints and the pages key on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepId {
    Program,
    Folders,
    CaDc,
    CaCloud,
    SecretPassword,
    SecretProxyPassword,
    AgentKey,
    Config,
    ServiceUnit,
    ServiceEnable,
    ServiceRegister,
    Enroll,
    ServiceStart,
}

impl StepId {
    pub fn as_str(self) -> &'static str {
        match self {
            StepId::Program => "program",
            StepId::Folders => "folders",
            StepId::CaDc => "ca.dc",
            StepId::CaCloud => "ca.cloud",
            StepId::SecretPassword => "secret.password",
            StepId::SecretProxyPassword => "secret.proxy_password",
            StepId::AgentKey => "agent.key",
            StepId::Config => "config",
            StepId::ServiceUnit => "service.unit",
            StepId::ServiceEnable => "service.enable",
            StepId::ServiceRegister => "service.register",
            StepId::Enroll => "enroll",
            StepId::ServiceStart => "service.start",
        }
    }
}

impl Serialize for StepId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One step and everything `apply` needs to carry it out.
#[derive(Debug, Clone)]
pub enum Step {
    /// Copy the agent program, unless the installer runs from the installed one.
    Program {
        from: PathBuf,
        to: PathBuf,
        in_place: bool,
    },
    /// The config folder and the secret store's (owner only).
    Folders,
    /// Keep a copy of a CA file where the service can read it.
    CaCopy {
        ca: Ca,
        from: PathBuf,
        to: PathBuf,
    },
    /// The service account's password into the secret store.
    ServiceAccountPassword,
    /// The `[cloud] proxy` password into the secret store.
    ProxyPassword,
    /// The agent's key pair, and the enrollment recorded as pending.
    AgentKey,
    /// The config, naming the CA copies it has; the current one kept as `backup`.
    Config {
        path: PathBuf,
        cas: Vec<Ca>,
        backup: Option<PathBuf>,
    },
    /// The systemd unit, with credentials for the CA copies.
    ServiceUnit {
        path: PathBuf,
        cas: Vec<Ca>,
    },
    ServiceEnable,
    ServiceRegister,
    /// Enroll with the connect key (`resume`: finish an interrupted enrollment with it).
    Enroll {
        resume: bool,
    },
    /// Start the service (`restart` on an upgrade).
    ServiceStart {
        restart: bool,
    },
}

impl Step {
    pub fn id(&self) -> StepId {
        match self {
            Step::Program { .. } => StepId::Program,
            Step::Folders => StepId::Folders,
            Step::CaCopy { ca: Ca::Dc, .. } => StepId::CaDc,
            Step::CaCopy { ca: Ca::Cloud, .. } => StepId::CaCloud,
            Step::ServiceAccountPassword => StepId::SecretPassword,
            Step::ProxyPassword => StepId::SecretProxyPassword,
            Step::AgentKey => StepId::AgentKey,
            Step::Config { .. } => StepId::Config,
            Step::ServiceUnit { .. } => StepId::ServiceUnit,
            Step::ServiceEnable => StepId::ServiceEnable,
            Step::ServiceRegister => StepId::ServiceRegister,
            Step::Enroll { .. } => StepId::Enroll,
            Step::ServiceStart { .. } => StepId::ServiceStart,
        }
    }
}

/// One step as shown: its id, a title and what exactly it does.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub id: StepId,
    #[serde(skip)]
    pub step: Step,
    pub title: String,
    pub detail: String,
    /// Whether a failure of a later local step undoes this one.
    pub undoable: bool,
}

/// What an install's plan is built from besides the answers and options: read from the machine
/// once, by `Facts::gather`, so that building the plan is pure.
#[derive(Debug, Clone)]
pub struct Facts {
    pub existing: Existing,
    /// The installer runs from the installed agent's folder (the program is in place).
    pub program_in_place: bool,
    /// A config is installed already (it is kept as a backup).
    pub config_exists: bool,
    /// When the plan is made (names the config's backup).
    pub now: time::OffsetDateTime,
    /// How this machine can keep the secrets at rest.
    pub protection: crate::secrets::Protection,
}

impl Facts {
    pub fn gather(layout: &Layout, opts: &Options) -> Facts {
        Facts {
            existing: Existing::detect(layout),
            program_in_place: same_file(&opts.agent_source(), &layout.real(&layout.agent_exe)),
            config_exists: layout.real(&layout.config).exists(),
            now: time::OffsetDateTime::now_utc(),
            protection: crate::secrets::Protection::detect(),
        }
    }
}

/// What an install will do, and what it was decided from.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub facts: Facts,
    pub plan: Plan,
}

/// Gathers the facts and builds the plan: the one way the command line, the wizard's worker
/// and the Review page's preview come to a plan.
pub fn prepare(answers: &Answers, opts: &Options) -> Prepared {
    let facts = Facts::gather(&layout(answers, opts), opts);
    let plan = Plan::build(answers, &facts, opts);
    Prepared { facts, plan }
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub mode: Mode,
    pub layout: Layout,
    pub service: ServiceDef,
    /// Where the secrets go and how they are protected, in words (the Review and Finish pages
    /// say it).
    pub secret_store: String,
    /// How the secrets are kept at rest.
    pub protection: crate::secrets::Protection,
    /// The agent's id when it is enrolled already (upgrade).
    pub agent_id: Option<String>,
    /// The config names a proxy user: the service is handed the stored proxy password.
    pub proxy_password: bool,
    /// Whether the service is started at the end, and if not why.
    pub start: bool,
    pub not_started_because: Option<String>,
    pub steps: Vec<PlannedStep>,
    /// On Windows: who may do what with each folder and file the install creates (the
    /// descriptors the folders and program steps set, evaluated by the access model).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<super::access::Statement>,
}

/// The systemd unit an install writes: the CA copies `cas`, and the proxy's password when the
/// config names a proxy user.
pub fn unit_text(
    layout: &Layout,
    cas: &[Ca],
    proxy_password: bool,
    protection: crate::secrets::Protection,
) -> String {
    let cas: Vec<&str> = cas.iter().map(|c| c.as_str()).collect();
    let optional: &[&str] = if proxy_password {
        &[crate::secrets::PROXY_PASSWORD]
    } else {
        &[]
    };
    super::service::systemd_unit(layout, &cas, optional, protection)
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

/// The CA file the answers give for `ca`, resolved.
pub fn ca_source(answers: &Answers, ca: Ca) -> Option<PathBuf> {
    let given = match ca {
        Ca::Dc => answers.ldap.ca_file.as_ref(),
        Ca::Cloud => answers.cloud.as_ref().and_then(|c| c.ca_file.as_ref()),
    };
    given.map(|p| answers.path(p))
}

pub fn secret_store_words(layout: &Layout, protection: crate::secrets::Protection) -> String {
    let dir = layout.secrets_dir.display();
    if cfg!(windows) {
        format!(
            "{} (files in {dir}, readable only by SYSTEM, Administrators and the service's own account NT SERVICE\\ad-sync-agent)",
            protection.words()
        )
    } else {
        format!("{}, in {dir}", protection.words())
    }
}

impl Plan {
    /// The plan for `answers` on a machine as `facts` found it. Pure.
    pub fn build(answers: &Answers, facts: &Facts, opts: &Options) -> Plan {
        let existing = &facts.existing;
        let layout = layout(answers, opts);
        let service = ServiceDef::new(&layout);
        let mut steps = Vec::new();
        let mut step = |step: Step, title: &str, detail: String, undoable| {
            steps.push(PlannedStep {
                id: step.id(),
                step,
                title: title.to_string(),
                detail,
                undoable,
            })
        };
        let real = |p: &Path| layout.real(p).display().to_string();
        let source = opts.agent_source();
        let cas: Vec<Ca> = Ca::ALL
            .into_iter()
            .filter(|&ca| ca_source(answers, ca).is_some())
            .collect();
        step(
            Step::Program {
                from: source.clone(),
                to: layout.real(&layout.agent_exe),
                in_place: facts.program_in_place,
            },
            "Install the agent program",
            if facts.program_in_place {
                format!("{} is already in place", real(&layout.agent_exe))
            } else {
                format!("copy {} to {}", source.display(), real(&layout.agent_exe))
            },
            true,
        );
        step(
            Step::Folders,
            "Create the configuration folders",
            format!(
                "{} and {} (the secret store, owner only)",
                real(&layout.config_dir),
                real(&layout.secrets_dir)
            ),
            true,
        );
        for &ca in &cas {
            let Some(from) = ca_source(answers, ca) else {
                continue;
            };
            let to = layout.real(&layout.ca_copy(ca.as_str()));
            let detail = format!(
                "copy {} to {} as PEM (the service cannot read home folders)",
                from.display(),
                to.display()
            );
            step(
                Step::CaCopy { ca, from, to },
                match ca {
                    Ca::Dc => "Keep the DC's CA certificate",
                    Ca::Cloud => "Keep the cloud's CA certificate",
                },
                detail,
                true,
            );
        }
        step(
            Step::ServiceAccountPassword,
            "Store the service account's password",
            format!(
                "{} ({})",
                real(&layout.secrets_dir.join(format!(
                    "{}{}",
                    crate::secrets::SERVICE_ACCOUNT_PASSWORD,
                    facts.protection.suffix()
                ))),
                match (facts.protection, cfg!(windows)) {
                    (crate::secrets::Protection::SystemdCreds, _) =>
                        "encrypted by systemd-creds, 0600",
                    (crate::secrets::Protection::Dpapi, _) =>
                        "encrypted by DPAPI; ACL: SYSTEM, Administrators, the service",
                    (_, true) => "ACL: SYSTEM, Administrators, the service",
                    (_, false) => "0600",
                }
            ),
            true,
        );
        let proxy = answers.cloud.as_ref();
        let proxy_password = proxy.is_some_and(|c| c.proxy.is_some() && c.proxy_username.is_some());
        if proxy.is_some_and(|c| {
            c.proxy_password.is_some()
                || c.proxy_password_file.is_some()
                || c.proxy_password_env.is_some()
        }) {
            step(
                Step::ProxyPassword,
                "Store the proxy's password",
                format!(
                    "{} (as the service account's)",
                    real(&layout.secrets_dir.join(format!(
                        "{}{}",
                        crate::secrets::PROXY_PASSWORD,
                        facts.protection.suffix()
                    )))
                ),
                true,
            );
        }
        if existing.mode == Mode::Fresh {
            step(
                Step::AgentKey,
                "Make the agent's key pair",
                format!(
                    "X25519; the private half to {}, the public half goes to the cloud at enrollment",
                    real(&layout.secrets_dir.join(format!(
                        "{}{}",
                        crate::secrets::AGENT_PRIVATE_KEY,
                        facts.protection.suffix()
                    )))
                ),
                true,
            );
        }
        let config_path = layout.real(&layout.config);
        let backup = facts
            .config_exists
            .then(|| super::config::backup_path(&config_path, facts.now));
        let detail = match &backup {
            Some(b) => format!(
                "{} (0600), the current one kept as {}",
                config_path.display(),
                b.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            None => format!("{} (0600)", config_path.display()),
        };
        step(
            Step::Config {
                path: config_path,
                cas: cas.clone(),
                backup,
            },
            "Write the configuration",
            detail,
            true,
        );
        if let Some(unit) = &layout.unit {
            step(
                Step::ServiceUnit {
                    path: layout.real(unit),
                    cas: cas.clone(),
                },
                "Write the service unit",
                format!("{} (hardened; runs {})", real(unit), service.command_line()),
                true,
            );
            step(
                Step::ServiceEnable,
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
                Step::ServiceRegister,
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
                Step::Enroll { resume: false },
                "Enroll the agent with the cloud",
                format!(
                    "{cloud}: uses the connect key up; the agent's credential goes to the secret store"
                ),
                false,
            ),
            Mode::Resume => step(
                Step::Enroll { resume: true },
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
            let restart = existing.mode == Mode::Upgrade;
            step(
                Step::ServiceStart { restart },
                if restart {
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
            secret_store: secret_store_words(&layout, facts.protection),
            protection: facts.protection,
            start: not_started_because.is_none(),
            not_started_because,
            agent_id,
            proxy_password,
            // The plan's own descriptors, which its tests parse: an error here is a bug, and
            // the statement is then left out rather than guessed.
            access: if cfg!(windows) && layout.prefix.is_none() {
                super::access::statement(&layout, service.name).unwrap_or_default()
            } else if layout.unit.is_some() {
                // From the very unit the install writes, and the modes it sets.
                let unit = unit_text(&layout, &cas, proxy_password, facts.protection);
                super::access_linux::statement(&layout, &unit)
            } else {
                Vec::new()
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(cas: bool) -> Answers {
        let mut text = include_str!("../../../../assets/answers.example.toml").to_string();
        if cas {
            text = text
                .replace(
                    "# ca_file = \"/etc/ad-sync/dc-ca.pem\"",
                    "ca_file = \"dc.pem\"",
                )
                .replace(
                    "# ca_file = \"/etc/ad-sync/cloud-ca.pem\"",
                    "ca_file = \"cloud.pem\"",
                );
        }
        Answers::parse(&text, PathBuf::from("/home/admin"))
            .unwrap_or_else(|e| panic!("the example answers: {e}"))
    }

    fn facts(mode: Mode, program_in_place: bool, config_exists: bool) -> Facts {
        let record = (mode != Mode::Fresh).then(|| Record {
            state: if mode == Mode::Upgrade {
                State::Enrolled
            } else {
                State::Pending
            },
            agent_id: (mode == Mode::Upgrade).then(|| "agent-7".to_string()),
            cloud_url: "https://cloud.example.com".into(),
            domain: "DC=example,DC=com".into(),
            public_key: "pk".into(),
            updated_at: "2026-12-01T00:00:00Z".into(),
        });
        Facts {
            existing: Existing {
                mode,
                record,
                config: None,
                notes: Vec::new(),
            },
            program_in_place,
            config_exists,
            // 2026-12-02 07:30:00 UTC.
            now: time::OffsetDateTime::from_unix_timestamp(1796196600)
                .unwrap_or_else(|e| panic!("{e}")),
            protection: crate::secrets::Protection::SystemdCreds,
        }
    }

    fn opts(prefix: Option<&str>, no_start: bool) -> Options {
        Options {
            config: PathBuf::from("/etc/ad-sync/agent.toml"),
            prefix: prefix.map(PathBuf::from),
            no_start,
            source_dir: PathBuf::from("/media/installer"),
            elevated: true,
        }
    }

    fn ids(plan: &Plan) -> Vec<&'static str> {
        plan.steps.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn the_steps_for_each_machine_and_option() {
        let (unit, service) = if cfg!(windows) {
            (&[][..], &["service.register"][..])
        } else {
            (&["service.unit", "service.enable"][..], &[][..])
        };
        let local = |cas: bool, key: bool| {
            let mut v = vec!["program", "folders"];
            if cas {
                v.extend(["ca.dc", "ca.cloud"]);
            }
            v.push("secret.password");
            if key {
                v.push("agent.key");
            }
            v.push("config");
            v.extend(unit);
            v.extend(service);
            v
        };
        // (what, mode, CA files, --prefix, --no-start, the steps after the local ones)
        type Case = (
            &'static str,
            Mode,
            bool,
            Option<&'static str>,
            bool,
            &'static [&'static str],
        );
        let cases: &[Case] = &[
            (
                "fresh",
                Mode::Fresh,
                false,
                None,
                false,
                &["enroll", "service.start"],
            ),
            (
                "fresh with CA files",
                Mode::Fresh,
                true,
                None,
                false,
                &["enroll", "service.start"],
            ),
            (
                "resume",
                Mode::Resume,
                false,
                None,
                false,
                &["enroll", "service.start"],
            ),
            (
                "upgrade",
                Mode::Upgrade,
                false,
                None,
                false,
                &["service.start"],
            ),
            (
                "staged",
                Mode::Fresh,
                false,
                Some("/tmp/stage"),
                false,
                &["enroll"],
            ),
            ("not started", Mode::Fresh, false, None, true, &["enroll"]),
            (
                "upgrade, not started",
                Mode::Upgrade,
                false,
                None,
                true,
                &[],
            ),
        ];
        for &(what, mode, cas, prefix, no_start, tail) in cases {
            let plan = Plan::build(
                &answers(cas),
                &facts(mode, false, false),
                &opts(prefix, no_start),
            );
            let mut want = local(cas, mode == Mode::Fresh);
            want.extend(tail);
            assert_eq!(ids(&plan), want, "{what}");
            assert_eq!(plan.start, !no_start && prefix.is_none(), "{what}");
            assert_eq!(plan.mode, mode);
            // Every local step can be undone; enrollment and the start cannot.
            for s in &plan.steps {
                let local = !matches!(s.step, Step::Enroll { .. } | Step::ServiceStart { .. });
                assert_eq!(s.undoable, local, "{what}: {}", s.id.as_str());
            }
        }
    }

    #[test]
    fn each_step_carries_what_apply_needs() {
        let plan = Plan::build(
            &answers(true),
            &facts(Mode::Upgrade, true, true),
            &opts(None, false),
        );
        assert_eq!(plan.agent_id.as_deref(), Some("agent-7"));
        for s in &plan.steps {
            match &s.step {
                Step::Program { in_place, .. } => {
                    assert!(in_place);
                    assert!(s.detail.ends_with("is already in place"), "{}", s.detail);
                }
                Step::CaCopy { ca, from, to } => {
                    assert_eq!(
                        from,
                        &PathBuf::from(format!("/home/admin/{}.pem", ca.as_str()))
                    );
                    assert!(to.ends_with(super::super::layout::ca_name(ca.as_str())));
                }
                Step::Config { path, cas, backup } => {
                    assert_eq!(path, &PathBuf::from("/etc/ad-sync/agent.toml"));
                    assert_eq!(cas, &vec![Ca::Dc, Ca::Cloud]);
                    let backup = backup.as_ref().unwrap_or_else(|| panic!("no backup named"));
                    let name = backup.file_name().map(|n| n.to_string_lossy().into_owned());
                    assert!(
                        s.detail.contains(name.as_deref().unwrap_or("?")),
                        "{}",
                        s.detail
                    );
                    assert!(name.unwrap_or_default().contains("20261202"), "{backup:?}");
                }
                Step::ServiceUnit { cas, .. } => assert_eq!(cas.len(), 2),
                Step::ServiceStart { restart } => {
                    assert!(restart);
                    assert_eq!(s.title, "Restart the service");
                }
                Step::Enroll { .. } => panic!("an upgrade does not enroll"),
                _ => {}
            }
        }
        // A fresh machine: the program is copied, no backup is named, enrollment uses the key.
        let plan = Plan::build(
            &answers(false),
            &facts(Mode::Fresh, false, false),
            &opts(None, false),
        );
        for s in &plan.steps {
            match &s.step {
                Step::Program { from, in_place, .. } => {
                    assert!(!in_place);
                    assert!(from.starts_with("/media/installer"));
                }
                Step::Config { backup, cas, .. } => {
                    assert!(backup.is_none());
                    assert!(cas.is_empty());
                }
                Step::Enroll { resume } => assert!(!resume),
                _ => {}
            }
        }
    }

    #[test]
    fn the_json_names_each_step_by_its_stable_id() {
        let plan = Plan::build(
            &answers(false),
            &facts(Mode::Resume, false, false),
            &opts(None, false),
        );
        let json = serde_json::to_value(&plan).unwrap_or_else(|e| panic!("{e}"));
        let steps = json["steps"].as_array().cloned().unwrap_or_default();
        assert_eq!(steps.len(), plan.steps.len());
        assert_eq!(steps[0]["id"], "program");
        assert!(
            steps
                .iter()
                .any(|s| s["id"] == "enroll" && s["undoable"] == false)
        );
        assert_eq!(json["mode"], "resume");
    }
}
