//! Live validation off the UI thread: each page asks for the job its inputs describe, every
//! frame; the validator runs it on its own background runtime and reports through a channel.
//!
//! - A job is known by a fingerprint of its inputs (salted SHA-256, so no secret is kept in
//!   the clear for comparison). A result is shown only for the inputs it was computed from:
//!   the moment a field changes, the old result is gone.
//! - Typing restarts a short debounce; the check runs when the typing stops. The first check
//!   of a page starts at once.
//! - Every job has an overall time limit on top of the per-step timeouts, and `cancel` aborts
//!   it: the future is dropped, and with it its connections.
//! - Dropping the validator (the window closed mid-check) shuts the runtime down: no thread
//!   or connection outlives the wizard.

use super::backend::Backend;
use ad_sync_core::answers::Answers;
use ad_sync_core::directory::browse::{Level, Offer};
use ad_sync_core::directory::cert::CertInfo;
use ad_sync_core::directory::discover::Discovered;
use ad_sync_core::preflight::{CheckResult, Report, Scope};
use ad_sync_core::secret::Secret;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where a job's result goes: one slot per page check, plus the helpers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    Folder,
    DomainController,
    Connection,
    RootDn,
    Account,
    Cloud,
    Sync,
    /// AD as a source's scope and attribute map.
    Source,
    Review,
    Discover,
    StoredPassword,
    /// The installed agent's health (`ad-sync-agent status`), in review mode.
    Status,
    /// The same, read again and again on the Finish page while the first sync runs.
    FirstSync,
    /// One level of a directory picker, keyed by the picker and the container it lists.
    Level(u64),
}

#[derive(Debug, Clone)]
pub struct CertTarget {
    pub host: String,
    pub port: u16,
    pub starttls: bool,
}

#[derive(Clone)]
pub enum Job {
    Preflight {
        answers: Box<Answers>,
        scope: Scope,
        certificate: Option<CertTarget>,
    },
    Discover {
        domain: String,
        server: Option<std::net::IpAddr>,
    },
    Level {
        answers: Box<Answers>,
        base: Option<String>,
        offer: Offer,
        name: String,
        limit: usize,
    },
    Folder(PathBuf),
    StoredPassword(PathBuf),
    /// `ad-sync-agent status --json` of the installed agent (`--offline`: the state alone,
    /// as the Finish page asks every two seconds while it follows the first sync; `poll`
    /// makes each of those asks a new job).
    Status {
        program: PathBuf,
        config: PathBuf,
        state_dir: PathBuf,
        offline: bool,
        poll: u32,
    },
}

pub enum Outcome {
    Checks {
        report: Report,
        certificate: Option<Result<CertInfo, String>>,
    },
    Dcs(Result<Discovered, String>),
    Level(Result<Level, String>),
    Folder(CheckResult),
    Password(Result<Secret, String>),
    Status(Box<Result<ad_sync_core::status::AgentStatus, String>>),
    Cancelled,
    TimedOut(Duration),
}

impl Job {
    /// How long the whole job may take, on top of each step's own timeout.
    fn limit(&self) -> Duration {
        match self {
            Job::Preflight { answers, .. } => {
                let ldap = u64::from(answers.ldap.timeout_seconds);
                let cloud = answers
                    .cloud
                    .as_ref()
                    .map_or(0, |c| u64::from(c.timeout_seconds));
                Duration::from_secs((ldap.max(cloud) * 6).max(10))
            }
            // DNS (up to 10 s) and the site's LDAP ping and records (up to 4 s).
            Job::Discover { .. } => Duration::from_secs(16),
            Job::Level { answers, .. } => {
                Duration::from_secs((u64::from(answers.ldap.timeout_seconds) * 4).max(10))
            }
            Job::Folder(_) | Job::StoredPassword(_) => Duration::from_secs(10),
            // The agent asks the cloud for its view, within the cloud's own timeout.
            Job::Status { .. } => Duration::from_secs(40),
        }
    }

    fn fingerprint(&self, salt: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(salt);
        match self {
            Job::Preflight {
                answers,
                scope,
                certificate,
            } => {
                h.update(b"preflight\0");
                h.update(format!("{scope:?}\0{certificate:?}\0").as_bytes());
                hash_answers(&mut h, answers);
            }
            Job::Discover { domain, server } => {
                h.update(b"discover\0");
                h.update(format!("{domain}\0{server:?}").as_bytes());
            }
            Job::Level {
                answers,
                base,
                offer,
                name,
                limit,
            } => {
                h.update(b"level\0");
                h.update(format!("{base:?}\0{offer:?}\0{name}\0{limit}\0").as_bytes());
                hash_answers(&mut h, answers);
            }
            Job::Folder(p) => {
                h.update(b"folder\0");
                h.update(p.as_os_str().as_encoded_bytes());
            }
            Job::StoredPassword(p) => {
                h.update(b"password\0");
                h.update(p.as_os_str().as_encoded_bytes());
            }
            Job::Status {
                program,
                config,
                state_dir,
                offline,
                poll,
            } => {
                h.update(b"status\0");
                for p in [program, config, state_dir] {
                    h.update(p.as_os_str().as_encoded_bytes());
                    h.update(b"\0");
                }
                h.update([u8::from(*offline)]);
                h.update(poll.to_le_bytes());
            }
        }
        h.finalize().into()
    }
}

