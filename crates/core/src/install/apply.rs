//! Carrying out a plan, step by step, with progress. Every local step records how to undo itself;
//! when a step before enrollment fails (or the admin cancels), the recorded undos run in reverse
//! and the machine is as it was. Enrollment uses the connect key up, so after it nothing is
//! undone: a failure then says what to do, and a re-run finishes the job (the enrollment record
//! and the stored key pair let it resume instead of asking for a new key).

use super::access_linux;
use super::enrollment::{Record, State};
use super::plan::{Ca, Plan, Step, StepId};
use super::{fsops, service};
use crate::answers::Answers;
use crate::cloud::client::{CloudClient, CloudError, CloudOptions};
use crate::secret::Secret;
use crate::secrets::{AGENT_CREDENTIAL, AGENT_PRIVATE_KEY, SERVICE_ACCOUNT_PASSWORD};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Done,
    Failed,
    /// Done, then undone because a later step failed.
    RolledBack,
    /// Done, then its undo failed: the message says what is left and how to remove it.
    NotUndone,
    /// Not run, because an earlier step failed.
    NotRun,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub id: StepId,
    pub title: String,
    pub detail: String,
    pub status: StepStatus,
    /// What happened, or why it failed and what to do.
    pub message: String,
}

impl StepReport {
    /// A planned step that has not run yet.
    pub fn pending(step: &super::plan::PlannedStep) -> StepReport {
        StepReport {
            id: step.id,
            title: step.title.clone(),
            detail: step.detail.clone(),
            status: StepStatus::Pending,
            message: String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Result_ {
    /// Everything done.
    Installed,
    /// A step failed before enrollment; everything was undone; the key is unused.
    RolledBack,
    /// Enrolled (the key is used), but a later step failed: re-run to finish.
    Incomplete,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub result: Result_,
    pub steps: Vec<StepReport>,
    pub agent_id: Option<String>,
    /// The failure in one line, and what to do.
    pub error: Option<String>,
    pub fix: Option<String>,
    /// Every service-manager command line run (none holds a secret).
    pub commands: Vec<String>,
    /// The agent as the cloud sees it, after the install (when it could be asked).
    pub cloud_view: Option<crate::cloud::api::AgentSelf>,
    pub cloud_view_error: Option<String>,
}

impl Outcome {
    /// True unless a rollback left something behind (a step marked `NotUndone`).
    pub fn fully_undone(&self) -> bool {
        !self.steps.iter().any(|s| s.status == StepStatus::NotUndone)
    }
}

/// Asked from another thread: stop before the next step (and abandon a request in flight).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How to undo one local change.
enum Undo {
    /// Folders this run created, deepest last.
    RemoveDirs(Vec<PathBuf>),
    /// Put a file back as it was (`None`: it did not exist).
    Restore {
        path: PathBuf,
        previous: Option<Zeroizing<Vec<u8>>>,
        mode: Option<u32>,
    },
    /// `systemctl disable` (the service was not enabled before).
    Disable,
    /// Remove the Windows service (it did not exist before).
    #[cfg_attr(not(windows), allow(dead_code))]
    Unregister,
    /// Remove the agent's Application event log source (it did not exist before).
    #[cfg_attr(not(windows), allow(dead_code))]
    RemoveEventSource,
    /// Put a folder's owner and DACL back as they were (SDDL).
    #[cfg_attr(not(windows), allow(dead_code))]
    RestoreSecurity { path: PathBuf, sddl: String },
}

struct Run<'a> {
    plan: &'a Plan,
    answers: &'a Answers,
    cancel: &'a Cancel,
    reports: Vec<StepReport>,
    /// Each undo with the index of the step that recorded it.
    undo: Vec<(usize, Undo)>,
    /// The step running now (its undos are recorded under it).
    current: usize,
    commands: Vec<String>,
    agent_id: Option<String>,
    credential: Option<Secret>,
}

/// Why a step failed: the message (naming what and what to do) and whether the connect key may
/// have been used (enrollment's answer lost on the way back).
struct StepError {
    message: String,
    fix: String,
    key_maybe_used: bool,
}

fn err(message: impl Into<String>, fix: impl Into<String>) -> StepError {
    StepError {
        message: message.into(),
        fix: fix.into(),
        key_maybe_used: false,
    }
}

/// Test hook for the kill-at-every-step test: `AD_SYNC_INSTALL_FAULT=stop-after:<step>` (or
/// `stop-after:enroll-answered`, between the cloud's answer and storing the credential) makes
/// the installer stop itself (SIGSTOP) at that point, so the test can SIGKILL it there.
fn fault_point(name: &str) {
    crate::fault::point("AD_SYNC_INSTALL_FAULT", name);
}

/// Applies `plan`. `progress` sees every step's status each time one changes.
pub fn apply(
    plan: &Plan,
    answers: &Answers,
    cancel: &Cancel,
    progress: &mut dyn FnMut(&[StepReport]),
) -> Outcome {
    let mut run = Run {
        plan,
        answers,
        cancel,
        reports: plan.steps.iter().map(StepReport::pending).collect(),
        undo: Vec::new(),
        current: 0,
        commands: Vec::new(),
        agent_id: plan.agent_id.clone(),
        credential: None,
    };
    // Set once this run's enrollment succeeded (the key is used from then on). An upgrade's
    // enrollment is older than this run: its local steps are undone like a fresh install's.
    let mut enrolled = false;
    let mut failure: Option<StepError> = None;
    for (i, planned) in plan.steps.iter().enumerate() {
        let id = planned.id;
        if cancel.is_cancelled() && !enrolled && id != StepId::ServiceStart {
            failure = Some(err(
                "the install was cancelled",
                "Nothing was kept; run it again when ready.",
            ));
            break;
        }
        run.reports[i].status = StepStatus::Running;
        run.current = i;
        progress(&run.reports);
        match run.step(&planned.step) {
            Ok(message) => {
                run.reports[i].status = StepStatus::Done;
                run.reports[i].message = message;
                if id == StepId::Enroll {
                    enrolled = true;
                }
                progress(&run.reports);
                fault_point(id.as_str());
            }
            Err(e) => {
                run.reports[i].status = StepStatus::Failed;
                run.reports[i].message = format!("{} {}", e.message, e.fix);
                progress(&run.reports);
                failure = Some(e);
                break;
            }
        }
    }
    for r in run.reports.iter_mut() {
        if r.status == StepStatus::Pending {
            r.status = StepStatus::NotRun;
        }
    }
    let failed_at_start = run
        .reports
        .iter()
        .any(|r| r.id == StepId::ServiceStart && r.status == StepStatus::Failed);
    let result = match &failure {
        None => Result_::Installed,
        Some(e) if enrolled || e.key_maybe_used || failed_at_start => Result_::Incomplete,
        Some(_) => {
            let left = run.roll_back(progress);
            if !left.is_empty()
                && let Some(f) = failure.as_mut()
            {
                f.fix = format!(
                    "{} Not everything could be undone; remove by hand: {}.",
                    f.fix,
                    left.join("; ")
                );
            }
            Result_::RolledBack
        }
    };
    progress(&run.reports);
    let (cloud_view, cloud_view_error) = match (&run.credential, result) {
        (Some(c), Result_::Installed | Result_::Incomplete) => match run.cloud_view(c) {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        },
        _ => (None, None),
    };
    Outcome {
        result,
        agent_id: run.agent_id.clone(),
        error: failure.as_ref().map(|e| e.message.clone()),
        fix: failure.map(|e| e.fix),
        steps: run.reports,
        commands: run.commands,
        cloud_view,
        cloud_view_error,
    }
}

impl Run<'_> {
    fn layout(&self) -> &super::layout::Layout {
        &self.plan.layout
    }

    fn real(&self, p: &Path) -> PathBuf {
        self.layout().real(p)
    }

    /// Carries out one step as the plan describes it.
    fn step(&mut self, step: &Step) -> Result<String, StepError> {
        match step {
            Step::Program { from, to, in_place } => self.program(from, to, *in_place),
            Step::Folders => self.folders(),
            Step::CaCopy { ca, from, to } => self.ca(*ca, from, to),
            Step::ServiceAccountPassword => {
                let password = self.answers.password().map_err(|e| {
                    err(
                        e,
                        "Give the password in the answers file (password_file or password_env).",
                    )
                })?;
                self.secret(SERVICE_ACCOUNT_PASSWORD, &password)
            }
            Step::ProxyPassword => match self.answers.proxy_password() {
                Ok(Some(p)) => self.secret(crate::secrets::PROXY_PASSWORD, &p),
                Ok(None) => Err(err(
                    "[cloud] proxy_password is not given",
                    "Give the proxy's password in the answers file (proxy_password_file or proxy_password_env).",
                )),
                Err(e) => Err(err(
                    e,
                    "Give the proxy's password in the answers file (proxy_password_file or proxy_password_env).",
                )),
            },
            Step::AgentKey => self.agent_key(),
            Step::Config { path, cas, backup } => self.config(path, cas, backup.as_deref()),
            Step::ServiceUnit { path, cas } => self.unit(path, cas),
            Step::ServiceEnable => self.enable(),
            Step::ServiceRegister => self.register(),
            // Whether it resumes is the cloud's to say (the stored key pair and the same key).
            Step::Enroll { resume: _ } => self.enroll(),
            Step::ServiceStart { restart: _ } => self.start(),
        }
    }

    /// Records how to undo a change of the step running now.
    fn record(&mut self, undo: Undo) {
        self.undo.push((self.current, undo));
    }

    /// Writes a file, remembering what was there for a rollback.
    fn write(&mut self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), StepError> {
        let previous = std::fs::read(path).ok().map(Zeroizing::new);
        let old_mode = fsops::mode_of(path);
        fsops::write_atomic(path, bytes, mode).map_err(|e| io_err(path, &e))?;
        self.record(Undo::Restore {
            path: path.to_path_buf(),
            previous,
            mode: old_mode,
        });
        Ok(())
    }

    fn dirs(&mut self, dir: &Path, mode: u32) -> Result<(), StepError> {
        let made = fsops::create_dirs(dir, mode).map_err(|e| io_err(dir, &e))?;
        if !made.is_empty() {
            self.record(Undo::RemoveDirs(made));
        }
        Ok(())
    }

    fn program(
        &mut self,
        source: &Path,
        target: &Path,
        in_place: bool,
    ) -> Result<String, StepError> {
        let dir = self.real(&self.layout().program_dir);
        #[cfg(windows)]
        if self.plan.layout.prefix.is_none() {
            let installed = self.layout().program_dir.clone();
            self.claim(&installed)?;
        }
        self.dirs(&dir, access_linux::PROGRAM_MODE)?;
        #[cfg(windows)]
        if self.plan.layout.prefix.is_none() {
            let installed = self.layout().program_dir.clone();
            self.secure(&installed)?;
        }
        if in_place {
            return Ok(format!("{} is already in place", target.display()));
        }
        let previous = std::fs::read(target).ok().map(Zeroizing::new);
        let old_mode = fsops::mode_of(target);
        fsops::copy_atomic(source, target, access_linux::PROGRAM_MODE).map_err(|e| {
            err(
                format!("copying the agent program {} to {}: {e}", source.display(), target.display()),
                "Check that the folder is writable and that the agent program is beside ad-sync-setup.",
            )
        })?;
        self.record(Undo::Restore {
            path: target.to_path_buf(),
            previous,
            mode: old_mode,
        });
        Ok(format!("{} installed", target.display()))
    }

    fn folders(&mut self) -> Result<String, StepError> {
        let config_dir = self.real(&self.layout().config_dir);
        let secrets = self.real(&self.layout().secrets_dir);
        #[cfg(windows)]
        if self.plan.layout.prefix.is_none() {
            // Each folder is made with its owner and protected DACL in one call, or, when it
            // exists, taken only if Administrators or SYSTEM own it: before anything is
            // written in it.
            let layout = self.layout().clone();
            for dir in [
                &layout.config_dir,
                &layout.secrets_dir,
                &layout.state_dir,
                &layout.log_dir,
            ] {
                self.claim(dir)?;
            }
        }
        self.dirs(&config_dir, access_linux::CONFIG_DIR_MODE)?;
        self.dirs(&secrets, access_linux::SECRETS_DIR_MODE)?;
        // An existing store folder may have been loosened by hand: tighten it again.
        fsops::set_mode(&secrets, access_linux::SECRETS_DIR_MODE)
            .map_err(|e| io_err(&secrets, &e))?;
        #[cfg(windows)]
        if self.plan.layout.prefix.is_none() {
            // On Windows the agent's state and logs live here too, and the service (not an
            // administrator) writes them: they exist from the install on, with the access
            // the plan states.
            let layout = self.layout().clone();
            for dir in [&layout.state_dir, &layout.log_dir] {
                self.dirs(dir, 0o755)?;
            }
            for dir in [
                &layout.config_dir,
                &layout.state_dir,
                &layout.log_dir,
                &layout.secrets_dir,
            ] {
                self.secure(dir)?;
            }
            return Ok(format!(
                "{}, its state, logs and secrets folders, each readable only by SYSTEM, Administrators and the service (which may change only its state and logs)",
                config_dir.display()
            ));
        }
        Ok(format!(
            "{} and {}",
            config_dir.display(),
            secrets.display()
        ))
    }

    /// The descriptor the access plan gives an installed path, when it gives one.
    #[cfg(windows)]
    fn planned_sddl(&self, path: &Path) -> Option<String> {
        super::access::plan(self.layout(), self.plan.service.name)
            .into_iter()
            .find(|p| p.path == path)
            .and_then(|p| p.sddl)
    }

    /// Makes the folder `path` (an installed path) with the owner and protected DACL the plan
    /// decides, in one call; an existing one is taken only when Administrators, SYSTEM or
    /// TrustedInstaller own it (`access::judge_existing`). Under Wine, which keeps no ACLs and
    /// makes every file the Wine user's, the owner cannot be judged: it is only made.
    #[cfg(windows)]
    fn claim(&mut self, path: &Path) -> Result<(), StepError> {
        let Some(sddl) = self.planned_sddl(path) else {
            return Ok(());
        };
        let real = self.real(path);
        if real.exists() {
            if super::winsec::is_wine() {
                return Ok(());
            }
            let current = super::winsec::get(&real).map_err(|e| {
                err(
                    e,
                    "Run the setup as Administrator; if the folder was made by someone else, remove it first.",
                )
            })?;
            return super::access::judge_existing(&real, &current)
                .map_err(|e| err(e, "Remove the folder (after checking what is in it) and run the setup again as Administrator."));
        }
        if let Some(parent) = real.parent() {
            self.dirs(parent, 0o755)?;
        }
        match super::winsec::create_dir(&real, &sddl) {
            Ok(true) => {
                self.record(Undo::RemoveDirs(vec![real]));
                Ok(())
            }
            // Made in between by someone else: judged as any existing folder.
            Ok(false) => self.claim(path),
            Err(e) => Err(err(
                e,
                "Run the setup as Administrator (making a folder owned by Administrators needs it).",
            )),
        }
    }

    /// Sets the owner and DACL the plan decides for `path` (an installed path), keeping the
    /// old ones to put back on a rollback.
    #[cfg(windows)]
    fn secure(&mut self, path: &Path) -> Result<(), StepError> {
        let Some(sddl) = self.planned_sddl(path) else {
            return Ok(());
        };
        let real = self.real(path);
        if let Ok(previous) = super::winsec::get(&real) {
            self.record(Undo::RestoreSecurity {
                path: real.clone(),
                sddl: previous,
            });
        }
        super::winsec::set(&real, &sddl).map_err(|e| {
            err(
                e,
                "Run the setup as Administrator; if the folder was made by someone else, remove it first.",
            )
        })
    }

    fn ca(&mut self, ca: Ca, from: &Path, to: &Path) -> Result<String, StepError> {
        let read = crate::directory::cert::load_ca_file(from).map_err(|e| {
            err(
                format!("{} {e}", ca.field()),
                "Check the path; the checks read it a moment ago.",
            )
        })?;
        self.write(to, read.to_pem().as_bytes(), 0o644)?;
        Ok(format!(
            "{} written as PEM from {} ({})",
            to.display(),
            from.display(),
            read.describe()
        ))
    }

    fn store(&self) -> crate::secrets::FileStore {
        self.layout().store().with_protection(self.plan.protection)
    }

    fn secret(&mut self, name: &str, value: &Secret) -> Result<String, StepError> {
        let store = self.store();
        let path = store.path(name);
        // Every form it may be in now (a clear file becomes an encrypted one): each is put back.
        let before: Vec<_> = store
            .all_paths(name)
            .into_iter()
            .map(|p| {
                let previous = std::fs::read(&p).ok().map(Zeroizing::new);
                let mode = fsops::mode_of(&p);
                (p, previous, mode)
            })
            .collect();
        let written = store.write(name, value);
        for (path, previous, mode) in before {
            self.record(Undo::Restore {
                path,
                previous,
                mode,
            });
        }
        written.map_err(|e| io_err(&path, &e))?;
        Ok(format!(
            "{} written (0600, {})",
            path.display(),
            match self.plan.protection {
                crate::secrets::Protection::File => "not encrypted",
                crate::secrets::Protection::SystemdCreds => "encrypted by systemd-creds",
                crate::secrets::Protection::Dpapi => "encrypted by DPAPI",
            }
        ))
    }

    fn domain(&self) -> String {
        crate::dn::Dn::parse(&self.answers.directory.root_user_dn)
            .ok()
            .and_then(|p| p.dn.domain_dn())
            .map(|d| d.to_comma_form())
            .unwrap_or_default()
    }

    fn cloud_url(&self) -> String {
        self.answers
            .cloud
            .as_ref()
            .and_then(|c| c.url.clone())
            .unwrap_or_default()
    }

    fn agent_key(&mut self) -> Result<String, StepError> {
        let pair = crate::cloud::sealed::generate_key_pair();
        self.secret(AGENT_PRIVATE_KEY, &pair.secret_key)?;
        let record = Record {
            state: State::Pending,
            agent_id: None,
            cloud_url: self.cloud_url(),
            domain: self.domain(),
            public_key: pair.public_key,
            updated_at: now(),
        };
        let path = self.real(&self.layout().enrollment);
        self.write(&path, record.text().as_bytes(), access_linux::CONFIG_MODE)?;
        Ok("key pair made; the enrollment is recorded as pending".into())
    }

    fn config(
        &mut self,
        path: &Path,
        cas: &[Ca],
        backup: Option<&Path>,
    ) -> Result<String, StepError> {
        // Named relative to the config, so the copies travel with it: beside it on disk, and
        // beside it in systemd's credentials folder at run time.
        let copy = |ca: Ca| {
            cas.contains(&ca)
                .then(|| PathBuf::from(super::layout::ca_name(ca.as_str())))
        };
        let (dc_ca, cloud_ca) = (copy(Ca::Dc), copy(Ca::Cloud));
        let mut answers = self.answers.clone();
        answers.install = Some(crate::answers::Install {
            dir: self.layout().program_dir.clone(),
        });
        let text = super::config::render(&answers, dc_ca.as_deref(), cloud_ca.as_deref());
        let mut kept = String::new();
        if let Ok(current) = std::fs::read(path) {
            if current == text.as_bytes() {
                return Ok(format!("{} is already current", path.display()));
            }
            // The plan names the backup when it saw a config. One that appeared after the plan
            // was made (another install at the same moment) is kept too, named from the time
            // now: it is never overwritten unsaved.
            let backup = backup.map_or_else(
                || super::config::backup_path(path, time::OffsetDateTime::now_utc()),
                Path::to_path_buf,
            );
            self.write(&backup, &current, 0o600)?;
            kept = format!("; the previous one kept as {}", backup.display());
            let old = super::config::backups(path);
            if old.len() > super::config::BACKUPS_KEPT {
                for p in &old[..old.len() - super::config::BACKUPS_KEPT] {
                    // Best effort: an old backup left behind is only clutter, never wrong.
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        self.write(path, text.as_bytes(), access_linux::CONFIG_MODE)?;
        Ok(format!("{} written (0600){kept}", path.display()))
    }

    fn unit(&mut self, path: &Path, cas: &[Ca]) -> Result<String, StepError> {
        if let Some(dir) = path.parent() {
            self.dirs(dir, 0o755)?;
        }
        let text = super::plan::unit_text(
            self.layout(),
            cas,
            self.plan.proxy_password,
            self.plan.protection,
        );
        if std::fs::read(path).is_ok_and(|b| b == text.as_bytes()) {
            return Ok(format!("{} is already current", path.display()));
        }
        self.write(path, text.as_bytes(), 0o644)?;
        Ok(format!("{} written", path.display()))
    }

    fn run_command(&mut self, program: &str, args: &[String]) -> Result<(), StepError> {
        let (line, result) = service::run_command(program, args, Duration::from_secs(60));
        self.commands.push(line.clone());
        result.map_err(|e| {
            err(
                format!("`{line}` failed: {e}"),
                "Fix what it says, then run the install again.",
            )
        })
    }

    fn systemctl(&mut self, verb: &[&str]) -> Result<(), StepError> {
        let args = service::systemctl_args(self.layout(), verb);
        self.run_command("systemctl", &args)
    }

    fn enable(&mut self) -> Result<String, StepError> {
        let args = service::systemctl_args(self.layout(), &["is-enabled", "--quiet"]);
        let (line, was) = service::run_command("systemctl", &args, Duration::from_secs(30));
        self.commands.push(line);
        if was.is_ok() {
            return Ok("already enabled".into());
        }
        self.systemctl(&["enable", "--quiet"])?;
        self.record(Undo::Disable);
        Ok("enabled in multi-user.target".into())
    }

    #[cfg(windows)]
    fn register(&mut self) -> Result<String, StepError> {
        let def = self.plan.service.clone();
        if self.plan.layout.prefix.is_some() {
            self.commands.extend(def.sc_commands());
            return Ok("staged: the service is registered when the real install runs".into());
        }
        let existed = service::scm::register(&def)
            .map_err(|e| err(e, "Run the installer as Administrator."))?;
        if !existed {
            self.record(Undo::Unregister);
        }
        // The agent's warnings and errors go to the Application event log under its own source.
        let (line, source_existed) = service::run_command(
            "reg",
            &["query".to_string(), service::EVENT_SOURCE_KEY.to_string()],
            Duration::from_secs(30),
        );
        self.commands.push(line);
        for args in service::event_source_add() {
            self.run_command("reg", &args)?;
        }
        if source_existed.is_err() {
            self.record(Undo::RemoveEventSource);
        }
        // The service's own access to its folders is in their descriptors (the folders step).
        Ok(if existed {
            "updated in place"
        } else {
            "registered"
        }
        .into())
    }

    #[cfg(not(windows))]
    fn register(&mut self) -> Result<String, StepError> {
        Err(err(
            "the Windows service step ran on a system without the SCM",
            "Report this as a bug.",
        ))
    }

    fn client(&self) -> Result<CloudClient, StepError> {
        let cloud = self.answers.cloud.as_ref();
        let opts = CloudOptions {
            url: self.cloud_url(),
            ca_file: cloud
                .and_then(|c| c.ca_file.as_deref())
                .map(|p| self.answers.path(p)),
            timeout: cloud.map_or(Duration::from_secs(10), |c| c.timeout()),
            // The proxy's password from the answers, or (an upgrade that does not repeat it)
            // the one stored.
            route: self.answers.cloud_route(
                self.answers
                    .proxy_password()
                    .ok()
                    .flatten()
                    .or_else(|| self.store().read(crate::secrets::PROXY_PASSWORD).ok()),
            ),
        };
        CloudClient::new(&opts).map_err(|e| err(format!("[cloud] {e}"), e.fix()))
    }

    fn enroll(&mut self) -> Result<String, StepError> {
        let store = self.store();
        let record_path = self.real(&self.layout().enrollment);
        let mut record = Record::read(&record_path)
            .map_err(|e| err(e, "Run the install again; it starts the enrollment afresh."))?
            .ok_or_else(|| err("the enrollment record is missing", "Run the install again."))?;
        let private = store.read(AGENT_PRIVATE_KEY).map_err(|e| {
            err(
                format!("the agent's private key: {e}"),
                "Run the install again.",
            )
        })?;
        let key_text = self
            .answers
            .connect_key()
            .map_err(|e| {
                err(
                    e,
                    "Give the connect key in [cloud] (connect_key_file or connect_key_env).",
                )
            })?
            .ok_or_else(|| {
                err(
                    "no connect key was given",
                    "Give the connect key in [cloud] (connect_key_file or connect_key_env).",
                )
            })?;
        let key = crate::connect_key::ConnectKey::parse(key_text.expose()).map_err(|e| {
            err(
                format!("[cloud] connect key: {e}"),
                "Paste the key again from the cloud console.",
            )
        })?;
        let client = self.client()?;
        let host = crate::answers::this_host(
            crate::dn::Dn::parse(&record.domain)
                .ok()
                .and_then(|d| d.dn.domain())
                .as_deref(),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| err(format!("cannot start the network runtime: {e}"), "Retry."))?;
        let cancel = self.cancel.clone();
        let call = client.enroll(
            &key,
            &record.domain,
            &host,
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            &record.public_key,
        );
        let answer = runtime.block_on(async {
            tokio::select! {
                r = call => Some(r),
                _ = wait_cancelled(&cancel) => None,
            }
        });
        let resp = match answer {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Err(self.enroll_failed(&runtime, &client, &key, e)),
            None => {
                return Err(self.enroll_failed(
                    &runtime,
                    &client,
                    &key,
                    CloudError::Connect("cancelled while the cloud was being asked".into()),
                ));
            }
        };
        fault_point("enroll-answered");
        let credential = if resp.resumed {
            crate::cloud::sealed::open(&private, &resp.credential).map_err(|e| StepError {
                message: format!("the cloud's resumed credential could not be opened: {e}"),
                fix: "Run the install again.".into(),
                key_maybe_used: true,
            })?
        } else {
            Secret::new(resp.credential.clone())
        };
        let stored = store.write(AGENT_CREDENTIAL, &credential).and_then(|()| {
            record.state = State::Enrolled;
            record.agent_id = Some(resp.agent_id.clone());
            record.updated_at = now();
            record.write(&record_path)
        });
        if let Err(e) = stored {
            return Err(StepError {
                message: format!(
                    "the cloud enrolled agent {} but its credential could not be stored: {e}",
                    resp.agent_id
                ),
                fix: "Free the disk or fix the folder's permissions, then run the install again with the same connect key: it resumes this enrollment.".into(),
                key_maybe_used: true,
            });
        }
        self.agent_id = Some(resp.agent_id.clone());
        self.credential = Some(credential);
        let role = match resp.role {
            crate::cloud::api::Role::Primary => "primary",
            crate::cloud::api::Role::Standby => "standby",
        };
        Ok(format!(
            "{} agent {} ({role}) for {}; its credential is stored",
            if resp.resumed { "resumed" } else { "enrolled" },
            resp.agent_id,
            resp.domain
        ))
    }

    /// Enrollment failed. When the cloud's answer is lost on the way back (a timeout, a dropped
    /// connection, a cancel) it may have enrolled the agent anyway: ask whether the key is used.
    fn enroll_failed(
        &self,
        runtime: &tokio::runtime::Runtime,
        client: &CloudClient,
        key: &crate::connect_key::ConnectKey,
        e: CloudError,
    ) -> StepError {
        let definite = matches!(
            e,
            CloudError::Api { .. }
                | CloudError::BadUrl { .. }
                | CloudError::CaFile(_)
                | CloudError::Dns { .. }
                | CloudError::Refused { .. }
                | CloudError::Tls { .. }
                | CloudError::Proxy { .. }
        );
        if definite {
            return err(format!("enrollment: {e}"), e.fix());
        }
        let state = runtime
            .block_on(client.check_key(key, None))
            .map(|r| r.state);
        match state {
            Ok(crate::cloud::api::KeyState::Valid) => err(
                format!("enrollment: {e}; the key is still unused"),
                e.fix(),
            ),
            _ => StepError {
                message: format!("enrollment: {e}; the cloud may have enrolled the agent"),
                fix: "Run the install again with the same connect key: it resumes this enrollment (the key pair is kept).".into(),
                key_maybe_used: true,
            },
        }
    }

    fn start(&mut self) -> Result<String, StepError> {
        if self.layout().unit.is_some() {
            self.systemctl_plain(&["daemon-reload"])?;
            self.systemctl(&["restart"])?;
            Ok("started".into())
        } else {
            self.start_windows()
        }
    }

    fn systemctl_plain(&mut self, verb: &[&str]) -> Result<(), StepError> {
        let args: Vec<String> = verb.iter().map(|s| s.to_string()).collect();
        self.run_command("systemctl", &args)
    }

    #[cfg(windows)]
    fn start_windows(&mut self) -> Result<String, StepError> {
        service::scm::restart(&self.plan.service).map_err(|e| {
            err(
                e,
                "Look at the agent's log, fix the cause, then start the service.",
            )
        })?;
        Ok("started".into())
    }

    #[cfg(not(windows))]
    fn start_windows(&mut self) -> Result<String, StepError> {
        Err(err(
            "no service manager to start the service",
            "Report this as a bug.",
        ))
    }

    fn cloud_view(&self, credential: &Secret) -> Result<crate::cloud::api::AgentSelf, String> {
        let client = self.client().map_err(|e| e.message)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime
            .block_on(client.agent_self(credential))
            .map_err(|e| e.to_string())
    }

    /// Undoes every recorded local step, newest first. A step whose undo failed is marked
    /// `NotUndone` with what is left and how to remove it; the others `RolledBack`. Returns what
    /// could not be undone, for the outcome's fix.
    fn roll_back(&mut self, progress: &mut dyn FnMut(&[StepReport])) -> Vec<String> {
        let mut left: Vec<(usize, String)> = Vec::new();
        while let Some((step, u)) = self.undo.pop() {
            if let Err(what) = self.undo_one(u) {
                left.push((step, what));
            }
        }
        for (i, r) in self.reports.iter_mut().enumerate() {
            if r.status != StepStatus::Done {
                continue;
            }
            let mine: Vec<&str> = left
                .iter()
                .filter(|(s, _)| *s == i)
                .map(|(_, w)| w.as_str())
                .collect();
            if mine.is_empty() {
                r.status = StepStatus::RolledBack;
            } else {
                r.status = StepStatus::NotUndone;
                r.message = format!("not undone: {}", mine.join("; "));
            }
        }
        progress(&self.reports);
        for (_, l) in &left {
            tracing::warn!("not undone: {l}");
        }
        left.into_iter().map(|(_, l)| l).collect()
    }

    /// Undoes one change. The error names what is left, why, and how to remove it by hand.
    fn undo_one(&mut self, undo: Undo) -> Result<(), String> {
        match undo {
            Undo::RemoveDirs(dirs) => {
                let mut kept = Vec::new();
                for d in dirs.iter().rev() {
                    // Only empty folders: a folder something else was put in stays, on purpose.
                    match std::fs::remove_dir(d) {
                        Err(e)
                            if !matches!(
                                e.kind(),
                                std::io::ErrorKind::NotFound
                                    | std::io::ErrorKind::DirectoryNotEmpty
                            ) =>
                        {
                            kept.push(format!(
                                "the folder {} ({e}); remove it if it is empty",
                                d.display()
                            ))
                        }
                        _ => {}
                    }
                }
                if kept.is_empty() {
                    Ok(())
                } else {
                    Err(kept.join("; "))
                }
            }
            Undo::Restore {
                path,
                previous,
                mode,
            } => {
                let existed = previous.is_some();
                let r = match previous {
                    Some(bytes) => fsops::write_atomic(&path, &bytes, mode.unwrap_or(0o600)),
                    None => match std::fs::remove_file(&path) {
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                        r => r,
                    },
                };
                r.map_err(|e| {
                    if existed {
                        format!(
                            "{} holds this install's version ({e}); put back the previous one from your backup",
                            path.display()
                        )
                    } else {
                        format!(
                            "{} was written by this install and could not be removed ({e}); delete it",
                            path.display()
                        )
                    }
                })
            }
            Undo::Disable => self.systemctl(&["disable", "--quiet"]).map_err(|e| {
                format!(
                    "the service is still enabled ({}); run `systemctl disable {}.service`",
                    e.message,
                    super::layout::SERVICE_NAME
                )
            }),
            Undo::Unregister => {
                #[cfg(windows)]
                if let Err(e) = service::scm::remove(&self.plan.service) {
                    return Err(format!(
                        "the service is still registered ({e}); run `sc.exe delete {}` as Administrator",
                        self.plan.service.name
                    ));
                }
                Ok(())
            }
            Undo::RestoreSecurity { path, sddl } => {
                #[cfg(windows)]
                if let Err(e) = super::winsec::set(&path, &sddl) {
                    return Err(format!(
                        "who may use {} could not be put back ({e}); set it by hand to {sddl}",
                        path.display()
                    ));
                }
                #[cfg(not(windows))]
                let _ = (path, sddl);
                Ok(())
            }
            Undo::RemoveEventSource => self
                .run_command("reg", &service::event_source_delete())
                .map_err(|e| {
                    format!(
                        "the event log source is still registered ({}); run `reg delete {} /f` as Administrator",
                        e.message,
                        service::EVENT_SOURCE_KEY
                    )
                }),
        }
    }
}

fn io_err(path: &Path, e: &std::io::Error) -> StepError {
    let fix = match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "Run the install as root (Administrator on Windows)."
        }
        _ => "Check the disk and the folder, then run the install again.",
    };
    err(format!("{}: {e}", path.display()), fix)
}

fn now() -> String {
    crate::time_fmt::unix_to_rfc3339(crate::time_fmt::now_unix())
}

async fn wait_cancelled(cancel: &Cancel) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
