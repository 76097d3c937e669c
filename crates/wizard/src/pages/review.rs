//! Page 10: every value and every check on one page, re-validated against the live DC and the
//! cloud; export of the answers file (without secrets) for an unattended replay. In review
//! mode (a config exists) this is where the wizard opens.

use crate::nav::{Page, Shown};
use crate::state::State;
use crate::state::{PasswordSource, PickTarget};
use crate::validate::Slot;
use crate::widgets::{Gate, field_error, note};
use ad_sync_core::answers::ServerType;
use ad_sync_core::preflight::{Scope, ids};
use egui::{RichText, Ui};

pub fn ui(s: &mut State, ui: &mut Ui) -> Shown {
    if s.install.uninstall.is_some() || s.install.uninstall_error.is_some() {
        return removing(s, ui);
    }
    let mut go = None;
    if s.upgrade() {
        health(s, ui);
        ui.separator();
        ui.label(RichText::new("The current configuration, re-checked against the live domain controller and the cloud.").strong());
        if ui.button("Change settings").clicked() {
            go = Some(Page::Folder);
        }
        super::welcome::privileges(s, ui);
    }
    summary(s, ui);
    plan(s, ui);
    start_choice(s, ui);
    ui.separator();
    let mut local = Gate::Ready;
    if s.upgrade()
        && (s.form.password.is_empty()
            || matches!(s.setup.password_source, PasswordSource::StoreFailed(_)))
    {
        super::account::password(s, ui);
    }
    if s.form.password.is_empty() {
        local = Gate::Blocked("the service account's password is needed".into());
    }
    local = local.and(super::account::unchanged(s, ui));
    let gate = if local.is_ready() {
        let shown: Vec<&str> = ids::ALL
            .iter()
            .copied()
            .filter(|id| !(s.upgrade() && upgrade_skips(id)))
            .collect();
        if s.upgrade() {
            note(
                ui,
                "No connect key is checked and no first-sync preview is made: this agent is enrolled and syncing already. What its next run would change: ad-sync-agent run --config FILE --dry-run.",
            );
        }
        super::preflight_checks(
            s,
            ui,
            Slot::Review,
            Scope::All,
            None,
            "everything",
            &shown,
            &[],
            |_, _| {},
        )
    } else {
        local
    };
    ui.separator();
    export(s, ui);
    if s.installed().is_some_and(|a| a.sync.direction.from_ad()) {
        ui.separator();
        // Fixed ids: the checks above change the page's length while they run, and a screen
        // reader's (or a test's) click must reach the button it named.
        ui.push_id("resync", |ui| resync(s, ui));
    }
    if s.installed().is_some() {
        ui.separator();
        ui.push_id("remove", |ui| remove(s, ui));
    }
    Shown { gate, go }
}

/// Whether the service starts when setup finishes (off: installed and enrolled, not started,
/// as Entra Connect's staging mode; the administrator starts it after a look at the preview).
fn start_choice(s: &mut State, ui: &mut Ui) {
    let why_not = s.setup.can_start.clone().err();
    let opts = &mut s.setup.install_options;
    let mut start = why_not.is_none() && !opts.no_start;
    let r = ui
        .add_enabled(
            why_not.is_none(),
            egui::Checkbox::new(&mut start, "Start syncing when setup finishes"),
        )
        .on_hover_text(
            "Off: the agent is installed and enrolled, but its service is not started, so nothing is written to AD until you start it.",
        );
    if r.changed() {
        opts.no_start = !start;
        s.install.preview = None;
    }
    let service = ad_sync_core::install::layout::SERVICE_NAME;
    match why_not {
        Some(why) => note(
            ui,
            &format!(
                "Setup cannot start the service here: {why}. The agent is installed and enrolled; start its service where it runs."
            ),
        ),
        None if !start => note(
            ui,
            &if cfg!(windows) {
                format!(
                    "The service will be installed but not started. Start it later in Services ({service}) or with: sc start {service}"
                )
            } else {
                format!(
                    "The service will be installed but not started. Start it later with: systemctl start {service}"
                )
            },
        ),
        None => {}
    }
}