/// The answers in a fingerprint: serialised without the secrets, which are hashed on their own.
fn hash_answers(h: &mut Sha256, answers: &Answers) {
    h.update(serde_json::to_vec(answers).unwrap_or_default());
    for secret in [
        answers.service_account.password.as_ref(),
        answers.cloud.as_ref().and_then(|c| c.connect_key.as_ref()),
        answers
            .cloud
            .as_ref()
            .and_then(|c| c.proxy_password.as_ref()),
    ] {
        h.update(b"\0");
        if let Some(s) = secret {
            h.update(s.expose().as_bytes());
        }
    }
}

enum Phase {
    Debouncing {
        due: Instant,
        job: Job,
    },
    Running {
        run: u64,
        started: Instant,
        limit: Duration,
        abort: tokio::task::AbortHandle,
    },
    Done(Outcome),
}

struct SlotState {
    fingerprint: [u8; 32],
    phase: Phase,
}

/// What a page shows for its check.
pub enum View<'a> {
    /// Inputs changed; the check starts when typing stops.
    Waiting,
    Running {
        elapsed: Duration,
        limit: Duration,
    },
    Done(&'a Outcome),
}

pub struct Validator {
    backend: Arc<dyn Backend>,
    runtime: Option<tokio::runtime::Runtime>,
    tx: mpsc::Sender<(Slot, u64, Outcome)>,
    rx: mpsc::Receiver<(Slot, u64, Outcome)>,
    slots: HashMap<Slot, SlotState>,
    salt: [u8; 16],
    ctx: egui::Context,
    next_run: u64,
    thread_name: String,
    pub debounce: Duration,
}

impl Validator {
    pub fn new(backend: Arc<dyn Backend>, ctx: egui::Context) -> std::io::Result<Validator> {
        // Each validator's threads carry their own name (15 characters at most, the OS limit),
        // so a test can see that closing the wizard left none behind.
        static INSTANCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10_000;
        let thread_name = format!("adsync-chk-{n}");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(4)
            .thread_name(thread_name.clone())
            .enable_all()
            .build()?;
        let mut salt = [0u8; 16];
        // Ignored on purpose: a predictable salt only weakens the in-memory fingerprint, never
        // correctness.
        let _ = getrandom::fill(&mut salt);
        let (tx, rx) = mpsc::channel();
        Ok(Validator {
            backend,
            runtime: Some(runtime),
            tx,
            rx,
            slots: HashMap::new(),
            salt,
            ctx,
            next_run: 0,
            thread_name,
            debounce: Duration::from_millis(400),
        })
    }

    /// The name of this validator's background threads.
    pub fn thread_name(&self) -> &str {
        &self.thread_name
    }

    /// Takes finished results and starts checks whose debounce ran out. Call once per frame.
    pub fn pump(&mut self) {
        while let Ok((slot, run, outcome)) = self.rx.try_recv() {
            if let Some(state) = self.slots.get_mut(&slot)
                && matches!(state.phase, Phase::Running { run: r, .. } if r == run)
            {
                state.phase = Phase::Done(outcome);
            }
            // Otherwise the result is for inputs that changed since: dropped, never shown.
        }
        let now = Instant::now();
        let due: Vec<Slot> = self
            .slots
            .iter()
            .filter_map(|(slot, s)| match &s.phase {
                Phase::Debouncing { due, .. } if *due <= now => Some(*slot),
                _ => None,
            })
            .collect();
        for slot in due {
            if let Some(state) = self.slots.remove(&slot)
                && let Phase::Debouncing { job, .. } = state.phase
            {
                self.start(slot, state.fingerprint, job);
            }
        }
        if let Some(next) = self
            .slots
            .values()
            .filter_map(|s| match &s.phase {
                Phase::Debouncing { due, .. } => Some(due.saturating_duration_since(now)),
                _ => None,
            })
            .min()
        {
            self.ctx.request_repaint_after(next);
        }
    }

