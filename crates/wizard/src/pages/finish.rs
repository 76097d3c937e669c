//! Page 12: where the config, the secrets and the logs are, and the agent as the cloud sees it.

use crate::state::State;
use crate::widgets::{Gate, note};
use egui::{RichText, Ui};

pub fn ui(s: &mut State, ui: &mut Ui) -> Gate {
    let Some(run) = s.install.run.as_ref() else {
        return Gate::Blocked("nothing was installed".into());
    };
    let (Some(plan), Some(outcome)) = (&run.plan, &run.outcome) else {
        return Gate::Blocked("the install has not finished".into());
    };
    let l = &plan.layout;
    ui.label(
        RichText::new(match outcome.result {
            ad_sync_core::install::InstallResult::Installed => "The ad-sync agent is installed.",
            _ => "The ad-sync agent is enrolled, but the install did not finish: run setup again.",
        })
        .strong(),
    );
    let mut row = |k: &str, v: String| {
        crate::widgets::fact(ui, RichText::new(k).weak(), v, 100.0);
    };
    row(
        "Agent",
        outcome
            .agent_id
            .clone()
            .unwrap_or_else(|| "not enrolled".into()),
    );
    row("Configuration", l.real(&l.config).display().to_string());
    row("Secrets", plan.secret_store.clone());
    row(
        "Logs",
        ad_sync_core::install::service::where_to_read_logs(&l.real(&l.log_dir), plan.service.name),
    );
    row(
        "Service",
        format!("{}: {}", plan.service.name, plan.service.command_line()),
    );
    row(
        "Started",
        if plan.start {
            "yes".into()
        } else {
            format!("no ({})", plan.not_started_because.as_deref().unwrap_or(""))
        },
    );
    ui.separator();
    match (&outcome.cloud_view, &outcome.cloud_view_error) {
        (Some(v), _) => {
            ui.label(RichText::new("As the cloud sees it").strong());
            ui.label(format!(
                "Agent {} on {}: {}, {}. Enrolled {}, last heard from {}.",
                v.agent_id,
                v.host,
                match v.role {
                    ad_sync_core::cloud::api::Role::Primary => "primary",
                    ad_sync_core::cloud::api::Role::Standby => "standby",
                },
                v.health,
                v.enrolled_at,
                if v.heard_from {
                    v.last_seen.clone()
                } else {
                    "not yet (the service has not called in)".into()
                }
            ));
        }
        (None, Some(e)) => note(
            ui,
            &format!("The cloud could not be asked about the agent: {e}"),
        ),
        _ => {}
    }
    if outcome.agent_id.is_some() {
        ui.separator();
        let agent = l.real(&l.agent_exe);
        let config = l.real(&l.config);
        let logs = l.real(&l.log_dir);
        import_offer(s, ui, agent, config, logs);
    }
    note(
        ui,
        "Run this setup again at any time to review the configuration or upgrade; no connect key is needed then.",
    );
    Gate::Ready
}

/// The import of AD into the cloud: preview it, then run it, or copy the command.
fn import_offer(
    s: &mut State,
    ui: &mut Ui,
    agent: std::path::PathBuf,
    config: std::path::PathBuf,
    logs: std::path::PathBuf,
) {
    use crate::import::{Ended, ImportRun};
    ui.label(RichText::new("Import AD into the cloud (optional)").strong());
    ui.label(
        "Creates a cloud user or group for each account and security group under the Root User container, linked to it, so the cloud manages those same objects from now on (protected and privileged ones are never imported). Safe to run again: it imports only what is new.",
    );
    let command = format!(
        "\"{}\" import --config \"{}\" --dry-run",
        agent.display(),
        config.display()
    );
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new("Or later:").weak());
        ui.code(&command);
        if ui.small_button("Copy command").clicked() {
            ui.ctx().copy_text(command.clone());
        }
    });
    let running = s
        .install
        .import
        .as_ref()
        .is_some_and(|r| r.ended().is_none());
    let ctx = ui.ctx().clone();
    ui.horizontal(|ui| {
        let mut start = |dry_run: bool| {
            s.install.import = Some(ImportRun::start(
                agent.clone(),
                config.clone(),
                logs.clone(),
                dry_run,
                ctx.clone(),
            ));
        };
        if ui
            .add_enabled(!running, egui::Button::new("Preview the import"))
            .on_hover_text("Asks the cloud what it would create or link; changes nothing")
            .clicked()
        {
            start(true);
        }
        if ui
            .add_enabled(!running, egui::Button::new("Import now"))
            .clicked()
        {
            start(false);
        }
        if running
            && ui.button("Cancel import").clicked()
            && let Some(r) = &s.install.import
        {
            r.cancel();
        }
    });
    let Some(run) = &s.install.import else {
        return;
    };
    match run.ended() {
        None => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(if run.dry_run {
                    "Asking the cloud what the import would do..."
                } else {
                    "Importing..."
                });
            });
        }
        Some(Ended::Cancelled) => note(
            ui,
            "Import cancelled. What was sent before stays imported; running it again finishes it.",
        ),
        Some(Ended::Failed(e)) => crate::widgets::field_error(
            ui,
            &e,
            "Run the command above in a console to see the agent's full message.",
        ),
        Some(Ended::Report { code, text, log }) => {
            let text = if matches!(code, Some(0 | 4)) {
                text
            } else {
                format!("{text}{log}")
            };
            let summary: Vec<&str> = text
                .lines()
                .filter(|l| {
                    ["users: ", "groups: ", "memberships: ", "dry run"]
                        .iter()
                        .any(|p| l.starts_with(p))
                })
                .collect();
            let outcome = match (code, run.dry_run) {
                (Some(0 | 4), true) => {
                    "Import preview (nothing was imported; what the cloud would refuse is listed below):"
                }
                (Some(0), false) => "Imported:",
                (Some(4), false) => {
                    "Imported, except the objects the cloud refused (listed below):"
                }
                _ => "The import did not run:",
            };
            ui.label(RichText::new(outcome).strong());
            for l in &summary {
                ui.label(*l);
            }
            egui::ScrollArea::vertical()
                .id_salt("import-report")
                .max_height(140.0)
                .show(ui, |ui| {
                    for l in text.lines().filter(|l| !summary.contains(l)) {
                        ui.add(egui::Label::new(RichText::new(l).monospace().small()).wrap());
                    }
                });
        }
    }
}