/// The checks an upgrade leaves out: the connect key's (an enrolled agent has none; the key it
/// enrolled with was used up) and the first sync's preview, which reads the cloud with that key.
/// The agent's own `run --dry-run` previews an enrolled agent's next run.
fn upgrade_skips(id: &str) -> bool {
    id.starts_with("connect_key.") || id == ids::SYNC_PREVIEW
}

/// Review mode, AD as a source: ask the installed agent for a full reconciliation of AD with
/// the cloud now (what `ad-sync-agent resync` asks), instead of waiting for the daily one.
fn resync(s: &mut State, ui: &mut Ui) {
    ui.label(RichText::new("Reconcile AD with the cloud").strong());
    note(
        ui,
        "Reads the whole scope in AD and compares it with what the cloud holds from AD: what left the scope or was deleted goes through the deletion threshold. The agent runs one every day; ask for one now after changing the scope's groups in AD.",
    );
    if let Some(rx) = &s.install.resync {
        match rx.try_recv() {
            Ok(answer) => {
                s.install.resync_answer = Some(answer);
                s.install.resync = None;
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Asking the agent…");
                });
                return;
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                s.install.resync = None;
            }
        }
    }
    match &s.install.resync_answer {
        Some(Ok(said)) => note(ui, said),
        Some(Err(why)) => field_error(
            ui,
            &format!("The request could not be made: {why}"),
            "Run ad-sync-agent resync --config FILE on this server as the administrator who installed ad-sync.",
        ),
        None => {}
    }
    if ui.button("Reconcile now").clicked() {
        let ctx = ui.ctx().clone();
        s.request_resync(&ctx);
    }
}

/// Review mode's way out: remove ad-sync from this server, after a confirmation that says
/// what goes and what can be kept.
fn remove(s: &mut State, ui: &mut Ui) {
    ui.label(RichText::new("Remove ad-sync from this server").strong());
    if !s.install.remove_asked {
        note(
            ui,
            "Tells the cloud this agent is gone, then removes the service, its secrets, its state and the program. Accounts it created in AD stay as they are.",
        );
        if ui.button("Remove ad-sync…").clicked() {
            s.install.remove_asked = true;
        }
        return;
    }
    egui::Frame::group(ui.style())
        .stroke(egui::Stroke::new(
            1.5,
            crate::widgets::status_color(ui, ad_sync_core::preflight::Status::Fail),
        ))
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.add(
                egui::Label::new(
                    "The cloud is told first (when it cannot be reached nothing is removed). Then the service is stopped and removed, and the agent's secrets, its state and the program are deleted. Users and groups it created in AD are not touched. Installing again needs a new connect key.",
                )
                .wrap(),
            );
            ui.checkbox(
                &mut s.install.keep_config,
                "Keep the configuration file (for a later install with the same settings)",
            );
            ui.horizontal(|ui| {
                if ui.button("Remove now").clicked() {
                    let opts = ad_sync_core::install::uninstall::UninstallOptions {
                        config: s.setup.config_path.clone(),
                        prefix: s.setup.install_options.prefix.clone(),
                        keep_config: s.install.keep_config,
                        force: false,
                        source_dir: s.setup.install_options.source_dir.clone(),
                    };
                    match crate::uninstaller::UninstallRun::start(opts, ui.ctx().clone()) {
                        Ok(r) => s.install.uninstall = Some(r),
                        Err(e) => {
                            s.install.uninstall_error =
                                Some(format!("the removal could not start: {e}"))
                        }
                    }
                }
                if ui.button("Keep ad-sync").clicked() {
                    s.install.remove_asked = false;
                }
            });
        });
}

