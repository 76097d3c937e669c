//! The Install page's worker: the same `install::apply` the CLI runs, on its own thread, with
//! each step's status sent back to the UI as it changes. Nothing here decides anything.

use ad_sync_core::answers::Answers;
use ad_sync_core::install::{self, Cancel, Outcome, Plan, StepReport};
use ad_sync_core::preflight::{CheckResult, Status};
use std::sync::mpsc;
use std::thread::JoinHandle;

enum Msg {
    Refused(Vec<CheckResult>),
    Plan(Box<Plan>),
    Progress(Vec<StepReport>),
    Done(Box<Outcome>),
}

pub struct InstallRun {
    rx: mpsc::Receiver<Msg>,
    cancel: Cancel,
    thread: Option<JoinHandle<()>>,
    /// The install's own checks that failed (nothing was written).
    pub refused: Option<Vec<CheckResult>>,
    pub plan: Option<Plan>,
    pub steps: Vec<StepReport>,
    pub outcome: Option<Outcome>,
    pub started: std::time::Instant,
    /// Unix seconds when it started (a sync recorded after it is the first one).
    pub started_unix: i64,
}

impl InstallRun {
    /// A run as it stood at one moment, for the pictures of the Install and Finish pages (the
    /// live tests run real installs; a picture needs the same steps every time).
    #[doc(hidden)]
    pub fn shown(
        plan: Plan,
        steps: Vec<StepReport>,
        outcome: Option<Outcome>,
        started_unix: i64,
    ) -> InstallRun {
        let (_, rx) = mpsc::channel();
        InstallRun {
            rx,
            cancel: Cancel::default(),
            thread: None,
            refused: None,
            plan: Some(plan),
            steps,
            outcome,
            started: std::time::Instant::now(),
            started_unix,
        }
    }

    pub fn start(
        answers: Answers,
        opts: install::Options,
        ctx: egui::Context,
    ) -> std::io::Result<InstallRun> {
        let (tx, rx) = mpsc::channel();
        let cancel = Cancel::default();
        let stop = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("ad-sync-install".into())
            .spawn(move || {
                let send = |m: Msg| {
                    // The window closed meanwhile: the run goes on (and undoes itself on cancel).
                    let _ = tx.send(m);
                    ctx.request_repaint();
                };
                let install::Prepared { facts, plan } = install::prepare(&answers, &opts);
                let checks = install::install_checks(&answers, &facts.existing, &opts);
                let failed: Vec<CheckResult> = checks
                    .iter()
                    .filter(|c| c.status == Status::Fail)
                    .cloned()
                    .collect();
                // The wizard's pages ran the preflight checks; the log holds the install's own.
                let report = ad_sync_core::preflight::Report {
                    checks,
                    stats: Default::default(),
                };
                let what = "install (wizard)";
                if !failed.is_empty() {
                    install::setup_log::record_install(&plan.layout, what, &report, None);
                    send(Msg::Refused(failed));
                    return;
                }
                send(Msg::Plan(Box::new(plan.clone())));
                let outcome = install::apply(&plan, &answers, &stop, &mut |steps| {
                    send(Msg::Progress(steps.to_vec()))
                });
                install::setup_log::record_install(&plan.layout, what, &report, Some(&outcome));
                send(Msg::Done(Box::new(outcome)));
            })?;
        Ok(InstallRun {
            rx,
            cancel,
            thread: Some(thread),
            refused: None,
            plan: None,
            steps: Vec::new(),
            outcome: None,
            started: std::time::Instant::now(),
            started_unix: ad_sync_core::time_fmt::now_unix(),
        })
    }

    pub fn pump(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            match m {
                Msg::Refused(c) => self.refused = Some(c),
                Msg::Plan(p) => {
                    self.steps = p.steps.iter().map(StepReport::pending).collect();
                    self.plan = Some(*p);
                }
                Msg::Progress(s) => self.steps = s,
                Msg::Done(o) => {
                    self.steps = o.steps.clone();
                    self.outcome = Some(*o);
                }
            }
        }
    }

    pub fn running(&self) -> bool {
        self.refused.is_none() && self.outcome.is_none()
    }

    /// Cancel is offered until enrollment starts (after it, the key is used: the run finishes).
    pub fn cancellable(&self) -> bool {
        self.running()
            && !self.cancel.is_cancelled()
            && !self.steps.iter().any(|s| {
                s.id == install::StepId::Enroll && s.status != install::StepStatus::Pending
            })
    }

    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    pub fn cancelling(&self) -> bool {
        self.cancel.is_cancelled() && self.running()
    }
}

impl Drop for InstallRun {
    fn drop(&mut self) {
        // The window closing mid-install: stop before the next step and let it undo itself.
        self.cancel.cancel();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the install thread panicked; look above for why");
        }
    }
}
