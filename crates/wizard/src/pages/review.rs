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
    let mut go = None;
    if s.upgrade() {
        ui.label(RichText::new("The current configuration, re-checked against the live domain controller and the cloud.").strong());
        if ui.button("Change settings").clicked() {
            go = Some(Page::Folder);
        }
        super::welcome::privileges(s, ui);
    }
    summary(s, ui);
    plan(s, ui);
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
            .filter(|id| !(s.upgrade() && id.starts_with("connect_key.")))
            .collect();
        if s.upgrade() {
            note(
                ui,
                "No connect key is checked: this agent is enrolled already.",
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
    Shown { gate, go }
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
        ("Root User container", normalised(&f.root_user_dn)),
        ("Service account", f.username.clone()),
        ("Account password", password),
        ("Cloud", f.cloud_url.clone()),
        ("Connect key", key),
        ("Sync group", normalised(&f.sync_group_dn)),
        (
            "Policies",
            format!(
                "users: {:?}, groups: {:?}, memberships: {:?}, nested: {:?}, lockout sync: {}",
                f.sync.user_disconnection_action,
                f.sync.group_disconnection_action,
                f.sync.membership_disconnection_action,
                f.sync.group_membership_sync_type,
                if f.sync.sync_account_locked_out_status {
                    "on"
                } else {
                    "off"
                }
            )
            .to_lowercase(),
        ),
        (
            "Existing AD objects",
            match (f.sync.adopt_existing_users, f.sync.adopt_existing_groups) {
                (false, false) => "left alone (same names are reported as collisions)",
                (true, false) => "accounts taken over by name; groups left alone",
                (false, true) => "groups taken over by name; accounts left alone",
                (true, true) => "accounts and groups taken over by name",
            }
            .to_string(),
        ),
    ];
    for (k, v) in rows {
        crate::widgets::fact(ui, RichText::new(k).strong(), v, 170.0);
    }
}

/// The DN as the agent will use it (the typed text when it does not parse).
fn normalised(dn: &str) -> String {
    ad_sync_core::dn::Dn::parse_container(dn.trim())
        .map(|p| p.dn.to_semicolon_form())
        .unwrap_or_else(|_| dn.to_string())
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
