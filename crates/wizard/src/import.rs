//! The Finish page's offer to import AD into the cloud: the installed agent's `import` run as
//! a child process on its own thread (the agent holds the AD and cloud code, and reads the
//! secrets the install just stored), its report brought back to the page. Cancel kills the
//! child; nothing here decides anything.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the run ended: the agent's exit code and report, or why it could not run.
#[derive(Debug, Clone)]
pub enum Ended {
    /// The report is the agent's standard output; its log lines (standard error) are shown
    /// only when it did not run.
    Report {
        code: Option<i32>,
        text: String,
        log: String,
    },
    Failed(String),
    Cancelled,
}

pub struct ImportRun {
    pub dry_run: bool,
    child: Arc<Mutex<Option<Child>>>,
    ended: Arc<Mutex<Option<Ended>>>,
}

/// The lock's value even if a thread panicked holding it (the data is a plain slot).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ImportRun {
    /// Starts `agent import --config CONFIG --log-dir LOGS [--dry-run]`.
    pub fn start(
        agent: PathBuf,
        config: PathBuf,
        logs: PathBuf,
        dry_run: bool,
        ctx: egui::Context,
    ) -> ImportRun {
        let child = Arc::new(Mutex::new(None));
        let ended = Arc::new(Mutex::new(None));
        let run = ImportRun {
            dry_run,
            child: child.clone(),
            ended: ended.clone(),
        };
        let finish = move |e: Ended| {
            *lock(&ended) = Some(e);
            ctx.request_repaint();
        };
        let mut cmd = Command::new(&agent);
        cmd.arg("import")
            .arg("--config")
            .arg(&config)
            .arg("--log-dir")
            .arg(&logs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if dry_run {
            cmd.arg("--dry-run");
        }
        #[cfg(windows)]
        {
            // CREATE_NO_WINDOW: the wizard is a GUI program; no console flashes up.
            use std::os::windows::process::CommandExt;
            cmd.creation_flags(0x0800_0000);
        }
        let spawned = std::thread::Builder::new()
            .name("ad-sync-import".into())
            .spawn(move || {
                let mut c = match cmd.spawn() {
                    Ok(c) => c,
                    Err(e) => {
                        finish(Ended::Failed(format!(
                            "{} could not be started: {e}",
                            agent.display()
                        )));
                        return;
                    }
                };
                // Read the output while the child runs, so a long report never fills the pipe.
                let readers: Vec<_> = [
                    c.stdout.take().map(|o| Box::new(o) as Box<dyn Read + Send>),
                    c.stderr.take().map(|o| Box::new(o) as Box<dyn Read + Send>),
                ]
                .into_iter()
                .flatten()
                .map(|mut r| {
                    std::thread::spawn(move || {
                        let mut s = String::new();
                        // A read error ends this stream's text early; the exit code still tells.
                        let _ = r.read_to_string(&mut s);
                        s
                    })
                })
                .collect();
                *lock(&child) = Some(c);
                let code = loop {
                    let mut slot = lock(&child);
                    let Some(c) = slot.as_mut() else {
                        break None; // Cancelled: the child was taken and killed.
                    };
                    match c.try_wait() {
                        Ok(Some(status)) => break Some(status.code()),
                        Ok(None) => {}
                        Err(e) => {
                            drop(slot);
                            finish(Ended::Failed(format!("waiting for the import: {e}")));
                            return;
                        }
                    }
                    drop(slot);
                    std::thread::sleep(Duration::from_millis(100));
                };
                let mut texts = readers.into_iter().map(|t| t.join().unwrap_or_default());
                let text = texts.next().unwrap_or_default();
                let log = texts.next().unwrap_or_default();
                finish(match code {
                    Some(code) => Ended::Report { code, text, log },
                    None => Ended::Cancelled,
                });
            });
        if let Err(e) = spawned {
            *lock(&run.ended) = Some(Ended::Failed(format!("cannot start a thread: {e}")));
        }
        run
    }

    pub fn ended(&self) -> Option<Ended> {
        lock(&self.ended).clone()
    }

    /// Stops the import: the child is killed (what it sent the cloud before stays imported,
    /// and a later run skips it).
    pub fn cancel(&self) {
        if let Some(mut c) = lock(&self.child).take() {
            // Already gone is as good as killed; the wait reaps it either way.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ImportRun {
    fn drop(&mut self) {
        self.cancel();
    }
}
