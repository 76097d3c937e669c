//! The Finish page's offer to import AD into the cloud: the installed agent's `import --json`
//! run as a child process on its own thread (the agent holds the AD and cloud code, and reads
//! the secrets the install just stored); its progress lines read as they come, its report
//! (`ad_sync_core::import_report`) brought back to the page. Cancel kills the child; nothing
//! here decides anything.

use ad_sync_core::import_report::Report;
use ad_sync_core::progress::Progress;
use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the run ended: the agent's exit code and report, or why it could not run.
#[derive(Debug, Clone)]
pub enum Ended {
    /// The agent's report (None when its output was no report), and its log lines
    /// (standard error, without the progress), shown when it did not run.
    Report {
        code: Option<i32>,
        report: Option<Box<Report>>,
        log: String,
    },
    Failed(String),
    Cancelled,
}

pub struct ImportRun {
    pub dry_run: bool,
    child: Arc<Mutex<Option<Child>>>,
    ended: Arc<Mutex<Option<Ended>>>,
    progress: Arc<Mutex<Option<Progress>>>,
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
        let progress = Arc::new(Mutex::new(None));
        let run = ImportRun {
            dry_run,
            child: child.clone(),
            ended: ended.clone(),
            progress: progress.clone(),
        };
        let repaint = ctx.clone();
        let finish = move |e: Ended| {
            *lock(&ended) = Some(e);
            ctx.request_repaint();
        };
        let mut cmd = Command::new(&agent);
        cmd.arg("import")
            .arg("--json")
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
                // Read the output while the child runs, so a long report never fills the
                // pipe; the progress lines on standard error are taken as they come.
                let out = c.stdout.take().map(|mut o| {
                    std::thread::spawn(move || {
                        let mut s = Vec::new();
                        // A read error ends the report early; the exit code still tells.
                        let _ = o.read_to_end(&mut s);
                        s
                    })
                });
                let err = c.stderr.take().map(|e| {
                    std::thread::spawn(move || {
                        let mut log = String::new();
                        for line in std::io::BufReader::new(e).lines().map_while(Result::ok) {
                            match progress_line(&line) {
                                Some(p) => {
                                    *lock(&progress) = Some(p);
                                    repaint.request_repaint();
                                }
                                None => {
                                    log.push_str(&line);
                                    log.push('\n');
                                }
                            }
                        }
                        log
                    })
                });
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
                let out = out
                    .map(|t| t.join().unwrap_or_default())
                    .unwrap_or_default();
                let log = err
                    .map(|t| t.join().unwrap_or_default())
                    .unwrap_or_default();
                finish(match code {
                    Some(code) => Ended::Report {
                        code,
                        report: serde_json::from_slice(&out).ok().map(Box::new),
                        log,
                    },
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

    /// The newest progress the agent printed.
    pub fn progress(&self) -> Option<Progress> {
        lock(&self.progress).clone()
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

/// The progress in one line of `import --json`'s standard error, if it is a progress line.
fn progress_line(line: &str) -> Option<Progress> {
    #[derive(serde::Deserialize)]
    struct Line {
        progress: Progress,
    }
    line.starts_with("{\"progress\"")
        .then(|| serde_json::from_str::<Line>(line).ok())
        .flatten()
        .map(|l| l.progress)
}

impl Drop for ImportRun {
    fn drop(&mut self) {
        self.cancel();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_lines_are_told_from_log_lines() {
        let p = super::progress_line(
            r#"{"progress":{"task":"import","phase":"sending","done":2,"total":9,"dry_run":false,"started":1,"at":3}}"#,
        )
        .expect("a progress line");
        assert_eq!((p.done, p.total), (2, Some(9)));
        assert!(super::progress_line("2026-12-05T03:00:00Z  INFO read AD objects=3").is_none());
        assert!(super::progress_line(r#"{"progress": "#).is_none());
    }
}
