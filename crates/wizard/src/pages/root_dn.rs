//! Page 7: the Root User container, picked from the live directory or typed (`dn.root`,
//! `root_dn.domain_matches`, `root_dn.exists`, `root_dn.delegation`). The service account
//! logged on one page earlier, so the tree and every check here read the domain as that
//! account; `CN=Users` of the bound domain is proposed when the field is empty.

use crate::state::State;
use crate::validate::Slot;
use crate::widgets::{Gate, field_error, note};
use ad_sync_core::dn::Dn;
use ad_sync_core::preflight::{Scope, ids};
use egui::Ui;

pub const IDS: [&str; 3] = [
    ids::ROOT_DN_DOMAIN_MATCHES,
    ids::ROOT_DN_EXISTS,
    ids::ROOT_DN_DELEGATION,
];

pub const CONTEXT: [&str; 6] = [
    ids::DC_RESOLVE,
    ids::DC_REACHABLE,
    ids::LDAP_TLS,
    ids::LDAP_FALLBACK,
    ids::DC_WRITABLE,
    ids::LDAP_BIND,
];

pub fn ui(s: &mut State, ui: &mut Ui) -> Gate {
    ui.label("The container whose users and groups the agent manages. Objects outside it are never touched. Pick it below, or type or paste its DN.");
    let dn = super::dn_field::ui(
        ui,
        "Root User container",
        &mut s.form.root_user_dn,
        "CN=Users;DC=example;DC=com",
    );
    if s.form.password.is_empty() {
        field_error(
            ui,
            "The service account's password is needed to read the directory",
            "Go back to Service account and type it.",
        );
        return Gate::Blocked("the service account's password is missing".into());
    }
    let answers = s.form.to_answers();
    let picked = s
        .trees
        .root
        .ui(ui, &mut s.validator, &answers, dn.as_slice(), "containers");
    if let Some(chosen) = picked.dn {
        s.form.root_user_dn = chosen;
    } else if let Some(top) = s.trees.root.top(&s.validator)
        && s.form.root_user_dn.trim().is_empty()
        && !s.trees.root_proposed
    {
        // JumpCloud's default, and where AD puts users unless told otherwise.
        s.trees.root_proposed = true;
        if let Some(users) = top.nodes.iter().find(|n| {
            Dn::parse(&n.dn).is_ok_and(|p| {
                p.dn.first_value()
                    .is_some_and(|v| v.eq_ignore_ascii_case("Users"))
                    && p.dn.rdns().first().is_some_and(|r| r.attr == "CN")
            })
        }) {
            s.form.root_user_dn = users.dn.clone();
        }
    }
    if s.trees.root_proposed
        && let Ok(p) = Dn::parse(s.form.root_user_dn.trim())
        && p.dn
            .first_value()
            .is_some_and(|v| v.eq_ignore_ascii_case("Users"))
        && p.dn.rdns().len() > 1
        && p.dn.rdns().iter().skip(1).all(|r| r.attr == "DC")
    {
        note(
            ui,
            "Proposed: the domain's Users container, where AD puts new accounts. An OU of their own keeps the cloud's users apart.",
        );
    }
    ui.separator();
    if dn.is_none() {
        return Gate::Blocked("the Root User container is not a valid DN".into());
    }
    super::preflight_checks(
        s,
        ui,
        Slot::RootDn,
        Scope::Directory,
        None,
        "the container",
        &IDS,
        &CONTEXT,
        |_, _| {},
    )
}