/// The removal under way, or how it ended; nothing else is offered after it.
fn removing(s: &mut State, ui: &mut Ui) -> Shown {
    let blocked = |why: &str| Shown {
        gate: Gate::Blocked(why.into()),
        go: None,
    };
    if let Some(e) = &s.install.uninstall_error {
        field_error(
            ui,
            e,
            "Run ad-sync-setup uninstall in an elevated console to see why.",
        );
        return blocked("the removal could not start");
    }
    let Some(run) = s.install.uninstall.as_mut() else {
        return blocked("nothing to remove");
    };
    run.poll();
    ui.label(RichText::new("Removing ad-sync from this server").strong());
    if run.running() {
        let total = run.planned.max(1);
        let done = run.steps.len();
        crate::widgets::progress(
            ui,
            Some(done as f32 / total as f32),
            &format!("Removing: {done} of {total} steps done"),
        );
    }
    for r in &run.steps {
        let status = if r.ok {
            ad_sync_core::preflight::Status::Pass
        } else {
            ad_sync_core::preflight::Status::Fail
        };
        crate::widgets::status_text(
            ui,
            status,
            RichText::new(format!("{}: {}", r.title, r.message)),
            if r.ok { "Removed" } else { "Not removed" },
        );
    }
    let Some(out) = &run.outcome else {
        return blocked("the removal is running");
    };
    ui.separator();
    if let Some(e) = &out.error {
        field_error(
            ui,
            &format!("Nothing more was removed: {e}"),
            out.fix.as_deref().unwrap_or(""),
        );
    } else if out.complete {
        ui.label(
            RichText::new("ad-sync was removed from this server. You can close setup.").strong(),
        );
    } else {
        field_error(
            ui,
            "Removed, except the steps marked above: they say what is left.",
            "Remove what is left by hand, or run ad-sync-setup uninstall again.",
        );
    }
    for k in &out.plan.kept {
        note(ui, &format!("Left in place: {k}"));
    }
    blocked("ad-sync was removed")
}

fn summary(s: &State, ui: &mut Ui) {
    let f = &s.form;
    let password = match (&s.setup.password_source, f.password.is_empty()) {
        (_, true) => "(not given)".to_string(),
        (PasswordSource::Store(store), false) => format!("•••••••• (from {store})"),
        _ => "•••••••• (typed)".to_string(),
    };
    let key = if s.upgrade() {
        "not needed (enrolled already)".to_string()
    } else if f.connect_key.trim().is_empty() {
        "(not given)".to_string()
    } else {
        ad_sync_core::connect_key::ConnectKey::parse(&f.connect_key)
            .map(|k| k.redacted())
            .unwrap_or_else(|_| "(not valid)".into())
    };
    let rows: Vec<(&str, String)> = vec![
        ("Destination folder", f.install_dir.clone()),
        (
            "Server type",
            match f.server_type {
                ServerType::Dc => "Domain controller (this host)".into(),
                ServerType::Member => "Member server".into(),
            },
        ),
        ("Domain controller", s.form.dc_host()),
        (
            "Connection",
            format!(
                "{}, port {}{}",
                f.security.name(),
                f.port().ok().flatten().unwrap_or(f.security.default_port()),
                if f.allow_insecure_fallback {
                    ", StartTLS on 389 if the port refuses"
                } else {
                    ""
                }
            ),
        ),
        (
            "DC CA file",
            if f.ldap_ca_file.trim().is_empty() {
                "(system roots)".into()
            } else {
                f.ldap_ca_file.clone()
            },
        ),
        ("Root User container", f.root_user_dn.trim().to_string()),
        ("Service account", f.username.clone()),
        ("Account password", password),
        ("Cloud", f.cloud_url.clone()),
        ("Connect key", key),
        ("Sync group", f.sync_group_dn.trim().to_string()),
    ];
    let mut rows = rows;
    rows.push((
        "Direction",
        ad_sync_core::policy::direction_choice(f.sync.direction)
            .does
            .to_string(),
    ));
    if f.sync.direction.from_ad() {
        let src = f.source.to_source();
        let list = |v: &[String], none: &str| {
            if v.is_empty() {
                none.to_string()
            } else {
                v.join("; ")
            }
        };
        rows.push((
            "Sent from AD",
            format!(
                "users in {}{}{}",
                list(&src.containers, f.root_user_dn.trim()),
                if src.groups.is_empty() {
                    String::new()
                } else {
                    format!(", members of {}", src.groups.join(" or "))
                },
                src.filter
                    .as_deref()
                    .map(|x| format!(", matching {x}"))
                    .unwrap_or_default()
            ),
        ));
        if !src.named.is_empty() {
            rows.push((
                "Protected, sent",
                format!("{} (named one by one)", src.named.join(", ")),
            ));
        }
        let changed: Vec<String> = f
            .mapping_rows
            .iter()
            .filter_map(|r| {
                let row = ad_sync_core::mapping::rows(r.kind).find(|d| d.field == r.field)?;
                let what = crate::form::map_label(r.kind, row.what);
                let attr = r.attr.trim();
                if !r.on {
                    Some(format!("{what} not sent"))
                } else if attr != row.ad && !attr.is_empty() {
                    Some(format!("{what} from {attr}"))
                } else {
                    None
                }
            })
            .collect();
        rows.push((
            "Attribute map",
            if changed.is_empty() {
                "the default map (docs/agent.md)".to_string()
            } else {
                format!("the default map, except: {}", changed.join("; "))
            },
        ));
    }
    // Every policy in the sentence that says what the agent does (the policy page's words).
    for (name, does) in ad_sync_core::policy::sentences(&f.sync) {
        rows.push((name, does.to_string()));
    }
    rows.push((
        "Deletion threshold",
        ad_sync_core::policy::threshold_sentence(
            &f.sync,
            s.agent_status()
                .map(|st| st.managed_users + st.managed_groups),
        ),
    ));
    for (k, v) in rows {
        crate::widgets::fact(ui, RichText::new(k).strong(), v, 170.0);
    }
}

