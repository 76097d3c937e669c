//! Page 1: what the wizard does, what to have ready, and what is installed already.

use crate::nav::{Page, Shown};
use crate::state::Existing;
use crate::state::State;
use crate::widgets::{Gate, field_error, note};
use egui::{RichText, Ui};

pub fn ui(s: &mut State, ui: &mut Ui) -> Shown {
    let mut go = None;
    ui.label(
        "This wizard sets up the ad-sync agent, which mirrors the cloud directory's users, groups, \
         memberships, lock state and passwords into Active Directory. Every value you enter is \
         checked against your domain controller and the cloud on the page where you enter it; \
         nothing is written before the last page.",
    );
    ui.add_space(6.0);
    ui.label(RichText::new("Have these ready").strong());
    for line in [
        "• The domain controller's name (on a member server), reachable over LDAPS (636) or StartTLS (389).",
        "• The CA certificate of the DC's LDAPS certificate, if this server does not trust it yet.",
        "• The Root User container the agent manages, e.g. CN=Users,DC=example,DC=com.",
        "• A service account that is not an administrator, with control delegated over that container.",
        "• A connect key from the cloud console (one-time, valid for 7 days).",
        "• The sync group: a security group the synced groups are nested in.",
    ] {
        ui.label(line);
    }
    ui.add_space(6.0);
    match &s.setup.existing {
        Existing::Installed(_) => {
            ui.label(
                RichText::new(format!(
                    "ad-sync is already set up here ({}). Review the existing configuration to upgrade; no new connect key is needed.",
                    s.setup.config_path.display()
                ))
                .strong(),
            );
            if ui.button("Review existing configuration").clicked() {
                go = Some(Page::Review);
            }
        }
        Existing::Unreadable(why) => field_error(
            ui,
            &format!("An existing configuration was found but cannot be used: {why}"),
            "Continuing sets up afresh; the install step will keep the old file as a backup.",
        ),
        Existing::None => {}
    }
    privileges(s, ui);
    Shown {
        gate: Gate::Ready,
        go,
    }
}

/// Validation runs as whoever opened the wizard; only installing needs elevation.
pub fn privileges(s: &State, ui: &mut Ui) {
    if s.setup.elevated {
        return;
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "this user".into());
    ui.add_space(6.0);
    ui.label(
        RichText::new(format!(
            "Running as {user}, without administrator rights. The checks run as you; only the \
             install step needs root."
        ))
        .strong(),
    );
    note(
        ui,
        "To install, re-run elevated: sudo ad-sync-setup (or pkexec ad-sync-setup from a desktop).",
    );
}
