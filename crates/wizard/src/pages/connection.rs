//! Page 5: how the agent talks to the DC (`ldap.tls`, `ldap.fallback`, `dc.writable`), the
//! certificate the DC presents, a CA file to trust, and the insecure fallback that needs an
//! explicit acknowledgement.

use crate::state::PickTarget;
use crate::state::State;
use crate::validate::{CertTarget, Slot};
use crate::widgets::{self, Gate, field_error, note};
use ad_sync_core::directory::Security;
use ad_sync_core::directory::cert::CertInfo;
use ad_sync_core::preflight::{Scope, ids};
use egui::{RichText, Ui};

pub fn ui(s: &mut State, ui: &mut Ui) -> Gate {
    ui.radio_value(
        &mut s.form.security,
        Security::Ldaps,
        "LDAPS (TLS from the start, port 636)",
    );
    ui.radio_value(
        &mut s.form.security,
        Security::Starttls,
        "StartTLS (plain LDAP upgraded to TLS, port 389)",
    );
    widgets::text_field(
        ui,
        "Port (empty for the default)",
        &mut s.form.port,
        &s.form.security.default_port().to_string(),
    );
    let port = match s.form.port() {
        Ok(p) => p.unwrap_or(s.form.security.default_port()),
        Err(e) => {
            field_error(ui, &e, "Leave it empty unless your DC listens elsewhere.");
            return Gate::Blocked(e);
        }
    };
    s.path_field(
        ui,
        PickTarget::LdapCa,
        "Trust this CA file (optional)",
        if cfg!(windows) {
            r"C:\certs\dc-ca.cer (PEM, DER or .p7b)"
        } else {
            "/etc/ad-sync/dc-ca.pem (PEM, DER or .p7b)"
        },
        "Browse for CA file…",
    );
    ui.checkbox(
        &mut s.form.allow_insecure_fallback,
        "If the LDAPS port refuses connections, use StartTLS on port 389",
    );
    if s.form.allow_insecure_fallback {
        ui.indent("fallback", |ui| {
            ui.label(
                "StartTLS is verified exactly as LDAPS is, and tried only when the secure port refuses connections \
                 outright: never after a certificate or handshake failure, which is what someone in the network path \
                 would cause. ad-sync never logs on over plain LDAP.",
            );
        });
    }
    let local = Gate::Ready;
    ui.separator();
    let target = CertTarget {
        host: s.form.dc_host(),
        port,
        starttls: s.form.security == Security::Starttls,
    };
    let checks = super::preflight_checks(
        s,
        ui,
        Slot::Connection,
        Scope::Connection,
        Some(target),
        "the secure connection",
        &[ids::LDAP_TLS, ids::LDAP_FALLBACK, ids::DC_WRITABLE],
        &[ids::DC_RESOLVE, ids::DC_REACHABLE],
        certificate,
    );
    local.and(checks)
}

fn certificate(ui: &mut Ui, cert: Option<&Result<CertInfo, String>>) {
    match cert {
        Some(Ok(c)) => {
            ui.label(RichText::new("The DC's certificate").strong());
            let names = c.names();
            for (k, v) in [
                ("Subject", c.subject.clone()),
                (
                    "Issuer",
                    format!(
                        "{}{}",
                        c.issuer,
                        if c.self_signed { " (self-signed)" } else { "" }
                    ),
                ),
                (
                    "Names",
                    if names.is_empty() {
                        "(none)".into()
                    } else {
                        names.join(", ")
                    },
                ),
                ("Valid", format!("{} to {}", c.not_before, c.not_after)),
                ("Revocation", c.revocation_line()),
                ("SHA-256", c.sha256.clone()),
            ] {
                widgets::fact(ui, k, v, 90.0);
            }
        }
        Some(Err(e)) => note(ui, &format!("The certificate could not be read: {e}")),
        None => {}
    }
}
