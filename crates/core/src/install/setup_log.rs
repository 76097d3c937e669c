//! The setup log: `setup.log` in the agent's log folder (`%ProgramData%\ad-sync\logs` on
//! Windows, `/var/log/ad-sync` on Linux), beside the agent's own. Every install, uninstall and
//! restart, from the wizard, the command line or the MSI, appends what it checked, planned and
//! did, so an administrator can read afterwards why an unattended run (`msiexec ... ANSWERS=`)
//! failed, or what a removal could not do. Only text the reports already show is written: check
//! results, step titles and messages, errors and fixes, none of which holds a secret (the tests
//! scan this file with the others for the secrets they used).

use super::apply::{Outcome, StepStatus};
use super::layout::Layout;
use super::uninstall::UninstallOutcome;
use crate::preflight::{Report, Status};
use std::io::Write;
use std::path::PathBuf;

pub const FILE: &str = "setup.log";

/// Where the setup log of `layout` is.
pub fn path(layout: &Layout) -> PathBuf {
    layout.real(&layout.log_dir).join(FILE)
}

/// One run's entry: a header line (time, program version, what ran) and indented lines.
pub fn entry(unix: i64, what: &str, lines: &[String]) -> String {
    let mut s = format!(
        "{} ad-sync-setup {} {what}\n",
        crate::time_fmt::unix_to_rfc3339(unix),
        env!("CARGO_PKG_VERSION")
    );
    for l in lines {
        for part in l.lines() {
            s.push_str("  ");
            s.push_str(part);
            s.push('\n');
        }
    }
    s
}

/// Appends one entry to the setup log of `layout`, creating its folder when needed. A log that
/// cannot be written is said on standard error, never a reason to fail the run it records.
pub fn append(layout: &Layout, what: &str, lines: &[String]) {
    let file = path(layout);
    let text = entry(crate::time_fmt::now_unix(), what, lines);
    let written = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
        })
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "note: the setup log {} could not be written ({e}); this run is not recorded there",
            file.display()
        );
    }
}

/// Records an install run: its checks, and its steps and result when it got that far.
pub fn record_install(layout: &Layout, what: &str, report: &Report, outcome: Option<&Outcome>) {
    let mut lines = check_lines(report);
    match outcome {
        Some(o) => lines.extend(install_lines(o)),
        None => lines.push(
            "result: a check failed; nothing was installed and no connect key was used".into(),
        ),
    }
    append(layout, what, &lines);
}

/// The checks, one line each, with detail and fix for anything that did not pass.
pub fn check_lines(report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for c in &report.checks {
        let word = c.status.label();
        out.push(format!("check {} {word}: {}", c.id, c.summary));
        if c.status != Status::Pass {
            if !c.detail.is_empty() {
                out.push(format!("  detail: {}", c.detail));
            }
            if !c.fix.is_empty() {
                out.push(format!("  fix: {}", c.fix));
            }
        }
    }
    out
}

/// The install's steps and its result.
pub fn install_lines(outcome: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    for s in &outcome.steps {
        let word = match s.status {
            StepStatus::Done => "done",
            StepStatus::Failed => "FAILED",
            StepStatus::RolledBack => "undone",
            StepStatus::NotUndone => "NOT UNDONE",
            StepStatus::NotRun | StepStatus::Pending => "not run",
            StepStatus::Running => "interrupted",
        };
        out.push(format!("step {} {word}: {}", s.title, s.message));
    }
    out.push(format!(
        "result: {}{}",
        match outcome.result {
            super::InstallResult::Installed => "installed",
            super::InstallResult::RolledBack => "failed; everything it did was undone unless a step says NOT UNDONE; the connect key was not used",
            super::InstallResult::Incomplete => "not finished; the agent is enrolled; run the same install again to finish",
        },
        outcome
            .agent_id
            .as_deref()
            .map(|a| format!(" (agent {a})"))
            .unwrap_or_default()
    ));
    out.extend(error_lines(
        outcome.error.as_deref(),
        outcome.fix.as_deref(),
    ));
    out
}

/// The uninstall's steps and what it could not do.
pub fn uninstall_lines(out: &UninstallOutcome) -> Vec<String> {
    let mut lines: Vec<String> = out
        .steps
        .iter()
        .map(|s| {
            format!(
                "{} {}: {}",
                if s.ok { "ok" } else { "COULD NOT" },
                s.what,
                s.message
            )
        })
        .collect();
    lines.push(
        if out.error.is_some() {
            "result: stopped, nothing removed"
        } else if out.complete {
            "result: uninstalled"
        } else {
            "result: uninstalled, except what is marked COULD NOT above"
        }
        .to_string(),
    );
    lines.extend(error_lines(out.error.as_deref(), out.fix.as_deref()));
    lines
}

fn error_lines(error: Option<&str>, fix: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = error {
        out.push(format!("error: {e}"));
    }
    if let Some(f) = fix {
        out.push(format!("fix: {f}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_has_a_header_and_indented_lines_even_for_multi_line_messages() {
        let e = entry(
            0,
            "install --answers a.toml",
            &["one".into(), "two\nthree".into()],
        );
        assert_eq!(
            e,
            format!(
                "1970-01-01T00:00:00Z ad-sync-setup {} install --answers a.toml\n  one\n  two\n  three\n",
                env!("CARGO_PKG_VERSION")
            )
        );
    }
}
