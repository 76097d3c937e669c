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
    let follow = (plan.start && outcome.result == ad_sync_core::install::InstallResult::Installed)
        .then(|| {
            (
                run.started_unix,
                l.real(&l.agent_exe),
                l.real(&l.config),
                l.real(&l.state_dir),
            )
        });
    let import = outcome
        .agent_id
        .is_some()
        .then(|| (l.real(&l.agent_exe), l.real(&l.config), l.real(&l.log_dir)));
    if let Some((since, program, config, state_dir)) = follow {
        ui.separator();
        let job = |poll| crate::validate::Job::Status {
            program: program.clone(),
            config: config.clone(),
            state_dir: state_dir.clone(),
            offline: true,
            poll,
        };
        first_sync(s, ui, since, job);
    }
    if let Some((agent, config, logs)) = import {
        ui.separator();
        import_offer(s, ui, agent, config, logs);
    }
    note(
        ui,
        "Run this setup again at any time to review the configuration or upgrade; no connect key is needed then.",
    );
    Gate::Ready
}

/// How often the Finish page reads the agent's status while it follows the first sync.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The service's first sync, followed until a run that started after the install finished
/// (or the window is closed): its progress with counts while it runs, then how it went.
fn first_sync(s: &mut State, ui: &mut Ui, since: i64, job: impl Fn(u32) -> crate::validate::Job) {
    use crate::validate::{Outcome, Slot, View};
    ui.label(RichText::new("First sync").strong());
    let f = &mut s.install.follow;
    if !f.done {
        if let Some(Outcome::Status(r)) = s.validator.take_done(Slot::FirstSync) {
            match *r {
                Ok(st) => {
                    let finished =
                        st.running.is_none() && st.last_run_unix.is_some_and(|t| t >= since);
                    let standby = st.role.as_deref() == Some("standby");
                    f.done = finished || standby;
                    f.latest = Some(st);
                    f.error = None;
                }
                Err(e) => f.error = Some(e),
            }
        }
        let idle = !matches!(s.validator.view(Slot::FirstSync), View::Running { .. });
        if idle && f.asked.is_none_or(|t| t.elapsed() >= FOLLOW_EVERY) {
            f.polls += 1;
            f.asked = Some(std::time::Instant::now());
            s.validator.request(Slot::FirstSync, job(f.polls));
        }
        ui.ctx().request_repaint_after(FOLLOW_EVERY);
    }
    let f = &s.install.follow;
    match (&f.latest, f.done) {
        (Some(st), true) if st.role.as_deref() == Some("standby") => note(
            ui,
            "This agent is the standby: another agent of this domain is the primary and syncs; this one takes over if it stops.",
        ),
        (Some(st), true) => {
            let held = st.held.len();
            ui.label(format!(
                "The first sync finished: the agent manages {} users and {} groups; {} changes failed; {} disconnections are held for approval.",
                ad_sync_core::policy::count(st.managed_users),
                ad_sync_core::policy::count(st.managed_groups),
                st.failed,
                held
            ));
            super::review::status_panel(ui, st);
        }
        (Some(st), false) => match &st.running {
            Some(p) => crate::widgets::progress(ui, p.fraction(), &p.sentence()),
            None => crate::widgets::progress(
                ui,
                None,
                "Waiting for the service's first sync to start (it starts within a minute of the service)…",
            ),
        },
        (None, _) => crate::widgets::progress(ui, None, "Reading the agent's status…"),
    }
    if let Some(e) = &f.error {
        note(ui, &format!("The agent's status could not be read: {e}"));
    }
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
    let start = |s: &mut State, dry_run: bool| {
        s.install.import = Some(ImportRun::start(
            agent.clone(),
            config.clone(),
            logs.clone(),
            dry_run,
            ctx.clone(),
        ));
    };
    // Nothing is imported without a preview first: its counts are what Import asks to confirm.
    let previewed = match s.install.import.as_ref().map(|r| (r.dry_run, r.ended())) {
        Some((
            true,
            Some(Ended::Report {
                code: Some(0 | 4),
                report: Some(r),
                ..
            }),
        )) => Some(r.would_write()),
        _ => None,
    };
    ui.horizontal(|ui| {
        let again = if previewed.is_some() {
            "Preview again"
        } else {
            "Preview the import"
        };
        if ui
            .add_enabled(!running, egui::Button::new(again))
            .on_hover_text("Asks the cloud what it would create or link; changes nothing")
            .clicked()
        {
            start(s, true);
        }
        if let Some(n) = previewed.filter(|n| *n > 0)
            && ui
                .add_enabled(!running, egui::Button::new("Import now"))
                .on_hover_text(format!(
                    "Writes the {} changes the preview lists to the cloud",
                    ad_sync_core::policy::count(n)
                ))
                .clicked()
        {
            start(s, false);
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
            let p = run.progress();
            crate::widgets::progress(
                ui,
                p.as_ref().and_then(|p| p.fraction()),
                &p.map(|p| p.sentence()).unwrap_or_else(|| {
                    if run.dry_run {
                        "Asking the cloud what the import would do…".into()
                    } else {
                        "Importing…".into()
                    }
                }),
            );
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
        Some(Ended::Report {
            code: Some(code @ (0 | 4)),
            report: Some(report),
            ..
        }) => import_report(ui, &report, run.dry_run, code == 4),
        Some(Ended::Report { log, .. }) => {
            crate::widgets::field_error(
                ui,
                "The import did not run.",
                "Read the agent's message below, fix what it names, and preview again.",
            );
            egui::ScrollArea::vertical()
                .id_salt("import-log")
                .max_height(140.0)
                .show(ui, |ui| {
                    for l in log
                        .lines()
                        .rev()
                        .take(20)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                    {
                        ui.add(egui::Label::new(RichText::new(l).monospace().small()).wrap());
                    }
                });
        }
    }
}

/// An import's (or its preview's) counts, then every object it did not import and why.
fn import_report(
    ui: &mut Ui,
    report: &ad_sync_core::import_report::Report,
    dry_run: bool,
    refused: bool,
) {
    let n = report.would_write();
    let heading = match (dry_run, refused) {
        (true, _) if n == 0 => "Import preview: there is nothing new to import.".to_string(),
        (true, _) => format!(
            "Import preview (nothing was imported yet): Import now writes these {} changes to the cloud:",
            ad_sync_core::policy::count(n)
        ),
        (false, false) => "Imported:".to_string(),
        (false, true) => {
            "Imported, except the objects the cloud refused (listed below):".to_string()
        }
    };
    ui.add(egui::Label::new(RichText::new(heading).strong()).wrap());
    for line in report.summary() {
        ui.label(line);
    }
    let would = if dry_run { "would be " } else { "" };
    let others: Vec<String> = report
        .items
        .iter()
        .filter(|i| {
            !matches!(
                i.outcome.as_str(),
                "created" | "linked" | "already" | "would add"
            )
        })
        .map(|i| {
            let why = if i.message.is_empty() {
                String::new()
            } else {
                format!(": {}", i.message)
            };
            format!("{} {} {would}{}{why}", i.kind, i.name, i.outcome)
        })
        .collect();
    if !others.is_empty() {
        ui.label(RichText::new("Not imported, and why:").strong());
        egui::ScrollArea::vertical()
            .id_salt("import-report")
            .max_height(140.0)
            .show(ui, |ui| {
                for l in &others {
                    ui.add(egui::Label::new(l.as_str()).wrap());
                }
            });
    }
}
