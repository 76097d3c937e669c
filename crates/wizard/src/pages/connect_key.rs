//! Page 8: the cloud and the connect key. The key's format and checksum are checked as it is
//! typed or pasted (spaces and line breaks are fine), before the cloud is asked; then the cloud
//! says whether it is valid, without using it up. On an upgrade no key is asked: the agent is
//! enrolled already, and only the cloud's address is proved.

use crate::state::PickTarget;
use crate::state::State;
use crate::validate::Slot;
use crate::widgets::{self, Gate, field_error_line, note};
use ad_sync_core::connect_key::ConnectKey;
use ad_sync_core::preflight::{Scope, ids};
use egui::{RichText, Ui};

pub fn ui(s: &mut State, ui: &mut Ui) -> Gate {
    let field = widgets::text_field(
        ui,
        "Cloud URL",
        &mut s.form.cloud_url,
        "https://cloud.example.com",
    );
    let complain = widgets::may_complain(ui, &field);
    let mut local = Gate::Ready;
    let url = s.form.cloud_url.trim().to_string();
    widgets::reserved(ui, 2, |ui| {
        if url.is_empty() {
            if complain {
                field_error_line(
                    ui,
                    "Cloud URL is empty",
                    "Type the cloud's address, e.g. https://cloud.example.com.",
                );
            }
            local = Gate::Blocked("type the cloud URL".into());
        } else if !url.starts_with("https://") {
            field_error_line(
                ui,
                &format!("Cloud URL `{url}` must start with https://"),
                "The agent talks to the cloud over HTTPS only.",
            );
            local = Gate::Blocked("the cloud URL must use https".into());
        }
    });
    s.path_field(
        ui,
        PickTarget::CloudCa,
        "Cloud CA file (optional)",
        "PEM, DER or .p7b; trusted besides the system roots",
        "Browse for cloud CA…",
    );
    local = local.and(proxy(s, ui));
    let key_ids: &[&str] = if s.upgrade() {
        ui.add_space(4.0);
        ui.label(
            RichText::new(
                "This agent is enrolled already: no connect key is needed for an upgrade.",
            )
            .strong(),
        );
        &[ids::CLOUD_REACHABLE, ids::CLOUD_TLS]
    } else {
        ui.add_space(4.0);
        // How the key field looks is this page's own toggle, kept in egui's memory.
        let show_id = egui::Id::unique("connect-key-shown");
        let mut show = ui.data(|d| d.get_temp::<bool>(show_id).unwrap_or(false));
        let field = ui
            .horizontal(|ui| {
                let field = ui
                    .vertical(|ui| {
                        if show {
                            widgets::text_field(
                                ui,
                                widgets::CONNECT_KEY_FIELD,
                                &mut s.form.connect_key,
                                "ADS1-…",
                            )
                        } else {
                            widgets::secret_field(
                                ui,
                                widgets::CONNECT_KEY_FIELD,
                                &mut s.form.connect_key,
                                "ADS1-… (paste it)",
                            )
                        }
                    })
                    .inner;
                ui.checkbox(&mut show, "Show key");
                field
            })
            .inner;
        ui.data_mut(|d| d.insert_temp(show_id, show));
        let complain = widgets::may_complain(ui, &field);
        let key: &str = s.form.connect_key.as_str();
        widgets::reserved(ui, 2, |ui| {
            if key.trim().is_empty() {
                if complain {
                    field_error_line(
                        ui,
                        "Connect key is empty",
                        "Paste the key from the cloud console (Settings > AD sync > connect key).",
                    );
                }
                local = local
                    .clone()
                    .and(Gate::Blocked("paste the connect key".into()));
            } else {
                match ConnectKey::parse(key) {
                    Ok(k) => widgets::note_line(
                        ui,
                        &format!("Format and checksum are right ({}).", k.redacted()),
                    ),
                    Err(e) => {
                        field_error_line(
                            ui,
                            &format!("Connect key: {e}"),
                            "Copy the key again from the cloud console; a typo changes the checksum.",
                        );
                        local = local
                            .clone()
                            .and(Gate::Blocked("the connect key has a typo".into()));
                    }
                }
            }
        });
        note(
            ui,
            "Checking the key does not use it up; only the install step does.",
        );
        &[
            ids::CLOUD_REACHABLE,
            ids::CLOUD_TLS,
            ids::CONNECT_KEY_VALID,
            ids::CONNECT_KEY_DOMAIN_MATCHES,
        ]
    };
    if !local.is_ready() {
        return local;
    }
    ui.separator();
    super::preflight_checks(
        s,
        ui,
        Slot::Cloud,
        Scope::Cloud,
        None,
        "the cloud",
        key_ids,
        &[],
        |_, _| {},
    )
}

/// The proxy the cloud is reached through, folded away unless one is set or was found. The
/// checks below go through it, as the installed service will.
fn proxy(s: &mut State, ui: &mut Ui) -> Gate {
    let mut gate = Gate::Ready;
    let open = !s.form.proxy.trim().is_empty();
    egui::CollapsingHeader::new(if open {
        "Proxy"
    } else {
        "Proxy (none: the cloud is contacted directly)"
    })
    .id_salt("cloud-proxy")
    .default_open(open)
    .show(ui, |ui| {
        match &s.setup.proxy_found {
            Ok(Some(f)) => widgets::note_line(
                ui,
                &format!(
                    "Found in {}: {}. The service uses it only because the config names it.",
                    f.source, f.url
                ),
            ),
            Ok(None) => widgets::note_line(ui, "No proxy is set on this machine."),
            Err(why) => widgets::note_line(ui, why),
        }
        widgets::text_field(
            ui,
            "Proxy URL (optional)",
            &mut s.form.proxy,
            "http://proxy.corp.example:3128",
        );
        let url = s.form.proxy.trim().to_string();
        widgets::reserved(ui, 1, |ui| {
            if !url.is_empty()
                && let Err(why) = ad_sync_core::cloud::client::check_proxy_url(&url)
            {
                field_error_line(ui, &format!("Proxy URL `{url}`: {why}"), "");
                gate = Gate::Blocked("the proxy URL is not usable".into());
            }
        });
        if !url.is_empty() {
            widgets::text_field(
                ui,
                "Proxy user (optional)",
                &mut s.form.proxy_username,
                "only when the proxy asks for a login",
            );
            if !s.form.proxy_username.trim().is_empty() {
                widgets::secret_field(
                    ui,
                    "Proxy password",
                    &mut s.form.proxy_password,
                    "kept in the secret store, never in the config",
                );
                if s.form.proxy_password.is_empty() {
                    gate = gate
                        .clone()
                        .and(Gate::Blocked("type the proxy's password".into()));
                }
            }
        }
    });
    gate
}