    /// The state of `slot` for `job`'s inputs; starts or schedules the job when they changed.
    pub fn request(&mut self, slot: Slot, job: Job) -> View<'_> {
        let fingerprint = job.fingerprint(&self.salt);
        let same = self
            .slots
            .get(&slot)
            .is_some_and(|s| s.fingerprint == fingerprint);
        if !same {
            match self.slots.remove(&slot) {
                // Inputs changed under a result or a running check: drop it, wait for typing to stop.
                Some(old) => {
                    if let Phase::Running { abort, .. } = old.phase {
                        abort.abort();
                    }
                    let due = Instant::now() + self.debounce;
                    self.ctx.request_repaint_after(self.debounce);
                    self.slots.insert(
                        slot,
                        SlotState {
                            fingerprint,
                            phase: Phase::Debouncing { due, job },
                        },
                    );
                }
                None => self.start(slot, fingerprint, job),
            }
        }
        self.view(slot)
    }

    /// The current state of `slot`, whatever inputs it is for (`None`: never asked).
    pub fn view(&self, slot: Slot) -> View<'_> {
        match self.slots.get(&slot).map(|s| &s.phase) {
            None | Some(Phase::Debouncing { .. }) => View::Waiting,
            Some(Phase::Running { started, limit, .. }) => View::Running {
                elapsed: started.elapsed(),
                limit: *limit,
            },
            Some(Phase::Done(o)) => View::Done(o),
        }
    }

    /// Takes a finished outcome out of `slot` (for a result that must not stay here, like a
    /// password read from the store).
    pub fn take_done(&mut self, slot: Slot) -> Option<Outcome> {
        if !matches!(
            self.slots.get(&slot).map(|s| &s.phase),
            Some(Phase::Done(_))
        ) {
            return None;
        }
        match self.slots.remove(&slot).map(|s| s.phase) {
            Some(Phase::Done(o)) => Some(o),
            _ => None,
        }
    }

    /// Stops a running check; the page then shows it as cancelled until Retry or new input.
    pub fn cancel(&mut self, slot: Slot) {
        if let Some(state) = self.slots.get_mut(&slot) {
            match &state.phase {
                Phase::Running { abort, .. } => {
                    abort.abort();
                    state.phase = Phase::Done(Outcome::Cancelled);
                }
                Phase::Debouncing { .. } => state.phase = Phase::Done(Outcome::Cancelled),
                Phase::Done(_) => {}
            }
        }
    }

    /// Forgets `slot`'s result, so the next request runs the check again at once.
    pub fn retry(&mut self, slot: Slot) {
        if let Some(state) = self.slots.remove(&slot)
            && let Phase::Running { abort, .. } = state.phase
        {
            abort.abort();
        }
    }

    /// Whether any check is running or waiting to run.
    pub fn busy(&self) -> bool {
        self.slots
            .values()
            .any(|s| !matches!(s.phase, Phase::Done(_)))
    }

    fn start(&mut self, slot: Slot, fingerprint: [u8; 32], job: Job) {
        let Some(runtime) = &self.runtime else {
            return;
        };
        self.next_run += 1;
        let run = self.next_run;
        let limit = job.limit();
        let backend = Arc::clone(&self.backend);
        let tx = self.tx.clone();
        let ctx = self.ctx.clone();
        tracing::debug!(?slot, run, "check started");
        let handle = runtime.spawn(async move {
            let outcome = match tokio::time::timeout(limit, run_job(backend.as_ref(), job)).await {
                Ok(o) => o,
                Err(_) => Outcome::TimedOut(limit),
            };
            // The window closed meanwhile: nobody waits for the outcome.
            let _ = tx.send((slot, run, outcome));
            ctx.request_repaint();
        });
        self.slots.insert(
            slot,
            SlotState {
                fingerprint,
                phase: Phase::Running {
                    run,
                    started: Instant::now(),
                    limit,
                    abort: handle.abort_handle(),
                },
            },
        );
        // The spinner animates while the check runs.
        self.ctx.request_repaint();
    }
}

async fn run_job(backend: &dyn Backend, job: Job) -> Outcome {
    match job {
        Job::Preflight {
            answers,
            scope,
            certificate,
        } => {
            let timeout = Duration::from_secs(u64::from(answers.ldap.timeout_seconds));
            let checks = backend.preflight(*answers, scope);
            match certificate {
                Some(t) => {
                    let cert = backend.certificate(t.host, t.port, t.starttls, timeout);
                    let (report, cert) = tokio::join!(checks, cert);
                    Outcome::Checks {
                        report,
                        certificate: Some(cert),
                    }
                }
                None => Outcome::Checks {
                    report: checks.await,
                    certificate: None,
                },
            }
        }
        Job::Discover { domain, server } => Outcome::Dcs(
            backend
                .discover(domain, server, Duration::from_secs(5))
                .await,
        ),
        Job::Level {
            answers,
            base,
            offer,
            name,
            limit,
        } => Outcome::Level(backend.level(*answers, base, offer, name, limit).await),
        Job::Folder(dir) => Outcome::Folder(backend.folder(dir).await),
        Job::StoredPassword(config) => Outcome::Password(backend.stored_password(config).await),
        Job::Status {
            program,
            config,
            state_dir,
            offline,
            poll: _,
        } => Outcome::Status(Box::new(
            backend
                .agent_status(program, config, state_dir, offline)
                .await,
        )),
    }
}

impl Drop for Validator {
    fn drop(&mut self) {
        for state in self.slots.values() {
            if let Phase::Running { abort, .. } = &state.phase {
                abort.abort();
            }
        }
        if let Some(rt) = self.runtime.take() {
            // Tasks are dropped (their connections closed) and the worker threads joined.
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}
