//! Page 6: the Root User container (`dn.root`, `root_dn.domain_matches`). Whether it exists
//! and the account may manage it needs a logon, so those are proved on the next page.

use crate::state::State;
use crate::validate::Slot;
use crate::widgets::{Gate, note};
use ad_sync_core::preflight::{Scope, ids};
use egui::Ui;

pub fn ui(s: &mut State, ui: &mut Ui) -> Gate {
    ui.label("The container whose users and groups the agent manages. Objects outside it are never touched.");
    let dn = super::dn_field::ui(
        ui,
        "Root User container",
        &mut s.form.root_user_dn,
        "CN=Users;DC=example;DC=com",
    );
    if dn.is_none() {
        return Gate::Blocked("the Root User container is not a valid DN".into());
    }
    note(
        ui,
        "That it exists, and that the service account may manage users and groups in it, is checked on the next page.",
    );
    ui.separator();
    super::preflight_checks(
        s,
        ui,
        Slot::RootDn,
        Scope::Connection,
        None,
        "the container's domain",
        &[ids::ROOT_DN_DOMAIN_MATCHES],
        &[
            ids::DC_RESOLVE,
            ids::DC_REACHABLE,
            ids::LDAP_TLS,
            ids::LDAP_FALLBACK,
            ids::DC_WRITABLE,
        ],
        |_, _| {},
    )
}