fn export(s: &mut State, ui: &mut Ui) {
    ui.label(RichText::new("Export the answers file").strong());
    note(
        ui,
        "Replays this setup unattended (ad-sync-setup install --answers FILE). It holds no password or key.",
    );
    s.path_field(
        ui,
        PickTarget::Export,
        "Export to",
        if cfg!(windows) {
            r"C:\Users\Administrator\Documents\ad-sync-answers.toml"
        } else {
            "/root/ad-sync-answers.toml"
        },
        "Browse for export file…",
    );
    if ui
        .add_enabled(!s.exporting(), egui::Button::new("Export answers file"))
        .clicked()
    {
        s.export(ui.ctx());
    }
    match &s.files.export_result {
        Some(Ok(msg)) => note(ui, msg),
        Some(Err(e)) => field_error(ui, e, "Choose a folder you can write to."),
        None => {}
    }
}

/// What Install will do: the plan's steps and where the secrets go.
fn plan(s: &mut State, ui: &mut Ui) {
    let plan = s.plan_preview().clone();
    egui::CollapsingHeader::new(format!("What Install will do ({} steps)", plan.steps.len()))
        .id_salt("plan")
        .show(ui, |ui| {
            for (i, step) in plan.steps.iter().enumerate() {
                ui.label(format!("{}. {}", i + 1, step.title));
                ui.label(
                    RichText::new(format!("     {}", step.detail))
                        .small()
                        .weak(),
                );
            }
            if let Some(why) = &plan.not_started_because {
                note(
                    ui,
                    &format!("The service is not started at the end: {why}."),
                );
            }
        });
    note(ui, &format!("Secrets go to: {}", plan.secret_store));
}

