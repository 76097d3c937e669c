//! Page 11: the install, step by step, with each step's result; on a failure before enrollment,
//! the rollback; on a failure after it, what to do.

use crate::state::State;
use crate::widgets::{Gate, check_line, note, status_color};
use ad_sync_core::install::{InstallResult, StepStatus};
use ad_sync_core::preflight::Status;
use egui::{RichText, Ui};

pub fn ui(s: &mut State, ui: &mut Ui) -> Gate {
    s.start_install(ui.ctx());
    let Some(run) = s.install.run.as_ref() else {
        ui.label(
            RichText::new(format!(
                "The install could not start: {}",
                s.install.error.as_deref().unwrap_or("")
            ))
            .color(ui.visuals().error_fg_color),
        );
        return Gate::Blocked("the install could not start".into());
    };
    if let Some(refused) = &run.refused {
        ui.label(RichText::new("Nothing was installed: the install's own checks failed.").strong());
        for c in refused {
            check_line(ui, c);
            if !c.fix.is_empty() {
                note(ui, &format!("Fix: {}", c.fix));
            }
        }
        note(
            ui,
            "Go Back to the Review page after fixing it. No connect key was used.",
        );
        return Gate::Blocked("the install's checks failed".into());
    }
    if run.running() {
        let total = run.steps.len().max(1);
        let finished = run
            .steps
            .iter()
            .filter(|s| !matches!(s.status, StepStatus::Pending | StepStatus::Running))
            .count();
        let current = run
            .steps
            .iter()
            .position(|s| s.status == StepStatus::Running)
            .map_or(String::new(), |i| format!(": {}", run.steps[i].title));
        let text = if run.cancelling() {
            "Cancelling: the step in progress finishes, then everything is undone…".to_string()
        } else {
            // The time only once it is worth saying (most installs take a second or two).
            let took = run.started.elapsed().as_secs();
            let took = if took >= 5 {
                format!(" ({took} s)")
            } else {
                String::new()
            };
            format!("Installing: {finished} of {total} steps done{current}{took}")
        };
        crate::widgets::progress(ui, Some(finished as f32 / total as f32), &text);
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(250));
    }
    for (i, step) in run.steps.iter().enumerate() {
        let (word, status) = match step.status {
            StepStatus::Pending => ("waiting", None),
            StepStatus::Running => ("running", None),
            StepStatus::Done => ("done", Some(Status::Pass)),
            StepStatus::Failed => ("failed", Some(Status::Fail)),
            StepStatus::RolledBack => ("undone", Some(Status::Warn)),
            StepStatus::NotUndone => ("NOT undone", Some(Status::Fail)),
            StepStatus::NotRun => ("not run", None),
        };
        let line = format!("{}. {}: {word}", i + 1, step.title);
        match status {
            Some(st) => {
                ui.label(RichText::new(line).color(status_color(ui, st)));
            }
            None => {
                ui.label(RichText::new(line).weak());
            }
        }
        let detail = if step.message.is_empty() {
            &step.detail
        } else {
            &step.message
        };
        ui.label(RichText::new(format!("     {detail}")).small().weak());
    }
    match run.outcome.as_ref().map(|o| o.result) {
        None => Gate::Blocked("the install is running".into()),
        Some(InstallResult::Installed) => {
            ui.separator();
            ui.label(RichText::new("Installed. Next shows where everything is.").strong());
            Gate::Ready
        }
        Some(InstallResult::RolledBack) => {
            let fully = run.outcome.as_ref().is_some_and(|o| o.fully_undone());
            failure(
                ui,
                run.outcome.as_ref(),
                "Install failed",
                if fully {
                    "Every step was undone: this server is as it was, and the connect key was not used. Go Back to Review to try again."
                } else {
                    "Not every step could be undone: the steps marked NOT undone say what is left and how to remove it. The connect key was not used. Go Back to Review to try again."
                },
            );
            Gate::Blocked("the install was undone".into())
        }
        Some(InstallResult::Incomplete) => {
            failure(
                ui,
                run.outcome.as_ref(),
                "Not finished",
                "The agent is enrolled, so nothing was undone. Running setup again finishes the job with the same connect key.",
            );
            Gate::Ready
        }
    }
}

/// A failed install: what failed, its fix, and what that means for this server.
fn failure(
    ui: &mut Ui,
    outcome: Option<&ad_sync_core::install::Outcome>,
    heading: &str,
    meaning: &str,
) {
    ui.separator();
    ui.label(
        RichText::new(format!(
            "{heading}: {}",
            outcome.and_then(|o| o.error.as_deref()).unwrap_or("")
        ))
        .color(ui.visuals().error_fg_color),
    );
    note(
        ui,
        &format!(
            "Fix: {}",
            outcome.and_then(|o| o.fix.as_deref()).unwrap_or("")
        ),
    );
    note(ui, meaning);
}
