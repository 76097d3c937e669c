//! Review mode's removal of the product: the same `install::uninstall::uninstall` that
//! `ad-sync-setup uninstall` runs (the cloud told first, then the service, the secrets, the
//! program, the state and, unless kept, the config), on its own thread, each step's result sent
//! back to the page as it finishes. Nothing here decides anything.

use ad_sync_core::install::uninstall::{Removed, UninstallOptions, UninstallOutcome};
use std::sync::mpsc;

enum Msg {
    /// How many steps the plan has (read on the removal's thread: reading what is installed
    /// asks the service manager).
    Planned(usize),
    Progress(Vec<Removed>),
    Done(Box<UninstallOutcome>),
}

pub struct UninstallRun {
    rx: mpsc::Receiver<Msg>,
    pub steps: Vec<Removed>,
    pub outcome: Option<UninstallOutcome>,
    /// Steps in the plan, once read (for the progress bar).
    pub planned: usize,
}

impl UninstallRun {
    pub fn start(opts: UninstallOptions, ctx: egui::Context) -> std::io::Result<UninstallRun> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("ad-sync-uninstall".into())
            .spawn(move || {
                let send = |m: Msg| {
                    // The window closed meanwhile: the removal goes on to its end.
                    let _ = tx.send(m);
                    ctx.request_repaint();
                };
                let facts = ad_sync_core::install::uninstall::Facts::read(&opts);
                send(Msg::Planned(
                    ad_sync_core::install::uninstall::plan(&facts, &opts)
                        .steps
                        .len(),
                ));
                let out = ad_sync_core::install::uninstall::uninstall(&opts, &mut |steps| {
                    send(Msg::Progress(steps.to_vec()))
                });
                send(Msg::Done(Box::new(out)));
            })?;
        Ok(UninstallRun {
            rx,
            steps: Vec::new(),
            outcome: None,
            planned: 0,
        })
    }

    /// Takes what the thread reported since the last frame.
    pub fn poll(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            match m {
                Msg::Planned(n) => self.planned = n,
                Msg::Progress(steps) => self.steps = steps,
                Msg::Done(out) => {
                    self.steps = out.steps.clone();
                    self.outcome = Some(*out);
                }
            }
        }
    }

    pub fn running(&self) -> bool {
        self.outcome.is_none()
    }
}
