//! The meter the agent's long work reports to, and where its readings go: a line on a
//! terminal every two seconds (`run --once`, `import`), a JSON line on standard error for a
//! script or the wizard (`--json`), and the file beside the state that `status` reads while the
//! service runs (removed when the run ends). The readings themselves
//! (`ad_sync_core::progress`) are pure; this is the I/O.

use ad_sync_core::progress::{FILE_NAME, Phase, Progress, Task};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where readings go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// A sentence on standard error, when it is a terminal.
    Terminal,
    /// `{"progress": {...}}` on standard error, one line each.
    Json,
    /// The file in this state folder.
    File(PathBuf),
}

struct Inner {
    now: Progress,
    sinks: Vec<Sink>,
    /// When each sink last wrote (throttled, except at a change of phase).
    last: Vec<Option<Instant>>,
}

/// A handle to one meter, shared by every part of a run (cheap to clone). `Meter::default()`
/// measures nothing.
#[derive(Clone, Default)]
pub struct Meter(Option<Arc<Mutex<Inner>>>);

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meter")
    }
}

fn every(sink: &Sink) -> Duration {
    match sink {
        Sink::Terminal => Duration::from_secs(2),
        Sink::Json => Duration::from_millis(250),
        Sink::File(_) => Duration::from_secs(1),
    }
}

impl Meter {
    /// A meter writing to `sinks` (a terminal sink only when standard error is one).
    pub fn new(sinks: Vec<Sink>) -> Meter {
        use std::io::IsTerminal;
        let sinks: Vec<Sink> = sinks
            .into_iter()
            .filter(|s| !matches!(s, Sink::Terminal) || std::io::stderr().is_terminal())
            .collect();
        if sinks.is_empty() {
            return Meter(None);
        }
        let last = vec![None; sinks.len()];
        Meter(Some(Arc::new(Mutex::new(Inner {
            now: Progress::new(Task::Sync, false, 0),
            sinks,
            last,
        }))))
    }

    fn with(&self, f: impl FnOnce(&mut Progress) -> bool) {
        let Some(m) = &self.0 else { return };
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        let force = f(&mut g.now);
        g.now.at = ad_sync_core::time_fmt::now_unix();
        let inner = &mut *g;
        for (sink, last) in inner.sinks.iter().zip(inner.last.iter_mut()) {
            let due = last.is_none_or(|t| t.elapsed() >= every(sink));
            if force || due {
                write(sink, &inner.now);
                *last = Some(Instant::now());
            }
        }
    }

    /// A new run of `task` begins.
    pub fn start(&self, task: Task, dry_run: bool) {
        // Nothing is written yet: the first reading waits for the first count, so an idle
        // run (no changes) writes nothing.
        let Some(m) = &self.0 else { return };
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        g.now = Progress::new(task, dry_run, ad_sync_core::time_fmt::now_unix());
        g.last.iter_mut().for_each(|l| *l = None);
    }

    /// The run moves to `phase`, with its total when known.
    pub fn phase(&self, phase: Phase, total: Option<u64>) {
        self.with(|p| {
            let changed = p.phase != phase;
            p.phase = phase;
            if changed {
                p.done = 0;
            }
            p.total = total;
            changed
        });
    }

    /// `n` more to do in this phase (work planned as the run goes, as memberships are).
    pub fn more(&self, n: u64) {
        if n > 0 {
            self.with(|p| {
                p.total = Some(p.total.unwrap_or(0) + n);
                false
            });
        }
    }

    /// `n` more done.
    pub fn tick(&self, n: u64) {
        if n > 0 {
            self.with(|p| {
                p.done += n;
                false
            });
        }
    }

    /// The run ended (well or not): the terminal says so, the file is removed.
    pub fn finish(&self) {
        let Some(m) = &self.0 else { return };
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        let wrote = g.last.iter().any(Option::is_some);
        g.now.phase = Phase::Done;
        g.now.at = ad_sync_core::time_fmt::now_unix();
        let inner = &mut *g;
        for (sink, last) in inner.sinks.iter().zip(inner.last.iter_mut()) {
            match sink {
                Sink::File(dir) => {
                    // Gone already is as good as removed.
                    let _ = std::fs::remove_file(dir.join(FILE_NAME));
                }
                _ if wrote => write(sink, &inner.now),
                _ => {}
            }
            *last = None;
        }
    }
}

fn write(sink: &Sink, p: &Progress) {
    match sink {
        Sink::Terminal => eprintln!("{}", p.sentence()),
        Sink::Json => {
            if let Ok(j) = serde_json::to_string(&serde_json::json!({ "progress": p })) {
                eprintln!("{j}");
            }
        }
        Sink::File(dir) => {
            if p.phase == Phase::Done {
                return;
            }
            // Written whole or not at all; a reading that cannot be written is skipped (the
            // run does not depend on it), and `status` then shows the one before, or none.
            if let Ok(j) = serde_json::to_vec(p)
                && let Ok(mut f) = tempfile::NamedTempFile::new_in(dir)
            {
                use std::io::Write;
                if f.write_all(&j).is_ok() {
                    let _ = f.persist(dir.join(FILE_NAME));
                }
            }
        }
    }
}

/// The reading of a run under way in `state_dir`, if there is one (a file left by a run that
/// ended without removing it is older than `STALE_AFTER_SECS` and not shown).
pub fn read(state_dir: &std::path::Path, now: i64) -> Option<Progress> {
    let bytes = std::fs::read(state_dir.join(FILE_NAME)).ok()?;
    let p: Progress = serde_json::from_slice(&bytes).ok()?;
    p.is_live(now).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_holds_the_run_while_it_runs_and_is_gone_after() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meter::new(vec![Sink::File(dir.path().to_path_buf())]);
        m.start(Task::Sync, false);
        assert!(read(dir.path(), ad_sync_core::time_fmt::now_unix()).is_none());
        m.phase(Phase::Applying, Some(10));
        m.tick(3);
        let now = ad_sync_core::time_fmt::now_unix();
        let p = read(dir.path(), now).expect("a reading while the run is under way");
        assert_eq!(
            (p.task, p.phase, p.total),
            (Task::Sync, Phase::Applying, Some(10))
        );
        // Ticks within the second are not written; the next phase change is.
        m.more(5);
        m.phase(Phase::Sending, Some(2));
        let p = read(dir.path(), now).unwrap();
        assert_eq!((p.phase, p.total, p.done), (Phase::Sending, Some(2), 0));
        // A reading older than the staleness limit is not a run.
        assert!(
            read(
                dir.path(),
                now + ad_sync_core::progress::STALE_AFTER_SECS + 2
            )
            .is_none()
        );
        m.finish();
        assert!(!dir.path().join(FILE_NAME).exists());
        assert!(read(dir.path(), now).is_none());
    }

    #[test]
    fn a_meter_without_sinks_does_nothing() {
        let m = Meter::new(vec![]);
        assert!(m.0.is_none());
        m.start(Task::Import, true);
        m.tick(1);
        m.finish();
    }
}
