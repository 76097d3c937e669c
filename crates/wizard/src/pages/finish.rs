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
    egui::Grid::new("finish")
        .num_columns(2)
        .spacing([12.0, 4.0])
        .show(ui, |ui| {
            let mut row = |k: &str, v: String| {
                ui.label(RichText::new(k).weak());
                ui.label(v);
                ui.end_row();
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
                format!(
                    "{} (and journalctl -u {})",
                    l.real(&l.log_dir).display(),
                    plan.service.name
                ),
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
        });
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
    note(
        ui,
        "Run this setup again at any time to review the configuration or upgrade; no connect key is needed then.",
    );
    Gate::Ready
}
