//! How far a long piece of the agent's work has come: a sync run (the first one after setup
//! can be thousands of operations) or an import. One value, three readers: the terminal line
//! `run --once` and `import` print, the JSON line they print with `--json`, and the file the
//! service keeps beside its state while a run is under way, which `status` (and so the
//! wizard's Finish page) reads. The sentence each shows is made here, once.

use serde::{Deserialize, Serialize};

/// The work measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Sync,
    Import,
}

/// Where the work is. The phases come in this order; only `Applying` and `Sending` have a
/// known total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading the cloud's changes (done: changes read).
    ReadingChanges,
    /// Reading AD (done: objects read).
    ReadingAd,
    /// Writing to AD (done: operations made of `total`).
    Applying,
    /// Sending to the cloud (done: objects sent of `total`).
    Sending,
    /// Finished.
    Done,
}

/// A run's progress at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub task: Task,
    pub phase: Phase,
    pub done: u64,
    pub total: Option<u64>,
    /// Whether nothing is written (a dry run, an import preview).
    #[serde(default)]
    pub dry_run: bool,
    /// Unix seconds: when the run started, and when this was measured.
    pub started: i64,
    pub at: i64,
}

/// A progress file not rewritten for this long belongs to a run that ended without removing
/// it (a crash, a killed process): it is not shown as running. A run rewrites it at least at
/// each phase and every second while operations complete; one LDAP operation is limited to
/// far less than this.
pub const STALE_AFTER_SECS: i64 = 180;

impl Progress {
    pub fn new(task: Task, dry_run: bool, now: i64) -> Progress {
        Progress {
            task,
            phase: if task == Task::Sync {
                Phase::ReadingChanges
            } else {
                Phase::ReadingAd
            },
            done: 0,
            total: None,
            dry_run,
            started: now,
            at: now,
        }
    }

    /// How much is done, from 0 to 1, when the total is known.
    pub fn fraction(&self) -> Option<f32> {
        match (self.phase, self.total) {
            (Phase::Done, _) => Some(1.0),
            (_, Some(0)) => Some(1.0),
            (_, Some(t)) => Some((self.done.min(t) as f32) / (t as f32)),
            _ => None,
        }
    }

    /// Whether this still describes a run under way at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.phase != Phase::Done && now - self.at <= STALE_AFTER_SECS
    }

    /// The sentence shown on a terminal, in `status` and on the wizard's pages.
    pub fn sentence(&self) -> String {
        use crate::policy::count;
        let n = |v: u64| count(usize::try_from(v).unwrap_or(usize::MAX));
        let of = |what: &str| match self.total {
            Some(t) => format!("{} of {} {what}", n(self.done), n(t)),
            None => format!("{} {what}", n(self.done)),
        };
        let elapsed = (self.at - self.started).max(0);
        let time = if elapsed >= 60 {
            format!(" ({} min {} s)", elapsed / 60, elapsed % 60)
        } else {
            format!(" ({elapsed} s)")
        };
        let body = match (self.task, self.phase, self.dry_run) {
            (_, Phase::ReadingChanges, _) => {
                format!("Reading the cloud's changes: {}", of("read"))
            }
            (Task::Sync, Phase::ReadingAd, _) => {
                format!("Comparing with AD: {}", of("objects read"))
            }
            (Task::Import, Phase::ReadingAd, _) => {
                format!("Reading AD: {}", of("objects read"))
            }
            (_, Phase::Applying, false) => format!("Writing to AD: {}", of("operations done")),
            (_, Phase::Applying, true) => {
                format!("Planning (dry run): {}", of("operations planned"))
            }
            (_, Phase::Sending, false) => {
                format!("Sending to the cloud: {}", of("objects sent"))
            }
            (_, Phase::Sending, true) => format!(
                "Asking the cloud what it would import: {}",
                of("objects asked about")
            ),
            (_, Phase::Done, _) => "Finished".to_string(),
        };
        format!("{body}{time}")
    }
}

/// The name of the file a running service keeps in its state folder.
pub const FILE_NAME: &str = "progress.json";

#[cfg(test)]
mod tests {
    use super::*;

    fn at(task: Task, phase: Phase, done: u64, total: Option<u64>, dry_run: bool) -> Progress {
        Progress {
            task,
            phase,
            done,
            total,
            dry_run,
            started: 1000,
            at: 1075,
        }
    }

    #[test]
    fn each_phase_has_its_sentence_and_fraction() {
        let table = [
            (
                at(Task::Sync, Phase::ReadingChanges, 2000, None, false),
                "Reading the cloud's changes: 2,000 read (1 min 15 s)",
                None,
            ),
            (
                at(Task::Sync, Phase::ReadingAd, 340, None, false),
                "Comparing with AD: 340 objects read (1 min 15 s)",
                None,
            ),
            (
                at(Task::Import, Phase::ReadingAd, 12, None, false),
                "Reading AD: 12 objects read (1 min 15 s)",
                None,
            ),
            (
                at(Task::Sync, Phase::Applying, 310, Some(1240), false),
                "Writing to AD: 310 of 1,240 operations done (1 min 15 s)",
                Some(0.25),
            ),
            (
                at(Task::Sync, Phase::Applying, 5, Some(10), true),
                "Planning (dry run): 5 of 10 operations planned (1 min 15 s)",
                Some(0.5),
            ),
            (
                at(Task::Import, Phase::Sending, 1, Some(4), false),
                "Sending to the cloud: 1 of 4 objects sent (1 min 15 s)",
                Some(0.25),
            ),
            (
                at(Task::Import, Phase::Sending, 0, Some(0), true),
                "Asking the cloud what it would import: 0 of 0 objects asked about (1 min 15 s)",
                Some(1.0),
            ),
            (
                at(Task::Import, Phase::Done, 3, Some(4), false),
                "Finished (1 min 15 s)",
                Some(1.0),
            ),
        ];
        for (p, sentence, fraction) in table {
            assert_eq!(p.sentence(), sentence);
            assert_eq!(p.fraction(), fraction, "{sentence}");
        }
        // More done than the total (a total that was an estimate) never passes 1.
        assert_eq!(
            at(Task::Sync, Phase::Applying, 12, Some(10), false).fraction(),
            Some(1.0)
        );
    }

    #[test]
    fn a_progress_not_rewritten_for_three_minutes_is_not_a_run() {
        let p = at(Task::Sync, Phase::Applying, 1, Some(2), false);
        assert!(p.is_live(1075 + STALE_AFTER_SECS));
        assert!(!p.is_live(1075 + STALE_AFTER_SECS + 1));
        let done = at(Task::Sync, Phase::Done, 2, Some(2), false);
        assert!(!done.is_live(1075));
    }

    #[test]
    fn the_json_a_script_reads() {
        let p = at(Task::Sync, Phase::Applying, 3, Some(9), false);
        let j = serde_json::to_value(&p).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"task": "sync", "phase": "applying", "done": 3, "total": 9,
                "dry_run": false, "started": 1000, "at": 1075})
        );
        let back: Progress = serde_json::from_value(j).unwrap();
        assert_eq!(back, p);
    }
}
