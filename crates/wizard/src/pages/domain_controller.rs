//! Page 4: which domain controller (`dc.resolve`, `dc.reachable`), with the DCs DNS SRV lists
//! for the domain offered. "Domain to search" starts as this host's DNS domain, and on a
//! member server the search runs as the page opens; the first DC found fills an empty field.
//! Whether the DC is writable needs a secure connection, so `dc.writable` is proved on the
//! next page (and shown here when it already failed).

use crate::state::State;
use crate::validate::{Job, Outcome, Slot};
use crate::widgets::{self, Gate, field_error_line, note};
use ad_sync_core::answers::{self, ServerType};
use ad_sync_core::preflight::{Scope, ids};
use egui::Ui;

pub fn ui(s: &mut State, ui: &mut Ui) -> Gate {
    let local = if s.form.server_type == ServerType::Dc {
        ui.label(format!(
            "This host is the domain controller: the agent connects to {}.",
            s.form.dc_host()
        ));
        Gate::Ready
    } else {
        let field = widgets::text_field(
            ui,
            "Domain controller (FQDN)",
            &mut s.form.dc_host,
            "dc1.example.com",
        );
        let complain = widgets::may_complain(ui, &field);
        let host = s.form.dc_host.trim();
        // The same rule `check` applies to [server] dc_host, said for this field.
        let problem = if host.is_empty() {
            Some((
                "Domain controller is empty".to_string(),
                "Type the DC's full DNS name, e.g. dc1.example.com, or pick one found below.",
                complain,
            ))
        } else if !answers::is_host_name(host) {
            Some((
                format!(
                    "Domain controller `{host}` is not a host name; {}",
                    answers::HOST_NAME_RULE
                ),
                "Type only the name; the port is set on the next page.",
                true,
            ))
        } else {
            None
        };
        widgets::reserved(ui, 2, |ui| {
            if let Some((what, fix, true)) = &problem {
                field_error_line(ui, what, fix);
            }
        });
        let empty = problem.is_some() && s.form.dc_host.trim().is_empty();
        discovery(s, ui);
        match problem {
            // The footer says what is missing without scolding: the field's own message waits
            // until it was left or Next was tried.
            Some(_) if empty => Gate::Blocked("type the domain controller's name".into()),
            Some((what, _, _)) => Gate::Blocked(what),
            None => Gate::Ready,
        }
    };
    if !local.is_ready() {
        return local;
    }
    ui.separator();
    super::preflight_checks(
        s,
        ui,
        Slot::DomainController,
        Scope::Connection,
        None,
        "the domain controller",
        &[ids::DC_RESOLVE, ids::DC_REACHABLE],
        &[ids::DC_WRITABLE],
        |_, _| {},
    )
}

fn discovery(s: &mut State, ui: &mut Ui) {
    let server = match &s.setup.dns_server {
        Ok(server) => *server,
        Err(e) => {
            widgets::field_error(ui, e, "Discovery asks this host's resolver meanwhile.");
            None
        }
    };
    // On a member server that knows its domain, look as soon as the page opens.
    if !s.setup.discovered_on_open {
        s.setup.discovered_on_open = true;
        let domain = s.form.discover_domain.trim().to_string();
        if s.discover_for.is_none() && !domain.is_empty() {
            s.discover_for = Some(domain);
        }
    }
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        ui.vertical(|ui| {
            widgets::text_field(
                ui,
                "Domain to search",
                &mut s.form.discover_domain,
                "example.com",
            )
        });
        if ui.button("Find domain controllers").clicked() {
            let domain = s.form.discover_domain.trim().to_string();
            s.validator.retry(Slot::Discover);
            s.discover_for = Some(domain);
        }
    });
    let Some(domain) = s.discover_for.clone() else {
        note(
            ui,
            "DNS SRV (_ldap._tcp.dc._msdcs.<domain>) lists the domain's controllers; those of this server's AD site come first.",
        );
        return;
    };
    s.validator.request(
        Slot::Discover,
        Job::Discover {
            domain: domain.clone(),
            server,
        },
    );
    let mut chosen = None;
    let s_dc_host = s.form.dc_host.trim().to_string();
    // Proposed once: a field the administrator emptied afterwards stays empty.
    let propose = s.form.dc_host.trim().is_empty() && !s.setup.dc_proposed;
    let shown = if domain.is_empty() {
        "DNS".to_string()
    } else {
        format!("DNS for {domain}")
    };
    widgets::check_view(ui, &mut s.validator, Slot::Discover, &shown, |ui, o| {
        match o {
            Outcome::Dcs(Ok(found)) => {
                match (&found.site, &found.site_note) {
                    (Some(site), None) => ui.add(
                        egui::Label::new(format!(
                            "This server is in the AD site {site}: its domain controllers come first."
                        ))
                        .wrap(),
                    ),
                    (_, Some(why)) => ui.add(egui::Label::new(widgets::plain(why)).wrap()),
                    (None, None) => ui.label(""),
                };
                ui.label(match found.dcs.len() {
                    1 => format!("DNS lists one domain controller for {domain}:"),
                    n => format!("DNS lists {n} domain controllers for {domain}; choose one:"),
                });
                for dc in &found.dcs {
                    let text = format!(
                        "{} (priority {}, weight {}){}",
                        dc.host,
                        dc.priority,
                        dc.weight,
                        if dc.in_site {
                            ", in this server's site"
                        } else {
                            ""
                        }
                    );
                    let picked = s_dc_host.eq_ignore_ascii_case(&dc.host);
                    if ui.radio(picked, text).clicked() {
                        chosen = Some(dc.host.clone());
                    }
                }
                // The first (this site's, then lowest priority, highest weight) fills an empty
                // field, as Windows' DC locator would pick it.
                if propose && let Some(first) = found.dcs.first() {
                    chosen = Some(first.host.clone());
                }
            }
            Outcome::Dcs(Err(e)) => widgets::field_error(ui, e, "Or type the DC's name above."),
            _ => {}
        }
        // Discovery only helps fill the field; it never holds the page.
        Gate::Ready
    });
    if let Some(host) = chosen {
        s.form.dc_host = host;
        s.setup.dc_proposed = true;
        // The field above was drawn before this: draw again to show the name in it.
        ui.ctx().request_repaint();
    }
}