/// Review mode opens with the agent's health: `ad-sync-agent status` of the installed agent,
/// in one light (green, amber, red), what to do, and its figures.
fn health(s: &mut State, ui: &mut Ui) {
    let Some(job) = s.status_job() else {
        return;
    };
    s.validator.request(Slot::Status, job);
    // Informative only: the status never blocks a review or an upgrade.
    let _ = crate::widgets::check_view(
        ui,
        &mut s.validator,
        Slot::Status,
        "the agent's status",
        |ui, o| {
            if let crate::validate::Outcome::Status(r) = o {
                match r.as_ref() {
                    Ok(st) => status_panel(ui, st),
                    Err(e) => field_error(
                        ui,
                        &format!("The agent's status could not be read: {e}"),
                        "Run ad-sync-agent status --config FILE on this server to see it.",
                    ),
                }
            }
            Gate::Ready
        },
    );
}

pub(crate) fn status_panel(ui: &mut Ui, st: &ad_sync_core::status::AgentStatus) {
    use ad_sync_core::preflight::Status;
    use ad_sync_core::status::Light;
    let status = match st.light {
        Light::Green => Status::Pass,
        Light::Amber => Status::Warn,
        Light::Red => Status::Fail,
    };
    let color = crate::widgets::status_color(ui, status);
    egui::Frame::group(ui.style())
        .stroke(egui::Stroke::new(1.5, color))
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            let word = match st.light {
                Light::Green => "Agent status: working",
                Light::Amber => "Agent status: needs attention",
                Light::Red => "Agent status: not working",
            };
            crate::widgets::status_text(
                ui,
                status,
                RichText::new(format!("Agent: {}", st.headline))
                    .color(color)
                    .strong(),
                word,
            );
            if let Some(fix) = &st.fix {
                ui.add(egui::Label::new(format!("What to do: {fix}")).wrap());
            }
            if let Some(p) = &st.running {
                crate::widgets::progress(
                    ui,
                    p.fraction(),
                    &format!("Running now: {}", p.sentence()),
                );
            }
            let fact = |ui: &mut Ui, k: &str, v: String| crate::widgets::fact(ui, k, v, 150.0);
            fact(
                ui,
                "Role",
                st.role.clone().unwrap_or_else(|| "not known yet".into()),
            );
            fact(
                ui,
                "Last run",
                format!(
                    "{}; last success {}",
                    st.last_run.as_deref().unwrap_or("none yet"),
                    st.last_success.as_deref().unwrap_or("none yet")
                ),
            );
            fact(
                ui,
                "Manages",
                format!(
                    "{} users and {} groups",
                    ad_sync_core::policy::count(st.managed_users),
                    ad_sync_core::policy::count(st.managed_groups)
                ),
            );
            fact(
                ui,
                "Held",
                match st.held.len() {
                    1 => "1 disconnection, waiting for approval".to_string(),
                    n => format!("{n} disconnections, waiting for approval"),
                },
            );
            for h in st.held.iter().take(10) {
                note(
                    ui,
                    &format!(
                        "{} {} ({}): would {}; held since {}",
                        h.kind, h.name, h.dn, h.action, h.since
                    ),
                );
            }
            fact(
                ui,
                "Failed",
                match st.failed {
                    1 => "1 change in the last run".to_string(),
                    n => format!("{} changes in the last run", ad_sync_core::policy::count(n)),
                },
            );
            for f in st.failures.iter().take(10) {
                note(ui, &format!("{}: {}", f.what, f.reason));
            }
            if st.queued_acks > 0 {
                fact(
                    ui,
                    "To report",
                    format!("{} results wait to be sent to the cloud", st.queued_acks),
                );
            }
            match (&st.cloud_view, &st.cloud_view_error) {
                (Some(v), _) => fact(
                    ui,
                    "Cloud",
                    format!(
                        "sees this agent as {}, {}; last heard from it {}",
                        v.role, v.health, v.last_seen
                    ),
                ),
                (None, Some(e)) => fact(ui, "Cloud", format!("could not be asked: {e}")),
                _ => {}
            }
            for n in &st.notes {
                note(ui, n);
            }
        });
}
